package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// reencryptSecrets is the scale of test 9.
const reencryptSecrets = 10000

// getPutHelperEnv makes the test binary act as the kubectl-style baseline (see TestMain): run as a
// separate process so its peak memory is measured the same way as k8scrypto's.
const getPutHelperEnv = "K8SCRYPTO_E2E_GETPUT_KUBECONFIG"

// profileDirEnv names a directory where BenchmarkReencrypt saves a CPU profile of kube-apiserver taken
// during k8scrypto's rewrite, one per etcd topology.
const profileDirEnv = "K8SCRYPTO_E2E_PROFILE_DIR"

// reencryptRun is one measured rewrite of every Secret.
type reencryptRun struct {
	Secrets  int
	Duration time.Duration
	MaxRSS   int64         // bytes, of the process that did the rewriting
	CPU      time.Duration // user+system of the process that did the rewriting
}

func (r reencryptRun) PerSecond() float64 { return float64(r.Secrets) / r.Duration.Seconds() }

// Test 9: with 10,000 Secrets stored under an old key, `k8scrypto encryption reencrypt` rewrites every one
// under the new key (read raw from etcd). Its throughput and peak RSS are logged; BenchmarkReencrypt
// measures them beside the kubectl-style baseline, which at 10,000 sequential PUTs takes minutes and so is
// left out of the default run.
func TestReencryptAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes 10,000 Secrets")
	}
	t.Parallel() // own control plane; overlaps test 4's reload waits
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kubeconfig := cp.adminKubeconfig(t)
	start := time.Now()
	populateSecrets(ctx, t, cp.admin(t), reencryptSecrets)
	t.Logf("wrote %d Secrets in %v", reencryptSecrets, time.Since(start).Round(time.Millisecond))

	m := reencryptMethods[0]
	st := rotateForReencrypt(ctx, t, cp)
	if before := rawSecretPrefixes(ctx, t, cp); before[st.Prefix(st.Keys[0])] != 0 {
		t.Fatalf("control: before reencrypt %d Secrets are already under the new key", before[st.Prefix(st.Keys[0])])
	}
	run := m.run(ctx, t, cp, kubeconfig)
	raw := rawSecretPrefixes(ctx, t, cp)
	if raw[st.Prefix(st.Keys[0])] != sum(raw) || sum(raw) < reencryptSecrets {
		t.Fatalf("%s: etcd holds Secrets by prefix %v; want all %d+ under %s", m.name, raw, reencryptSecrets, st.Prefix(st.Keys[0]))
	}
	t.Logf("%s: %d Secrets in %v: %.0f Secrets/s, peak RSS %d MiB (run in parallel with other tests; see BenchmarkReencrypt for a measurement)",
		m.name, run.Secrets, run.Duration.Round(time.Millisecond), run.PerSecond(), run.MaxRSS>>20)
}

