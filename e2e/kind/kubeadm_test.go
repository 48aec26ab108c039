package kind

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
)

// Where the bootstrap path puts things in the node, as examples/ documents them.
const (
	nodeUserConfig  = "/etc/k8scrypto/kubeadm-config.yaml"
	nodeRendered    = "/etc/kubernetes/kubeadm-config.yaml"
	nodePKI         = "/etc/kubernetes/pki"
	nodeRestartHook = "/usr/local/sbin/k8scrypto-restart-control-plane"
)

// userKubeadmConfig is what a user of this node would write for `k8scrypto init --config`: the node's name
// and address, kind's networking defaults, the apiserver reachable from the host on 127.0.0.1 (kind
// publishes port 6443 on the host's loopback), and what this machine needs to run kubeadm init itself,
// as kind-offline.md found it: a KubeletConfiguration for the cgroup v1 host (k8scrypto carries it over
// into the rendered file), the preflight checks a container trips (cgroup v1, no registry to pull from,
// /proc/sys not writable) ignored by name, images never pulled (the node image has the control plane's;
// kube-proxy's and coredns' are absent, which ImagePull is about), and no kube-proxy.
func userKubeadmConfig(cluster, node, nodeIP, k8sVersion string) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %[3]s
  bindPort: 6443
nodeRegistration:
  name: %[2]s
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
  kubeletExtraArgs:
  - name: node-ip
    value: %[3]s
  ignorePreflightErrors:
  - SystemVerification
  - ImagePull
  - FileContent--proc-sys-net-ipv4-ip_forward
  - Swap
  - NumCPU
  - Mem
skipPhases:
- addon/kube-proxy
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %[4]s
clusterName: %[1]s
controlPlaneEndpoint: %[2]s:6443
networking:
  serviceSubnet: 10.96.0.0/16
  podSubnet: 10.244.0.0/16
apiServer:
  certSANs: ["localhost", "127.0.0.1"]
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
failCgroupV1: false
`, cluster, node, nodeIP, k8sVersion)
}

// kubeadmReuses are the lines kubeadm init prints when it reuses a file instead of writing one
// (cmd/kubeadm/app/phases/certs and kubeconfig): every certificate, the sa key and every kubeconfig.
var kubeadmReuses = []string{
	"[certs] Using existing ca certificate authority",
	"[certs] Using existing apiserver certificate and key on disk",
	"[certs] Using existing apiserver-kubelet-client certificate and key on disk",
	"[certs] Using existing front-proxy-ca certificate authority",
	"[certs] Using existing front-proxy-client certificate and key on disk",
	"[certs] Using existing etcd/ca certificate authority",
	"[certs] Using existing etcd/server certificate and key on disk",
	"[certs] Using existing etcd/peer certificate and key on disk",
	"[certs] Using existing etcd/healthcheck-client certificate and key on disk",
	"[certs] Using existing apiserver-etcd-client certificate and key on disk",
	`[certs] Using the existing "sa" key`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/admin.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/super-admin.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/kubelet.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/controller-manager.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/scheduler.conf"`,
}

// kubeadmGenerates matches what kubeadm prints when it writes a certificate, key or kubeconfig itself.
var kubeadmGenerates = regexp.MustCompile(`(?m)^\[certs\] Generating .*$|^\[kubeconfig\] Writing .*$`)

