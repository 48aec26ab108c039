package config_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
)

func host(name string) func() (string, error) { return func() (string, error) { return name, nil } }

func load(t *testing.T, file string, o config.Overrides) (*config.Config, error) {
	t.Helper()
	path := ""
	if file != "" {
		path = filepath.Join("testdata", file)
	}
	return config.Load(path, o, host("Host-A"))
}

// TestLoadHonoursEveryField checks each value issue 2 lists is carried from the v1beta4 file into the PKI
// inputs, with kubeadm's dynamic defaults (node name trimmed and lower-cased, certSANs lower-cased).
func TestLoadHonoursEveryField(t *testing.T) {
	cfg, err := load(t, "full.yaml", config.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKI
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"certificatesDir", p.CertDir, "/srv/pki"},
		{"nodeRegistration.name", p.NodeName, "cp-1"},
		{"advertiseAddress", p.AdvertiseAddress.String(), "10.0.0.5"},
		{"bindPort", p.BindPort, int32(7443)},
		{"serviceSubnet", p.ServiceSubnet, "10.112.0.0/16,fd00:10:112::/112"},
		{"dnsDomain", p.DNSDomain, "corp.internal"},
		{"controlPlaneEndpoint", p.ControlPlaneEndpoint, "lb.example.com:6443"},
		{"certSANs", strings.Join(p.APIServerCertSANs, ","), "lb.example.com,192.168.10.100,*.apps.example.com"},
		{"local etcd", p.LocalEtcd, true},
		{"serverCertSANs", strings.Join(p.EtcdServerCertSANs, ","), "etcd-1.example.com,192.168.1.1"},
		{"peerCertSANs", strings.Join(p.EtcdPeerCertSANs, ","), "peer-1.example.com"},
		{"encryptionAlgorithm", p.Algorithm, pki.ECDSAP384},
		{"certificateValidityPeriod", p.CertValidity, 2160 * time.Hour},
		{"caCertificateValidityPeriod", p.CAValidity, 43800 * time.Hour},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	if len(cfg.Extra) != 1 || !strings.Contains(string(cfg.Extra[0]), "KubeletConfiguration") {
		t.Errorf("Extra = %q, want the KubeletConfiguration document kept", cfg.Extra)
	}
	if cfg.Init.NodeRegistration.Name != "cp-1" || cfg.Cluster.APIServer.CertSANs[0] != "lb.example.com" {
		t.Error("the kubeadm objects do not carry the resolved values")
	}
}

// TestLoadDefaults checks kubeadm v1beta4's defaults with no file at all.
func TestLoadDefaults(t *testing.T) {
	cfg, err := load(t, "", config.Overrides{AdvertiseAddress: "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKI
	if p.CertDir != pki.DefaultCertificateDir || p.NodeName != "host-a" || p.BindPort != 6443 ||
		p.ServiceSubnet != "10.96.0.0/12" || p.DNSDomain != "cluster.local" || !p.LocalEtcd ||
		p.Algorithm != pki.RSA2048 || p.CertValidity != 8760*time.Hour || p.CAValidity != 87600*time.Hour {
		t.Errorf("defaults: %+v", p)
	}
	if cfg.Cluster.KubernetesVersion != config.KubernetesVersion {
		t.Errorf("kubernetesVersion %q", cfg.Cluster.KubernetesVersion)
	}
	// A ClusterConfiguration alone gets a defaulted InitConfiguration.
	cfg, err = load(t, "cluster-only.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"})
	if err != nil || cfg.PKI.NodeName != "host-a" {
		t.Fatalf("cluster-only: %v, %+v", err, cfg)
	}
}

func TestOverridesWin(t *testing.T) {
	o := config.Overrides{
		CertDir: "/tmp/x", NodeName: "Node-9", AdvertiseAddress: "fd00::5", ControlPlaneEndpoint: "10.0.0.100",
		ServiceCIDR: "10.200.0.0/16", ServiceDNSDomain: "example.org", APIServerCertSANs: []string{"EXTRA.example.com"},
		EncryptionAlgorithm: "RSA-3072", CertValidity: time.Hour, CAValidity: 2 * time.Hour, StrictPermissions: true,
	}
	cfg, err := load(t, "full.yaml", o)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKI
	if p.CertDir != "/tmp/x" || p.NodeName != "node-9" || !p.AdvertiseAddress.Equal(net.ParseIP("fd00::5")) ||
		p.ControlPlaneEndpoint != "10.0.0.100" || p.ServiceSubnet != "10.200.0.0/16" || p.DNSDomain != "example.org" ||
		!slices.Equal(p.APIServerCertSANs, []string{"extra.example.com"}) || p.Algorithm != pki.RSA3072 ||
		p.CertValidity != time.Hour || p.CAValidity != 2*time.Hour || !p.StrictPermissions {
		t.Errorf("overrides not applied: %+v", p)
	}
}

func TestExternalEtcd(t *testing.T) {
	cfg, err := load(t, "external-etcd.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PKI.LocalEtcd {
		t.Error("external etcd loaded as local")
	}
	if n := len(cfg.PKI.Certs()); n != 5 {
		t.Errorf("%d certificates for external etcd, want 5", n)
	}
}

// TestUnspecifiedAdvertiseAddress: kubeadm treats 0.0.0.0 and :: like an unset address and silently picks
// the default interface's; k8scrypto refuses them given explicitly (issue 15: an address nobody chose must
// not end up in the certificates unsaid), naming the field, as a usage error. An unset address is picked
// and said (TestWhatLoadChoosesIsSaid).
func TestUnspecifiedAdvertiseAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0", "::"} {
		_, err := load(t, "", config.Overrides{AdvertiseAddress: addr})
		var invalid *config.InvalidError
		if !errors.As(err, &invalid) || !strings.Contains(err.Error(), "localAPIEndpoint.advertiseAddress (--advertise-address)") || !strings.Contains(err.Error(), "unspecified address") {
			t.Errorf("%s: %v; want an InvalidError naming the field", addr, err)
		}
	}
}

