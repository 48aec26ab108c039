package main

// The SIGKILL test: the real binary, killed with kill -9 at random moments of "init" and "renew certs
// --force", dozens of times. It stays a binary-level test on purpose: unlike the in-process fault walk
// against the envelope (phases/crash_test.go, which stops a run with runtime.Goexit at a file-system step),
// nothing here is simulated: the kernel stops the process wherever it is, between or inside system calls,
// closes its files and drops its lock, and only a real process shows what that leaves behind.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/phasestest"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// buildBinary builds k8scrypto into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "k8scrypto")
	out, err := exec.Command(goTool, "build", "-o", bin, "k8scrypto.dev/k8scrypto/cmd/k8scrypto").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// killStats says where the kills landed.
type killStats struct {
	beforeWrites  int // nothing of this run's was on disk yet
	midWrite      int // temp files or a journal were on disk: the kill interrupted a transaction
	afterCommit   int // the run's files were in place (or it had finished) before the kill
	rolledForward int // the next run completed an interrupted replacement
}

// crashRunner starts the binary against a node and kills it.
type crashRunner struct {
	t   *testing.T
	bin string
	n   *node
}

func (r *crashRunner) command(args ...string) *exec.Cmd {
	cmd := exec.Command(r.bin, r.n.args(args...)...)
	cmd.Env = append(os.Environ(), "HOME="+r.n.Dir, "XDG_STATE_HOME="+filepath.Join(r.n.Dir, "state"))
	return cmd
}