// controlPlanePods are the static pods kubeadm writes; their containers carry these names.
var controlPlanePods = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// TestKindKubeadmInit is the project's promise end to end: in a kind node (kind stopped before setting up
// Kubernetes), examples/bootstrap-control-plane.sh runs as a user would run it, `k8scrypto init --config`
// then `kubeadm init --config <rendered kubeadm-config.yaml>`, and kubeadm builds the control plane on
// k8scrypto's files, generating none of them. Then, on that running node, `k8scrypto renew certs --force`
// with examples/restart-control-plane.sh as --on-renew.
func TestKindKubeadmInit(t *testing.T) {
	image := nodeImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	k8sVersion := kubernetesVersion(t)

	c := newKindCluster(t, &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole, Image: image}},
		Networking: v1alpha4.Networking{
			DisableDefaultCNI: true,
			KubeProxyMode:     "none", // kind accepts it; v1alpha4 has no constant
		},
	})
	nodeName := c.Name + "-control-plane"
	node := c.Node(t, nodeName)
	nodeIP, _, err := node.IP()
	if err != nil {
		t.Fatal(err)
	}

	// The tools, where a user installs them: k8scrypto and the two example scripts.
	install := func(src, dst string) {
		writeNodeFile(ctx, t, node, dst, 0o755, readHostFile(t, src))
	}
	install(k8scrypto(t), "/usr/local/bin/k8scrypto")
	install(filepath.Join("..", "..", "examples", "bootstrap-control-plane.sh"), "/usr/local/sbin/bootstrap-control-plane")
	install(filepath.Join("..", "..", "examples", "restart-control-plane.sh"), nodeRestartHook)
	writeNodeFile(ctx, t, node, nodeUserConfig, 0o600, []byte(userKubeadmConfig(c.Name, nodeName, nodeIP, k8sVersion)))

	start := time.Now()
	out, err := runErr(ctx, node, nil, "/usr/local/sbin/bootstrap-control-plane", nodeUserConfig)
	c.saveLog(t, "bootstrap-control-plane.log", out)
	if err != nil {
		t.Fatalf("examples/bootstrap-control-plane.sh in node %s: %v\n%s", nodeName, err, tail(out, 60))
	}
	t.Logf("bootstrap-control-plane.sh (k8scrypto init, kubeadm config validate, kubeadm init, check-expiration): %v", time.Since(start).Round(100*time.Millisecond))
	if !bytes.Contains(out, []byte("Your Kubernetes control-plane has initialized successfully!")) {
		t.Errorf("kubeadm init did not report success:\n%s", tail(out, 30))
	}
	for _, line := range kubeadmReuses {
		if !bytes.Contains(out, []byte(line+"\n")) {
			t.Errorf("kubeadm init did not print %q: it did not reuse k8scrypto's file", line)
		}
	}
	if gen := kubeadmGenerates.FindAll(out, -1); len(gen) > 0 {
		t.Errorf("kubeadm init wrote files k8scrypto should have: %s", bytes.Join(gen, []byte("; ")))
	}

	files := pullPKI(ctx, t, node)
	var pods map[string]string
	t.Run("static pods run", func(t *testing.T) {
		pods = runningPods(ctx, t, node)
	})

	// kubectl in the node with admin.conf, after kubeadm's own RBAC setup (the kubeadm:cluster-admins
	// binding admin.conf's group needs).
	t.Run("kubectl with admin.conf", func(t *testing.T) {
		var who struct {
			Status struct{ UserInfo authenticationv1.UserInfo } `json:"status"`
		}
		b := run(ctx, t, node, nil, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "auth", "whoami", "-o", "json")
		if err := json.Unmarshal(b, &who); err != nil {
			t.Fatalf("kubectl auth whoami: %v\n%s", err, b)
		}
		if who.Status.UserInfo.Username != "kubernetes-admin" || !slices.Contains(who.Status.UserInfo.Groups, "kubeadm:cluster-admins") {
			t.Errorf("admin.conf is %+v, want kubernetes-admin in kubeadm:cluster-admins", who.Status.UserInfo)
		}
		if b := run(ctx, t, node, nil, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "auth", "can-i", "list", "secrets", "-A"); strings.TrimSpace(string(b)) != "yes" {
			t.Errorf("kubectl auth can-i list secrets -A with admin.conf: %s", b)
		}
		if b := run(ctx, t, node, nil, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "node", nodeName, "-o", "name"); strings.TrimSpace(string(b)) != "node/"+nodeName {
			t.Errorf("kubectl get node: %s", b)
		}
	})

	// From here the host talks to the apiserver through the port kind published on its loopback, with
	// admin.conf (kind's kubeconfig export of it: the same credentials, the host's address).
	admin := hostAdmin(t, c)
	caPool := pool(t, files["ca.crt"])

	t.Run("Secret encrypted in etcd under k8scrypto's provider", func(t *testing.T) {
		prefix := encryptionPrefixOf(t, files["encryption-config.yaml"])
		plaintext := "kind-plaintext-" + c.Name
		if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, StringData: map[string]string{"v": plaintext},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		value := etcdGet(ctx, t, nodeIP, files, "/registry/secrets/default/e2e")
		if !bytes.HasPrefix(value, []byte(prefix)) || bytes.Contains(value, []byte(plaintext)) {
			t.Errorf("the Secret is stored as %q...; want the prefix %q and no plaintext", value[:min(len(value), 40)], prefix)
		}
	})

	t.Run("TokenRequest token verifies with sa.pub", func(t *testing.T) {
		if _, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := admin.CoreV1().ServiceAccounts("default").CreateToken(ctx, "e2e", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		claims := verifyJWT(t, tr.Status.Token, files["sa.pub"])
		if claims["sub"] != "system:serviceaccount:default:e2e" {
			t.Errorf("token subject %v, want system:serviceaccount:default:e2e", claims["sub"])
		}
		// The control: the same token with one signature byte changed does not verify.
		if err := verifyJWTErr(flipSignature(tr.Status.Token), files["sa.pub"]); err == nil {
			t.Error("a token with a changed signature verified with sa.pub")
		}
	})

	t.Run("CSR signed by kube-controller-manager chains to k8scrypto's ca.crt", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "e2e-csr-user", Organization: []string{"e2e"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + c.Name},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: certificatesv1.KubeAPIServerClientSignerName,
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}
		csr, err = admin.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "approved by the kind e2e test",
		})
		if _, err := admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		var issued []byte
		if err := poll(ctx, func(ctx context.Context) error {
			got, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(got.Status.Certificate) == 0 {
				return fmt.Errorf("CSR %s approved, not signed yet", csr.Name)
			}
			issued = got.Status.Certificate
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cert := parseCert(t, issued)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the certificate kube-controller-manager issued does not chain to k8scrypto's ca.crt: %v", err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) || cert.Subject.CommonName != "e2e-csr-user" {
			t.Errorf("issued certificate is for %v with another key, want e2e-csr-user with the CSR's key", cert.Subject)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("renew certs --force --on-renew restart-control-plane", func(t *testing.T) {
		renewRunningNode(ctx, t, c, node, files, pods)
	})
}

// renewRunningNode renews every certificate k8scrypto manages on the running node, with the documented
// restart hook, and checks that the control plane comes back on the new files.
func renewRunningNode(ctx context.Context, t *testing.T, c *kindCluster, node nodes.Node, before map[string][]byte, podsBefore map[string]string) {
	server := hostServer(t, c.Provider, c.Name)
	adminBefore := hostAdmin(t, c)
	caPool := pool(t, before["ca.crt"])
	servedBefore := servedCert(t, server, caPool)
	if !bytes.Equal(servedBefore.Raw, parseCert(t, before["apiserver.crt"]).Raw) {
		t.Fatalf("before renewal the apiserver does not serve %s/apiserver.crt (serial %x)", nodePKI, servedBefore.SerialNumber)
	}
	kubeletConf := readNodeFile(ctx, t, node, "/etc/kubernetes/kubelet.conf")

	start := time.Now()
	out, err := runErr(ctx, node, nil, "k8scrypto", "renew", "certs", "--force", "--config", nodeRendered, "--on-renew", nodeRestartHook)
	c.saveLog(t, "renew-certs.log", out)
	if err != nil {
		t.Fatalf("k8scrypto renew certs --force --on-renew %s: %v\n%s", nodeRestartHook, err, tail(out, 40))
	}
	for _, name := range controlPlanePods {
		if !bytes.Contains(out, []byte("restarted "+name+" (")) {
			t.Errorf("the --on-renew hook did not restart %s:\n%s", name, tail(out, 40))
		}
	}
	after := pullPKI(ctx, t, node)
	for _, f := range []string{"apiserver.crt", "apiserver-kubelet-client.crt", "apiserver-etcd-client.crt", "front-proxy-client.crt", "etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt"} {
		o, n := parseCert(t, before[f]), parseCert(t, after[f])
		if o.SerialNumber.Cmp(n.SerialNumber) == 0 {
			t.Errorf("%s: same serial %x after renew --force", f, n.SerialNumber)
		}
	}
	for _, f := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt", "sa.pub"} {
		if !bytes.Equal(before[f], after[f]) {
			t.Errorf("%s changed: renewal must not touch CAs or the service-account key", f)
		}
	}
	if got := readNodeFile(ctx, t, node, "/etc/kubernetes/kubelet.conf"); !bytes.Equal(got, kubeletConf) {
		t.Error("kubelet.conf changed: after kubeadm's kubelet-finalize it points at the kubelet's own rotating certificate, which renewal must leave alone")
	}

	// Each static pod's container is a new one, running.
	var podsAfter map[string]string
	if err := poll(ctx, func(context.Context) error {
		p, err := runningPodsErr(ctx, node)
		if err != nil {
			return err
		}
		for _, name := range controlPlanePods {
			if p[name] == podsBefore[name] {
				return fmt.Errorf("%s still runs container %s", name, p[name])
			}
		}
		podsAfter = p
		return nil
	}); err != nil {
		t.Fatalf("static pods after the restart hook: %v", err)
	}
	t.Logf("renewal and restart: static pods running new containers %v after %v", podsAfter, time.Since(start).Round(100*time.Millisecond))

	// The apiserver serves the new certificate.
	wantServed := parseCert(t, after["apiserver.crt"])
	if err := poll(ctx, func(context.Context) error {
		got, err := servedCertErr(server, caPool)
		if err != nil {
			return err
		}
		if !got.Equal(wantServed) {
			return fmt.Errorf("apiserver serves serial %x, %s/apiserver.crt is %x", got.SerialNumber, nodePKI, wantServed.SerialNumber)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// Clients keep working: the admin client made before the renewal (its certificate is still valid under
	// the same CA), the renewed admin.conf, and the kubelet, whose node lease keeps being renewed through
	// the restarted apiserver.
	if err := poll(ctx, func(ctx context.Context) error {
		_, err := adminBefore.CoreV1().Secrets("default").Get(ctx, "e2e", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Errorf("the admin client from before the renewal: %v", err)
	}
	if u := whoami(ctx, t, hostAdmin(t, c)); u.Username != "kubernetes-admin" {
		t.Errorf("renewed admin.conf authenticates as %+v", u)
	}
	// /readyz turns ready only once every post-start hook of the restarted apiserver has: poll it.
	if err := poll(ctx, func(ctx context.Context) error {
		_, err := runErr(ctx, node, nil, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "--raw", "/readyz")
		return err
	}); err != nil {
		t.Errorf("kubectl with the renewed admin.conf in the node: %v", err)
	}
	restarted := time.Now()
	if err := poll(ctx, func(ctx context.Context) error {
		l, err := adminBefore.CoordinationV1().Leases("kube-node-lease").Get(ctx, c.Name+"-control-plane", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(restarted) {
			return fmt.Errorf("node lease last renewed %v, before the restart", l.Spec.RenewTime)
		}
		return nil
	}); err != nil {
		t.Errorf("the kubelet after the renewal: %v", err)
	}
}

// pullPKI reads the files the assertions need from the node (into memory; nothing is logged).
func pullPKI(ctx context.Context, t *testing.T, node nodes.Node) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt", "sa.pub", "encryption-config.yaml",
		"apiserver.crt", "apiserver-kubelet-client.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
		"front-proxy-client.crt", "etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt"} {
		files[f] = readNodeFile(ctx, t, node, nodePKI+"/"+f)
	}
	return files
}

// runningPods returns the running container of each control-plane static pod.
func runningPods(ctx context.Context, t *testing.T, node nodes.Node) map[string]string {
	t.Helper()
	var pods map[string]string
	if err := poll(ctx, func(context.Context) error {
		var err error
		pods, err = runningPodsErr(ctx, node)
		return err
	}); err != nil {
		t.Fatalf("control-plane static pods: %v", err)
	}
	return pods
}

func runningPodsErr(ctx context.Context, node nodes.Node) (map[string]string, error) {
	pods := map[string]string{}
	for _, name := range controlPlanePods {
		out, err := runErr(ctx, node, nil, "crictl", "ps", "--state", "Running", "--name", "^"+name+"$", "-q")
		if err != nil {
			return nil, fmt.Errorf("crictl ps %s: %v: %s", name, err, out)
		}
		ids := strings.Fields(string(out))
		if len(ids) != 1 {
			return nil, fmt.Errorf("%s: %d running containers, want 1", name, len(ids))
		}
		pods[name] = ids[0]
	}
	return pods, nil
}

// hostAdmin is a client with the node's current admin.conf, pointed at the apiserver's host port.
func hostAdmin(t *testing.T, c *kindCluster) *kubernetes.Clientset {
	t.Helper()
	kc, err := c.Provider.KubeConfig(c.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kc))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func readHostFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kubernetesVersion is the Kubernetes version e2e/go.mod pins, which the node image carries.
func kubernetesVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("e2e/go.mod does not require k8s.io/kubernetes")
	}
	return string(m[1])
}

// etcdGet reads a key raw from the node's etcd, from the host, with the apiserver's etcd client
// certificate, verifying etcd's serving certificate against k8scrypto's etcd CA.
func etcdGet(ctx context.Context, t *testing.T, nodeIP string, files map[string][]byte, key string) []byte {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := etcdClient(t, files, nodeIP).Get(cctx, key)
	if err != nil {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s: %d keys", key, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

// encryptionPrefixOf is encryptionPrefix for a file's content.
func encryptionPrefixOf(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return encryptionPrefix(t, p)
}

func pool(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificate in the CA file")
	}
	return p
}

func parseCert(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatal("not a PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// servedCert is the certificate the apiserver presents, verified against the CA.
func servedCert(t *testing.T, server string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := servedCertErr(server, roots)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func servedCertErr(server string, roots *x509.CertPool) (*x509.Certificate, error) {
	host := strings.TrimPrefix(server, "https://")
	conn, err := tls.DialWithDialer(&netDialer, "tcp", host, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// verifyJWT checks a token's signature with the public key in PEM and returns its claims.
func verifyJWT(t *testing.T, token string, pubPEM []byte) map[string]any {
	t.Helper()
	if err := verifyJWTErr(token, pubPEM); err != nil {
		t.Fatalf("service-account token does not verify with sa.pub: %v", err)
	}
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func verifyJWTErr(token string, pubPEM []byte) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("a JWT has 3 parts, this one %d", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return err
	}
	var header struct{ Alg string }
	if err := json.Unmarshal(hb, &header); err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	b, _ := pem.Decode(pubPEM)
	if b == nil {
		return fmt.Errorf("sa.pub: no PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return err
	}
	signed := []byte(parts[0] + "." + parts[1])
	digest := func(h crypto.Hash) []byte {
		switch h {
		case crypto.SHA384:
			s := sha512.Sum384(signed)
			return s[:]
		case crypto.SHA512:
			s := sha512.Sum512(signed)
			return s[:]
		}
		s := sha256.Sum256(signed)
		return s[:]
	}
	hashes := map[string]crypto.Hash{"RS256": crypto.SHA256, "ES256": crypto.SHA256, "RS384": crypto.SHA384, "ES384": crypto.SHA384, "RS512": crypto.SHA512, "ES512": crypto.SHA512}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		h, ok := hashes[header.Alg]
		if !ok || header.Alg[0] != 'R' {
			return fmt.Errorf("alg %s with an RSA sa.pub", header.Alg)
		}
		return rsa.VerifyPKCS1v15(k, h, digest(h), sig)
	case *ecdsa.PublicKey:
		h, ok := hashes[header.Alg]
		if !ok || header.Alg[0] != 'E' {
			return fmt.Errorf("alg %s with an ECDSA sa.pub", header.Alg)
		}
		n := len(sig) / 2
		if !ecdsa.Verify(k, digest(h), new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return fmt.Errorf("ECDSA signature does not verify")
		}
		return nil
	case ed25519.PublicKey:
		if header.Alg != "EdDSA" || !ed25519.Verify(k, signed, sig) {
			return fmt.Errorf("EdDSA signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("sa.pub: unsupported key %T", pub)
}

// flipSignature changes one byte of a token's signature.
func flipSignature(token string) string {
	parts := strings.Split(token, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0x01
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

var netDialer = net.Dialer{Timeout: 5 * time.Second}

// secretFlags matches the credentials kubeadm init prints in its join commands.
var secretFlags = regexp.MustCompile(`(--token|--discovery-token-ca-cert-hash|--certificate-key)(\s+|=)\S+`)

// redact removes the bootstrap token and the like from command output before it is logged or kept.
func redact(out []byte) []byte { return secretFlags.ReplaceAll(out, []byte("$1 <redacted>")) }

// tail returns the last n lines of out, redacted.
func tail(out []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(redact(out), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
