package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"
)

// haNode is a further control-plane node of a controlPlane: directories and k8scrypto state of its own, a
// kube-apiserver on its own loopback address (the first node's port: the kubernetes Service's endpoints
// share one port) advertising its own 10.0.0.x address, on the first node's etcd members.
type haNode struct {
	*controlPlane
	Name      string
	Advertise string // advertised (written into the kubernetes Endpoints), never dialled
	Bind      string // 127.0.0.x
}

// newHANode lays out a joining node's directories and its kubeadm config: the cluster's
// ClusterConfiguration (the first node's) and a JoinConfiguration with this node's name and address and
// the bootstrap token kubeadm join would discover the cluster with.
func newHANode(t *testing.T, first *controlPlane, name, advertise, bind, token string) *haNode {
	t.Helper()
	dir := t.TempDir()
	port := strconv.Itoa(first.Port)
	n := &haNode{Name: name, Advertise: advertise, Bind: bind, controlPlane: &controlPlane{
		Dir: dir, CertDir: filepath.Join(dir, "pki"), KubeconfigDir: filepath.Join(dir, "kubernetes"),
		StateDir: filepath.Join(dir, "state"), ConfigPath: filepath.Join(dir, "kubeadm.yaml"),
		Port: first.Port, URL: "https://" + net.JoinHostPort(bind, port), Etcd: first.Etcd, bins: first.bins,
		apiserverName: name + " kube-apiserver",
	}}
	for _, d := range []string{n.KubeconfigDir, n.StateDir, filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The port is free on 127.0.0.1's neighbours unless an etcd member happened to pick it there.
	l, err := net.Listen("tcp", net.JoinHostPort(bind, port))
	if err != nil {
		t.Fatalf("port %s, the first apiserver's, is taken on %s (an etcd member's port?): %v", port, bind, err)
	}
	l.Close()
	cfg := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  name: %[3]s
controlPlane:
  localAPIEndpoint:
    advertiseAddress: %[1]s
    bindPort: %[2]d
discovery:
  bootstrapToken:
    token: %[4]s
---
`, advertise, first.Port, name, token) + clusterConfiguration(n.CertDir, first.Port)
	if err := os.WriteFile(n.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.apiserver.Stop()
		if t.Failed() && n.apiserver != nil {
			t.Logf("--- %s kube-apiserver log (%s), last 40 lines:\n%s", name, n.apiserver.logPath, n.apiserver.tail(40))
		}
	})
	return n
}

// init is the joining node's own `k8scrypto init`, after its shared keys are in place: its name and
// address from its JoinConfiguration, its loopback address as an extra SAN.
func (n *haNode) init(t *testing.T) {
	t.Helper()
	args := append(append([]string{"init"}, n.clusterFlags()...), "--apiserver-cert-extra-sans", n.Bind)
	if _, _, err := n.run(t, args...); err != nil {
		t.Fatalf("k8scrypto init on %s: %v", n.Name, err)
	}
}

// startAPIServer runs kube-apiserver with the flags of the first node's (kubeadm's, see apiserverFlags) for
// this node's files, address and the shared etcd, and waits until /readyz.
func (n *haNode) startAPIServer(ctx context.Context, t *testing.T) {
	t.Helper()
	args, err := n.apiserverFlags()
	if err != nil {
		t.Fatal(err)
	}
	for flag, v := range map[string]string{"advertise-address": n.Advertise, "bind-address": n.Bind} {
		i := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--"+flag+"=") })
		if i < 0 {
			t.Fatalf("no --%s in the apiserver flags %v", flag, args)
		}
		args[i] = "--" + flag + "=" + v
	}
	if err := n.runAPIServer(ctx, args); err != nil {
		t.Fatal(err)
	}
}

// caPin is kubeadm's --discovery-token-ca-cert-hash of a CA: sha256 of its SubjectPublicKeyInfo.
func caPin(t testing.TB, caFile string) string {
	t.Helper()
	sum := sha256.Sum256(loadCert(t, caFile).RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// bootstrapTokenKubeconfig creates a bootstrap token as `kubeadm token create` does (in the group kubeadm's
// upload-certs RBAC lets read kube-system/kubeadm-certs) and returns a kubeconfig for it at the control-plane
// endpoint. Its CA is ca.crt, which a joining node learns by token discovery (cluster-info) and checks
// against the pin; the test hands it over directly, and never the key.
func bootstrapTokenKubeconfig(ctx context.Context, t *testing.T, cp *controlPlane, admin kubernetes.Interface) (kubeconfig, token string) {
	t.Helper()
	const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	id, secret := string(b[:6]), string(b[6:])
	_, err := admin.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id},
		Type:       "bootstrap.kubernetes.io/token",
		StringData: map[string]string{
			"token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true",
			"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
			"expiration":        time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: readFile(t, cp.cert("ca.crt"))}
	cfg.AuthInfos["bootstrap"] = &clientcmdapi.AuthInfo{Token: id + "." + secret}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "bootstrap"}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "bootstrap.conf")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	// The token authenticator reads bootstrap tokens through an informer: wait until it knows this one.
	cs, _ := kubeconfigClient(t, path)
	if err := waitFor(ctx, "the bootstrap token to authenticate", 200*time.Millisecond, nil, func(ctx context.Context) error {
		u, err := whoami(ctx, cs)
		if err != nil {
			return err
		}
		if u.Username != "system:bootstrap:"+id {
			return fmt.Errorf("authenticated as %q", u.Username)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return path, id + "." + secret
}

// sharedFiles are what every control-plane node holds identically (kubeadm's copycerts set plus the
// encryption config).
var sharedFiles = []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub", "encryption-config.yaml"}

// TestHAControlPlanesShareKeys: a second and a third control plane join the first node's cluster (three
// kube-apiservers on 127.0.0.1-3, one port, advertising 10.0.0.5-7, on the same three etcd members). Their
// shared keys come only from k8scrypto: the second's from `join phase download-certs` (the Secret `init
// phase upload-certs` stored through the first apiserver, read with a bootstrap token), the third's from
// `certs import` of a `certs export` bundle; `k8scrypto init` then writes only their own leaves. Each
// apiserver serves its own certificate; each reads the Secrets the others wrote, stored encrypted in etcd
// under the one shared key; `encryption status` asks all three (EndpointSlices of the kubernetes Service,
// mapped to loopback with --apiserver-endpoint) and finds one hash. Then the first node alone moves to a
// prepared file: status reports the disagreement (exit 1) and promote refuses (exit 3) until the file is on
// every node and loaded.
func TestHAControlPlanesShareKeys(t *testing.T) {
	t.Parallel() // own control plane; waits for the apiservers' reload polls
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	kubeconfig := cp.adminKubeconfig(t)
	pin := caPin(t, cp.cert("ca.crt"))

	// The first node uploads, kubeadm's way; the key is printed once, on stdout.
	out, _, err := cp.run(t, append([]string{"init", "phase", "upload-certs", "--kubeconfig", kubeconfig}, cp.sourceFlags()...)...)
	if err != nil {
		t.Fatalf("init phase upload-certs: %v", err)
	}
	var key string
	for line := range strings.SplitSeq(out, "\n") {
		if k, ok := strings.CutPrefix(line, "certificate key: "); ok {
			key = k
		}
	}
	if len(key) != 64 {
		t.Fatalf("upload-certs printed no 64-hex-digit certificate key:\n%s", strings.ReplaceAll(out, key, "<key>"))
	}

	joinKubeconfig, token := bootstrapTokenKubeconfig(ctx, t, cp, admin)
	n2 := newHANode(t, cp, "e2e-node-2", "10.0.0.6", "127.0.0.2", token)
	t0 := time.Now()
	if _, _, err := n2.run(t, "join", "phase", "download-certs", "--config", n2.ConfigPath, "--cert-dir", n2.CertDir,
		"--kubeconfig", joinKubeconfig, "--certificate-key", key, "--ca-cert-hash", pin); err != nil {
		t.Fatalf("join phase download-certs: %v", err)
	}
	t.Logf("download-certs took %v", time.Since(t0).Round(time.Millisecond))
	expectOnlyShared(t, n2)

	n3 := newHANode(t, cp, "e2e-node-3", "10.0.0.7", "127.0.0.3", token)
	bundleKey := filepath.Join(t.TempDir(), "bundle.key")
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundleKey, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "shared.bundle")
	if _, _, err := cp.run(t, append([]string{"certs", "export", "--out", bundle, "--key-file", bundleKey}, cp.sourceFlags()...)...); err != nil {
		t.Fatalf("certs export: %v", err)
	}
	if _, _, err := n3.run(t, "certs", "import", "--config", n3.ConfigPath, "--cert-dir", n3.CertDir, "--in", bundle, "--key-file", bundleKey, "--ca-cert-hash", pin); err != nil {
		t.Fatalf("certs import: %v", err)
	}
	expectOnlyShared(t, n3)

	nodes := []*haNode{n2, n3}
	for _, n := range nodes {
		n.init(t)
		for _, f := range sharedFiles {
			if !bytes.Equal(readFile(t, n.cert(f)), readFile(t, cp.cert(f))) {
				t.Errorf("%s: %s differs from the first node's after k8scrypto init", n.Name, f)
			}
		}
		expectOwnServingCert(t, cp, n)
		expectJoinConfiguration(t, cp, n, pin, token)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range nodes {
		t0 := time.Now()
		n.startAPIServer(ctx, t)
		t.Logf("%s: kube-apiserver ready at %s in %v", n.Name, n.URL, time.Since(t0).Round(time.Millisecond))
	}

	// Each apiserver serves its own node's certificate.
	tc, err := tlsConfig(cp.cert("ca.crt"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	all := []*controlPlane{cp, n2.controlPlane, n3.controlPlane}
	names := []string{nodeName, n2.Name, n3.Name}
	for i, c := range all {
		served := servedCert(t, strings.TrimPrefix(c.URL, "https://"), tc)
		if !bytes.Equal(served.Raw, loadCert(t, c.cert("apiserver.crt")).Raw) {
			t.Errorf("%s at %s does not serve its own apiserver.crt (serves serial %s, SANs %v)", names[i], c.URL, served.SerialNumber, served.IPAddresses)
		}
	}

	// Every apiserver reads the Secrets every other wrote: one encryption key; in etcd under it.
	st := readEncryptionConfig(t, cp)
	ns := createNamespace(ctx, t, admin, "e2e-ha-")
	clients := make([]kubernetes.Interface, len(all))
	for i, c := range all {
		clients[i] = c.admin(t) // signed by the node's ca.key: the shared one
	}
	for i, w := range clients {
		name := "written-by-" + names[i]
		val := "plaintext-" + ns + "-" + name
		if _, err := w.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": val}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("writing a Secret through %s: %v", names[i], err)
		}
		stored := rawValue(ctx, t, cp, "/registry/secrets/"+ns+"/"+name)
		if !bytes.HasPrefix(stored, []byte(st.Prefix(st.Keys[0]))) || bytes.Contains(stored, []byte(val)) {
			t.Errorf("the Secret %s is stored as %q..., want %s and no plaintext", name, stored[:min(len(stored), 40)], st.Prefix(st.Keys[0]))
		}
		for j, r := range clients {
			s, err := r.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s reading the Secret %s wrote: %v", names[j], names[i], err)
			} else if string(s.Data["v"]) != val {
				t.Errorf("%s reads the Secret %s wrote as %q", names[j], names[i], s.Data["v"])
			}
		}
	}

	// encryption status asks the three apiservers of the kubernetes Service, at their loopback addresses.
	mapping := []string{"--kubeconfig", kubeconfig}
	for _, c := range []struct{ adv, bind string }{{advertiseAddress, "127.0.0.1"}, {n2.Advertise, n2.Bind}, {n3.Advertise, n3.Bind}} {
		p := strconv.Itoa(cp.Port)
		mapping = append(mapping, "--apiserver-endpoint", net.JoinHostPort(c.adv, p)+"="+net.JoinHostPort(c.bind, p))
	}
	status := func() (haStatus, int, string) {
		t.Helper()
		out, stderr, err := cp.run(t, append([]string{"encryption", "status", "--cert-dir", cp.CertDir, "-o", "json"}, mapping...)...)
		code := exitCode(t, err)
		var s haStatus
		if jerr := json.Unmarshal([]byte(out), &s); jerr != nil {
			return s, code, fmt.Sprintf("no JSON on stdout (%v): %s", jerr, stderr) // it failed before printing
		}
		return s, code, stderr
	}
	// An apiserver adds itself to the Service's endpoints within its reconcile interval (10 s); until all
	// three are listed, a mapping names an endpoint the Service lacks.
	var s haStatus
	if err := waitFor(ctx, "all three apiservers behind the kubernetes Service", time.Second, nil, func(context.Context) error {
		var code int
		var stderr string
		s, code, stderr = status()
		if code != 0 || len(s.APIServer.Endpoints) != 3 {
			return fmt.Errorf("exit %d, %d endpoints: %s", code, len(s.APIServer.Endpoints), stderr)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ep := range s.APIServer.Endpoints {
		t.Logf("encryption status: endpoint %s (dialled at %s) runs %s", ep.Endpoint, ep.Dialed, ep.ConfigHash)
		if !ep.RunsThisFile || ep.ConfigHash != st.Hash || ep.Dialed == "" {
			t.Errorf("endpoint %+v: want it dialled on loopback and running %s", ep, st.Hash)
		}
	}

	// The first node alone moves to a prepared file: the apiservers disagree.
	if _, _, err := cp.run(t, "encryption", "rotate", "prepare", "--cert-dir", cp.CertDir); err != nil {
		t.Fatalf("encryption rotate prepare: %v", err)
	}
	prepared := readEncryptionConfig(t, cp)
	waitEncryptionConfigLoaded(ctx, t, cp, admin, prepared)
	s, code, _ := status()
	if code != 1 || !slices.ContainsFunc(s.Problems, func(p string) bool { return strings.Contains(p, "the apiservers run different encryption configs") }) ||
		!slices.ContainsFunc(s.Problems, func(p string) bool {
			return strings.Contains(p, "2 of the 3 apiservers run another version of this file")
		}) {
		t.Errorf("status with one apiserver on the prepared file: exit %d, problems %q; want exit 1 naming the disagreement", code, s.Problems)
	}
	_, stderr, err := cp.run(t, append([]string{"encryption", "rotate", "promote", "--cert-dir", cp.CertDir}, mapping...)...)
	if code := exitCode(t, err); code != 3 || !strings.Contains(stderr, "promote refused") {
		t.Errorf("promote while two apiservers run the old file: exit %d, %s; want 3 (refused)", code, stderr)
	}
	if bytes.Equal(readFile(t, cp.EncryptionConfig()), readFile(t, n2.EncryptionConfig())) {
		t.Fatal("the second node already has the prepared file")
	}
	// Copied to every node (as the operator must), promote --wait goes on once all three loaded it.
	for _, n := range nodes {
		if err := os.WriteFile(n.EncryptionConfig(), readFile(t, cp.EncryptionConfig()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t0 = time.Now()
	if _, stderr, err := cp.run(t, append([]string{"encryption", "rotate", "promote", "--cert-dir", cp.CertDir, "--wait"}, mapping...)...); err != nil {
		t.Fatalf("promote --wait with the prepared file on every node: %v\n%s", err, stderr)
	}
	t.Logf("promote --wait returned after %v (the other apiservers' reload poll)", time.Since(t0).Round(time.Second))
}

// haStatus is the part of `encryption status -o json` this test reads.
type haStatus struct {
	Problems  []string `json:"problems"`
	APIServer struct {
		ConfigHash   string `json:"configHash"`
		RunsThisFile bool   `json:"runsThisFile"`
		Endpoints    []struct {
			Endpoint     string `json:"endpoint"`
			Dialed       string `json:"dialed"`
			ConfigHash   string `json:"configHash"`
			RunsThisFile bool   `json:"runsThisFile"`
		} `json:"endpoints"`
	} `json:"apiserver"`
}

// expectOnlyShared checks that a node holds exactly the shared files after download or import: no leaf
// and no kubeconfig came with them.
func expectOnlyShared(t *testing.T, n *haNode) {
	t.Helper()
	var got []string
	err := filepath.WalkDir(n.CertDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(n.CertDir, p)
		if !strings.HasPrefix(d.Name(), ".k8scrypto") { // k8scrypto's lock file
			got = append(got, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(sharedFiles)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %v after installing the shared keys, want exactly %v", n.CertDir, got, want)
	}
	if ents, _ := os.ReadDir(n.KubeconfigDir); len(ents) != 0 {
		t.Fatalf("%s has files before k8scrypto init: %v", n.KubeconfigDir, ents)
	}
}

// expectOwnServingCert: the joining node's apiserver.crt names its node and addresses, not the first
// node's, and chains to the shared CA.
func expectOwnServingCert(t *testing.T, cp *controlPlane, n *haNode) {
	t.Helper()
	c := loadCert(t, n.cert("apiserver.crt"))
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, n.Advertise) || !slices.Contains(ips, n.Bind) || slices.Contains(ips, advertiseAddress) || !slices.Contains(c.DNSNames, n.Name) || slices.Contains(c.DNSNames, nodeName) {
		t.Errorf("%s: apiserver.crt names %v %v; want %s, %s and %s, not the first node's %s/%s", n.Name, c.DNSNames, ips, n.Name, n.Advertise, n.Bind, nodeName, advertiseAddress)
	}
	if loadCert(t, cp.cert("apiserver.crt")).Equal(c) {
		t.Errorf("%s: apiserver.crt is the first node's", n.Name)
	}
	pool := x509.NewCertPool()
	pool.AddCert(loadCert(t, cp.cert("ca.crt")))
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: n.Advertise}); err != nil {
		t.Errorf("%s: apiserver.crt does not verify for %s under the shared CA: %v", n.Name, n.Advertise, err)
	}
}

// expectJoinConfiguration: the joining node's rendered kubeadm config is a JoinConfiguration that kubeadm
// v1.37.2 itself validates ("kubeadm config validate"), with this node's endpoint, no certificateKey (the
// shared keys are on the node), and discovery at the controlPlaneEndpoint pinned to the cluster CA.
func expectJoinConfiguration(t *testing.T, cp *controlPlane, n *haNode, pin, token string) {
	t.Helper()
	if out, err := runKubeadm(t, binary(t, "kubeadm"), "config", "validate", "--config", n.RenderedConfig()); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("%s: kubeadm config validate of the rendered file: %v\n%s", n.Name, err, out)
	}
	var jc kubeadmv1beta4.JoinConfiguration
	found := false
	for doc := range strings.SplitSeq(string(readFile(t, n.RenderedConfig())), "\n---\n") {
		if strings.Contains(doc, "\nkind: JoinConfiguration\n") {
			found = true
			if err := yaml.UnmarshalStrict([]byte(doc), &jc); err != nil {
				t.Fatalf("%s: rendered JoinConfiguration: %v", n.Name, err)
			}
		}
		if strings.Contains(doc, "\nkind: InitConfiguration\n") {
			t.Errorf("%s: the rendered config has an InitConfiguration; a joining node needs none", n.Name)
		}
	}
	bt := jc.Discovery.BootstrapToken
	switch {
	case !found:
		t.Errorf("%s: the rendered config has no JoinConfiguration", n.Name)
	case jc.ControlPlane == nil || jc.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != n.Advertise || jc.ControlPlane.CertificateKey != "":
		t.Errorf("%s: rendered controlPlane %+v; want localAPIEndpoint %s and no certificateKey", n.Name, jc.ControlPlane, n.Advertise)
	case jc.NodeRegistration.Name != n.Name:
		t.Errorf("%s: rendered nodeRegistration.name %q", n.Name, jc.NodeRegistration.Name)
	case bt == nil || bt.APIServerEndpoint != strings.TrimPrefix(cp.URL, "https://") || !slices.Equal(bt.CACertHashes, []string{pin}) || bt.Token != token:
		if bt == nil {
			t.Errorf("%s: rendered discovery has no bootstrapToken", n.Name)
		} else { // the token itself is a credential: not printed
			t.Errorf("%s: rendered discovery at %s pinned to %v (token as given: %v); want %s pinned to %s", n.Name, bt.APIServerEndpoint, bt.CACertHashes, bt.Token == token, strings.TrimPrefix(cp.URL, "https://"), pin)
		}
	}
	for _, absent := range []string{"kubelet.conf", "super-admin.conf"} {
		if _, err := os.Stat(filepath.Join(n.KubeconfigDir, absent)); err == nil {
			t.Errorf("%s: k8scrypto init wrote %s; kubeadm join bootstraps the first and writes no second", n.Name, absent)
		}
	}
}
