package kind

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// joinConfig is the JoinConfiguration of a further control-plane node. The discovery token, CA hash and
// certificate key come from the first node; they are credentials and never logged.
func joinConfig(endpoint, token, caHash, certKey, node, nodeIP string) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: %[1]s
    token: %[2]s
    caCertHashes: ["%[3]s"]
nodeRegistration:
  name: %[5]s
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
  kubeletExtraArgs:
  - name: node-ip
    value: %[6]s
  ignorePreflightErrors:
  - SystemVerification
  - ImagePull
  - FileContent--proc-sys-net-ipv4-ip_forward
  - Swap
  - NumCPU
  - Mem
controlPlane:
  localAPIEndpoint:
    advertiseAddress: %[6]s
    bindPort: 6443
  certificateKey: %[4]s
`, endpoint, token, caHash, certKey, node, nodeIP)
}

var (
	certKeyLine = regexp.MustCompile(`(?m)^certificate key: ([0-9a-f]{64})$`)
	joinCommand = regexp.MustCompile(`--token\s+(\S+)\s+--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})`)
)

// TestKindHA: three control planes behind kind's load balancer (the envoy stand-in), the first bootstrapped
// by examples/bootstrap-control-plane.sh on k8scrypto's output, the other two joined with `kubeadm join
// --control-plane` on the keys `k8scrypto init phase upload-certs` stored in kube-system/kubeadm-certs:
//   - the second node runs examples/join-control-plane.sh: `k8scrypto join phase download-certs` (the shared
//     keys and the encryption config, pinned to the CA), `k8scrypto init` for its own leaves and a rendered
//     JoinConfiguration, `kubeadm join --config` on it, which reuses every file and generates none;
//   - the third is kubeadm's own way: `kubeadm join --control-plane` with the certificate key downloads the
//     CAs and service-account key from k8scrypto's Secret and issues its leaves; kubeadm's download does not
//     carry the encryption config (k8scrypto's extra entry is for k8scrypto), so that one file is copied as
//     an operator following kubeadm's procedure would.
func TestKindHA(t *testing.T) {
	image := nodeImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	k8sVersion := kubernetesVersion(t)

	cp := v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: image}
	c := newKindCluster(t, &v1alpha4.Cluster{
		TypeMeta:   v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Nodes:      []v1alpha4.Node{cp, cp, cp},
		Networking: v1alpha4.Networking{DisableDefaultCNI: true, KubeProxyMode: "none"},
	})
	names := []string{c.Name + "-control-plane", c.Name + "-control-plane2", c.Name + "-control-plane3"}
	endpoint := c.Name + "-external-load-balancer:6443"
	var ns []nodes.Node
	var ips []string
	for _, name := range names {
		n := c.Node(t, name)
		ip, _, err := n.IP()
		if err != nil {
			t.Fatal(err)
		}
		ns, ips = append(ns, n), append(ips, ip)
	}

	// 1. The first control plane, as in TestKindKubeadmInit, with the load balancer as controlPlaneEndpoint.
	first := ns[0]
	install := func(n nodes.Node, src, dst string) {
		writeNodeFile(ctx, t, n, dst, 0o755, readHostFile(t, src))
	}
	install(first, k8scrypto(t), "/usr/local/bin/k8scrypto")
	install(first, "../../examples/bootstrap-control-plane.sh", "/usr/local/sbin/bootstrap-control-plane")
	cfg := strings.Replace(userKubeadmConfig(c.Name, names[0], ips[0], k8sVersion),
		"controlPlaneEndpoint: "+names[0]+":6443", "controlPlaneEndpoint: "+endpoint, 1)
	writeNodeFile(ctx, t, first, nodeUserConfig, 0o600, []byte(cfg))
	start := time.Now()
	out, err := runErr(ctx, first, nil, "/usr/local/sbin/bootstrap-control-plane", nodeUserConfig)
	c.saveLog(t, "bootstrap-control-plane.log", out)
	if err != nil {
		t.Fatalf("bootstrap-control-plane.sh on %s: %v\n%s", names[0], err, tail(out, 60))
	}
	for _, line := range kubeadmReuses {
		if !bytes.Contains(out, []byte(line+"\n")) {
			t.Errorf("kubeadm init on %s did not print %q", names[0], line)
		}
	}
	t.Logf("first control plane up in %v", time.Since(start).Round(100*time.Millisecond))
	files := pullPKI(ctx, t, first)

	// 2. k8scrypto's upload of the shared files, kubeadm's Secret plus the encryption config, and a join token.
	out = run(ctx, t, first, nil, "k8scrypto", "init", "phase", "upload-certs", "--config", nodeUserConfig, "--kubeconfig", "/etc/kubernetes/admin.conf")
	m := certKeyLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("k8scrypto init phase upload-certs printed no certificate key:\n%s", redactKey(out))
	}
	certKey := string(m[1])
	out = run(ctx, t, first, nil, "kubeadm", "token", "create", "--print-join-command")
	m = joinCommand.FindSubmatch(out)
	if m == nil {
		t.Fatal("kubeadm token create --print-join-command printed no token and CA hash")
	}
	token, caHash := string(m[1]), string(m[2])

	// 3. The other two join, one after the other (etcd grows one member at a time).
	clusterDocs := cfg[strings.Index(cfg, "\n---\n")+len("\n---\n"):] // the ClusterConfiguration and KubeletConfiguration
	for i := 1; i < 3; i++ {
		n := ns[i]
		start := time.Now()
		var out []byte
		var err error
		if i == 1 {
			// k8scrypto's way: the second-node script, with a JoinConfiguration that has no certificate key
			// and a kubeconfig of the bootstrap token to read the Secret with (what token discovery yields).
			install(n, k8scrypto(t), "/usr/local/bin/k8scrypto")
			install(n, "../../examples/join-control-plane.sh", "/usr/local/sbin/join-control-plane")
			writeNodeFile(ctx, t, n, nodeUserConfig, 0o600, []byte(joinConfig(endpoint, token, caHash, "", names[i], ips[i])+"---\n"+clusterDocs))
			writeNodeFile(ctx, t, n, "/etc/k8scrypto/bootstrap.conf", 0o600, []byte(fmt.Sprintf(
				"apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://%s\", certificate-authority-data: %s}}]\nusers: [{name: u, user: {token: %q}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
				endpoint, base64.StdEncoding.EncodeToString(files["ca.crt"]), token)))
			out, err = runErr(ctx, n, strings.NewReader("CA_CERT_HASH="+caHash+"\nJOIN_KUBECONFIG=/etc/k8scrypto/bootstrap.conf\nCERTIFICATE_KEY="+certKey+"\n"),
				"sh", "-c", `set -a && . /dev/stdin && exec /usr/local/sbin/join-control-plane "$1"`, "sh", nodeUserConfig)
			c.saveLog(t, "join-control-plane-"+names[i]+".log", redactKey(out))
		} else {
			// kubeadm's way: its own download of k8scrypto's Secret, the encryption config copied.
			writeNodeFile(ctx, t, n, nodePKI+"/encryption-config.yaml", 0o600, files["encryption-config.yaml"])
			writeNodeFile(ctx, t, n, "/etc/kubernetes/join.yaml", 0o600, []byte(joinConfig(endpoint, token, caHash, certKey, names[i], ips[i])))
			out, err = runErr(ctx, n, nil, "kubeadm", "join", "--config", "/etc/kubernetes/join.yaml")
			c.saveLog(t, "kubeadm-join-"+names[i]+".log", out)
		}
		if err != nil {
			t.Fatalf("kubeadm join --control-plane on %s: %v\n%s", names[i], err, tail(out, 60))
		}
		if !bytes.Contains(out, []byte("a new control plane instance was created")) {
			t.Errorf("kubeadm join on %s did not create a control plane instance:\n%s", names[i], tail(out, 30))
		}
		t.Logf("%s joined in %v", names[i], time.Since(start).Round(100*time.Millisecond))
		if i == 1 {
			// kubeadm join found every file k8scrypto wrote for this node and generated none.
			for _, line := range kubeadmJoinReuses {
				if !bytes.Contains(out, []byte(line+"\n")) {
					t.Errorf("kubeadm join on %s did not print %q", names[i], line)
				}
			}
			if g := kubeadmGenerates.FindAll(out, -1); len(g) > 0 {
				t.Errorf("kubeadm join on %s generated files k8scrypto had written: %q", names[i], g)
			}
			if !bytes.Contains(readNodeFile(ctx, t, n, nodeRendered), []byte("\nkind: JoinConfiguration\n")) {
				t.Errorf("the rendered config on %s is not a JoinConfiguration", names[i])
			}
		}
		for _, f := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt", "sa.pub", "encryption-config.yaml"} {
			if got := readNodeFile(ctx, t, n, nodePKI+"/"+f); !bytes.Equal(got, files[f]) {
				t.Errorf("%s on %s is not k8scrypto's from %s", f, names[i], names[0])
			}
		}
	}

	t.Run("etcd has three members, one per node", func(t *testing.T) {
		cli := etcdClient(t, files, ips[0])
		ml, err := cli.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ml.Members {
			got = append(got, m.Name+"="+strings.Join(m.PeerURLs, ","))
		}
		var want []string
		for i := range names {
			want = append(want, names[i]+"=https://"+ips[i]+":2380")
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("etcd members %v, want %v", got, want)
		}
	})

	caPool := pool(t, files["ca.crt"])
	t.Run("each apiserver serves its own node's name and address under k8scrypto's CA", func(t *testing.T) {
		for i := range names {
			var cert *x509.Certificate
			if err := poll(ctx, func(context.Context) error {
				var err error
				cert, err = servedCertErr("https://"+net.JoinHostPort(ips[i], "6443"), caPool)
				return err
			}); err != nil {
				t.Errorf("apiserver on %s: %v", names[i], err)
				continue
			}
			if err := cert.VerifyHostname(names[i]); err != nil {
				t.Errorf("apiserver on %s: %v", names[i], err)
			}
			if err := cert.VerifyHostname(ips[i]); err != nil {
				t.Errorf("apiserver on %s: %v", names[i], err)
			}
			if i == 0 && !cert.Equal(parseCert(t, files["apiserver.crt"])) {
				t.Errorf("apiserver on %s does not serve k8scrypto's apiserver.crt", names[0])
			}
		}
	})

	t.Run("admin.conf through the load balancer", func(t *testing.T) {
		// In the node: admin.conf names the controlPlaneEndpoint, the load balancer.
		out := run(ctx, t, first, nil, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes", "-o", "name")
		var got []string
		for _, l := range strings.Fields(string(out)) {
			got = append(got, strings.TrimPrefix(l, "node/"))
		}
		if !slices.Equal(got, names) {
			t.Errorf("kubectl get nodes through %s: %v, want %v", endpoint, got, names)
		}
		// From the host, through the port kind publishes for the load balancer: every apiserver answers
		// in turn (the stand-in round-robins), each with a certificate k8scrypto's CA verifies.
		server := hostServer(t, c.Provider, c.Name)
		serials := map[string]bool{}
		for range 9 {
			cert, err := servedCertErr(server, caPool)
			if err != nil {
				t.Fatalf("through the load balancer: %v", err)
			}
			serials[cert.SerialNumber.String()] = true
		}
		if len(serials) != 3 {
			t.Errorf("9 connections through the load balancer reached %d distinct apiservers, want 3", len(serials))
		}
		if u := whoami(ctx, t, hostAdmin(t, c)); u.Username != "kubernetes-admin" {
			t.Errorf("admin.conf through the load balancer authenticates as %+v", u)
		}
	})

	t.Run("encryption key rotation across the three apiservers", func(t *testing.T) {
		rotateAcrossNodes(ctx, t, c, ns, ips, files)
	})
}

