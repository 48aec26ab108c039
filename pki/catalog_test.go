package pki_test

import (
	"crypto/x509"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

func baseConfig() *pki.Config {
	return &pki.Config{
		CertDir:          "/etc/kubernetes/pki",
		NodeName:         "cp-1",
		AdvertiseAddress: net.ParseIP("10.0.0.5"),
		BindPort:         6443,
		ServiceSubnet:    pki.DefaultServiceSubnet,
		DNSDomain:        pki.DefaultDNSDomain,
		LocalEtcd:        true,
		Algorithm:        pki.RSA2048,
		CertValidity:     pki.DefaultCertValidity,
		CAValidity:       pki.DefaultCAValidity,
	}
}

// TestCatalogOrder checks kubeadm's GetDefaultCertList order, and that every CA reference resolves to a CA
// listed earlier (the runner issues in list order).
func TestCatalogOrder(t *testing.T) {
	var names []string
	seen := map[string]bool{}
	for _, s := range pki.Catalog() {
		names = append(names, s.Name)
		if !s.IsCA() {
			ca, ok := pki.LookupCert(s.CAName)
			if !ok || !ca.IsCA() || !seen[s.CAName] {
				t.Errorf("%s: CA %q does not resolve to a CA listed before it", s.Name, s.CAName)
			}
		}
		seen[s.Name] = true
	}
	want := []string{"ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client",
		"etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"}
	if !slices.Equal(names, want) {
		t.Errorf("catalogue order %v, want %v", names, want)
	}
	if _, ok := pki.LookupCert("nope"); ok {
		t.Error("LookupCert found an unknown name")
	}
}

// TestCatalogEntries pins the table of the reference (kubeadm's certlist.go): file base, signer, CN, usages.
func TestCatalogEntries(t *testing.T) {
	cfg := baseConfig()
	sa, ca, cs := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	want := map[string]struct {
		base, signer, cn string
		usages           []x509.ExtKeyUsage
		etcd             bool
	}{
		"ca":                       {"ca", "", "kubernetes", nil, false},
		"apiserver":                {"apiserver", "ca", "kube-apiserver", []x509.ExtKeyUsage{sa}, false},
		"apiserver-kubelet-client": {"apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", []x509.ExtKeyUsage{ca}, false},
		"front-proxy-ca":           {"front-proxy-ca", "", "front-proxy-ca", nil, false},
		"front-proxy-client":       {"front-proxy-client", "front-proxy-ca", "front-proxy-client", []x509.ExtKeyUsage{ca}, false},
		"etcd-ca":                  {"etcd/ca", "", "etcd-ca", nil, true},
		"etcd-server":              {"etcd/server", "etcd-ca", "cp-1", cs, true},
		"etcd-peer":                {"etcd/peer", "etcd-ca", "cp-1", cs, true},
		"etcd-healthcheck-client":  {"etcd/healthcheck-client", "etcd-ca", "kube-etcd-healthcheck-client", []x509.ExtKeyUsage{ca}, true},
		"apiserver-etcd-client":    {"apiserver-etcd-client", "etcd-ca", "kube-apiserver-etcd-client", []x509.ExtKeyUsage{ca}, true},
	}
	for _, s := range pki.Catalog() {
		w := want[s.Name]
		if s.BaseName != w.base || s.CAName != w.signer || s.CN(cfg) != w.cn || !slices.Equal(s.Usages, w.usages) || s.Etcd != w.etcd {
			t.Errorf("%s: base %q CA %q CN %q usages %v etcd %v; want %+v", s.Name, s.BaseName, s.CAName, s.CN(cfg), s.Usages, s.Etcd, w)
		}
		if got, want := s.CertPath("/d"), filepath.Join("/d", w.base+".crt"); got != want {
			t.Errorf("%s: CertPath %s, want %s", s.Name, got, want)
		}
		if got, want := s.KeyPath("/d"), filepath.Join("/d", w.base+".key"); got != want {
			t.Errorf("%s: KeyPath %s, want %s", s.Name, got, want)
		}
	}
	cfg.LocalEtcd = false
	for _, s := range cfg.Certs() {
		if s.Etcd || s.CAName == "etcd-ca" {
			t.Errorf("external etcd still lists %s", s.Name)
		}
	}
	if n := len(cfg.Certs()); n != 5 {
		t.Errorf("external etcd: %d certificates, want 5 (kubeadm's GetCertsWithoutEtcd)", n)
	}
}

func altNames(t *testing.T, cfg *pki.Config, name string) pki.AltNames {
	t.Helper()
	s, _ := pki.LookupCert(name)
	an, err := s.AltNames(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pki.NormalizeAltNames(an)
}

// TestAPIServerAltNames reproduces the reference's probe output for the same inputs.
func TestAPIServerAltNames(t *testing.T) {
	cfg := baseConfig()
	cfg.ControlPlaneEndpoint = "lb.example.com:6443"
	cfg.APIServerCertSANs = []string{"10.96.0.1", "foo.example.com", "*.wild.example.com", "1.2.3.4", "not_valid!"}
	an := altNames(t, cfg, "apiserver")
	wantDNS := []string{"*.wild.example.com", "cp-1", "foo.example.com", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "lb.example.com"}
	if !slices.Equal(an.DNSNames, wantDNS) {
		t.Errorf("DNS %v\nwant %v", an.DNSNames, wantDNS)
	}
	if got := ipStrings(an.IPs); !slices.Equal(got, []string{"10.96.0.1", "10.0.0.5", "1.2.3.4"}) {
		t.Errorf("IPs %v", got)
	}

	// An IP endpoint goes to the IPs; dual-stack takes the first CIDR's first address; no DNS domain, no FQDN.
	cfg = baseConfig()
	cfg.ControlPlaneEndpoint = "[fd00::10]:6443"
	cfg.ServiceSubnet = "fd00:10:96::/112,10.96.0.0/16"
	cfg.DNSDomain = ""
	an = altNames(t, cfg, "apiserver")
	if got := ipStrings(an.IPs); !slices.Equal(got, []string{"fd00:10:96::1", "10.0.0.5", "fd00::10"}) {
		t.Errorf("dual-stack IPs %v", got)
	}
	if slices.ContainsFunc(an.DNSNames, func(d string) bool { return strings.HasPrefix(d, "kubernetes.default.svc.") }) {
		t.Errorf("DNS %v has a cluster-domain name without a domain", an.DNSNames)
	}
}

func TestEtcdAltNames(t *testing.T) {
	cfg := baseConfig()
	cfg.EtcdServerCertSANs = []string{"etcd.example.com", "192.168.1.1"}
	cfg.EtcdPeerCertSANs = []string{"peer.example.com"}
	an := altNames(t, cfg, "etcd-server")
	if want := []string{"cp-1", "etcd.example.com", "localhost"}; !slices.Equal(an.DNSNames, want) {
		t.Errorf("server DNS %v, want %v", an.DNSNames, want)
	}
	if got := ipStrings(an.IPs); !slices.Equal(got, []string{"10.0.0.5", "127.0.0.1", "::1", "192.168.1.1"}) {
		t.Errorf("server IPs %v", got)
	}
	an = altNames(t, cfg, "etcd-peer")
	if want := []string{"cp-1", "localhost", "peer.example.com"}; !slices.Equal(an.DNSNames, want) {
		t.Errorf("peer DNS %v, want %v", an.DNSNames, want)
	}
	for _, name := range []string{"apiserver-kubelet-client", "front-proxy-client", "etcd-healthcheck-client", "apiserver-etcd-client", "ca"} {
		if an := altNames(t, cfg, name); len(an.DNSNames)+len(an.IPs) != 0 {
			t.Errorf("%s: unexpected SANs %+v", name, an)
		}
	}
}

// TestRequestValidity checks kubeadm's spans: NotBefore = now-5m, NotAfter = now+period, so 8760h5m for
// leaves and 87600h5m for CAs with the defaults.
func TestRequestValidity(t *testing.T) {
	cfg := baseConfig()
	for _, s := range pki.Catalog() {
		req, err := s.Request(cfg, pkitest.Now)
		if err != nil {
			t.Fatal(err)
		}
		span := 8760*time.Hour + 5*time.Minute
		if s.IsCA() {
			span = 87600*time.Hour + 5*time.Minute
		}
		if !req.NotBefore.Equal(pkitest.Now.Add(-5*time.Minute)) || req.NotAfter.Sub(req.NotBefore) != span {
			t.Errorf("%s: %s..%s, want span %s from now-5m", s.Name, req.NotBefore, req.NotAfter, span)
		}
		if req.NotBefore.Location() != time.UTC || req.NotAfter.Location() != time.UTC {
			t.Errorf("%s: times not in UTC", s.Name)
		}
	}
}

// TestValidateRejects covers every invalid input of issue 2: each message names the field and the value.
func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*pki.Config)
		want   []string
	}{
		{"bad certSAN", func(c *pki.Config) { c.APIServerCertSANs = []string{"ok.example.com", "bad_name!"} }, []string{"apiServer.certSANs", `"bad_name!"`}},
		{"upper-case etcd SAN", func(c *pki.Config) { c.EtcdServerCertSANs = []string{"Etcd.Example.com"} }, []string{"etcd.local.serverCertSANs", "Etcd.Example.com"}},
		{"bad peer SAN", func(c *pki.Config) { c.EtcdPeerCertSANs = []string{"a..b"} }, []string{"etcd.local.peerCertSANs", "a..b"}},
		{"malformed CIDR", func(c *pki.Config) { c.ServiceSubnet = "10.96.0.0/33" }, []string{"networking.serviceSubnet", "10.96.0.0/33"}},
		{"not a CIDR", func(c *pki.Config) { c.ServiceSubnet = "10.96.0.1" }, []string{"networking.serviceSubnet", "10.96.0.1"}},
		{"three CIDRs", func(c *pki.Config) { c.ServiceSubnet = "10.96.0.0/16,fd00::/112,10.97.0.0/16" }, []string{"networking.serviceSubnet"}},
		{"two IPv4 CIDRs", func(c *pki.Config) { c.ServiceSubnet = "10.96.0.0/16,10.97.0.0/16" }, []string{"networking.serviceSubnet", "one IPv4 and one IPv6"}},
		{"service subnet too large", func(c *pki.Config) { c.ServiceSubnet = "10.0.0.0/8" }, []string{"networking.serviceSubnet", "10.0.0.0/8", "too large"}},
		{"service subnet too small", func(c *pki.Config) { c.ServiceSubnet = "10.96.0.0/30" }, []string{"networking.serviceSubnet", "10.96.0.0/30", "too small"}},
		{"unknown algorithm", func(c *pki.Config) { c.Algorithm = "RSA-1024" }, []string{"encryptionAlgorithm", "RSA-1024"}},
		{"leaf outlives CA", func(c *pki.Config) { c.CertValidity = 2 * c.CAValidity }, []string{"certificateValidityPeriod", "caCertificateValidityPeriod"}},
		{"zero validity", func(c *pki.Config) { c.CertValidity = 0 }, []string{"certificateValidityPeriod", "positive"}},
		{"bad node name", func(c *pki.Config) { c.NodeName = "Node_1" }, []string{"nodeRegistration.name", "Node_1"}},
		{"bad dns domain", func(c *pki.Config) { c.DNSDomain = "-bad" }, []string{"networking.dnsDomain", "-bad"}},
		{"bad endpoint host", func(c *pki.Config) { c.ControlPlaneEndpoint = "bad_host:6443" }, []string{"controlPlaneEndpoint", "bad_host:6443"}},
		{"bad endpoint port", func(c *pki.Config) { c.ControlPlaneEndpoint = "lb.example.com:99999" }, []string{"controlPlaneEndpoint", "99999"}},
		{"no advertise address", func(c *pki.Config) { c.AdvertiseAddress = nil }, []string{"localAPIEndpoint.advertiseAddress"}},
		{"bad bind port", func(c *pki.Config) { c.BindPort = 0 }, []string{"localAPIEndpoint.bindPort"}},
		{"no cert dir", func(c *pki.Config) { c.CertDir = "" }, []string{"certificatesDir"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			tc.mutate(cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	ok := baseConfig()
	ok.APIServerCertSANs = []string{"*.wild.example.com", "10.0.0.1", "fd00::1", "a.b.c"}
	ok.ServiceSubnet = "10.96.0.0/12,fd00:10:96::/108"
	ok.ControlPlaneEndpoint = "[fd00::1]:6443"
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

func TestSplitEndpoint(t *testing.T) {
	for in, want := range map[string][2]string{
		"lb.example.com":      {"lb.example.com", ""},
		"lb.example.com:6443": {"lb.example.com", "6443"},
		"10.0.0.1:443":        {"10.0.0.1", "443"},
		"[fd00::1]:6443":      {"fd00::1", "6443"},
		"fd00::1":             {"fd00::1", ""},
	} {
		host, port, err := pki.SplitEndpoint(in)
		if err != nil || host != want[0] || port != want[1] {
			t.Errorf("SplitEndpoint(%q) = %q, %q, %v; want %q", in, host, port, err, want)
		}
	}
	for _, bad := range []string{"lb.example.com:0", "lb.example.com:x", "*.example.com", "under_score"} {
		if _, _, err := pki.SplitEndpoint(bad); err == nil {
			t.Errorf("SplitEndpoint(%q) accepted", bad)
		}
	}
}
