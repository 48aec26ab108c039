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
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	kindexec "sigs.k8s.io/kind/pkg/exec"
	"sigs.k8s.io/kind/pkg/log"
	"sigs.k8s.io/yaml"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
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
// kubeadm config carries the rendered InitConfiguration and ClusterConfiguration, lets kind run kubeadm init
// as it always does, and checks points 1-3 of the e2e suite there: /readyz over TLS verified against
// k8scrypto's ca.crt and a healthy etcd member on the node's address; super-admin.conf, and admin.conf
// forbidden without the kubeadm:cluster-admins binding and cluster-admin with it; a Secret stored in etcd
// under k8s:enc:<provider>:v1:<first key>: and not in plaintext.
//
// The certificates must name the node's IP, which docker assigns when kind creates the node. So the node
// goes on a fresh /29 network of the test's own (NodeNetwork), where docker gives it the first address after
// the gateway: k8scrypto renders the PKI and the kubeadm config for that address once, before kind runs,
// and that one render is both what the node mounts and what kind's kubeadm config is patched with.
func TestKindFlow(t *testing.T) {
	image := nodeImage(t)
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

	// The node's network, so its address is known before it exists. A subnet another network holds makes
	// docker refuse; try a few.
	var network NodeNetwork
	var netErr error
	for range 5 {
		n, err := NewNodeNetwork(name, int(suffix[0])<<5|int(suffix[1]&31))
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, "docker", "network", "create", "--driver", "bridge",
			"--subnet", n.Subnet, "--gateway", n.Gateway, n.Name).CombinedOutput()
		if err == nil {
			network, netErr = n, nil
			break
		}
		netErr = fmt.Errorf("docker network create %s --subnet %s: %v: %s", n.Name, n.Subnet, err, out)
		_, _ = rand.Read(suffix[:2])
	}
	if netErr != nil {
		t.Fatal(netErr)
	}
	removeNetwork := sync.OnceFunc(func() {
		if out, err := exec.Command("docker", "network", "rm", network.Name).CombinedOutput(); err != nil {
			t.Logf("docker network rm %s: %v: %s", network.Name, err, out)
		}
	})
	t.Cleanup(removeNetwork)
	suite.OnExit(removeNetwork)
	t.Setenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", network.Name)

	// The one render: PKI, kubeconfigs and kubeadm-config.yaml for the node at network.NodeIP.
	k8sConfig := filepath.Join(dir, "k8scrypto-kubeadm.yaml")
	if err := os.WriteFile(k8sConfig, []byte(K8scryptoConfig(name, network.NodeIP)), 0o600); err != nil {
		t.Fatal(err)
	}
	rendered := renderKubeadmConfig(t, certDir, kubeconfigDir, k8sConfig)
	apiserverCrt, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Cluster(Options{Name: name, CertDir: certDir, RenderedKubeadmConfig: rendered, NodeImage: image})
	if err != nil {
		t.Fatal(err)
	}
	// The offline node image has no CNI or kube-proxy image, and this host is cgroup v1, which kubelet
	// v1.37 refuses unless told (../../../shared/reference/kind-offline.md).
	c.Networking.DisableDefaultCNI = true
	c.Networking.KubeProxyMode = "none"
	c.KubeadmConfigPatches = append(c.KubeadmConfigPatches, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\n")
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
	deleteCluster := sync.OnceFunc(func() {
		if err := provider.Delete(name, kindKubeconfig); err != nil {
			t.Errorf("deleting kind cluster %s: %v", name, err)
		}
	})
	t.Cleanup(deleteCluster) // registered after the network's, so it runs first
	suite.OnExit(deleteCluster)
	err = provider.Create(name,
		cluster.CreateWithConfigFile(kindConfig),
		cluster.CreateWithKubeconfigPath(kindKubeconfig),
		cluster.CreateWithRetain(true), // keep the node to report its address; deleteCluster removes it
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		if nodes, _ := provider.ListNodes(name); len(nodes) == 1 {
			if ip, _, _ := nodes[0].IP(); ip != network.NodeIP {
				t.Fatalf("kind create cluster: %v\ndocker gave the node %s, not %s, so the PKI names the wrong address", err, ip, network.NodeIP)
			}
		}
		t.Fatalf("kind create cluster (kind's kubeadm init on k8scrypto's PKI): %v", err)
	}
	node := controlPlaneNode(t, provider, name)
	if ip, _, err := node.IP(); err != nil || ip != network.NodeIP {
		t.Fatalf("node address %q (%v), want %s, which the PKI was written for", ip, err, network.NodeIP)
	}
	if after, _ := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); !bytes.Equal(after, apiserverCrt) {
		t.Errorf("kubeadm replaced apiserver.crt instead of reusing k8scrypto's")
	}
	// kind's kubeadm config carries both patches from the render: the node name and the encryption config.
	conf, err := kindexec.Output(node.Command("cat", "/kind/kubeadm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: " + ControlPlaneNode(name), "/etc/kubernetes/pki/encryption-config.yaml"} {
		if !bytes.Contains(conf, []byte(want)) {
			t.Errorf("/kind/kubeadm.conf lacks %q from the rendered config:\n%s", want, conf)
		}
	}

	server := hostServer(t, provider, name)
	caFile := filepath.Join(certDir, "ca.crt")

	// 1. /readyz over TLS verified against k8scrypto's ca.crt; etcd healthy, one member on the node's
	// address, peer and client URLs over TLS, as the certificates were written for.
	if err := waitReadyz(ctx, server, caFile); err != nil {
		t.Fatalf("kind control plane /readyz: %v", err)
	}
	etcd := hostEtcd(t, certDir, network.NodeIP)
	if _, err := etcd.Status(ctx, "https://"+network.NodeIP+":2379"); err != nil {
		t.Errorf("etcd status: %v", err)
	}
	ml, err := etcd.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPeer, wantClient := "https://"+network.NodeIP+":2380", "https://"+network.NodeIP+":2379"
	if len(ml.Members) != 1 || !slices.Equal(ml.Members[0].PeerURLs, []string{wantPeer}) || !slices.Contains(ml.Members[0].ClientURLs, wantClient) {
		t.Errorf("etcd members %+v, want one with peer URL %s and client URL %s", ml.Members, wantPeer, wantClient)
	}

	// 2. super-admin.conf; admin.conf forbidden without the kubeadm:cluster-admins binding (kind's kubeadm
	// init made it, so super-admin.conf removes it first), cluster-admin once it exists again.
	super := clientFor(t, filepath.Join(kubeconfigDir, "super-admin.conf"), server)
	if u := whoami(ctx, t, super); u.Username != "kubernetes-super-admin" || !slices.Contains(u.Groups, "system:masters") {
		t.Errorf("super-admin.conf authenticates as %+v", u)
	}
	admin := clientFor(t, filepath.Join(kubeconfigDir, "admin.conf"), server)
	if u := whoami(ctx, t, admin); u.Username != "kubernetes-admin" || !slices.Contains(u.Groups, "kubeadm:cluster-admins") || slices.Contains(u.Groups, "system:masters") {
		t.Errorf("admin.conf authenticates as %+v, want kubernetes-admin in kubeadm:cluster-admins only", u)
	}
	binding, err := super.RbacV1().ClusterRoleBindings().Get(ctx, "kubeadm:cluster-admins", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubeadm init made no kubeadm:cluster-admins binding: %v", err)
	}
	if err := super.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	listSecrets := func(ctx context.Context) error {
		_, err := admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{Limit: 1})
		return err
	}
	if err := poll(ctx, func(ctx context.Context) error {
		if err := listSecrets(ctx); !apierrors.IsForbidden(err) {
			return fmt.Errorf("admin.conf listing secrets without the binding: %v, want Forbidden", err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	binding.ObjectMeta = metav1.ObjectMeta{Name: binding.Name}
	if _, err := super.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, listSecrets); err != nil {
		t.Errorf("admin.conf with the kubeadm:cluster-admins binding: %v", err)
	}

	// 3. A Secret is stored under k8s:enc:<provider>:v1:<first key>: (read raw from the host as the
	// healthcheck client), without its plaintext.
	prefix := encryptionPrefix(t, filepath.Join(certDir, "encryption-config.yaml"))
	plaintext := "kind-plaintext-" + name
	if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e"}, StringData: map[string]string{"v": plaintext},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := etcd.Get(ctx, "/registry/secrets/default/e2e")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get /registry/secrets/default/e2e: %v (%d keys)", err, len(resp.Kvs))
	}
	value := resp.Kvs[0].Value
	if !bytes.HasPrefix(value, []byte(prefix)) || bytes.Contains(value, []byte(plaintext)) {
		t.Errorf("the Secret is stored as %q...; want the prefix %q and no plaintext", value[:min(len(value), 60)], prefix)
	}
}

