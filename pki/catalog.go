package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"
)

// Defaults, as kubeadm v1beta4 defaults them.
const (
	DefaultCertValidity   = 365 * 24 * time.Hour
	DefaultCAValidity     = 10 * 365 * 24 * time.Hour
	DefaultServiceSubnet  = "10.96.0.0/12"
	DefaultDNSDomain      = "cluster.local"
	DefaultAPIServerPort  = 6443
	DefaultCertificateDir = "/etc/kubernetes/pki"
)

// Config is everything that decides the content of the PKI: kubeadm's configuration, resolved and defaulted.
type Config struct {
	CertDir              string
	NodeName             string
	AdvertiseAddress     net.IP
	BindPort             int32
	ServiceSubnet        string // comma-separated; the first CIDR gives the apiserver's service IP
	DNSDomain            string
	ControlPlaneEndpoint string // host or host:port
	APIServerCertSANs    []string
	LocalEtcd            bool
	EtcdServerCertSANs   []string
	EtcdPeerCertSANs     []string
	Algorithm            Algorithm
	CertValidity         time.Duration
	CAValidity           time.Duration
	StrictPermissions    bool
}

// Validate rejects values that kubeadm's validation rejects, naming the field and the value.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, value, why string) {
		errs = append(errs, invalid(field, value, why))
	}
	// Control characters first: the checks below would otherwise report them less clearly (or not at all,
	// for a path).
	text := func(field, value string) bool {
		if err := CheckText(field, value); err != nil {
			errs = append(errs, err)
			return false
		}
		return true
	}
	if c.CertDir == "" {
		errs = append(errs, &FieldError{Field: "certificatesDir", Reason: "must not be empty"})
	} else {
		text("certificatesDir", c.CertDir)
	}
	if text("nodeRegistration.name", c.NodeName) {
		if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
			bad("nodeRegistration.name", c.NodeName, strings.Join(msgs, "; "))
		}
	}
	if c.AdvertiseAddress == nil {
		errs = append(errs, &FieldError{Field: "localAPIEndpoint.advertiseAddress", Reason: "must be an IP address"})
	} else if err := CheckServerAddress("localAPIEndpoint.advertiseAddress", c.AdvertiseAddress); err != nil {
		errs = append(errs, err)
	}
	if c.BindPort < 1 || c.BindPort > 65535 {
		bad("localAPIEndpoint.bindPort", fmt.Sprint(c.BindPort), "must be a port number between 1 and 65535")
	}
	if text("networking.serviceSubnet", c.ServiceSubnet) {
		if err := validateServiceSubnet(c.ServiceSubnet); err != nil {
			bad("networking.serviceSubnet", c.ServiceSubnet, err.Error())
		}
	}
	if text("networking.dnsDomain", c.DNSDomain) {
		if msgs := validation.IsDNS1123Subdomain(c.DNSDomain); len(msgs) > 0 {
			bad("networking.dnsDomain", c.DNSDomain, strings.Join(msgs, "; "))
		}
	}
	if c.ControlPlaneEndpoint != "" && text("controlPlaneEndpoint", c.ControlPlaneEndpoint) {
		if host, _, err := SplitEndpoint(c.ControlPlaneEndpoint); err != nil {
			bad("controlPlaneEndpoint", c.ControlPlaneEndpoint, err.Error())
		} else if ip := netutils.ParseIPSloppy(host); ip != nil {
			if err := CheckSANAddress("controlPlaneEndpoint", ip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, l := range []struct {
		field string
		sans  []string
	}{
		{"apiServer.certSANs", c.APIServerCertSANs},
		{"etcd.local.serverCertSANs", c.EtcdServerCertSANs},
		{"etcd.local.peerCertSANs", c.EtcdPeerCertSANs},
	} {
		if err := CheckCount(l.field, len(l.sans), MaxSANs); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, san := range l.sans {
			switch ip := netutils.ParseIPSloppy(san); {
			case !text(l.field, san):
			case ip != nil:
				if err := CheckSANAddress(l.field, ip); err != nil {
					errs = append(errs, err)
				}
			case !validSAN(san):
				bad(l.field, san, "not an IP address or an RFC 1123 DNS name (wildcards like *.example.com are allowed): correct it or remove it")
			}
		}
	}
	if _, err := ParseAlgorithm(string(c.Algorithm)); err != nil {
		errs = append(errs, &FieldError{Field: "encryptionAlgorithm", Reason: err.Error()})
	}
	if c.CertValidity <= 0 {
		bad("certificateValidityPeriod", c.CertValidity.String(), "must be positive")
	}
	if c.CAValidity <= 0 {
		bad("caCertificateValidityPeriod", c.CAValidity.String(), "must be positive")
	}
	if c.CertValidity > c.CAValidity {
		bad("certificateValidityPeriod", c.CertValidity.String(),
			fmt.Sprintf("longer than caCertificateValidityPeriod (%s): leaves would outlive their CA; shorten it or lengthen caCertificateValidityPeriod", c.CAValidity))
	}
	return errors.Join(errs...)
}

// Service subnet limits, kubeadm's MinimumAddressesInServiceSubnet and MaximumBitsForServiceSubnet.
const (
	minServiceSubnetAddresses = 10
	maxServiceSubnetHostBits  = 20
)

// validateServiceSubnet applies kubeadm's ValidateIPNetFromString and ValidateServiceSubnetSize: one CIDR or
// one per family, each with at least 10 addresses and at most 20 host bits.
func validateServiceSubnet(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return errors.New("at most two CIDRs (one per IP family) are allowed")
	}
	cidrs := make([]*net.IPNet, len(parts))
	for i, p := range parts {
		_, cidr, err := netutils.ParseCIDRSloppy(p)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR (give an address/prefix such as 10.96.0.0/12)", p)
		}
		cidrs[i] = cidr
	}
	if len(cidrs) == 2 && netutils.IsIPv4CIDR(cidrs[0]) == netutils.IsIPv4CIDR(cidrs[1]) {
		return errors.New("two CIDRs must be one IPv4 and one IPv6")
	}
	for _, cidr := range cidrs {
		ones, bits := cidr.Mask.Size()
		if bits-ones > maxServiceSubnetHostBits {
			return fmt.Errorf("%s is too large: the mask must be at least /%d", cidr, bits-maxServiceSubnetHostBits)
		}
		if n := netutils.RangeSize(cidr); n < minServiceSubnetAddresses {
			return fmt.Errorf("%s is too small: %d addresses, at least %d are needed", cidr, n, minServiceSubnetAddresses)
		}
	}
	return nil
}

