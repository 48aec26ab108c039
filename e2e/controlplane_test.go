package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// Addresses of the fake node. kube-apiserver refuses a loopback --advertise-address; 10.0.0.5 is only
// advertised (written into the kubernetes Endpoints), never dialled: every byte the suite sends goes to
// 127.0.0.0/8.
const (
	advertiseAddress = "10.0.0.5"
	nodeName         = "e2e-node"
	serviceCIDR      = "10.96.0.0/12"
	dnsDomain        = "cluster.local"
)

// etcdIPs are the loopback addresses of the three etcd members; Linux routes all of 127.0.0.0/8 to lo.
var etcdIPs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

// controlPlane is a PKI written by `k8scrypto init`, a 3-member etcd cluster and a kube-apiserver, all
// configured as kubeadm's static pod manifests configure them, on loopback.
type controlPlane struct {
	Dir           string // everything lives under it
	CertDir       string
	KubeconfigDir string
	StateDir      string // k8scrypto's audit log and backups
	ConfigPath    string // the kubeadm v1beta4 config given to k8scrypto
	Port          int    // kube-apiserver's secure port on 127.0.0.1
	URL           string // https://127.0.0.1:Port

	Etcd []*etcdMember
	// EtcdMembers is the size of the etcd cluster; 0 means 3 (every test but one benchmark topology).
	EtcdMembers int

	bins          bins
	apiserver     *process
	apiserverArgs []string
	apiserverName string // in logs; "" is kube-apiserver
}

type etcdMember struct {
	Name      string
	IP        string
	ClientURL string
	PeerURL   string
	proc      *process
	args      []string // the flags it was started with, for a restart
}

type bins struct{ k8scrypto, etcd, apiserver string }

// requireBins resolves every binary a control plane needs (skipping or failing as binary() does).
func requireBins(t testing.TB) bins {
	t.Helper()
	return bins{
		etcd:      binary(t, "etcd"),
		apiserver: binary(t, "kube-apiserver"),
		k8scrypto: k8scrypto(t),
	}
}

// sharedControlPlane returns the control plane shared by the tests that only read from it or write
// objects no other test looks at. It is started on first use and stopped by TestMain.
func sharedControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	b := requireBins(t)
	sharedOnce.Do(func() {
		cp := &controlPlane{Dir: filepath.Join(suite.Dir(), "shared"), bins: b}
		suite.OnExit(cp.Stop)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		sharedCPErr = cp.start(ctx, t.Logf)
		sharedCP = cp
	})
	sharedCP.dumpLogsOnFailure(t) // also when starting it failed
	if sharedCPErr != nil {
		t.Fatalf("shared control plane: %v", sharedCPErr)
	}
	return sharedCP
}

// startControlPlane starts a control plane of the test's own, for tests that rotate, renew or restart.
func startControlPlane(t testing.TB) *controlPlane {
	t.Helper()
	return startControlPlaneIn(t, t.TempDir(), 0)
}

// startControlPlaneIn starts a control plane of the test's own in dir (which the caller removes) with the
// given number of etcd members (0: three).
func startControlPlaneIn(t testing.TB, dir string, etcdMembers int) *controlPlane {
	t.Helper()
	cp := &controlPlane{Dir: dir, EtcdMembers: etcdMembers, bins: requireBins(t)}
	t.Cleanup(cp.Stop)
	cp.dumpLogsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := cp.start(ctx, t.Logf); err != nil {
		t.Fatal(err)
	}
	return cp
}

// dumpLogsOnFailure prints the tail of every component's log when t fails.
func (cp *controlPlane) dumpLogsOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, m := range cp.Etcd {
			if m.proc != nil {
				t.Logf("--- %s log (%s), last 30 lines:\n%s", m.Name, m.proc.logPath, m.proc.tail(30))
			}
		}
		if cp.apiserver != nil {
			t.Logf("--- kube-apiserver log (%s), last 60 lines:\n%s", cp.apiserver.logPath, cp.apiserver.tail(60))
		}
	})
}

