package pki_test

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// txFixture is a directory with two existing files and one missing, and a transaction that replaces both
// and creates the third in a sub-directory.
type txFixture struct {
	dir   string
	files []pki.File
	old   map[string]string // relative path -> content before
	new   map[string]string // relative path -> content after
}

func newTxFixture(t *testing.T) *txFixture {
	t.Helper()
	dir := t.TempDir()
	if err := pki.EnsureDir(filepath.Join(dir, "etcd"), pki.ModeDir, false); err != nil {
		t.Fatal(err)
	}
	fx := &txFixture{
		dir: dir,
		old: map[string]string{"ca.crt": "old cert\n", "ca.key": "old key\n"},
		new: map[string]string{"ca.crt": "new cert\n", "ca.key": "new key\n", "etcd/ca.key": "new etcd key\n"},
	}
	for rel, data := range fx.old {
		mode := pki.ModeCert
		if strings.HasSuffix(rel, ".key") {
			mode = pki.ModeKey
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	// Key before certificate, as the phases stage them.
	for _, rel := range []string{"ca.key", "ca.crt", "etcd/ca.key"} {
		mode := pki.ModeCert
		if strings.HasSuffix(rel, ".key") {
			mode = pki.ModeKey
		}
		fx.files = append(fx.files, pki.File{Path: filepath.Join(dir, rel), Data: []byte(fx.new[rel]), Mode: mode})
	}
	return fx
}

// contents returns the regular files under dir (relative path -> content) and fails on bookkeeping files.
func contents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if pki.IsBookkeeping(d.Name()) {
			t.Errorf("bookkeeping file left behind: %s", p)
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// countingHook counts file-system steps and runs act on step n (1-based).
func countingHook(n int, act func(op pki.Op, path string) error) (func(pki.Op, string) error, *int) {
	calls := 0
	return func(op pki.Op, path string) error {
		calls++
		if calls == n {
			return act(op, path)
		}
		return nil
	}, &calls
}

// TestCommitFailsAtEveryStep fails each file-system step of a transaction in turn: a returned error must
// leave the directory exactly as before (content, modes, mtimes, no temp files); success must leave the new
// content; and the same transaction then succeeds.
func TestCommitFailsAtEveryStep(t *testing.T) {
	failures := 0
	for n := 1; ; n++ {
		fx := newTxFixture(t)
		before := pkitest.MustSnapshot(t, fx.dir)
		var failedOp pki.Op
		hook, calls := countingHook(n, func(op pki.Op, _ string) error { failedOp = op; return errors.New("injected fault") })
		restore := pki.SetFaultHook(hook)
		err := pki.Commit(fx.dir, fx.files)
		restore()
		if *calls < n {
			if err != nil {
				t.Fatalf("no fault injected, but pki.Commit failed: %v", err)
			}
			if failures < 10 {
				t.Fatalf("only %d steps failed: the hook does not see the transaction", failures)
			}
			break
		}
		if err != nil {
			failures++
			if !strings.Contains(err.Error(), "injected fault") {
				t.Errorf("step %d (%s): error %q hides the cause", n, failedOp, err)
			}
			if d := pkitest.Diff(before, pkitest.MustSnapshot(t, fx.dir)); len(d) > 0 {
				t.Errorf("step %d (%s) failed but the directory changed:\n%s", n, failedOp, strings.Join(d, "\n"))
			}
		} else if got := contents(t, fx.dir); !maps.Equal(got, fx.new) {
			t.Errorf("step %d (%s) failure was ignored but the content is %v", n, failedOp, got)
		}
		if err := pki.Commit(fx.dir, fx.files); err != nil {
			t.Fatalf("step %d: re-run failed: %v", n, err)
		}
		if got := contents(t, fx.dir); !maps.Equal(got, fx.new) {
			t.Errorf("step %d: after the re-run the content is %v", n, got)
		}
	}
}

// TestCommitCrashAtEveryStep stops the transaction dead at each step, as SIGKILL would (the goroutine exits
// with the files as they are), then runs Recover: the result is all old or all new, never a mix, with no
// temp or journal file left.
func TestCommitCrashAtEveryStep(t *testing.T) {
	sawOld, sawNew := false, false
	for n := 1; ; n++ {
		fx := newTxFixture(t)
		hook, calls := countingHook(n, func(pki.Op, string) error { runtime.Goexit(); return nil })
		restore := pki.SetFaultHook(hook)
		done := make(chan error, 1)
		go func() {
			crashed := true
			defer func() {
				if crashed {
					close(done)
				}
			}()
			err := pki.Commit(fx.dir, fx.files)
			crashed = false
			done <- err
		}()
		err, finished := <-done
		restore()
		if finished {
			if err != nil {
				t.Fatalf("step %d: %v", n, err)
			}
			if *calls >= n {
				t.Fatalf("step %d: the crash did not stop the transaction", n)
			}
			break
		}
		if _, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd")); err != nil {
			t.Fatalf("step %d: Recover: %v", n, err)
		}
		switch got := contents(t, fx.dir); {
		case maps.Equal(got, fx.old):
			sawOld = true
		case maps.Equal(got, fx.new):
			sawNew = true
		default:
			t.Errorf("crash at step %d: recovered to a mix: %v", n, got)
		}
	}
	if !sawOld || !sawNew {
		t.Errorf("crashes recovered to old=%v new=%v; both must occur (before and after the commit point)", sawOld, sawNew)
	}
}

// TestCommitCrashWhileUndoing fails the second target's rename, so Commit starts undoing the first, and then
// crashes at each later step. Before the rollback journal replaces the forward one, Recover may roll
// forward (the journal is the commit point); after it, Recover must finish the undo. Never a mix.
func TestCommitCrashWhileUndoing(t *testing.T) {
	undone := false
	for k := 1; ; k++ {
		fx := newTxFixture(t)
		renames, calls := 0, 0
		failAt := -1
		restore := pki.SetFaultHook(func(op pki.Op, path string) error {
			calls++
			if op == pki.OpRename && !strings.Contains(path, pki.JournalName) {
				if renames++; renames == 2 {
					failAt = calls
					return errors.New("injected fault")
				}
			}
			if failAt > 0 && calls == failAt+k {
				runtime.Goexit()
			}
			return nil
		})
		done := make(chan error, 1)
		go func() {
			crashed := true
			defer func() {
				if crashed {
					close(done)
				}
			}()
			err := pki.Commit(fx.dir, fx.files)
			crashed = false
			done <- err
		}()
		err, finished := <-done
		restore()
		if finished {
			if err == nil || !strings.Contains(err.Error(), "injected fault") {
				t.Fatalf("k=%d: Commit = %v, want the injected rename failure", k, err)
			}
			if got := contents(t, fx.dir); !maps.Equal(got, fx.old) {
				t.Errorf("k=%d: failed commit left %v", k, got)
			}
			if !undone {
				t.Error("no crash during the undo was recovered by finishing the undo")
			}
			break
		}
		rep, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd"))
		if err != nil {
			t.Fatalf("k=%d: Recover: %v", k, err)
		}
		switch got := contents(t, fx.dir); {
		case maps.Equal(got, fx.old):
			undone = undone || len(rep.RolledBack) > 0
		case maps.Equal(got, fx.new) && len(rep.RolledForward) > 0:
		default:
			t.Errorf("crash %d steps into the undo recovered to %v (report %+v)", k, got, rep)
		}
	}
}

// interruptedTx lays out a transaction interrupted between renames: ca.key already replaced, etcd/ca.key
// (new) already renamed in, ca.crt not yet replaced.
func interruptedTx(t *testing.T, rollback bool) *txFixture {
	t.Helper()
	fx := newTxFixture(t)
	var entries []pki.JournalEntry
	for _, f := range fx.files {
		dir, base := filepath.Split(f.Path)
		e := pki.JournalEntry{Target: f.Path, Temp: filepath.Join(dir, "."+base+pki.TmpSuffix)}
		if _, err := os.Lstat(f.Path); err == nil {
			e.Old = filepath.Join(dir, "."+base+pki.OldSuffix)
			if err := os.Link(f.Path, e.Old); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(e.Temp, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Target, "ca.crt") {
			continue
		}
		if err := os.Rename(e.Temp, e.Target); err != nil {
			t.Fatal(err)
		}
	}
	data := pki.MarshalJournal(rollback, entries)
	if err := os.WriteFile(filepath.Join(fx.dir, pki.JournalName), data, pki.ModeKey); err != nil {
		t.Fatal(err)
	}
	return fx
}

func TestRecoverRollsForward(t *testing.T) {
	fx := interruptedTx(t, false)
	rep, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	if got := contents(t, fx.dir); !maps.Equal(got, fx.new) {
		t.Errorf("content %v, want %v", got, fx.new)
	}
	if len(rep.RolledForward) != 1 || !strings.HasSuffix(rep.RolledForward[0], "ca.crt") {
		t.Errorf("RolledForward = %v, want the one pending file", rep.RolledForward)
	}
	// pki.Recover is idempotent.
	if rep, err := pki.Recover(fx.dir, fx.dir); err != nil || len(rep.RolledForward)+len(rep.Removed) != 0 {
		t.Errorf("second Recover: %+v, %v", rep, err)
	}
}

func TestRecoverFinishesRollback(t *testing.T) {
	fx := interruptedTx(t, true)
	rep, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	if got := contents(t, fx.dir); !maps.Equal(got, fx.old) {
		t.Errorf("content %v, want the old %v", got, fx.old)
	}
	if len(rep.RolledBack) != 3 {
		t.Errorf("RolledBack = %v", rep.RolledBack)
	}
}

func TestRecoverRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{".ca.crt" + pki.TmpSuffix, ".ca.key" + pki.OldSuffix, "ca.crt"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600)
	}
	rep, err := pki.Recover(dir, dir, filepath.Join(dir, "missing"))
	if err != nil || len(rep.Removed) != 2 {
		t.Fatalf("Recover: %+v, %v", rep, err)
	}
	if got := contents(t, dir); !maps.Equal(got, map[string]string{"ca.crt": "x"}) {
		t.Errorf("content %v", got)
	}
}

func TestRecoverRejectsForeignJournal(t *testing.T) {
	dir := t.TempDir()
	jpath := filepath.Join(dir, pki.JournalName)
	os.WriteFile(jpath, []byte("{not json"), 0o600)
	_, err := pki.Recover(dir, dir)
	if err == nil || !strings.Contains(err.Error(), jpath) || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("err = %v, want one naming %s and the fix", err, jpath)
	}
}