func validSAN(s string) bool {
	return netutils.ParseIPSloppy(s) != nil ||
		len(validation.IsDNS1123Subdomain(s)) == 0 ||
		len(validation.IsWildcardDNS1123Subdomain(s)) == 0
}

// SplitEndpoint splits "host[:port]" (kubeadm's ParseHostPort); port is "" when absent.
func SplitEndpoint(ep string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(ep)
	if err != nil {
		host, port = ep, ""
		if strings.HasPrefix(ep, "[") && strings.HasSuffix(ep, "]") {
			host = ep[1 : len(ep)-1]
		}
	}
	if ip := netutils.ParseIPSloppy(host); ip == nil {
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
			return "", "", fmt.Errorf("host %q is not an IP address or a DNS name", host)
		}
	}
	if port != "" {
		if msgs := validation.IsValidPortNum(atoiOrZero(port)); len(msgs) > 0 {
			return "", "", fmt.Errorf("port %q is not a valid port", port)
		}
	}
	return host, port, nil
}

func atoiOrZero(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0
		}
		n = n*10 + int(r-'0')
		if n > 65535 {
			return 0
		}
	}
	return n
}

// APIServerServiceIP is the first address of the first service CIDR: the in-cluster "kubernetes" Service.
func (c *Config) APIServerServiceIP() (net.IP, error) {
	first := strings.Split(c.ServiceSubnet, ",")[0]
	_, cidr, err := netutils.ParseCIDRSloppy(first)
	if err != nil {
		return nil, fmt.Errorf("networking.serviceSubnet: %w", err)
	}
	return netutils.GetIndexedIP(cidr, 1)
}

// appendSANs sorts user SANs into IPs and DNS names as kubeadm's appendSANsToAltNames does.
func appendSANs(an *AltNames, sans []string) {
	for _, s := range sans {
		if ip := netutils.ParseIPSloppy(s); ip != nil {
			an.IPs = append(an.IPs, ip)
		} else if validSAN(s) {
			an.DNSNames = append(an.DNSNames, s)
		}
	}
}

func apiServerAltNames(c *Config) (AltNames, error) {
	vip, err := c.APIServerServiceIP()
	if err != nil {
		return AltNames{}, err
	}
	var an AltNames
	if c.NodeName != "" {
		an.DNSNames = append(an.DNSNames, c.NodeName)
	}
	an.DNSNames = append(an.DNSNames, "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	if c.DNSDomain != "" {
		an.DNSNames = append(an.DNSNames, "kubernetes.default.svc."+c.DNSDomain)
	}
	an.IPs = []net.IP{vip, c.AdvertiseAddress}
	if c.ControlPlaneEndpoint != "" {
		host, _, err := SplitEndpoint(c.ControlPlaneEndpoint)
		if err != nil {
			return AltNames{}, fmt.Errorf("controlPlaneEndpoint: %w", err)
		}
		if ip := netutils.ParseIPSloppy(host); ip != nil {
			an.IPs = append(an.IPs, ip)
		} else {
			an.DNSNames = append(an.DNSNames, host)
		}
	}
	appendSANs(&an, c.APIServerCertSANs)
	return an, nil
}

