package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// The suite's process-wide state: the shared control plane started on first use (the k8scrypto binary is
// built once by suite.K8scrypto). suite.Main tears both down after every test ran, pass or fail, and also
// on SIGINT/SIGTERM or just before -timeout (see package suite).
var (
	sharedOnce  sync.Once
	sharedCP    *controlPlane
	sharedCPErr error
)

func TestMain(m *testing.M) {
	if kc := os.Getenv(getPutHelperEnv); kc != "" {
		// Re-executed as the kubectl-style baseline of BenchmarkReencrypt.
		if err := getPutMain(kc); err != nil {
			fmt.Fprintln(os.Stderr, "get-put baseline:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(suite.Main(m, "local"))
}

// inCI reports whether the environment says it is a CI run, where a missing binary is a failure rather than
// a reason to skip (make e2e builds them first).
func inCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// binDir is where hack/build-binaries.sh caches kube-apiserver, etcd and kubeadm (same resolution order).
func binDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("K8SCRYPTO_E2E_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("locating the e2e binary cache: %v (set K8SCRYPTO_E2E_BIN)", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "k8scrypto-e2e", "v1.37.2")
}

// binary returns the path of a cached control-plane binary. Missing binaries skip the test locally (building
// them takes 15-40 minutes on 2 cores) and fail it under CI=true.
func binary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(binDir(t), name)
	fi, err := os.Stat(p)
	if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	msg := fmt.Sprintf("%s not found at %s: run `make e2e-binaries` (builds etcd, kube-apiserver, kube-controller-manager and kubeadm from source once, 15-40 min on 2 cores) or set K8SCRYPTO_E2E_BIN", name, p)
	if inCI() {
		t.Fatal(msg + " (CI=true: make e2e builds them first, so this is a failure)")
	}
	t.Skip(msg)
	return ""
}

// rootDir is the k8scrypto module's root: the e2e module lives in its e2e/ subdirectory.
func rootDir() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("reading the root module's go.mod: %w", err)
	}
	if !bytes.Contains(mod, []byte("module k8scrypto.dev/k8scrypto\n")) {
		return "", fmt.Errorf("%s is not the k8scrypto module root", root)
	}
	return root, nil
}

// k8scrypto builds ./cmd/k8scrypto of the root module once per test process and returns the binary's path.
func k8scrypto(t testing.TB) string {
	t.Helper()
	p, err := suite.K8scrypto(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runK8scrypto runs the k8scrypto binary with its state (audit log, backups) kept in a per-test directory,
// so a run as root never writes under /var.
func runK8scrypto(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	state := t.TempDir()
	return runK8scryptoEnv(t, []string{
		"XDG_STATE_HOME=" + state,
		"K8SCRYPTO_AUDIT_LOG=" + filepath.Join(state, "audit.log"),
		"K8SCRYPTO_BACKUP_DIR=" + filepath.Join(state, "backups"),
		"K8SCRYPTO_CHECKPOINT=" + filepath.Join(state, "reencrypt-checkpoint.json"),
	}, args...)
}

// runK8scryptoEnv runs k8scrypto with extra environment variables; it logs the command line and, on error,
// the stderr it printed.
func runK8scryptoEnv(t testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := k8scrypto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := suite.Command(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = suite.Run(cmd)
	t.Logf("k8scrypto %s", strings.Join(redactArgs(args), " "))
	if err != nil {
		t.Logf("k8scrypto failed: %v\nstderr:\n%s", err, e.String())
	}
	return o.String(), e.String(), err
}

// redactArgs hides the values of flags that carry a secret (the certificate key that opens the
// kubeadm-certs Secret), so test logs hold no key material.
func redactArgs(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--certificate-key" && i+1 < len(out) {
			out[i+1] = "<redacted>"
		} else if strings.HasPrefix(a, "--certificate-key=") {
			out[i] = "--certificate-key=<redacted>"
		}
	}
	return out
}

// freePort returns a TCP port free on ip at the time of the call. Another process may take it before the
// component binds it; the chance is small on a test machine and the failure is loud.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is a component running in its own process group, its stdout and stderr in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startProcess starts bin with args, logging to logPath. The child gets its own process group (so Stop kills
// everything it spawned), SIGKILL when the test binary dies (so a panic leaves no process behind), and is
// registered with the suite, which stops it on SIGINT, SIGTERM or the deadline before -timeout.
func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log: %w", name, err)
	}
	fmt.Fprintf(lf, "=== %s %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := suite.Start(cmd); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: lf, done: make(chan struct{})}
	go func() {
		p.waitErr = suite.Wait(cmd)
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop asks the process group to terminate, and kills it after a grace period. Safe to call twice.
func (p *process) Stop() {
	if p == nil {
		return
	}
	if done, _ := p.exited(); done {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that ignored SIGTERM but outlived the leader.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 4*n {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check until it returns nil, the context ends, or abort returns an error (a component died).
func waitFor(ctx context.Context, what string, every time.Duration, abort func() error, check func(context.Context) error) error {
	var last error
	for {
		if abort != nil {
			if err := abort(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(every):
		}
	}
}

// errExited is returned by an abort function when a component exits while the suite waits for it.
func errExited(p *process) error {
	done, err := p.exited()
	if !done {
		return nil
	}
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited early (%v); log tail:\n%s", p.name, err, p.tail(40))
}

// readFile reads a file, failing the test on error.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