// BenchmarkReencrypt reports Secrets/s and peak RSS of `k8scrypto encryption reencrypt` and of the
// kubectl-style one-by-one GET+PUT over 10,000 Secrets, each op after a fresh key rotation (so every Secret
// really is rewritten), on two etcd topologies sharing the machine with kube-apiserver and the client:
//   - etcd-3-disk: the suite's 3-member cluster on disk, as a kubeadm HA control plane stores it: every
//     write is a raft round over three members, each fsyncing its WAL;
//   - etcd-1-tmpfs: one member on tmpfs, a local apiserver as a developer runs one, where what is left is
//     kube-apiserver's own cost per write (decode, admission, encrypt, etcd txn) and the client's.
//
// Run it with: go test -run '^$' -bench Reencrypt -benchtime 1x
func BenchmarkReencrypt(b *testing.B) {
	for _, topo := range []struct {
		name    string
		members int
		root    string // "" for the default temp directory (disk)
	}{
		{"etcd-3-disk", 3, ""},
		{"etcd-1-tmpfs", 1, "/dev/shm"},
	} {
		b.Run(topo.name, func(b *testing.B) {
			dir := b.TempDir()
			if topo.root != "" {
				if _, err := os.Stat(topo.root); err != nil {
					b.Skipf("%s: %v", topo.root, err)
				}
				// Owned like the suite directory: removed at teardown, or by the next run's sweep.
				d, err := suite.OwnedTempDir(topo.root, suite.Prefix+"bench-")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = os.RemoveAll(d) })
				dir = d
			}
			cp := startControlPlaneIn(b, dir, topo.members)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			kubeconfig := cp.adminKubeconfig(b)
			start := time.Now()
			populateSecrets(ctx, b, cp.admin(b), reencryptSecrets)
			b.Logf("%s: created %d Secrets at %.0f/s (32 concurrent creates)", topo.name, reencryptSecrets, float64(reencryptSecrets)/time.Since(start).Seconds())

			for _, m := range reencryptMethods {
				b.Run(m.name, func(b *testing.B) {
					var total struct {
						reencryptRun
						APIServerCPU, EtcdCPU time.Duration
					}
					for range b.N {
						b.StopTimer()
						st := rotateForReencrypt(ctx, b, cp)
						apiBefore, etcdBefore := serverCPU(b, cp)
						wait := func() {}
						if dir := os.Getenv(profileDirEnv); dir != "" && m.name == "k8scrypto" {
							wait = profileAPIServer(ctx, b, cp, filepath.Join(dir, "kube-apiserver-"+topo.name+".pprof"), 8)
						}
						b.StartTimer()
						r := m.run(ctx, b, cp, kubeconfig)
						b.StopTimer()
						apiAfter, etcdAfter := serverCPU(b, cp)
						wait()
						total.APIServerCPU += apiAfter - apiBefore
						total.EtcdCPU += etcdAfter - etcdBefore
						// The measurement counts only if every Secret really is under the new key.
						if raw := rawSecretPrefixes(ctx, b, cp); raw[st.Prefix(st.Keys[0])] != sum(raw) {
							b.Fatalf("after %s, etcd holds Secrets by prefix %v; want all under %s", m.name, raw, st.Prefix(st.Keys[0]))
						}
						finishRotation(b, cp)
						total.Secrets += r.Secrets
						total.Duration += r.Duration
						total.MaxRSS = max(total.MaxRSS, r.MaxRSS)
						total.CPU += r.CPU
					}
					// Where the 2 cores went, per Secret: the client, kube-apiserver, etcd.
					perSecret := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(total.Secrets) }
					b.ReportMetric(total.PerSecond(), "secrets/s")
					b.ReportMetric(float64(total.MaxRSS)/(1<<20), "peak-RSS-MiB")
					b.ReportMetric(perSecret(total.CPU), "client-cpu-µs/secret")
					b.ReportMetric(perSecret(total.APIServerCPU), "apiserver-cpu-µs/secret")
					b.ReportMetric(perSecret(total.EtcdCPU), "etcd-cpu-µs/secret")
				})
			}
		})
	}
}

var reencryptMethods = []struct {
	name string
	run  func(ctx context.Context, tb testing.TB, cp *controlPlane, kubeconfig string) reencryptRun
}{
	{"k8scrypto", func(ctx context.Context, tb testing.TB, cp *controlPlane, kubeconfig string) reencryptRun {
		return timedProcess(ctx, tb, cp.k8scryptoEnv(), cp.bins.k8scrypto, "encryption", "reencrypt", "--kubeconfig", kubeconfig, "--cert-dir", cp.CertDir)
	}},
	{"get-put", func(ctx context.Context, tb testing.TB, cp *controlPlane, kubeconfig string) reencryptRun {
		self, err := os.Executable()
		if err != nil {
			tb.Fatal(err)
		}
		return timedProcess(ctx, tb, []string{getPutHelperEnv + "=" + kubeconfig}, self)
	}},
}