// kubeadmJoinReuses are the lines `kubeadm join --control-plane` prints when it reuses a file of the
// joining node (cmd/kubeadm/app/phases/certs, kubeconfig): every leaf, the sa key and the three kubeconfigs
// it writes (the kubelet bootstraps kubelet.conf; there is no super-admin.conf). It prints nothing for the
// CAs, which it only checks.
var kubeadmJoinReuses = []string{
	`[certs] Using the existing "apiserver" certificate and key`,
	`[certs] Using the existing "apiserver-kubelet-client" certificate and key`,
	`[certs] Using the existing "front-proxy-client" certificate and key`,
	`[certs] Using the existing "etcd/server" certificate and key`,
	`[certs] Using the existing "etcd/peer" certificate and key`,
	`[certs] Using the existing "etcd/healthcheck-client" certificate and key`,
	`[certs] Using the existing "apiserver-etcd-client" certificate and key`,
	`[certs] Using the existing "sa" key`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/admin.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/controller-manager.conf"`,
	`[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/scheduler.conf"`,
}

// redactKey hides a certificate key in output that is about to be logged.
func redactKey(out []byte) []byte {
	return regexp.MustCompile(`[0-9a-f]{64}`).ReplaceAll(redact(out), []byte("<redacted>"))
}

// rotateAcrossNodes runs the staged encryption-key rotation on the first node (prepare, promote,
// reencrypt, prune --yes), copying encryption-config.yaml to the other two after every step that changes it
// and waiting until all three apiservers have loaded it (their automatic reload polls once a minute), while a
// client reads and writes Secrets through the load balancer the whole time. Not one read or write may fail,
// and at the end every Secret is stored under the new key.
func rotateAcrossNodes(ctx context.Context, t *testing.T, c *kindCluster, ns []nodes.Node, ips []string, files map[string][]byte) {
	first := ns[0]
	lb := hostAdmin(t, c)
	direct := make([]*kubernetes.Clientset, len(ips))
	for i, ip := range ips {
		direct[i] = adminAt(t, c, "https://"+net.JoinHostPort(ip, "6443"))
	}
	k0 := encryptionPrefixOf(t, files["encryption-config.yaml"])

	// The client: one Secret written and every written one read back, in turn, through the load balancer.
	stop := make(chan struct{})
	type result struct {
		reads, writes       int
		readErrs, writeErrs []string
		written             map[string]string
	}
	done := make(chan result)
	go func() {
		r := result{written: map[string]string{}}
		var names []string
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- r
				return
			default:
			}
			if i%2 == 0 {
				name, val := fmt.Sprintf("rot-%d", i), fmt.Sprintf("value-%d", i)
				r.writes++
				if _, err := lb.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": val}}, metav1.CreateOptions{}); err != nil {
					r.writeErrs = append(r.writeErrs, err.Error())
				} else {
					r.written[name] = val
					names = append(names, name)
				}
			} else if len(names) > 0 {
				name := names[i%len(names)]
				r.reads++
				s, err := lb.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					r.readErrs = append(r.readErrs, err.Error())
				} else if string(s.Data["v"]) != r.written[name] {
					r.readErrs = append(r.readErrs, fmt.Sprintf("%s reads %q, want %q", name, s.Data["v"], r.written[name]))
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	stopClient := func() result {
		select {
		case <-stop:
		default:
			close(stop)
		}
		return <-done
	}
	defer func() {
		select {
		case <-stop:
		default:
			stopClient()
		}
	}()

	// step runs a k8scrypto command on the first node, copies the file it leaves to the others, and waits
	// for every apiserver to load it; it returns the file.
	step := func(args ...string) []byte {
		t.Helper()
		start := time.Now()
		run(ctx, t, first, nil, "k8scrypto", args...)
		cfg := readNodeFile(ctx, t, first, nodePKI+"/encryption-config.yaml")
		for _, n := range ns[1:] {
			writeNodeFile(ctx, t, n, nodePKI+"/encryption-config.yaml", 0o600, cfg)
		}
		hash := fmt.Sprintf("sha256:%x", sha256.Sum256(cfg))
		for i, cs := range direct {
			if err := poll(ctx, func(ctx context.Context) error {
				raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
				if err != nil {
					return err
				}
				for _, line := range strings.Split(string(raw), "\n") {
					if strings.HasPrefix(line, "apiserver_encryption_config_controller_last_config_info{") && strings.Contains(line, `hash="`+hash+`"`) {
						return nil
					}
				}
				return fmt.Errorf("apiserver on %s has not loaded %s yet", ips[i], hash)
			}); err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
		}
		t.Logf("%s: the three apiservers run the new file after %v", strings.Join(args, " "), time.Since(start).Round(time.Second))
		return cfg
	}

	time.Sleep(2 * time.Second) // the client is running before the first step
	step("encryption", "rotate", "prepare", "--cert-dir", nodePKI)
	cfg := step("encryption", "rotate", "promote", "--cert-dir", nodePKI, "--kubeconfig", "/etc/kubernetes/admin.conf")
	k1 := encryptionPrefixOf(t, cfg)
	if k1 == k0 {
		t.Fatalf("after promote the first key is still the old one (%s)", k0)
	}
	start := time.Now()
	run(ctx, t, first, nil, "k8scrypto", "encryption", "reencrypt", "--kubeconfig", "/etc/kubernetes/admin.conf")
	t.Logf("encryption reencrypt: %v", time.Since(start).Round(100*time.Millisecond))
	// prune needs its proofs: every apiserver runs the promoted file, and etcd (the first node's member,
	// with the apiserver's etcd client pair from the certificate directory) holds nothing under the old key.
	step("encryption", "rotate", "prune", "--yes", "--cert-dir", nodePKI, "--kubeconfig", "/etc/kubernetes/admin.conf", "--etcd-endpoints", "https://127.0.0.1:2379")
	time.Sleep(2 * time.Second) // and still running after the last
	r := stopClient()

	t.Logf("client through the load balancer: %d reads, %d writes", r.reads, r.writes)
	if len(r.readErrs) > 0 || len(r.writeErrs) > 0 {
		t.Errorf("during the rotation %d of %d reads and %d of %d writes failed; first: %v %v", len(r.readErrs), r.reads, len(r.writeErrs), r.writes, first1(r.readErrs), first1(r.writeErrs))
	}
	if r.reads < 100 || len(r.written) < 100 {
		t.Errorf("the client made %d reads and %d writes; too few to have run through the rotation", r.reads, len(r.written))
	}
	// Every Secret reads back, and etcd holds every Secret under the new key.
	for name, val := range r.written {
		s, err := lb.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(s.Data["v"]) != val {
			t.Errorf("Secret %s after the rotation: %v", name, err)
		}
	}
	cli := etcdClient(t, files, ips[0])
	resp, err := cli.Get(ctx, "/registry/secrets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	byPrefix := map[string]int{}
	for _, kv := range resp.Kvs {
		p := "other"
		if bytes.HasPrefix(kv.Value, []byte(k1)) {
			p = k1
		} else if bytes.HasPrefix(kv.Value, []byte(k0)) {
			p = k0
		}
		byPrefix[p]++
	}
	if byPrefix[k1] != len(resp.Kvs) || len(resp.Kvs) < len(r.written) {
		t.Errorf("etcd holds %d Secrets by prefix %v; want all under %s", len(resp.Kvs), byPrefix, k1)
	}
}

func first1(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// adminAt is the node's admin.conf credentials pointed at one apiserver.
func adminAt(t *testing.T, c *kindCluster, server string) *kubernetes.Clientset {
	t.Helper()
	kc, err := c.Provider.KubeConfig(c.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kc))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = server
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// etcdClient reaches the etcd member at ip with the apiserver's etcd client pair from files; it is closed
// when the test ends.
func etcdClient(t *testing.T, files map[string][]byte, ip string) *clientv3.Client {
	t.Helper()
	pair, err := tls.X509KeyPair(files["apiserver-etcd-client.crt"], files["apiserver-etcd-client.key"])
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + ip + ":2379"},
		DialTimeout: 10 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool(t, files["etcd/ca.crt"]), MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