// TestLoadRejects covers the bad-input cases of issue 2 that the loader catches: each message names the file
// or field and the bad value.
func TestLoadRejects(t *testing.T) {
	cases := []struct {
		file string
		o    config.Overrides
		want []string
	}{
		{"v1beta3.yaml", config.Overrides{}, []string{"testdata/v1beta3.yaml", "kubeadm.k8s.io/v1beta3", "v1beta4", "kubeadm config migrate"}},
		{"unknown-field.yaml", config.Overrides{}, []string{"unknown-field.yaml", "ClusterConfiguration", "servceSubnet"}},
		{"broken.yaml", config.Overrides{}, []string{"broken.yaml"}},
		{"duplicate-kind.yaml", config.Overrides{}, []string{"more than one ClusterConfiguration"}},
		{"join.yaml", config.Overrides{}, []string{"JoinConfiguration"}},
		{"both-etcd.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"}, []string{"etcd", "local", "external"}},
		{"external-etcd-no-endpoints.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"}, []string{"etcd.external.endpoints"}},
		{"upper-endpoint.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"}, []string{"controlPlaneEndpoint", "LB.example.com:6443", "lower case"}},
		{"bad-values.yaml", config.Overrides{AdvertiseAddress: "10.0.0.5"}, []string{
			"encryptionAlgorithm", "DSA-1024", "networking.serviceSubnet", "10.96.0.0/40",
			"apiServer.certSANs", `"not a name"`, "certificateValidityPeriod", "100000h"}},
		{"", config.Overrides{AdvertiseAddress: "10.0.0.300"}, []string{"localAPIEndpoint.advertiseAddress", "10.0.0.300"}},
		{"", config.Overrides{AdvertiseAddress: "10.0.0.5", ServiceCIDR: "10.96.0.0/12,"}, []string{"networking.serviceSubnet"}},
		{"", config.Overrides{AdvertiseAddress: "10.0.0.5", EncryptionAlgorithm: "rsa"}, []string{"encryptionAlgorithm", `"rsa"`}},
		{"", config.Overrides{AdvertiseAddress: "10.0.0.5", APIServerCertSANs: []string{"a_b"}}, []string{"apiServer.certSANs", "a_b"}},
		{"", config.Overrides{AdvertiseAddress: "10.0.0.5", CertValidity: 100 * time.Hour, CAValidity: 10 * time.Hour}, []string{"certificateValidityPeriod", "caCertificateValidityPeriod"}},
		{"missing.yaml", config.Overrides{}, []string{"missing.yaml"}},
	}
	for _, tc := range cases {
		name := tc.file
		if name == "" {
			name = strings.Join(tc.want[:1], "")
		}
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.file, tc.o)
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
}

