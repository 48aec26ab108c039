// Package suite makes an e2e test process leave nothing behind, however it ends.
//
// A passing or failing run tears down in TestMain after m.Run. The other ends are covered too:
//   - SIGINT or SIGTERM (Ctrl-C, a CI runner's cancel): a handler stops every child process group, runs
//     the suite's cleanups, removes the suite directory and exits 128+signal;
//   - `go test -timeout`: the testing package panics at the timeout without running any cleanup, so an
//     internal deadline a little earlier does the same as the signal handler and exits 1 with a message;
//   - a panicking test (which skips TestMain's teardown) or a SIGKILL: every child gets SIGKILL from the
//     kernel when the test process dies (Pdeathsig), and the next run removes the suite directory, whose
//     owner file names a process that no longer exists.
//
// The suite directory is also TMPDIR for the rest of the run, so t.TempDir and b.TempDir live under it and
// go with it.
package suite

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prefix starts the name of every directory an e2e run creates under a temporary root; Sweep looks only
// at names with it.
const Prefix = "k8scrypto-e2e-"

// OwnerFile, inside a run's directory, holds "PID STARTTIME" of the process that created it.
const OwnerFile = ".owner"

// orphanAge is how old a matching directory without an owner file (from a run that predates owner files,
// or one caught between mkdir and writing the file) must be before Sweep removes it.
const orphanAge = 2 * time.Hour

var (
	mu       sync.Mutex
	cleanups []func()
	groups   = map[int]string{} // process group id -> what runs in it
	dirs     []string           // removed last
	dir      string
	once     sync.Once
)

// Main runs the tests of an e2e package: it removes what dead earlier runs left, creates this run's
// directory (named Prefix+name+"-*") and points TMPDIR at it, arms the signal handler and the internal
// deadline, runs m, tears down, and returns the exit code for os.Exit.
func Main(m interface{ Run() int }, name string) int {
	flag.Parse() // -test.timeout is read below; m.Run does not parse twice
	roots := sweepRoots()
	for _, root := range roots {
		removed, err := Sweep(root, time.Now())
		for _, d := range removed {
			fmt.Fprintf(os.Stderr, "e2e: removed %s, left by an earlier run whose process is gone\n", d)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: sweeping %s: %v\n", root, err)
		}
	}
	d, err := OwnedTempDir(roots[0], Prefix+name+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: creating the suite's temporary directory: %v\n", err)
		return 1
	}
	dir = d
	if err := os.Setenv("TMPDIR", d); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setting TMPDIR: %v\n", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\ne2e: %v: stopping every control plane and removing %s\n", s, d)
		Teardown()
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	if timeout := testTimeout(); timeout > 0 {
		margin := deadlineMargin(timeout)
		time.AfterFunc(timeout-margin, func() {
			fmt.Fprintf(os.Stderr, "\ne2e: FAIL: the run is about to reach -timeout %v: stopping every control plane and removing %s "+
				"%v early (the testing package's own timeout runs no cleanup). Goroutines:\n%s\n", timeout, d, margin, stacks())
			Teardown()
			os.Exit(1)
		})
	}

	code := m.Run()
	Teardown()
	return code
}

// Dir is this run's directory (valid once Main has started the tests).
func Dir() string { return dir }

// deadlineMargin is how long before -test.timeout the internal deadline fires: enough to stop a few
// control planes (TerminateGroups waits at most 5 s) and remove their data.
func deadlineMargin(timeout time.Duration) time.Duration {
	return min(max(timeout/20, 10*time.Second), time.Minute, timeout/2)
}

func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	return 0
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// sweepRoots are where e2e runs create directories: the temporary directory (the first, where the suite
// directory goes) and /dev/shm (the benchmark's tmpfs etcd).
func sweepRoots() []string {
	roots := []string{os.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		roots = append(roots, "/dev/shm")
	}
	return roots
}

// OnExit registers f to run at teardown, after every test, in reverse order of registration.
func OnExit(f func()) {
	mu.Lock()
	defer mu.Unlock()
	cleanups = append(cleanups, f)
}

// RemoveOnExit makes teardown remove path (after the cleanups, which may still use it).
func RemoveOnExit(path string) {
	mu.Lock()
	defer mu.Unlock()
	dirs = append(dirs, path)
}

// Teardown stops every child process group still registered, runs the cleanups and removes the run's
// directories. It runs once; later calls wait for the first to finish.
func Teardown() {
	once.Do(func() {
		TerminateGroups(5 * time.Second)
		mu.Lock()
		cs, ds := cleanups, dirs
		mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i]()
		}
		if dir != "" {
			ds = append(ds, dir)
		}
		for _, d := range ds {
			if err := os.RemoveAll(d); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: removing %s: %v\n", d, err)
			}
		}
	})
}