// TestCommitRefusesUnsafeTargets: a symlink, a directory or a world-writable parent is refused before
// anything is written.
func TestCommitRefusesUnsafeTargets(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(elsewhere, []byte("precious"), 0o644)
	os.Symlink(elsewhere, filepath.Join(dir, "ca.crt"))
	os.Mkdir(filepath.Join(dir, "ca.key"), 0o755)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777)
	before := pkitest.MustSnapshot(t, dir)
	for _, tc := range []struct {
		file pki.File
		want string
	}{
		{pki.File{Path: filepath.Join(dir, "ca.crt"), Data: []byte("x"), Mode: pki.ModeCert}, "symbolic link"},
		{pki.File{Path: filepath.Join(dir, "ca.key"), Data: []byte("x"), Mode: pki.ModeKey}, "is a directory"},
		{pki.File{Path: filepath.Join(open, "sa.key"), Data: []byte("x"), Mode: pki.ModeKey}, "world-writable"},
	} {
		files := []pki.File{{Path: filepath.Join(dir, "ok.crt"), Data: []byte("ok"), Mode: pki.ModeCert}, tc.file}
		err := pki.Commit(dir, files)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file.Path) {
			t.Errorf("%s: err = %v, want %q naming the file", tc.file.Path, err, tc.want)
		}
	}
	if d := pkitest.Diff(before, pkitest.MustSnapshot(t, dir)); len(d) > 0 {
		t.Errorf("refused commits changed the directory:\n%s", strings.Join(d, "\n"))
	}
	if data, _ := os.ReadFile(elsewhere); string(data) != "precious" {
		t.Error("the symlink's target was overwritten")
	}
	dup := []pki.File{{Path: filepath.Join(dir, "a"), Mode: pki.ModeCert}, {Path: filepath.Join(dir, "a"), Mode: pki.ModeCert}}
	if err := pki.Commit(dir, dup); err == nil {
		t.Error("a transaction writing one path twice was accepted")
	}
}