func TestHostnameFailure(t *testing.T) {
	_, err := config.Load("", config.Overrides{AdvertiseAddress: "10.0.0.5"}, func() (string, error) { return "", errors.New("no uts") })
	if err == nil || !strings.Contains(err.Error(), "nodeRegistration.name") {
		t.Errorf("err = %v, want one naming nodeRegistration.name", err)
	}
}

// TestExamplesLoad loads every kubeadm config in examples/, as the docs promise they work.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if len(files) == 0 {
		t.Skip("no examples/*.yaml yet")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "kubeadm.k8s.io/") {
			continue
		}
		cfg, err := config.Load(f, config.Overrides{}, host("example-host"))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if filepath.Base(f) == "kubeadm-config.yaml" {
			// The HA example of issue 2: endpoint, SANs, custom service CIDR, ECDSA-P256.
			p := cfg.PKI
			if p.ControlPlaneEndpoint == "" || len(p.APIServerCertSANs) == 0 || p.ServiceSubnet == pki.DefaultServiceSubnet || p.Algorithm != pki.ECDSAP256 {
				t.Errorf("%s is not the HA example issue 2 asks for: %+v", f, p)
			}
		}
	}
}

// TestRelativeCertDirBecomesAbsolute: --cert-dir ./pki is resolved once against the working directory.
func TestRelativeCertDirBecomesAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg, err := config.Load("", config.Overrides{CertDir: "./pki", AdvertiseAddress: "10.0.0.5"}, host("h"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "pki"); cfg.PKI.CertDir != want {
		t.Errorf("CertDir = %q, want %q", cfg.PKI.CertDir, want)
	}
}

// TestWhatLoadChoosesIsSaid: a node name or SAN k8scrypto lower-cases, a node name taken from the host
// name and an advertise address it picks are each said (Notices, which the commands log as warnings), with
// the value used; what is given as used says nothing.
func TestWhatLoadChoosesIsSaid(t *testing.T) {
	host := func() (string, error) { return "Node-7", nil }
	c, err := config.Load("", config.Overrides{CertDir: t.TempDir(), NodeName: "CP-1", AdvertiseAddress: "10.0.0.5", APIServerCertSANs: []string{"API.Example.com", "ok.example.com"}}, host)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`nodeRegistration.name "CP-1" is used as "cp-1"`, `apiServer.certSANs "API.Example.com" is used as "api.example.com"`}
	if len(c.Notices) != len(want) {
		t.Errorf("notices %q, want %d", c.Notices, len(want))
	}
	for i, w := range want {
		if i < len(c.Notices) && !strings.HasPrefix(c.Notices[i], w) {
			t.Errorf("notice %q, want %q", c.Notices[i], w)
		}
	}
	if c.PKI.NodeName != "cp-1" || c.PKI.APIServerCertSANs[0] != "api.example.com" {
		t.Errorf("node name %q, SANs %q", c.PKI.NodeName, c.PKI.APIServerCertSANs)
	}
	c, err = config.Load("", config.Overrides{CertDir: t.TempDir(), NodeName: "cp-1", AdvertiseAddress: "10.0.0.5"}, host)
	if err != nil || len(c.Notices) != 0 {
		t.Errorf("nothing chosen: %v, notices %q", err, c.Notices)
	}
	// No node name: the host name, lower-cased, both said.
	c, err = config.Load("", config.Overrides{CertDir: t.TempDir(), AdvertiseAddress: "10.0.0.5"}, host)
	if err != nil || len(c.Notices) != 2 || !strings.Contains(c.Notices[0], `using the host name "Node-7"`) || !strings.Contains(c.Notices[1], `"Node-7" is used as "node-7"`) {
		t.Errorf("from the host name: %v, notices %q", err, c.Notices)
	}
	// No advertise address: the default route's, said with the address used.
	c, err = config.Load("", config.Overrides{CertDir: t.TempDir(), NodeName: "cp-1"}, host)
	if err != nil {
		if !strings.Contains(err.Error(), "set --advertise-address") {
			t.Errorf("no default route: %v", err)
		}
		t.Skipf("this host has no default route: %v", err)
	}
	if len(c.Notices) != 1 || !strings.Contains(c.Notices[0], "using "+c.PKI.AdvertiseAddress.String()+", the address of the default route's interface") {
		t.Errorf("picked %s, notices %q", c.PKI.AdvertiseAddress, c.Notices)
	}
}
