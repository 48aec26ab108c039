package suite

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as an e2e run that starts a long-lived child and then ends the way
// the variable says: "block" (until a signal or the internal deadline) or "panic".
const helperEnv = "K8SCRYPTO_SUITE_HELPER"

type helperM struct{ mode string }

func (h helperM) Run() int {
	cmd := exec.Command("sleep", "600")
	if err := Start(cmd); err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	go func() { _ = Wait(cmd) }()
	fmt.Printf("READY %s %d\n", Dir(), cmd.Process.Pid)
	if h.mode == "panic" {
		time.Sleep(100 * time.Millisecond)
		panic("a test panicked")
	}
	select {}
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(Main(helperM{mode}, "helper"))
	}
	os.Exit(m.Run())
}

// runHelper starts the helper with TMPDIR at a fresh directory and returns it with the suite directory
// and the child's PID it reported.
func runHelper(t *testing.T, mode string, args ...string) (cmd *exec.Cmd, stderr *strings.Builder, suiteDir string, child int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(self, args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TMPDIR="+t.TempDir())
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "READY" {
		t.Fatalf("helper said %q (%v); stderr:\n%s", line, err, stderr)
	}
	child, _ = strconv.Atoi(f[2])
	return cmd, stderr, f[1], child
}

// gone waits until pid no longer names a live process (a zombie awaiting its reaper counts as gone).
func gone(pid int) bool {
	for range 100 {
		f, err := StatFields(pid)
		if err != nil || len(f) > 0 && f[0] == "Z" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func TestSignalStopsChildrenAndRemovesDir(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, stderr, dir, child := runHelper(t, "block")
			if _, err := os.Stat(filepath.Join(dir, OwnerFile)); err != nil {
				t.Fatalf("suite directory has no owner file: %v", err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if got, want := exitCode(err), 128+int(sig); got != want {
				t.Errorf("exit code %d (%v), want %d; stderr:\n%s", got, err, want, stderr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("suite directory %s still there after %v: %v", dir, sig, err)
			}
			if !gone(child) {
				t.Errorf("child %d still runs after %v", child, sig)
			}
		})
	}
}

func TestDeadlineBeforeTimeoutStopsChildrenAndRemovesDir(t *testing.T) {
	// -test.timeout=4s: the internal deadline fires 2 s earlier (half the timeout, as it is that short).
	start := time.Now()
	cmd, stderr, dir, child := runHelper(t, "block", "-test.timeout=4s")
	err := cmd.Wait()
	if exitCode(err) != 1 || !strings.Contains(stderr.String(), "about to reach -timeout 4s") {
		t.Errorf("exit %v, stderr:\n%s\nwant exit status 1 and the deadline message", err, stderr)
	}
	if strings.Contains(stderr.String(), "panic: test timed out") {
		t.Errorf("the testing package's timeout fired first:\n%s", stderr)
	}
	if d := time.Since(start); d > 3500*time.Millisecond {
		t.Errorf("the helper ran %v; the internal deadline should end it near 2 s", d)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("suite directory %s still there after the deadline: %v", dir, err)
	}
	if !gone(child) {
		t.Errorf("child %d still runs after the deadline", child)
	}
}

// A panic skips every teardown: the kernel kills the children (Pdeathsig) and the next run's Sweep
// removes the directory.
func TestPanicLeavesOnlyWhatTheNextSweepRemoves(t *testing.T) {
	cmd, stderr, dir, child := runHelper(t, "panic")
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the panicking helper exited 0; stderr:\n%s", stderr)
	}
	if !gone(child) {
		t.Errorf("child %d outlived the panicking run: Pdeathsig did not reach it", child)
	}
	removed, err := Sweep(filepath.Dir(dir), time.Now())
	if err != nil || len(removed) != 1 || removed[0] != dir {
		t.Fatalf("Sweep removed %v (%v), want [%s]", removed, err, dir)
	}
}

func TestSweep(t *testing.T) {
	root := t.TempDir()
	self, err := processID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, owner string, age time.Duration) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(p, "etcd-0"), 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(p, OwnerFile), []byte(owner+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if age > 0 {
			old := time.Now().Add(-age)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	pid := strconv.Itoa(os.Getpid())
	keep := []string{
		mk(Prefix+"alive", self, 0),
		mk(Prefix+"no-owner-new", "", 0),                           // maybe a run between mkdir and writing the owner file
		mk("other-dead", strconv.Itoa(exited.Process.Pid)+" 1", 0), // not ours
		mk(Prefix+"garbled", "not a pid", 0),                       // not ours to judge
	}
	remove := []string{
		mk(Prefix+"dead", strconv.Itoa(exited.Process.Pid)+" 1", 0),
		mk(Prefix+"pid-reused", pid+" 1", 0), // this PID, but a different process start time
		mk(Prefix+"no-owner-old", "", 3*time.Hour),
	}
	if err := os.WriteFile(filepath.Join(root, Prefix+"file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, filepath.Join(root, Prefix+"file"))

	removed, err := Sweep(root, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(remove) {
		t.Errorf("removed %v, want %v", removed, remove)
	}
	for _, p := range remove {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the sweep (%v)", filepath.Base(p), err)
		}
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}

func TestDeadlineMargin(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{
		60 * time.Minute: time.Minute,
		30 * time.Minute: time.Minute,
		10 * time.Minute: 30 * time.Second,
		time.Minute:      10 * time.Second,
		4 * time.Second:  2 * time.Second,
	} {
		if got := deadlineMargin(timeout); got != want {
			t.Errorf("deadlineMargin(%v) = %v, want %v", timeout, got, want)
		}
	}
}
