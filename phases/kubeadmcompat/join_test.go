package kubeadmcompat

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	kubeadmutil "k8s.io/kubernetes/cmd/kubeadm/app/util"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// joinDoc is a second control-plane node's JoinConfiguration, as a user writes it: its name and address, a
// bootstrap token, and the certificate key kubeadm's download would need (k8scrypto has installed the
// shared keys, so the rendered file leaves it out).
const joinDoc = `apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  name: cp-2
  criSocket: unix:///run/containerd/containerd.sock
controlPlane:
  localAPIEndpoint:
    advertiseAddress: 192.168.10.12
  certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
discovery:
  bootstrapToken:
    token: abcdef.0123456789abcdef
`

// TestRenderedJoinConfigurationForJoiningNode: a node whose config is the cluster's ClusterConfiguration
// plus a JoinConfiguration with controlPlane gets, after its shared keys are installed, a rendered
// JoinConfiguration that kubeadm's own loader and "kubeadm config validate" accept: its own name and
// address, no certificateKey, bootstrap-token discovery at the controlPlaneEndpoint pinned to ca.crt.
// kubeadm join's PKI step, given the cluster's configuration and this node's endpoint as kubeadm join builds
// them, finds every certificate valid and generates nothing; k8scrypto reads the rendered file back as the
// same node.
func TestRenderedJoinConfigurationForJoiningNode(t *testing.T) {
	first := runInit(t, cases[0])
	dir := t.TempDir()
	certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
	for _, f := range []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub", encryption.FileName} {
		data, err := os.ReadFile(filepath.Join(first.certDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(certDir, f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	example, err := os.ReadFile(cases[0].input)
	if err != nil {
		t.Fatal(err)
	}
	// The example's ClusterConfiguration and KubeletConfiguration, this node's JoinConfiguration instead of
	// the first node's InitConfiguration.
	docs := strings.Split(string(example), "\n---\n")
	input := filepath.Join(dir, "kubeadm.yaml")
	if err := os.WriteFile(input, []byte(joinDoc+"---\n"+strings.Join(docs[1:], "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(input, config.Overrides{CertDir: certDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Join == nil || cfg.PKI.NodeName != "cp-2" || cfg.PKI.AdvertiseAddress.String() != "192.168.10.12" {
		t.Fatalf("loaded as join %v, node %s at %s; want a joining node cp-2 at 192.168.10.12", cfg.Join != nil, cfg.PKI.NodeName, cfg.PKI.AdvertiseAddress)
	}
	d := phases.NewData(cfg.PKI, kubeadmutil.StartTimeUTC(), pkitest.Keys(), nil)
	d.Kubeadm, d.Rand, d.KubeconfigDir = cfg, pkitest.Rand(2), kubeDir
	if err := (&phases.Runner{Phases: phases.InitPhases()}).Run(context.Background(), d, phases.Selection{}); err != nil {
		t.Fatalf("k8scrypto init on the joining node: %v", err)
	}
	// kubeadm join's preflight refuses an existing kubelet.conf (the kubelet bootstraps it), and writes no
	// super-admin.conf: a joining node's init leaves both out.
	for _, absent := range []string{"kubelet.conf", "super-admin.conf"} {
		if _, err := os.Stat(filepath.Join(kubeDir, absent)); err == nil {
			t.Errorf("%s written on a joining node", absent)
		}
	}
	if want := "kubeadm join --config " + d.KubeadmConfigPath(); d.Result().NextCommand != want {
		t.Errorf("next command %q, want %q", d.Result().NextCommand, want)
	}
	rendered, err := os.ReadFile(d.KubeadmConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("K8SCRYPTO_SHOW_RENDERED") != "" {
		t.Logf("rendered:\n%s", rendered)
	}
	// "kubeadm config validate": every document strict and valid.
	if err := configutil.ValidateConfig(rendered, false, false); err != nil {
		t.Fatalf("kubeadm config validate: %v\n%s", err, rendered)
	}
	// What "kubeadm join --config" loads.
	jc, err := configutil.BytesToJoinConfiguration(rendered, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
	if err != nil {
		t.Fatalf("kubeadm join's loader: %v\n%s", err, rendered)
	}
	ca, _, err := pki.ParseCertChain(mustRead(t, filepath.Join(certDir, "ca.crt")))
	if err != nil {
		t.Fatal(err)
	}
	bt := jc.Discovery.BootstrapToken
	switch {
	case jc.ControlPlane == nil || jc.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != "192.168.10.12" || jc.ControlPlane.LocalAPIEndpoint.BindPort != 6443:
		t.Errorf("controlPlane %+v, want localAPIEndpoint 192.168.10.12:6443", jc.ControlPlane)
	case jc.ControlPlane.CertificateKey != "" || strings.Contains(string(rendered), "certificateKey:"):
		t.Errorf("the rendered JoinConfiguration carries a certificateKey; the shared keys are on the node")
	case jc.NodeRegistration.Name != "cp-2":
		t.Errorf("nodeRegistration.name %q", jc.NodeRegistration.Name)
	case bt == nil || bt.APIServerEndpoint != "k8s-api.prod.example.com:6443" || !slices.Equal(bt.CACertHashes, []string{phases.CAPin(ca)}) || bt.Token != "abcdef.0123456789abcdef":
		t.Errorf("discovery %+v, want the controlPlaneEndpoint pinned to ca.crt (%s)", bt, phases.CAPin(ca))
	}

	// kubeadm join builds the node's InitConfiguration from the cluster's ClusterConfiguration and the
	// JoinConfiguration's endpoint and name; its certs step then reuses everything.
	kcfg, err := configutil.BytesToInitConfiguration(rendered, true)
	if err != nil {
		t.Fatal(err)
	}
	kcfg.LocalAPIEndpoint = jc.ControlPlane.LocalAPIEndpoint
	kcfg.NodeRegistration.Name = jc.NodeRegistration.Name
	before := snapshot(t, certDir, kubeDir)
	out, err := captureStdout(func() error { return certsphase.CreatePKIAssets(kcfg) })
	if err != nil {
		t.Fatalf("kubeadm join's certs step: %v\n%s", err, out)
	}
	if strings.Contains(out, "Generating") || strings.Contains(out, "Writing") {
		t.Errorf("kubeadm generated files for the joining node:\n%s", out)
	}
	if after := snapshot(t, certDir, kubeDir); !reflect.DeepEqual(before, after) {
		t.Errorf("kubeadm changed files on the joining node")
	}

	// k8scrypto reads its rendered file back as the same joining node (renew --config <rendered>).
	back, err := config.Load(d.KubeadmConfigPath(), config.Overrides{}, nil)
	if err != nil {
		t.Fatalf("k8scrypto loading its rendered join config: %v", err)
	}
	if back.Join == nil || !reflect.DeepEqual(back.PKI, cfg.PKI) {
		t.Errorf("read back: join %v, PKI %+v; want %+v", back.Join != nil, back.PKI, cfg.PKI)
	}
}

// TestJoinConfigurationNeedsWhatKubeadmJoinNeeds: a joining node's file without the cluster's
// ClusterConfiguration, or without a way to discover the cluster, is refused when loaded; a discovery pin
// of another CA is refused when rendering.
func TestJoinConfigurationNeedsWhatKubeadmJoinNeeds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cluster := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: lb.example.com:6443\n"
	for _, tc := range []struct{ name, data, want string }{
		{"no-cluster", joinDoc, "needs the cluster's ClusterConfiguration"},
		{"no-token", strings.Replace(joinDoc, "    token: abcdef.0123456789abcdef\n", "    apiServerEndpoint: lb.example.com:6443\n", 1) + "---\n" + cluster, "set bootstrapToken.token"},
		{"no-endpoint", joinDoc + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n", "apiServerEndpoint: not set"},
	} {
		if _, err := config.Load(write(tc.name+".yaml", tc.data), config.Overrides{CertDir: filepath.Join(dir, "pki")}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}

	wrongPin := strings.Replace(joinDoc, "    token: abcdef.0123456789abcdef\n", "    token: abcdef.0123456789abcdef\n    caCertHashes: [\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]\n", 1)
	cfg, err := config.Load(write("pinned.yaml", wrongPin+"---\n"+cluster), config.Overrides{CertDir: filepath.Join(dir, "pki")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := phases.NewData(cfg.PKI, kubeadmutil.StartTimeUTC(), pkitest.Keys(), nil)
	d.Kubeadm, d.Rand, d.KubeconfigDir = cfg, pkitest.Rand(3), filepath.Join(dir, "kube")
	err = (&phases.Runner{Phases: phases.InitPhases()}).Run(context.Background(), d, phases.Selection{})
	if err == nil || !strings.Contains(err.Error(), "does not pin") {
		t.Errorf("a discovery pin of another CA: %v, want a refusal", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