// encryptionPrefix is what kube-apiserver writes before a value it encrypted with the file's first
// provider and key: k8s:enc:<provider>:v1:<key name>:. The file is decoded strictly with the apiserver's
// own v1 types.
func encryptionPrefix(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ec apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &ec); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(ec.Resources) == 0 || len(ec.Resources[0].Providers) == 0 {
		t.Fatalf("%s: no resources or providers", path)
	}
	p := ec.Resources[0].Providers[0]
	var provider string
	var keys []apiserverv1.Key
	switch {
	case p.Secretbox != nil:
		provider, keys = "secretbox", p.Secretbox.Keys
	case p.AESGCM != nil:
		provider, keys = "aesgcm", p.AESGCM.Keys
	case p.AESCBC != nil:
		provider, keys = "aescbc", p.AESCBC.Keys
	default:
		t.Fatalf("%s: the first provider is not secretbox, aesgcm or aescbc", path)
	}
	if len(keys) == 0 {
		t.Fatalf("%s: %s has no key", path, provider)
	}
	return "k8s:enc:" + provider + ":v1:" + keys[0].Name + ":"
}

// poll retries check every second until it passes or ctx ends (RBAC changes reach the authorizer through
// an informer).
func poll(ctx context.Context, check func(context.Context) error) error {
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
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
	return poll(ctx, func(context.Context) error {
		resp, err := c.Get(server + "/readyz")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == "ok" {
			return nil
		}
		return fmt.Errorf("%s: %s", resp.Status, b)
	})
}

// hostEtcd is an etcd client from the host to the node's member, as the healthcheck client, verifying the
// member against k8scrypto's etcd CA (the offline node's etcd image holds only etcd, no etcdctl).
func hostEtcd(t *testing.T, certDir, nodeIP string) *clientv3.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "etcd", "healthcheck-client.crt"), filepath.Join(certDir, "etcd", "healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "etcd", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + nodeIP + ":2379"},
		DialTimeout: 10 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool(t, ca), MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
