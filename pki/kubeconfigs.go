package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultClusterName is kubeadm's default ClusterConfiguration.clusterName, the kubeconfig cluster entry's name.
const DefaultClusterName = "kubernetes"

// ServerKind says which API server URL a kubeconfig points at.
type ServerKind int

const (
	// ServerControlPlane is the controlPlaneEndpoint (port defaulting to bindPort), else the local endpoint.
	ServerControlPlane ServerKind = iota
	// ServerLocal is https://<advertiseAddress>:<bindPort>: the components that run next to this apiserver.
	ServerLocal
)

// KubeconfigSpec describes one kubeconfig file of "kubeadm init phase kubeconfig": who the embedded client
// certificate says it is, and which server it talks to.
type KubeconfigSpec struct {
	Name         string // phase name, as kubeadm's: "admin", "super-admin", "kubelet", ...
	FileName     string // file under the kubeconfig directory, also kubeadm's renewal name: "admin.conf"
	CommonName   string // fixed client CN; empty when NodeUser
	NodeUser     bool   // CN is "system:node:<node name>"
	Organization []string
	Server       ServerKind
	// Renewable is false for kubelet.conf: after TLS bootstrap the kubelet rotates its own client certificate
	// (kubeadm's "certs renew" does not offer it either).
	Renewable bool
}

// kubeconfigs is kubeadm's list in its phase order (cmd/phases/init/kubeconfig.go; subjects from
// phases/kubeconfig/kubeconfig.go getKubeConfigSpecsBase). kubelet.conf is ServerLocal because kubeadm init
// clears controlPlaneEndpoint for it, so a node's kubelet bootstraps against its own apiserver.
var kubeconfigs = []KubeconfigSpec{
	{Name: "admin", FileName: "admin.conf", CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"}, Server: ServerControlPlane, Renewable: true},
	{Name: "super-admin", FileName: "super-admin.conf", CommonName: "kubernetes-super-admin", Organization: []string{"system:masters"}, Server: ServerControlPlane, Renewable: true},
	{Name: "kubelet", FileName: "kubelet.conf", NodeUser: true, Organization: []string{"system:nodes"}, Server: ServerLocal},
	{Name: "controller-manager", FileName: "controller-manager.conf", CommonName: "system:kube-controller-manager", Server: ServerLocal, Renewable: true},
	{Name: "scheduler", FileName: "scheduler.conf", CommonName: "system:kube-scheduler", Server: ServerLocal, Renewable: true},
}

// KubeconfigCAName is the CA that signs every kubeconfig client certificate.
const KubeconfigCAName = "ca"

// Kubeconfigs returns the kubeconfig catalogue in kubeadm's order.
func Kubeconfigs() []KubeconfigSpec {
	out := make([]KubeconfigSpec, len(kubeconfigs))
	for i, s := range kubeconfigs {
		s.Organization = append([]string(nil), s.Organization...)
		out[i] = s
	}
	return out
}

// LookupKubeconfig finds a catalogue entry by phase name ("admin") or file name ("admin.conf").
func LookupKubeconfig(name string) (KubeconfigSpec, bool) {
	for _, s := range Kubeconfigs() {
		if s.Name == name || s.FileName == name {
			return s, true
		}
	}
	return KubeconfigSpec{}, false
}

// Path is the file's location under the kubeconfig directory.
func (s KubeconfigSpec) Path(dir string) string { return filepath.Join(dir, s.FileName) }

// KeyName names the client key for a KeySource (pkitest has fixtures under these names).
func (s KubeconfigSpec) KeyName() string { return s.FileName }

// CN is the client certificate's common name, which is also the kubeconfig's user name.
func (s KubeconfigSpec) CN(c *Config) string {
	if s.NodeUser {
		return "system:node:" + c.NodeName
	}
	return s.CommonName
}

// ContextName is kubeadm's context name, "<user>@<cluster>".
func ContextName(user, cluster string) string { return user + "@" + cluster }

// ServerURL is the API server URL this kubeconfig must point at for the configuration.
func (s KubeconfigSpec) ServerURL(c *Config) (string, error) {
	if s.Server == ServerLocal {
		return LocalAPIEndpointURL(c)
	}
	return ControlPlaneEndpointURL(c)
}

// LocalAPIEndpointURL is https://<advertiseAddress>:<bindPort>, as kubeadm's GetLocalAPIEndpoint.
func LocalAPIEndpointURL(c *Config) (string, error) {
	if c.AdvertiseAddress == nil {
		return "", fmt.Errorf("localAPIEndpoint.advertiseAddress: must be an IP address")
	}
	if c.BindPort < 1 || c.BindPort > 65535 {
		return "", fmt.Errorf("localAPIEndpoint.bindPort: invalid value %d: must be a port number between 1 and 65535", c.BindPort)
	}
	return httpsURL(c.AdvertiseAddress.String(), strconv.Itoa(int(c.BindPort))), nil
}

// ControlPlaneEndpointURL is kubeadm's GetControlPlaneEndpoint: the controlPlaneEndpoint with bindPort when
// it has no port, or the local endpoint when it is unset.
func ControlPlaneEndpointURL(c *Config) (string, error) {
	if c.ControlPlaneEndpoint == "" {
		return LocalAPIEndpointURL(c)
	}
	host, port, err := SplitEndpoint(c.ControlPlaneEndpoint)
	if err != nil {
		return "", fmt.Errorf("controlPlaneEndpoint: %w", err)
	}
	if port == "" {
		if c.BindPort < 1 || c.BindPort > 65535 {
			return "", fmt.Errorf("localAPIEndpoint.bindPort: invalid value %d: must be a port number between 1 and 65535", c.BindPort)
		}
		port = strconv.Itoa(int(c.BindPort))
	}
	return httpsURL(host, port), nil
}

func httpsURL(host, port string) string {
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}).String()
}

// Request is the client certificate request, as kubeadm issues it: ClientAuth, the spec's subject, NotBefore
// the signing CA's NotBefore (kubeadm leaves it unset and NewSignedCert falls back to the CA's), NotAfter
// now + certificateValidityPeriod.
func (s KubeconfigSpec) Request(c *Config, ca *x509.Certificate, now time.Time) CertRequest {
	return CertRequest{
		CommonName:   s.CN(c),
		Organization: append([]string(nil), s.Organization...),
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:    ca.NotBefore.UTC(),
		NotAfter:     now.Add(c.CertValidity).UTC(),
	}
}