// Stop stops kube-apiserver, then etcd. Safe to call more than once.
func (cp *controlPlane) Stop() {
	cp.apiserver.Stop()
	for _, m := range cp.Etcd {
		m.proc.Stop()
	}
}

// k8scryptoEnv keeps k8scrypto's state under the control plane's directory.
func (cp *controlPlane) k8scryptoEnv() []string {
	return []string{
		"XDG_STATE_HOME=" + cp.StateDir,
		"K8SCRYPTO_AUDIT_LOG=" + filepath.Join(cp.StateDir, "audit.log"),
		"K8SCRYPTO_BACKUP_DIR=" + filepath.Join(cp.StateDir, "backups"),
		"K8SCRYPTO_CHECKPOINT=" + filepath.Join(cp.StateDir, "reencrypt-checkpoint.json"),
	}
}

// run runs k8scrypto against this control plane's files (the caller passes --cert-dir etc. explicitly, as
// an operator would).
func (cp *controlPlane) run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runK8scryptoEnv(t, cp.k8scryptoEnv(), args...)
}

// clusterFlags are the flags every k8scrypto command that reads the cluster's configuration takes.
func (cp *controlPlane) clusterFlags() []string {
	return append(cp.sourceFlags(), "--kubeconfig-dir", cp.KubeconfigDir)
}

// sourceFlags are the flags of a command that only reads the shared files (upload-certs, certs export): it
// takes no lock, so it has no --kubeconfig-dir.
func (cp *controlPlane) sourceFlags() []string {
	return []string{"--config", cp.ConfigPath, "--cert-dir", cp.CertDir}
}

func (cp *controlPlane) cert(name string) string { return filepath.Join(cp.CertDir, name) }

// EncryptionConfig is where the encryption-config phase writes (issue 3).
func (cp *controlPlane) EncryptionConfig() string { return cp.cert("encryption-config.yaml") }

// kubeadmConfig is the kubeadm v1beta4 input: the node's identity, then the cluster's
// ClusterConfiguration (clusterConfiguration).
func (cp *controlPlane) kubeadmConfig() string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %[1]s
  bindPort: %[2]d
nodeRegistration:
  name: %[3]s
---
`, advertiseAddress, cp.Port, nodeName) + clusterConfiguration(cp.CertDir, cp.Port)
}

// clusterConfiguration is the cluster's ClusterConfiguration, which every control-plane node's kubeadm
// config carries (the first node's beside its InitConfiguration, a joining node's beside its
// JoinConfiguration), with the node's own certificatesDir: the SANs etcd needs to be reached on 127.0.0.2
// and 127.0.0.3 (kubeadm's defaults cover only 127.0.0.1 for the server and nothing loopback for the peer
// certificate), and a controlPlaneEndpoint at the first apiserver's loopback port, so that every
// kubeconfig works as written.
func clusterConfiguration(certDir string, port int) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
certificatesDir: %[1]s
controlPlaneEndpoint: 127.0.0.1:%[2]d
networking:
  serviceSubnet: %[3]s
  dnsDomain: %[4]s
apiServer:
  certSANs: ["127.0.0.1"]
etcd:
  local:
    serverCertSANs: ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    peerCertSANs: ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
`, certDir, port, serviceCIDR, dnsDomain)
}