// mustRun runs the binary to completion.
func (r *crashRunner) mustRun(args ...string) string {
	r.t.Helper()
	out, err := r.command(args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("k8scrypto %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// duration measures an uninterrupted run (the median of three), to spread the kills over it.
func (r *crashRunner) duration(saved string, args ...string) time.Duration {
	var ds []time.Duration
	for range 3 {
		r.n.Reset(saved)
		start := time.Now()
		r.mustRun(args...)
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[1]
}

// killDuring starts the command and kills it with SIGKILL: after delay, or, with watch set, the moment
// watch sees what it waits for on disk. It reports whether the process had exited by itself first.
func (r *crashRunner) killDuring(delay time.Duration, watch func() bool, args ...string) (exited bool) {
	r.t.Helper()
	cmd := r.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	finished := func(err error) bool {
		if err != nil {
			r.t.Fatalf("k8scrypto %s failed on its own: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return true
	}
	kill := func() bool {
		cmd.Process.Kill() // SIGKILL
		<-done
		return false
	}
	if watch == nil {
		select {
		case err := <-done:
			return finished(err)
		case <-time.After(delay):
			return kill()
		}
	}
	for limit := time.Now().Add(30 * time.Second); time.Now().Before(limit); time.Sleep(50 * time.Microsecond) {
		select {
		case err := <-done:
			return finished(err)
		default:
		}
		if watch() {
			return kill()
		}
	}
	kill()
	r.t.Fatalf("k8scrypto %s did not finish in 30s", strings.Join(args, " "))
	return false
}

// inTransaction reports whether bookkeeping files are in the certificate or kubeconfig directories.
func (r *crashRunner) inTransaction() bool {
	for _, dir := range []string{r.n.CertDir, filepath.Join(r.n.CertDir, "etcd"), r.n.KubeDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if pki.IsBookkeeping(e.Name()) {
				return true
			}
		}
	}
	return false
}

// committing reports whether the journal is on disk: the transaction passed its commit point and the
// renames are under way.
func (r *crashRunner) committing() bool {
	ents, _ := os.ReadDir(r.n.CertDir)
	for _, e := range ents {
		if pki.IsBookkeeping(e.Name()) && strings.HasSuffix(e.Name(), ".json") {
			return true
		}
	}
	return false
}

// TestSIGKILLDuringInitAndRenew kills the real binary at random moments (a seeded random delay over a
// normal run's duration, or the moment its transaction puts a temp file on disk) during "init" on an empty
// directory, "init" that keeps existing CAs, sa and encryption keys, and "renew certs --force". Right after
// each kill no CA key, sa.key or encryption config that existed has changed. The next run (init, or a
// "renew certs" that has nothing due) cleans up and completes or rolls back the interrupted replacement:
// after it no temp file is left, every certificate and kubeconfig matches its key and chains to its CA, the
// protected files are unchanged, and a renewal is all-or-nothing (every renewed file new, or every one old).
func TestSIGKILLDuringInitAndRenew(t *testing.T) {
	bin := buildBinary(t)
	kills := 24
	if testing.Short() {
		kills = 9
	}
	rng := rand.New(rand.NewPCG(8, 2026))
	total := killStats{}
	for _, sc := range []struct {
		name  string
		setup func(r *crashRunner)
		args  []string
		// rerun recovers and completes; for renew it has nothing due, so the files show what recovery did.
		rerun []string
		renew bool
	}{
		{"init on an empty directory", func(*crashRunner) {}, []string{"init"}, []string{"init"}, false},
		{"init keeping CAs, sa and encryption keys", func(r *crashRunner) {
			r.mustRun("init")
			for _, spec := range pki.Catalog() {
				if !spec.IsCA() {
					os.Remove(spec.CertPath(r.n.CertDir))
					os.Remove(spec.KeyPath(r.n.CertDir))
				}
			}
			for _, k := range pki.Kubeconfigs() {
				os.Remove(k.Path(r.n.KubeDir))
			}
		}, []string{"init"}, []string{"init"}, false},
		{"renew certs --force", func(r *crashRunner) { r.mustRun("init") }, []string{"renew", "certs", "--force"}, []string{"renew", "certs"}, true},
	} {
		t.Run(sc.name, func(t *testing.T) {
			n := newNode(t)
			r := &crashRunner{t: t, bin: bin, n: n}
			sc.setup(r)
			saved := n.Save()
			before := n.Snap()
			d := r.duration(saved, sc.args...)
			st := killStats{}
			// Every scenario needs kills that interrupt a transaction: if none of the planned ones did, it
			// goes on (up to three times as many) until one does.
			for i := 0; i < kills || st.midWrite == 0 && i < 3*kills; i++ {
				n.Reset(saved)
				// A third of the kills at a random moment of the run, a third at its first temp file, a
				// third once its journal is written (between the commit point and the last rename).
				var watch func() bool
				delay := time.Duration(rng.Float64() * 1.1 * float64(d))
				label := fmt.Sprintf("kill %d (after %s)", i, delay.Round(time.Microsecond))
				switch i % 3 {
				case 1:
					watch, label = r.inTransaction, fmt.Sprintf("kill %d (at the first temp file)", i)
				case 2:
					watch, label = r.committing, fmt.Sprintf("kill %d (at the journal)", i)
				}
				preKill := n.Snap()
				exited := r.killDuring(delay, watch, sc.args...)
				afterKill := n.Snap()
				mid := r.inTransaction()
				switch {
				case mid:
					st.midWrite++
				case exited || !sameFiles(preKill, afterKill):
					st.afterCommit++
				default:
					st.beforeWrites++
				}
				// Right after the kill: nothing protected that existed has changed.
				n.checkProtected(label+", right after", before, nil)
				// Protected files the killed run put in place must survive recovery.
				placed := map[string]string{}
				for _, p := range phasestest.ProtectedFiles {
					if s, ok := afterKill[p]; ok {
						placed[p] = s.SHA256
					}
				}
				out := r.mustRun(append(slices.Clone(sc.rerun), "-v")...)
				if strings.Contains(out, "completed an interrupted replacement") {
					st.rolledForward++
				}
				n.CheckBookkeeping(label + ", after the next run")
				n.checkProtected(label+", after the next run", before, nil)
				after := n.Snap()
				for p, sum := range placed {
					if after[p].SHA256 != sum {
						t.Errorf("%s: %s, in place after the kill, was changed or lost by the next run", label, p)
					}
				}
				n.checkConsistent(label+", after the next run", time.Now(), true)
				if sc.renew {
					checkAllOrNothing(t, label, before, after)
				}
				if t.Failed() {
					t.Logf("output of the next run:\n%s", out)
					return
				}
			}
			// The renewal still works after all that.
			if sc.renew {
				r.mustRun("renew", "certs", "--force")
				n.checkConsistent("final renewal", time.Now(), true)
			}
			t.Logf("%d kills over a %s run: %d before any write, %d mid-transaction, %d after the commit; %d completed by the next run",
				st.beforeWrites+st.midWrite+st.afterCommit, d.Round(time.Millisecond), st.beforeWrites, st.midWrite, st.afterCommit, st.rolledForward)
			if st.midWrite == 0 {
				t.Errorf("no kill of %q interrupted a transaction in %d attempts: the scenario tested nothing", sc.name, 3*kills)
			}
			total.midWrite += st.midWrite
			total.rolledForward += st.rolledForward
		})
	}
	// Kills at the first temp file land mid-transaction nearly always; the window after the journal is a
	// millisecond on tmpfs, so a kill there is logged, not required (the in-process abort walk in
	// phases/crash_test.go stops a run at every step after the commit point deterministically).
	t.Logf("%d kills interrupted a transaction; %d after its commit point", total.midWrite, total.rolledForward)
}

// sameFiles compares the node's files, ignoring the lock file.
func sameFiles(a, b pkitest.Snapshot) bool {
	for _, d := range pkitest.Diff(a, b) {
		if !strings.Contains(d, pki.LockName) && d != "added pki" {
			return false
		}
	}
	return true
}

// checkAllOrNothing: a renewal is one transaction, so after recovery either every renewable file is new
// or every one is as before.
func checkAllOrNothing(t *testing.T, label string, before, after pkitest.Snapshot) {
	t.Helper()
	var changed, same []string
	for p, b := range before {
		if !renewable(p) {
			continue
		}
		if after[p].SHA256 == b.SHA256 {
			same = append(same, p)
		} else {
			changed = append(changed, p)
		}
	}
	if len(changed) > 0 && len(same) > 0 {
		slices.Sort(same)
		t.Errorf("%s: a half-applied renewal survived recovery: %d files renewed, these not: %s", label, len(changed), strings.Join(same, ", "))
	}
}

// renewable reports whether "renew certs --force" replaces the file.
func renewable(rel string) bool {
	for _, spec := range pki.Catalog() {
		if !spec.IsCA() && rel == "pki/"+spec.BaseName+".crt" {
			return true
		}
	}
	for _, k := range pki.Kubeconfigs() {
		if k.Renewable && rel == "kube/"+k.FileName {
			return true
		}
	}
	return false
}