// timedProcess runs a rewriting process and measures its wall time, CPU time and peak RSS.
func timedProcess(ctx context.Context, tb testing.TB, env []string, bin string, args ...string) reencryptRun {
	tb.Helper()
	cmd := suite.Command(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := suite.Start(cmd); err != nil {
		tb.Fatal(err)
	}
	// Peak RSS from the child's own VmHWM, sampled until it exits: rusage's ru_maxrss is no use here, as
	// Go starts children with vfork and Linux carries the parent's high-water mark into the child's at exec,
	// so every child of this (large) test binary would report the test binary's peak.
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if kib := vmHWM(cmd.Process.Pid); kib<<10 > peak.Load() {
				peak.Store(kib << 10)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err := suite.Wait(cmd)
	d := time.Since(start)
	close(done)
	<-sampled
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	return reencryptRun{Secrets: reencryptSecrets, Duration: d, MaxRSS: peak.Load(), CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// vmHWM reads a running process's peak resident set size in KiB (0 once it has exited).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// serverCPU is the CPU time (user+system) kube-apiserver and the etcd members have used so far.
func serverCPU(tb testing.TB, cp *controlPlane) (apiserver, etcd time.Duration) {
	tb.Helper()
	apiserver = procCPU(tb, cp.apiserver.cmd.Process.Pid)
	for _, m := range cp.Etcd {
		etcd += procCPU(tb, m.proc.cmd.Process.Pid)
	}
	return apiserver, etcd
}

// procCPU reads utime+stime of a running process from /proc/PID/stat (in USER_HZ ticks, 100 per second
// on every Linux architecture Go supports).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	f, err := suite.StatFields(pid)
	if err != nil {
		tb.Fatal(err)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("/proc/%d/stat: %q", pid, f)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// profileAPIServer saves a CPU profile of kube-apiserver taken while run runs (GET /debug/pprof/profile;
// kubeadm leaves --profiling at its default, on) to path, for `go tool pprof -top`.
func profileAPIServer(ctx context.Context, tb testing.TB, cp *controlPlane, path string, seconds int) (wait func()) {
	tb.Helper()
	cs := cp.admin(tb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		data, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).DoRaw(ctx)
		if err != nil {
			tb.Errorf("profiling kube-apiserver: %v", err)
			return
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Error(err)
		}
	}()
	return func() { <-done }
}

// rotateForReencrypt makes every stored Secret stale: prepare and promote a new key, then restart the
// apiserver (instead of waiting up to two minutes for the automatic reload, which test 4 covers).
func rotateForReencrypt(ctx context.Context, tb testing.TB, cp *controlPlane) encryptionState {
	tb.Helper()
	for _, stage := range []string{"prepare", "promote"} {
		if _, _, err := cp.run(tb, "encryption", "rotate", stage, "--cert-dir", cp.CertDir); err != nil {
			tb.Fatalf("encryption rotate %s: %v (issue 3's encryption rotate command)", stage, err)
		}
	}
	if err := cp.RestartAPIServer(ctx); err != nil {
		tb.Fatal(err)
	}
	return readEncryptionConfig(tb, cp)
}

// finishRotation prunes the old key so the next rotation starts from a steady file, with the proofs prune
// asks for (the apiserver runs the promoted file, etcd holds nothing under the old key). The running
// apiserver keeps the old key until its next restart, which is harmless: nothing is stored under it any more.
func finishRotation(tb testing.TB, cp *controlPlane) {
	tb.Helper()
	args := append([]string{"encryption", "rotate", "prune", "--yes", "--cert-dir", cp.CertDir, "--kubeconfig", cp.adminKubeconfig(tb)}, cp.etcdArgs()...)
	if _, _, err := cp.run(tb, args...); err != nil {
		tb.Fatalf("encryption rotate prune --yes: %v", err)
	}
}

// populateSecrets writes n small Secrets over 100 namespaces, 32 at a time.
func populateSecrets(ctx context.Context, tb testing.TB, cs kubernetes.Interface, n int) {
	tb.Helper()
	const namespaces = 100
	for i := range namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%03d", i)}}, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				_, err := cs.CoreV1().Secrets(fmt.Sprintf("scale-%03d", i%namespaces)).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%05d", i), Labels: map[string]string{"e2e": "scale"}},
					StringData: map[string]string{"token": strings.Repeat(fmt.Sprintf("%08d", i), 32)},
				}, metav1.CreateOptions{})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("writing Secrets: %v", err)
	}
}

