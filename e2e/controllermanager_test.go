package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
)

// controllerManager is kube-controller-manager on a control plane of the suite, with the flags of
// kubeadm's static pod (cmd/kubeadm/app/phases/controlplane/manifests.go getControllerManagerCommand): it
// signs CSRs with ca.crt/ca.key and publishes ca.crt as the kube-root-ca.crt ConfigMap in every namespace.
type controllerManager struct {
	cp   *controlPlane
	bin  string
	port int
	proc *process
	// SigningCertFile overrides --cluster-signing-cert-file (kubeadm: ca.crt) when set.
	SigningCertFile string
}

// startControllerManager starts kube-controller-manager against cp's apiserver and waits until /healthz
// says ok; the test's cleanup stops it.
func (cp *controlPlane) startControllerManager(t testing.TB) *controllerManager {
	t.Helper()
	cm := &controllerManager{cp: cp, bin: binary(t, "kube-controller-manager")}
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cm.port = port
	t.Cleanup(func() { cm.proc.Stop() })
	t.Cleanup(func() {
		if t.Failed() && cm.proc != nil {
			t.Logf("--- kube-controller-manager log (%s), last 40 lines:\n%s", cm.proc.logPath, cm.proc.tail(40))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return cm
}

// flags are kubeadm's, with the suite's paths, plus what running outside a pod needs: a loopback bind
// address, a free secure port and a private --cert-dir for its self-signed serving certificate. Leader
// election is off: one instance, and a restart must not wait for its own lease to expire.
func (cm *controllerManager) flags() []string {
	cp := cm.cp
	conf := cm.kubeconfig()
	signing := cp.cert("ca.crt")
	if cm.SigningCertFile != "" {
		signing = cm.SigningCertFile
	}
	return []string{
		"--authentication-kubeconfig=" + conf,
		"--authorization-kubeconfig=" + conf,
		"--bind-address=127.0.0.1",
		"--client-ca-file=" + cp.cert("ca.crt"),
		"--cluster-name=kubernetes",
		"--cluster-signing-cert-file=" + signing,
		"--cluster-signing-key-file=" + cp.cert("ca.key"),
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--kubeconfig=" + conf,
		"--leader-elect=false",
		"--requestheader-client-ca-file=" + cp.cert("front-proxy-ca.crt"),
		"--root-ca-file=" + cp.cert("ca.crt"),
		"--service-account-private-key-file=" + cp.cert("sa.key"),
		"--use-service-account-credentials=true",
		"--secure-port=" + strconv.Itoa(cm.port),
		"--cert-dir=" + filepath.Join(cp.Dir, "kcm-certs"),
	}
}

// kubeconfig is where Start puts its copy of controller-manager.conf.
func (cm *controllerManager) kubeconfig() string {
	return filepath.Join(cm.cp.Dir, "kcm", "controller-manager.conf")
}

// copyKubeconfig copies controller-manager.conf as it is now with the server set to the apiserver's
// loopback URL: kubeadm points it at the advertise address (10.0.0.5), which the suite never dials.
// Everything else, the CA data and the client certificate k8scrypto writes, is the file's own.
func (cm *controllerManager) copyKubeconfig() error {
	kc, err := clientcmd.LoadFromFile(filepath.Join(cm.cp.KubeconfigDir, "controller-manager.conf"))
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		c.Server = cm.cp.URL
	}
	if err := os.MkdirAll(filepath.Dir(cm.kubeconfig()), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*kc, cm.kubeconfig())
}

// Start starts kube-controller-manager with the current controller-manager.conf and waits for its /healthz.
func (cm *controllerManager) Start(ctx context.Context) error {
	if err := cm.copyKubeconfig(); err != nil {
		return err
	}
	p, err := startProcess("kube-controller-manager", filepath.Join(cm.cp.Dir, "logs", "kube-controller-manager.log"), cm.bin, cm.flags()...)
	if err != nil {
		return err
	}
	cm.proc = p
	// Its serving certificate is self-signed in memory; the kubelet's HTTPS probe does not verify it either.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second} // #nosec G402 -- a liveness probe of kube-controller-manager's self-signed loopback port, as the kubelet's
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", cm.port)
	return waitFor(ctx, "kube-controller-manager /healthz", 500*time.Millisecond, func() error { return errExited(cm.proc) }, func(ctx context.Context) error {
		body, err := httpGet(ctx, client, url)
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "ok" {
			return fmt.Errorf("not healthy: %s", body)
		}
		return nil
	})
}

// Restart stops kube-controller-manager and starts it again (as the kubelet restarts a static pod).
func (cm *controllerManager) Restart(ctx context.Context) error {
	cm.proc.Stop()
	return cm.Start(ctx)
}

// restartEtcdMember stops one member and starts it again with the same flags, then waits until every
// member reports healthy (so the next one may go).
func (cp *controlPlane) restartEtcdMember(ctx context.Context, m *etcdMember) error {
	m.proc.Stop()
	p, err := startProcess(m.Name, filepath.Join(cp.Dir, "logs", m.Name+".log"), cp.bins.etcd, m.args...)
	if err != nil {
		return err
	}
	m.proc = p
	return cp.waitEtcdHealthy(ctx)
}

// TestControllerManagerFlagsMatchKubeadm holds the flags the suite runs kube-controller-manager with to
// those of the pod kubeadm's own GetStaticPodSpecs builds from k8scrypto's rendered config, as
// TestAPIServerFlagsMatchKubeadm does for kube-apiserver. The differences are listed with their reason.
func TestControllerManagerFlagsMatchKubeadm(t *testing.T) {
	cp := &controlPlane{Dir: t.TempDir(), bins: bins{k8scrypto: k8scrypto(t)}}
	if err := cp.prepare(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cp.init(ctx); err != nil {
		t.Fatal(err)
	}
	ours := flagMap(t, "the suite", (&controllerManager{cp: cp, port: 10257}).flags())
	rendered, err := os.ReadFile(cp.RenderedConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configutil.BytesToInitConfiguration(rendered, true)
	if err != nil {
		t.Fatal(err)
	}
	pod, ok := controlplane.GetStaticPodSpecs(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, nil)["kube-controller-manager"]
	if !ok || len(pod.Spec.Containers) != 1 || len(pod.Spec.Containers[0].Command) == 0 {
		t.Fatalf("kubeadm built no single-container kube-controller-manager pod: %+v", pod.Spec.Containers)
	}
	kubeadm := flagMap(t, "kubeadm", pod.Spec.Containers[0].Command[1:])
	// kubeadm's kubeconfigs are always under /etc/kubernetes; the suite's is a copy with a loopback server.
	kubeconfigs := map[string]bool{"kubeconfig": true, "authentication-kubeconfig": true, "authorization-kubeconfig": true}
	// Suite only: its own free port and serving-certificate directory (a pod uses kube-controller-manager's
	// default port, 10257, in the host network, and a temporary directory).
	suiteOnly := map[string]bool{"secure-port": true, "cert-dir": true}
	for _, name := range slices.Sorted(maps.Keys(kubeadm)) {
		want := kubeadm[name]
		got, ok := ours[name]
		switch {
		case !ok:
			t.Errorf("kubeadm sets --%s=%s; the suite does not pass it", name, want)
		case kubeconfigs[name]:
			if filepath.Base(got) != filepath.Base(want) {
				t.Errorf("--%s: the suite passes %q, kubeadm %q: not the same kubeconfig", name, got, want)
			}
		case name == "leader-elect":
			// One instance: a restart must not wait for the lease of the process it replaces.
			if want != "true" || got != "false" {
				t.Errorf("--leader-elect: suite %q, kubeadm %q; the documented deviation no longer holds", got, want)
			}
		case got != want:
			t.Errorf("--%s: the suite passes %q, kubeadm %q", name, got, want)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ours)) {
		if _, ok := kubeadm[name]; !ok && !suiteOnly[name] {
			t.Errorf("the suite passes --%s=%s, which kubeadm does not set", name, ours[name])
		}
	}
}
