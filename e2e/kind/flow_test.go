package kind

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	"sigs.k8s.io/kind/pkg/log"
)

// dockerUnavailable says why kind cannot run here ("" when it can): kind needs a working Docker engine,
// not only the CLI.
func dockerUnavailable() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "docker is not on PATH"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Sprintf("docker info: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return ""
}

// TestKindFlow creates a kind cluster whose node mounts k8scrypto's PKI at /etc/kubernetes/pki and whose
// kubeadm config carries the rendered ClusterConfiguration, runs kubeadm init in it as kind does, and checks
// points 1-3 of the e2e suite there: /readyz over TLS verified against k8scrypto's ca.crt; super-admin.conf
// and (after kubeadm's own kubeadm:cluster-admins binding) admin.conf; a Secret stored encrypted in etcd.
//
// kind runs kubeadm only after it created the node, and the node's IP (which kubeadm requires in the
// apiserver and etcd certificates) is known only then; so kind is stopped before it sets up Kubernetes,
// k8scrypto writes the PKI into the mounted directory for that IP, and kubeadm init is run the way kind's
// kubeadminit action runs it.
func TestKindFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: creates a kind cluster")
	}
	if reason := dockerUnavailable(); reason != "" {
		t.Skip("no Docker engine, so no kind cluster: " + reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := "k8scrypto-e2e-" + hex.EncodeToString(suffix)
	dir := t.TempDir()
	certDir, kubeconfigDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kubernetes")
	if err := os.MkdirAll(certDir, 0o700); err != nil { // ours, not a root-owned one docker would create
		t.Fatal(err)
	}

	// The ClusterConfiguration patch does not depend on the node's IP: take it from a render in a scratch
	// directory.
	scratch := t.TempDir()
	rendered := renderKubeadmConfig(t, filepath.Join(scratch, "pki"), filepath.Join(scratch, "kubernetes"), "")
	c, err := Cluster(Options{Name: name, CertDir: certDir, RenderedKubeadmConfig: rendered, NodeImage: os.Getenv("K8SCRYPTO_E2E_KIND_IMAGE")})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	kindConfig := filepath.Join(dir, "kind.yaml")
	if err := os.WriteFile(kindConfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	provider := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(log.NoopLogger{}))
	kindKubeconfig := filepath.Join(dir, "kind.kubeconfig")
	t.Cleanup(func() {
		if err := provider.Delete(name, kindKubeconfig); err != nil {
			t.Errorf("deleting kind cluster %s: %v", name, err)
		}
	})
	err = provider.Create(name,
		cluster.CreateWithConfigFile(kindConfig),
		cluster.CreateWithStopBeforeSettingUpKubernetes(true),
		cluster.CreateWithKubeconfigPath(kindKubeconfig),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		t.Fatalf("kind create cluster: %v", err)
	}
	node := controlPlaneNode(t, provider, name)
	nodeIP, _, err := node.IP()
	if err != nil {
		t.Fatal(err)
	}

	// The PKI for this node, written into the mounted directory.
	k8sConfig := filepath.Join(dir, "k8scrypto-kubeadm.yaml")
	if err := os.WriteFile(k8sConfig, []byte(K8scryptoConfig(name, nodeIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	renderKubeadmConfig(t, certDir, kubeconfigDir, k8sConfig)
	apiserverCrt, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}

	lines, err := kindexec.CombinedOutputLines(node.Command("kubeadm", "init", "--config=/kind/kubeadm.conf", "--skip-token-print", "--v=5"))
	if err != nil {
		t.Fatalf("kubeadm init in the kind node on k8scrypto's PKI: %v\n%s", err, tail(lines, 60))
	}
	if after, _ := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); !bytes.Equal(after, apiserverCrt) {
		t.Errorf("kubeadm replaced apiserver.crt instead of reusing k8scrypto's")
	}

	server := hostServer(t, provider, name)
	caFile := filepath.Join(certDir, "ca.crt")

	// 1. /readyz over TLS verified against k8scrypto's ca.crt.
	if err := waitReadyz(ctx, server, caFile); err != nil {
		t.Fatalf("kind control plane /readyz: %v", err)
	}

	// 2. super-admin.conf, and admin.conf (kubeadm init created the kubeadm:cluster-admins binding).
	super := clientFor(t, filepath.Join(kubeconfigDir, "super-admin.conf"), server)
	if u := whoami(ctx, t, super); u.Username != "kubernetes-super-admin" || !slices.Contains(u.Groups, "system:masters") {
		t.Errorf("super-admin.conf authenticates as %+v", u)
	}
	admin := clientFor(t, filepath.Join(kubeconfigDir, "admin.conf"), server)
	if _, err := admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("admin.conf after kubeadm's kubeadm:cluster-admins binding: %v", err)
	}

	// 3. A Secret is stored encrypted with the first key (read raw with etcdctl in the etcd container).
	plaintext := "kind-plaintext-" + name
	if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, StringData: map[string]string{"v": plaintext},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	value := etcdGet(t, node, "/registry/secrets/default/e2e")
	if !bytes.HasPrefix(value, []byte("k8s:enc:")) || bytes.Contains(value, []byte(plaintext)) {
		t.Errorf("the Secret is stored as %q...; want a k8s:enc: prefix and no plaintext", value[:min(len(value), 60)])
	}
}

func controlPlaneNode(t *testing.T, p *cluster.Provider, name string) nodes.Node {
	t.Helper()
	all, err := p.ListNodes(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if role, _ := n.Role(); role == "control-plane" {
			return n
		}
	}
	t.Fatalf("kind cluster %s has no control-plane node", name)
	return nil
}

// hostServer is the apiserver's address as published on the host (kind maps 6443 to a loopback port).
func hostServer(t *testing.T, p *cluster.Provider, name string) string {
	t.Helper()
	kc, err := p.KubeConfig(name, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load([]byte(kc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		return c.Server
	}
	t.Fatal("kind's kubeconfig names no cluster")
	return ""
}

// clientFor loads a k8scrypto kubeconfig and points it at the host-published address (it names the
// node's endpoint, which the host cannot resolve).
func clientFor(t *testing.T, path, server string) *kubernetes.Clientset {
	t.Helper()
	c, err := clientcmd.BuildConfigFromFlags(server, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func whoami(ctx context.Context, t *testing.T, cs kubernetes.Interface) authenticationv1.UserInfo {
	t.Helper()
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	return r.Status.UserInfo
}

func waitReadyz(ctx context.Context, server, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 5 * time.Second}
	var last error
	for {
		resp, err := c.Get(server + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "ok" {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// etcdGet reads a raw value with etcdctl inside the node's etcd container, as the healthcheck client.
func etcdGet(t *testing.T, node nodes.Node, key string) []byte {
	t.Helper()
	id, err := kindexec.Output(node.Command("crictl", "ps", "--name", "^etcd$", "-q"))
	if err != nil || len(bytes.TrimSpace(id)) == 0 {
		t.Fatalf("finding the etcd container: %v", err)
	}
	out, err := kindexec.Output(node.Command("crictl", "exec", strings.TrimSpace(string(id)), "etcdctl",
		"--endpoints=https://127.0.0.1:2379",
		"--cacert=/etc/kubernetes/pki/etcd/ca.crt",
		"--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
		"--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
		"get", key, "--print-value-only"))
	if err != nil {
		t.Fatalf("etcdctl get %s: %v", key, err)
	}
	return out
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