// getPutMain is the baseline `kubectl get secrets -A -o json | kubectl replace -f -`: one paginated list
// held in memory (kubectl reads the whole list first), then one PUT per Secret, in order.
func getPutMain(kubeconfig string) error {
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	c.QPS, c.Burst = -1, -1 // kubectl replace does not throttle a single stream this hard either; keep it fair
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var all []corev1.Secret
	opts := metav1.ListOptions{Limit: 500} // kubectl's --chunk-size default
	for {
		l, err := cs.CoreV1().Secrets("").List(ctx, opts)
		if err != nil {
			return err
		}
		all = append(all, l.Items...)
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	for i := range all {
		if _, err := cs.CoreV1().Secrets(all[i].Namespace).Update(ctx, &all[i], metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("replacing %s/%s: %w", all[i].Namespace, all[i].Name, err)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int{"replaced": len(all)})
}

// TestReencryptResourcesThroughDiscovery: `reencrypt --resources` beyond Secrets resolves names through
// the apiserver's discovery (a core resource, a cluster-scoped resource of a named group) and rewrites
// through the dynamic client; a name no server serves is a usage error. ConfigMaps are not encrypted here,
// so the apiserver skips each no-op write: a ConfigMap's resourceVersion and data come back unchanged.
func TestReencryptResourcesThroughDiscovery(t *testing.T) {
	cp := sharedControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	ns := createNamespace(ctx, t, admin, "e2e-discovery-")
	var before []*corev1.ConfigMap
	for i := range 3 {
		cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
			Data:       map[string]string{"k": fmt.Sprintf("v-%d", i)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, cm)
	}
	out, stderr, err := cp.run(t, "encryption", "reencrypt", "--kubeconfig", cp.adminKubeconfig(t), "--cert-dir", cp.CertDir,
		"--resources", "configmaps,clusterroles.rbac.authorization.k8s.io",
		"--checkpoint", filepath.Join(t.TempDir(), "checkpoint.json"), "-o", "json")
	if err != nil {
		t.Fatalf("encryption reencrypt --resources: %v\n%s", err, stderr)
	}
	var res struct {
		Resources []struct {
			Resource  string `json:"resource"`
			Version   string `json:"version"`
			Listed    int    `json:"listed"`
			Rewritten int    `json:"rewritten"`
			Unchanged int    `json:"unchanged"`
			Gone      int    `json:"gone"`
			Errors    int    `json:"errors"`
		} `json:"resources"`
		NotServed []string `json:"notServed"`
		Errors    int      `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]string{}
	for _, r := range res.Resources {
		got[r.Resource] = r.Version
		// Other tests share this apiserver: an object they delete meanwhile is counted gone, not an error.
		if r.Errors != 0 || r.Rewritten+r.Unchanged+r.Gone != r.Listed || r.Listed == 0 {
			t.Errorf("%s: listed %d, rewritten %d, unchanged %d, gone %d, errors %d; want every listed object sent back", r.Resource, r.Listed, r.Rewritten, r.Unchanged, r.Gone, r.Errors)
		}
	}
	if len(got) != 2 || got["configmaps"] != "v1" || got["clusterroles.rbac.authorization.k8s.io"] != "v1" {
		t.Errorf("rewrote %v, want configmaps and clusterroles.rbac.authorization.k8s.io, both v1", got)
	}
	if len(res.NotServed) != 0 || res.Errors != 0 {
		t.Errorf("not served %v, errors %d; want none", res.NotServed, res.Errors)
	}
	// A name the apiserver does not serve, typed by the operator, is a usage error (exit 2) naming it.
	_, stderr, err = cp.run(t, "encryption", "reencrypt", "--kubeconfig", cp.adminKubeconfig(t), "--cert-dir", cp.CertDir,
		"--resources", "secret,widgets.example.com", "--checkpoint", filepath.Join(t.TempDir(), "checkpoint.json"))
	if code := exitCode(t, err); code != 2 || !strings.Contains(stderr, `"secret" (did you mean secrets?)`) || !strings.Contains(stderr, `"widgets.example.com"`) {
		t.Errorf("--resources secret,widgets.example.com: exit %d: %s", code, stderr)
	}
	for _, b := range before {
		a, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a.ResourceVersion != b.ResourceVersion || a.Data["k"] != b.Data["k"] {
			t.Errorf("ConfigMap %s: resourceVersion %s -> %s, data %v -> %v; a no-op rewrite of an object not encrypted must not write", b.Name, b.ResourceVersion, a.ResourceVersion, b.Data, a.Data)
		}
	}
}