// TestModesIgnoreUmask writes under umask 0 and 077: keys 0600, certificates 0644, directories 0755, and a
// replaced file takes the new mode (os.WriteFile would keep the old one). Not parallel: the umask is global.
func TestModesIgnoreUmask(t *testing.T) {
	for _, mask := range []int{0, 0o077} {
		t.Run(fmt.Sprintf("umask %04o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			dir := filepath.Join(t.TempDir(), "pki")
			sub := filepath.Join(dir, "etcd")
			if err := pki.EnsureDir(sub, pki.ModeDir, false); err != nil {
				t.Fatal(err)
			}
			replaced := filepath.Join(dir, "ca.crt")
			os.WriteFile(replaced, []byte("old"), 0o600)
			files := []pki.File{
				{Path: filepath.Join(sub, "ca.key"), Data: []byte("k"), Mode: pki.ModeKey},
				{Path: replaced, Data: []byte("c"), Mode: pki.ModeCert},
			}
			if err := pki.Commit(dir, files); err != nil {
				t.Fatal(err)
			}
			if err := pki.WriteFileAtomic(filepath.Join(dir, "single.crt"), []byte("s"), pki.ModeCert); err != nil {
				t.Fatal(err)
			}
			for path, want := range map[string]os.FileMode{
				dir: pki.ModeDir, sub: pki.ModeDir, files[0].Path: pki.ModeKey, replaced: pki.ModeCert, filepath.Join(dir, "single.crt"): pki.ModeCert,
			} {
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := info.Mode().Perm(); got != want {
					t.Errorf("%s: mode %04o, want %04o", path, got, want)
				}
			}
			contents(t, dir) // no temp files
		})
	}
}