// OwnedTempDir creates a directory like os.MkdirTemp and writes this process's identity into its owner
// file, so a later run can tell whether its creator is still alive. Teardown removes it.
func OwnedTempDir(root, pattern string) (string, error) {
	d, err := os.MkdirTemp(root, pattern)
	if err != nil {
		return "", err
	}
	id, err := processID(os.Getpid())
	if err == nil {
		err = os.WriteFile(filepath.Join(d, OwnerFile), []byte(id+"\n"), 0o600)
	}
	if err != nil {
		_ = os.RemoveAll(d)
		return "", fmt.Errorf("%s: writing the owner file: %w", d, err)
	}
	RemoveOnExit(d)
	return d, nil
}

// processID is "PID STARTTIME" (start time in clock ticks since boot, /proc/PID/stat field 22): a PID
// alone may have been reused by an unrelated process since the directory was made.
func processID(pid int) (string, error) {
	f, err := StatFields(pid)
	if err != nil {
		return "", err
	}
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.Itoa(pid) + " " + f[19], nil
}

// StatFields are the fields of /proc/PID/stat after the command name, which is in parentheses and may
// contain anything: [0] is the state, [11] and [12] utime and stime, [19] the start time.
func StatFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

// Sweep removes, under root, the directories named Prefix* whose owner process is gone, and those with no
// owner file that are older than orphanAge. It returns what it removed.
func Sweep(root string, now time.Time) (removed []string, err error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		p := filepath.Join(root, e.Name())
		if !stale(p, now) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

func stale(p string, now time.Time) bool {
	owner, err := os.ReadFile(filepath.Join(p, OwnerFile)) // #nosec G304 -- the owner file of a run directory under the suite's own temp root
	if errors.Is(err, fs.ErrNotExist) {
		fi, err := os.Stat(p)
		return err == nil && now.Sub(fi.ModTime()) > orphanAge
	}
	if err != nil {
		return false // unreadable: not ours to judge
	}
	want := strings.TrimSpace(string(owner))
	pid, err := strconv.Atoi(strings.Fields(want + " x")[0])
	if err != nil || pid <= 0 {
		return false
	}
	got, err := processID(pid)
	return err != nil || got != want // gone, or the PID now belongs to another process
}

// Command is exec.CommandContext for a child of the suite: in a process group of its own (one signal
// reaches everything it spawns), SIGKILLed by the kernel if this process dies (Pdeathsig), and, when ctx
// ends, the whole group is killed rather than the leader alone.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := prepare(exec.CommandContext(ctx, name, args...)) // #nosec G204 -- the suite runs the binaries under test (k8scrypto, etcd, kube-apiserver, kubeadm) with arguments it builds itself
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// prepare gives cmd its own process group and Pdeathsig SIGKILL (see Command).
func prepare(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd
}

// Start prepares cmd (see prepare), starts it and registers its process group, so Teardown stops it if
// the run ends while it runs. Pair it with Wait.
func Start(cmd *exec.Cmd) error {
	prepare(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	mu.Lock()
	groups[cmd.Process.Pid] = filepath.Base(cmd.Path)
	mu.Unlock()
	return nil
}

// Wait waits for cmd, kills whatever is left in its process group, and unregisters the group.
func Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // children that outlived the leader
	mu.Lock()
	delete(groups, pgid)
	mu.Unlock()
	return err
}

// Run is Start then Wait.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return Wait(cmd)
}

// CombinedOutput is exec.Cmd.CombinedOutput through Run.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd)
	return []byte(b.String()), err
}

var k8scryptoBuild struct {
	once sync.Once
	path string
	err  error
}

// K8scrypto builds ./cmd/k8scrypto of the root module (found by root) once per test process, into this
// run's directory, and returns the binary's path.
func K8scrypto(root func() (string, error)) (string, error) {
	b := &k8scryptoBuild
	b.once.Do(func() {
		dir, err := root()
		if err != nil {
			b.err = err
			return
		}
		out := filepath.Join(Dir(), "bin", "k8scrypto")
		cmd := Command(context.Background(), "go", "build", "-o", out, "./cmd/k8scrypto")
		cmd.Dir = dir
		if o, err := CombinedOutput(cmd); err != nil {
			b.err = fmt.Errorf("go build ./cmd/k8scrypto: %w\n%s", err, o)
			return
		}
		b.path = out
	})
	return b.path, b.err
}

// Groups lists the registered process groups (for tests).
func Groups() map[int]string {
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(groups)
}

// TerminateGroups sends SIGTERM to every registered process group, waits up to grace for them to go, and
// SIGKILLs what is left.
func TerminateGroups(grace time.Duration) {
	all := Groups()
	waiting := maps.Clone(all)
	for pgid := range all {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for len(waiting) > 0 && time.Now().Before(deadline) {
		for pgid := range waiting {
			if !groupAlive(pgid) {
				delete(waiting, pgid)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for pgid := range all { // also members that outlived a leader which did stop
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// groupAlive reports whether a process group has a member that is not a zombie. kill(-pgid, 0) alone
// would count the leader's zombie until its Wait reaps it.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil {
		return false
	}
	f, err := StatFields(pgid)
	// An error: the leader is gone, a member remains.
	return err != nil || len(f) == 0 || f[0] != "Z"
}
