package pki_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// readWithin runs read in a goroutine and fails the test if it has not returned within a generous bound:
// the property under test is "does not block forever", not speed.
func readWithin(t *testing.T, read func() ([]byte, error)) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := read()
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
		t.Fatal("the read is still blocked: a FIFO or device hangs it")
		return nil, nil
	}
}

// TestReadFileRefusesHostileFiles: a FIFO (which would block an open or read forever), a device, a
// directory and an oversized file are refused with an error naming the path, what it is and the fix.
func TestReadFileRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "admin.crt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big.key")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, pki.MaxPEMSize+1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	devLink := filepath.Join(dir, "zero.key")
	if err := os.Symlink("/dev/zero", devLink); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		sentinel   error
		want       []string
	}{
		{"fifo", fifo, pki.ErrNotRegular, []string{fifo, "named pipe", "regular file"}},
		{"device behind a link", devLink, pki.ErrNotRegular, []string{devLink, "character device"}},
		{"device", "/dev/zero", pki.ErrNotRegular, []string{"/dev/zero", "character device"}},
		{"directory", dir, pki.ErrNotRegular, []string{dir, "directory"}},
		{"oversized", big, pki.ErrTooLarge, []string{big, "too large", fmt.Sprint(pki.MaxPEMSize), "right file"}},
	}
	for _, c := range cases {
		for name, read := range map[string]func(string, int64) ([]byte, error){"follow": pki.ReadFile, "nofollow": pki.ReadFileNoFollow} {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				_, err := readWithin(t, func() ([]byte, error) { return read(c.path, pki.MaxPEMSize) })
				if err == nil {
					t.Fatal("read succeeded")
				}
				if name == "nofollow" && c.path == devLink {
					if !errors.Is(err, pki.ErrNotRegular) || !strings.Contains(err.Error(), "symbolic link") {
						t.Errorf("error %q, want a refused symbolic link", err)
					}
					return
				}
				if !errors.Is(err, c.sentinel) {
					t.Errorf("error %q does not wrap %v", err, c.sentinel)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
			})
		}
	}
}