// start writes the PKI with `k8scrypto init`, then starts etcd and kube-apiserver and waits until /readyz.
func (cp *controlPlane) start(ctx context.Context, logf func(string, ...any)) error {
	if err := cp.prepare(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := cp.init(ctx); err != nil {
		return err
	}
	logf("k8scrypto init wrote the PKI in %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := cp.startEtcd(ctx); err != nil {
		return err
	}
	logf("etcd: %d members healthy in %v", len(cp.Etcd), time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := cp.StartAPIServer(ctx); err != nil {
		return err
	}
	logf("kube-apiserver ready at %s in %v", cp.URL, time.Since(t0).Round(time.Millisecond))
	return nil
}

// prepare lays out the directories, picks the apiserver's port and writes k8scrypto's kubeadm config.
func (cp *controlPlane) prepare() error {
	cp.CertDir = filepath.Join(cp.Dir, "pki")
	cp.KubeconfigDir = filepath.Join(cp.Dir, "kubernetes")
	cp.StateDir = filepath.Join(cp.Dir, "state")
	cp.ConfigPath = filepath.Join(cp.Dir, "kubeadm.yaml")
	for _, d := range []string{cp.Dir, cp.KubeconfigDir, cp.StateDir, filepath.Join(cp.Dir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	cp.Port = port
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	return os.WriteFile(cp.ConfigPath, []byte(cp.kubeadmConfig()), 0o600)
}

// RenderedConfig is the kubeadm config `k8scrypto init` rendered for this node (what `kubeadm init --config`
// would be given).
func (cp *controlPlane) RenderedConfig() string {
	return filepath.Join(cp.KubeconfigDir, "kubeadm-config.yaml")
}

func (cp *controlPlane) init(ctx context.Context) error {
	args := append([]string{"init"}, cp.clusterFlags()...)
	args = append(args,
		"--advertise-address", advertiseAddress,
		"--node-name", nodeName,
		"--apiserver-cert-extra-sans", "127.0.0.1",
	)
	cmd := suite.Command(ctx, cp.bins.k8scrypto, args...)
	cmd.Env = append(os.Environ(), cp.k8scryptoEnv()...)
	out, err := suite.CombinedOutput(cmd)
	if err != nil {
		return fmt.Errorf("k8scrypto %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return os.WriteFile(filepath.Join(cp.Dir, "logs", "k8scrypto-init.log"), out, 0o600)
}

// startEtcd starts the members (three unless EtcdMembers says otherwise) with exactly the TLS flags of kubeadm's etcd static pod
// (cmd/kubeadm/app/phases/etcd/local.go getEtcdCommand), then waits until each reports healthy.
func (cp *controlPlane) startEtcd(ctx context.Context) error {
	var initial []string
	ips := etcdIPs
	if cp.EtcdMembers > 0 {
		ips = etcdIPs[:cp.EtcdMembers]
	}
	for i, ip := range ips {
		cport, err := freePort(ip)
		if err != nil {
			return err
		}
		pport, err := freePort(ip)
		if err != nil {
			return err
		}
		m := &etcdMember{
			Name:      fmt.Sprintf("etcd-%d", i),
			IP:        ip,
			ClientURL: fmt.Sprintf("https://%s:%d", ip, cport),
			PeerURL:   fmt.Sprintf("https://%s:%d", ip, pport),
		}
		cp.Etcd = append(cp.Etcd, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range cp.Etcd {
		mport, err := freePort(m.IP)
		if err != nil {
			return err
		}
		args := []string{
			"--name=" + m.Name,
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=" + filepath.Base(cp.Dir),
			"--data-dir=" + filepath.Join(cp.Dir, m.Name),
			"--cert-file=" + cp.cert("etcd/server.crt"),
			"--key-file=" + cp.cert("etcd/server.key"),
			"--trusted-ca-file=" + cp.cert("etcd/ca.crt"),
			"--client-cert-auth=true",
			"--peer-cert-file=" + cp.cert("etcd/peer.crt"),
			"--peer-key-file=" + cp.cert("etcd/peer.key"),
			"--peer-trusted-ca-file=" + cp.cert("etcd/ca.crt"),
			"--peer-client-cert-auth=true",
			"--snapshot-count=10000",
			fmt.Sprintf("--listen-metrics-urls=http://%s:%d", m.IP, mport),
			"--feature-gates=InitialCorruptCheck=true",
			"--watch-progress-notify-interval=5s",
		}
		p, err := startProcess(m.Name, filepath.Join(cp.Dir, "logs", m.Name+".log"), cp.bins.etcd, args...)
		if err != nil {
			return err
		}
		m.proc, m.args = p, args
	}
	return cp.waitEtcdHealthy(ctx)
}

// waitEtcdHealthy waits until every member's /health says true, with the healthcheck client read from
// the files as they are now; a member that exits ends the wait.
func (cp *controlPlane) waitEtcdHealthy(ctx context.Context) error {
	anyExited := func() error {
		for _, m := range cp.Etcd {
			if err := errExited(m.proc); err != nil {
				return err
			}
		}
		return nil
	}
	for _, m := range cp.Etcd {
		err := waitFor(ctx, m.Name+" /health", 200*time.Millisecond, anyExited, func(ctx context.Context) error {
			client, err := cp.etcdHTTPClient()
			if err != nil {
				return err
			}
			defer client.CloseIdleConnections()
			body, err := httpGet(ctx, client, m.ClientURL+"/health")
			if err != nil {
				return err
			}
			if !strings.Contains(body, `"health":"true"`) {
				return fmt.Errorf("unhealthy: %s", body)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// etcdHTTPClient authenticates to etcd with the healthcheck client certificate, as kubeadm's etcd probe.
func (cp *controlPlane) etcdHTTPClient() (*http.Client, error) {
	tc, err := tlsConfig(cp.cert("etcd/ca.crt"), cp.cert("etcd/healthcheck-client.crt"), cp.cert("etcd/healthcheck-client.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}, nil
}

// etcdEndpoints are the members' client URLs.
func (cp *controlPlane) etcdEndpoints() []string {
	var out []string
	for _, m := range cp.Etcd {
		out = append(out, m.ClientURL)
	}
	return out
}

// apiserverFlags are the flags of kubeadm's kube-apiserver static pod (cmd/kubeadm/app/phases/controlplane/
// manifests.go getAPIServerCommand) for this node's rendered kubeadm config: kubeadm's defaults with our
// paths, then the rendered apiServer.extraArgs (the encryption config and its automatic reload among them)
// replacing or following them as kubeadm's ArgumentsToCommand does, plus what running outside a pod needs:
// a loopback bind address and a private --cert-dir. TestAPIServerFlagsMatchKubeadm checks the result
// against kubeadm's own code, so this copy cannot drift.
func (cp *controlPlane) apiserverFlags() ([]string, error) {
	defaults := [][2]string{
		{"advertise-address", advertiseAddress},
		{"allow-privileged", "true"},
		{"authorization-mode", "Node,RBAC"},
		{"client-ca-file", cp.cert("ca.crt")},
		{"enable-admission-plugins", "NodeRestriction"},
		{"enable-bootstrap-token-auth", "true"},
		{"etcd-cafile", cp.cert("etcd/ca.crt")},
		{"etcd-certfile", cp.cert("apiserver-etcd-client.crt")},
		{"etcd-keyfile", cp.cert("apiserver-etcd-client.key")},
		// kubeadm names its local member, https://127.0.0.1:2379; the suite runs three on free ports.
		{"etcd-servers", strings.Join(cp.etcdEndpoints(), ",")},
		{"kubelet-client-certificate", cp.cert("apiserver-kubelet-client.crt")},
		{"kubelet-client-key", cp.cert("apiserver-kubelet-client.key")},
		{"kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"},
		{"proxy-client-cert-file", cp.cert("front-proxy-client.crt")},
		{"proxy-client-key-file", cp.cert("front-proxy-client.key")},
		{"requestheader-allowed-names", "front-proxy-client"},
		{"requestheader-client-ca-file", cp.cert("front-proxy-ca.crt")},
		{"requestheader-extra-headers-prefix", "X-Remote-Extra-"},
		{"requestheader-group-headers", "X-Remote-Group"},
		{"requestheader-username-headers", "X-Remote-User"},
		{"secure-port", strconv.Itoa(cp.Port)},
		{"service-account-issuer", "https://kubernetes.default.svc." + dnsDomain},
		{"service-account-key-file", cp.cert("sa.pub")},
		{"service-account-signing-key-file", cp.cert("sa.key")},
		{"service-cluster-ip-range", serviceCIDR},
		{"tls-cert-file", cp.cert("apiserver.crt")},
		{"tls-private-key-file", cp.cert("apiserver.key")},
	}
	extra, err := renderedAPIServerExtraArgs(cp.RenderedConfig())
	if err != nil {
		return nil, err
	}
	replaced := map[string]bool{}
	for _, a := range extra {
		replaced[a.Name] = true
	}
	var args []string
	for _, d := range defaults {
		if !replaced[d[0]] {
			args = append(args, "--"+d[0]+"="+d[1])
		}
	}
	for _, a := range extra {
		args = append(args, "--"+a.Name+"="+a.Value)
	}
	return append(args,
		"--bind-address=127.0.0.1",
		"--cert-dir="+filepath.Join(cp.Dir, "apiserver-certs"),
	), nil
}

// renderedAPIServerExtraArgs reads apiServer.extraArgs from the ClusterConfiguration of a rendered kubeadm
// config, strictly, with kubeadm's v1beta4 types (which have no merge method: every entry replaces a
// default of the same name or is appended).
func renderedAPIServerExtraArgs(path string) ([]kubeadmv1beta4.Arg, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the rendered kubeadm config (written by k8scrypto init): %w", err)
	}
	for doc := range strings.SplitSeq(string(data), "\n---\n") {
		if !strings.Contains(doc, "\nkind: ClusterConfiguration\n") {
			continue
		}
		var cc kubeadmv1beta4.ClusterConfiguration
		if err := yaml.UnmarshalStrict([]byte(doc), &cc); err != nil {
			return nil, fmt.Errorf("%s: ClusterConfiguration: %w", path, err)
		}
		return cc.APIServer.ExtraArgs, nil
	}
	return nil, fmt.Errorf("%s: no ClusterConfiguration document", path)
}

// StartAPIServer starts kube-apiserver and waits until /readyz says ok over TLS verified against ca.crt.
func (cp *controlPlane) StartAPIServer(ctx context.Context) error {
	args, err := cp.apiserverFlags()
	if err != nil {
		return err
	}
	return cp.runAPIServer(ctx, args)
}

// runAPIServer starts kube-apiserver with args (kept for a restart) and waits until /readyz.
func (cp *controlPlane) runAPIServer(ctx context.Context, args []string) error {
	cp.apiserverArgs = args
	name := cp.apiserverName
	if name == "" {
		name = "kube-apiserver"
	}
	p, err := startProcess(name, filepath.Join(cp.Dir, "logs", "kube-apiserver.log"), cp.bins.apiserver, args...)
	if err != nil {
		return err
	}
	cp.apiserver = p
	return cp.waitReady(ctx)
}

// RestartAPIServer stops kube-apiserver and starts it again with the same flags (as the kubelet restarts a
// static pod whose files changed); a joining node's keep its own addresses.
func (cp *controlPlane) RestartAPIServer(ctx context.Context) error {
	cp.apiserver.Stop()
	return cp.runAPIServer(ctx, cp.apiserverArgs)
}

// waitReady polls /readyz anonymously (system:public-info-viewer allows it) with the server verified against
// ca.crt.
func (cp *controlPlane) waitReady(ctx context.Context) error {
	tc, err := tlsConfig(cp.cert("ca.crt"), "", "")
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	return waitFor(ctx, "kube-apiserver /readyz", 500*time.Millisecond, func() error { return errExited(cp.apiserver) }, func(ctx context.Context) error {
		body, err := httpGet(ctx, client, cp.URL+"/readyz")
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "ok" {
			return fmt.Errorf("not ready: %s", body)
		}
		return nil
	})
}

// tlsConfig trusts only caFile and, when certFile is set, presents that client certificate.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", certFile, err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}

// httpGet returns the body of a 200 response, or an error naming the status.
func httpGet(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