func TestEnsureDirTighten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	os.Mkdir(dir, 0o755)
	if err := pki.EnsureDir(dir, pki.ModeStrictDir, false); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o755 {
		t.Errorf("without tighten an existing directory changed to %04o", info.Mode().Perm())
	}
	if err := pki.EnsureDir(dir, pki.ModeStrictDir, true); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("tighten left %04o, want 0700", info.Mode().Perm())
	}
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	if err := pki.EnsureDir(file, pki.ModeDir, false); err == nil {
		t.Error("pki.EnsureDir accepted a regular file")
	}
}

// TestJournalSurvivesAnotherWorkingDirectory: a transaction given relative paths crashes after its commit
// point; a later run started elsewhere recovers it into the right directory.
func TestJournalSurvivesAnotherWorkingDirectory(t *testing.T) {
	fx := newTxFixture(t)
	t.Chdir(fx.dir)
	var rel []pki.File
	for _, f := range fx.files {
		r, err := filepath.Rel(fx.dir, f.Path)
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, pki.File{Path: r, Data: f.Data, Mode: f.Mode})
	}
	restore := pki.SetFaultHook(func(op pki.Op, path string) error {
		if op == pki.OpRename && !strings.Contains(path, pki.JournalName) {
			runtime.Goexit() // crash right after the journal is on disk
		}
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pki.Commit(".", rel)
	}()
	<-done
	restore()
	t.Chdir(t.TempDir())
	if _, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd")); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, fx.dir); !maps.Equal(got, fx.new) {
		t.Errorf("recovered %v, want %v", got, fx.new)
	}
}