// TestReadFileReadsRegularFiles: a regular file up to the limit is read whole, through a link only with
// ReadFile.
func TestReadFileReadsRegularFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.crt")
	want := strings.Repeat("x", 1000)
	if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "kubelet-client-current.pem")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		read func(string, int64) ([]byte, error)
		path string
	}{{pki.ReadFile, path}, {pki.ReadFile, link}, {pki.ReadFileNoFollow, path}} {
		got, err := c.read(c.path, 1000)
		if err != nil || string(got) != want {
			t.Errorf("read %s: %d bytes, %v", c.path, len(got), err)
		}
	}
	if _, err := pki.ReadFile(path, 999); !errors.Is(err, pki.ErrTooLarge) {
		t.Errorf("one byte over the limit: %v", err)
	}
	if _, err := pki.ReadFile(filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestCommitRefusesLinkedSubdirectory: a symbolic link for a directory inside the tree (pki/etcd ->
// elsewhere) is refused before anything is written, there or in the tree; the tree's root may be a link.
func TestCommitRefusesLinkedSubdirectory(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	real := filepath.Join(base, "real-pki")
	for _, d := range []string{outside, real} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(base, "pki")
	if err := os.Symlink(real, root); err != nil { // allowed: the root itself is a link
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etcd")); err != nil {
		t.Fatal(err)
	}
	files := []pki.File{
		{Path: filepath.Join(root, "ca.key"), Data: []byte("k"), Mode: pki.ModeKey},
		{Path: filepath.Join(root, "etcd", "ca.key"), Data: []byte("k"), Mode: pki.ModeKey},
	}
	err := pki.Commit(root, files)
	if err == nil {
		t.Fatal("Commit wrote through a linked subdirectory")
	}
	for _, w := range []string{filepath.Join(root, "etcd"), "symbolic link", "real directory"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("%s holds %v after the refused commit", outside, ents)
	}
	if ents, _ := os.ReadDir(real); len(ents) != 1 {
		t.Errorf("%s holds %v after the refused commit, want only the etcd link", real, ents)
	}
	// A deeper link (pki/a -> real dir, pki/a/b/file) is refused too, and so is a file in place of a dir.
	if err := os.Remove(filepath.Join(root, "etcd")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etcd"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.Commit(root, files); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file in place of etcd/: %v", err)
	}
	// Without the link the same transaction goes through the linked root.
	if err := os.Remove(filepath.Join(root, "etcd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "etcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pki.Commit(root, files); err != nil {
		t.Fatalf("linked root, real subdirectory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(real, "etcd", "ca.key")); err != nil {
		t.Errorf("the key did not land under the linked root: %v", err)
	}
}

// TestRecoverSkipsLinkedSubdirectory: Recover does not remove files in a directory a link inside the tree
// points to, even if they look like k8scrypto's leftovers.
func TestRecoverSkipsLinkedSubdirectory(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "pki"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	leftover := filepath.Join(outside, ".ca.key"+pki.TmpSuffix)
	if err := os.WriteFile(leftover, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etcd")); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Recover(root, root, filepath.Join(root, "etcd")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Errorf("Recover removed a file through a linked subdirectory: %v", err)
	}
}

// TestPrivateFilesModeUnderUmask: under umask 0277 (which clears the owner's write bit) the lock file and
// the audit log still come out 0600, and an existing audit log loses group and other write bits. Not
// parallel: the umask is per process.
func TestPrivateFilesModeUnderUmask(t *testing.T) {
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	lock, err := pki.AcquireLock(context.Background(), certDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	logPath := filepath.Join(dir, "log", "audit.log")
	log, err := pki.OpenAuditLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Record(pki.AuditEvent{Operation: pki.AuditCreate, File: "x"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{filepath.Join(certDir, pki.LockName): pki.ModeKey, logPath: pki.ModeKey, filepath.Dir(logPath): pki.ModeStrictDir, certDir: pki.ModeDir} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: %v (err %v), want %04o", path, info.Mode(), err, want)
		}
	}
	// A pre-existing log that others may write to is fixed; read bits an operator gave it stay.
	loose := filepath.Join(dir, "loose.log")
	if err := os.WriteFile(loose, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.OpenAuditLog(loose); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(loose); info.Mode().Perm() != 0o644 {
		t.Errorf("existing audit log: %04o, want 0644", info.Mode().Perm())
	}
	// A FIFO in place of the audit log is refused at once, not waited on.
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err = readWithin(t, func() ([]byte, error) { _, err := pki.OpenAuditLog(fifo); return nil, err })
	if !errors.Is(err, pki.ErrNotRegular) {
		t.Errorf("FIFO audit log: %v, want it refused as not a regular file", err)
	}
}

// TestEnsureDirSyncsParents: each directory EnsureDir creates is followed by an fsync of its parent (so
// the new entry survives a crash), after its mkdir and chmod.
func TestEnsureDirSyncsParents(t *testing.T) {
	base := t.TempDir()
	var steps []string
	restore := pki.SetFaultHook(func(op pki.Op, path string) error {
		rel, _ := filepath.Rel(base, path)
		steps = append(steps, string(op)+" "+rel)
		return nil
	})
	err := pki.EnsureDir(filepath.Join(base, "pki", "etcd"), pki.ModeDir, false)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mkdir pki", "chmod pki", "syncdir .", "mkdir pki/etcd", "chmod pki/etcd", "syncdir pki"}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %q, want %q", steps, want)
	}
}

// TestFaultHookSeesBookkeepingSteps: the lock's creation, the audit log's write and fsync, a removal and
// its directory fsync, Recover's removals and the undo's renames all go through the fault hook, and a
// failure there is reported.
func TestFaultHookSeesBookkeepingSteps(t *testing.T) {
	injected := errors.New("injected fault")
	failOn := func(op pki.Op, suffix string) func() {
		return pki.SetFaultHook(func(o pki.Op, path string) error {
			if o == op && strings.HasSuffix(path, suffix) {
				return injected
			}
			return nil
		})
	}
	dir := t.TempDir()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, injected) {
			t.Errorf("%s: %v, want the injected fault", what, err)
		}
	}

	restore := failOn(pki.OpCreate, pki.LockName)
	_, err := pki.AcquireLock(context.Background(), dir, 0)
	restore()
	check("lock creation", err)

	log, err := pki.OpenAuditLog(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []pki.Op{pki.OpWrite, pki.OpSync} {
		restore = failOn(op, "audit.log")
		check("audit "+string(op), log.Record(pki.AuditEvent{Operation: pki.AuditCreate}))
		restore()
	}

	victim := filepath.Join(dir, "sa.key.next")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restore = failOn(pki.OpRemove, "sa.key.next")
	check("removal", pki.RemoveFile(victim))
	restore()
	restore = failOn(pki.OpSyncDir, filepath.Base(dir))
	check("removal's directory fsync", pki.RemoveFile(victim))
	restore()

	leftover := filepath.Join(dir, ".ca.key"+pki.TmpSuffix)
	if err := os.WriteFile(leftover, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restore = failOn(pki.OpRemove, pki.TmpSuffix)
	_, err = pki.Recover(dir, dir)
	restore()
	check("Recover's removal", err)

	// The undo's rename: fail the second target's rename, then the rename putting the first one back.
	fx := newTxFixture(t)
	renames := 0
	restore = pki.SetFaultHook(func(o pki.Op, path string) error {
		if o == pki.OpRename && !strings.HasSuffix(path, pki.JournalName) {
			if renames++; renames == 2 || renames == 3 {
				return injected
			}
		}
		return nil
	})
	err = pki.Commit(fx.dir, fx.files)
	restore()
	if err == nil || !strings.Contains(err.Error(), "undoing the replacement failed too") {
		t.Errorf("a failed undo rename: %v, want it reported", err)
	}
	if _, err := pki.Recover(fx.dir, fx.dir, filepath.Join(fx.dir, "etcd")); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, fx.dir); !maps.Equal(got, fx.old) {
		t.Errorf("after Recover finished the undo: %v, want %v", got, fx.old)
	}
}