func etcdAltNames(extra func(*Config) []string) func(*Config) (AltNames, error) {
	return func(c *Config) (AltNames, error) {
		var an AltNames
		if c.NodeName != "" {
			an.DNSNames = append(an.DNSNames, c.NodeName)
		}
		an.DNSNames = append(an.DNSNames, "localhost")
		an.IPs = []net.IP{c.AdvertiseAddress, net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		if c.LocalEtcd {
			appendSANs(&an, extra(c))
		}
		return an, nil
	}
}

// CertSpec describes one certificate of the catalogue.
type CertSpec struct {
	Name         string // kubeadm's phase and renewal name, e.g. "etcd-server"
	BaseName     string // file base under the certificate directory, e.g. "etcd/server"
	CAName       string // Name of the signing CA; "" for a CA
	CommonName   string // fixed CN; empty when CNIsNodeName
	CNIsNodeName bool
	Usages       []x509.ExtKeyUsage
	Etcd         bool // belongs to local etcd; skipped with external etcd
	altNames     func(*Config) (AltNames, error)
}

var (
	serverAuth   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth   = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

// catalog is kubeadm's GetDefaultCertList, in its order: every CA before the leaves it signs.
var catalog = []CertSpec{
	{Name: "ca", BaseName: "ca", CommonName: "kubernetes"},
	{Name: "apiserver", BaseName: "apiserver", CAName: "ca", CommonName: "kube-apiserver", Usages: serverAuth, altNames: apiServerAltNames},
	{Name: "apiserver-kubelet-client", BaseName: "apiserver-kubelet-client", CAName: "ca", CommonName: "kube-apiserver-kubelet-client", Usages: clientAuth},
	{Name: "front-proxy-ca", BaseName: "front-proxy-ca", CommonName: "front-proxy-ca"},
	{Name: "front-proxy-client", BaseName: "front-proxy-client", CAName: "front-proxy-ca", CommonName: "front-proxy-client", Usages: clientAuth},
	{Name: "etcd-ca", BaseName: "etcd/ca", CommonName: "etcd-ca", Etcd: true},
	{Name: "etcd-server", BaseName: "etcd/server", CAName: "etcd-ca", CNIsNodeName: true, Usages: serverClient, Etcd: true,
		altNames: etcdAltNames(func(c *Config) []string { return c.EtcdServerCertSANs })},
	{Name: "etcd-peer", BaseName: "etcd/peer", CAName: "etcd-ca", CNIsNodeName: true, Usages: serverClient, Etcd: true,
		altNames: etcdAltNames(func(c *Config) []string { return c.EtcdPeerCertSANs })},
	{Name: "etcd-healthcheck-client", BaseName: "etcd/healthcheck-client", CAName: "etcd-ca", CommonName: "kube-etcd-healthcheck-client", Usages: clientAuth, Etcd: true},
	{Name: "apiserver-etcd-client", BaseName: "apiserver-etcd-client", CAName: "etcd-ca", CommonName: "kube-apiserver-etcd-client", Usages: clientAuth, Etcd: true},
}

// Catalog returns every certificate k8scrypto knows, in kubeadm's order.
func Catalog() []CertSpec { return append([]CertSpec(nil), catalog...) }

// Certs returns the certificates this configuration needs (without the etcd ones for external etcd).
func (c *Config) Certs() []CertSpec {
	var out []CertSpec
	for _, s := range catalog {
		if !s.Etcd || c.LocalEtcd {
			out = append(out, s)
		}
	}
	return out
}

// LookupCert finds a catalogue entry by name.
func LookupCert(name string) (CertSpec, bool) {
	for _, s := range catalog {
		if s.Name == name {
			return s, true
		}
	}
	return CertSpec{}, false
}

// IsCA reports whether the entry is a certificate authority.
func (s CertSpec) IsCA() bool { return s.CAName == "" }

// CN returns the subject common name for this configuration.
func (s CertSpec) CN(c *Config) string {
	if s.CNIsNodeName {
		return c.NodeName
	}
	return s.CommonName
}

// AltNames returns the SANs the configuration asks for, in kubeadm's derivation order (not yet normalised).
func (s CertSpec) AltNames(c *Config) (AltNames, error) {
	if s.altNames == nil {
		return AltNames{}, nil
	}
	return s.altNames(c)
}

// Request builds the certificate request for this configuration at time now.
func (s CertSpec) Request(c *Config, now time.Time) (CertRequest, error) {
	an, err := s.AltNames(c)
	if err != nil {
		return CertRequest{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	validity := c.CertValidity
	if s.IsCA() {
		validity = c.CAValidity
	}
	return CertRequest{
		CommonName: s.CN(c),
		AltNames:   an,
		Usages:     s.Usages,
		NotBefore:  now.Add(-Backdate).UTC(),
		NotAfter:   now.Add(validity).UTC(),
	}, nil
}

// CertPath and KeyPath name the entry's files under dir.
func (s CertSpec) CertPath(dir string) string {
	return filepath.Join(dir, filepath.FromSlash(s.BaseName)+".crt")
}
func (s CertSpec) KeyPath(dir string) string {
	return filepath.Join(dir, filepath.FromSlash(s.BaseName)+".key")
}
