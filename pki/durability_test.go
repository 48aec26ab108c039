package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// call is one system call the file layer made, as the recorder saw it.
type call struct {
	op   string // fsync, mkdir, link, rename, remove
	path string // the file or directory; for rename and link, the new name
	from string // for rename and link, the old name
}

func (c call) String() string {
	if c.from != "" {
		return c.op + " " + c.from + " -> " + c.path
	}
	return c.op + " " + c.path
}

// recorder records every durability-relevant call in order, then makes it for real. Temp files are fsynced
// from several goroutines at once (syncTemps), hence the lock.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// Write is not recorded: the order checked is that of what makes the data durable.
func (r *recorder) Write(f *os.File, b []byte) (int, error) { return osCalls{}.Write(f, b) }

func (r *recorder) Fsync(f *os.File) error {
	r.add(call{op: "fsync", path: f.Name()})
	return osCalls{}.Fsync(f)
}

func (r *recorder) Mkdir(path string, mode os.FileMode) error {
	r.add(call{op: "mkdir", path: path})
	return osCalls{}.Mkdir(path, mode)
}

func (r *recorder) Link(oldPath, newPath string) error {
	r.add(call{op: "link", path: newPath, from: oldPath})
	return osCalls{}.Link(oldPath, newPath)
}

func (r *recorder) Rename(from, to string) error {
	r.add(call{op: "rename", path: to, from: from})
	return osCalls{}.Rename(from, to)
}

func (r *recorder) Remove(path string) error {
	r.add(call{op: "remove", path: path})
	return osCalls{}.Remove(path)
}

// record swaps the recorder in for the test.
func record(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	prev := sys
	sys = r
	t.Cleanup(func() { sys = prev })
	return r
}

// index returns the position of the first call of op on path at or after from, or -1.
func (r *recorder) index(op, path string, from int) int {
	for i := max(from, 0); i < len(r.calls); i++ {
		if r.calls[i].op == op && filepath.Clean(r.calls[i].path) == filepath.Clean(path) {
			return i
		}
	}
	return -1
}

// published checks the durability of one file put in place by a rename: the renamed file was fsynced before
// the rename, and the directory holding the new name was fsynced after it. It returns the rename's index.
func (r *recorder) published(t *testing.T, target string) int {
	t.Helper()
	ren := slices.IndexFunc(r.calls, func(c call) bool { return c.op == "rename" && c.path == target })
	if ren < 0 {
		t.Fatalf("%s was never renamed into place; calls:\n%s", target, r)
		return -1
	}
	tmp := r.calls[ren].from
	if i := r.index("fsync", tmp, 0); i < 0 || i > ren {
		t.Errorf("%s: its temp file %s was not fsynced before the rename that publishes it (call %d); calls:\n%s", target, filepath.Base(tmp), ren, r)
	}
	if r.index("fsync", filepath.Dir(target), ren+1) < 0 {
		t.Errorf("%s: its directory was not fsynced after the rename (call %d); calls:\n%s", target, ren, r)
	}
	return ren
}

func (r *recorder) String() string {
	var b strings.Builder
	for i, c := range r.calls {
		fmt.Fprintf(&b, "  %2d %s\n", i, c)
	}
	return b.String()
}

// TestCommitIsDurable: a multi-file commit (one file replaced, two new ones, one of them in a subdirectory)
// makes every temp file durable before the journal, the commit point, is published; the journal durable
// before the first target is replaced; each target's temp fsynced before its rename and its directory
// fsynced after.
func TestCommitIsDurable(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etcd")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	replaced := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(replaced, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: replaced, Data: []byte("new"), Mode: ModeCert},
		{Path: filepath.Join(dir, "ca.key"), Data: []byte("key"), Mode: ModeKey},
		{Path: filepath.Join(sub, "ca.key"), Data: []byte("etcd key"), Mode: ModeKey},
	}
	r := record(t)
	if err := Commit(dir, files); err != nil {
		t.Fatal(err)
	}
	journal := r.published(t, filepath.Join(dir, journalName))
	if r.index("fsync", dir, journal+1) < 0 {
		t.Fatalf("the journal's directory was not fsynced after the journal was published; calls:\n%s", r)
	}
	firstTarget := len(r.calls)
	for _, f := range files {
		ren := r.published(t, f.Path)
		firstTarget = min(firstTarget, ren)
		if tmp := r.calls[ren].from; r.index("fsync", tmp, 0) > journal {
			t.Errorf("%s: its temp file was fsynced after the journal was published: a crash could roll forward an incomplete file", f.Path)
		}
	}
	if dirSync := r.index("fsync", dir, journal+1); dirSync > firstTarget {
		t.Errorf("the journal's directory was fsynced (call %d) only after the first target was replaced (call %d); calls:\n%s", dirSync, firstTarget, r)
	}
}

// TestWriteFileAtomicIsDurable: the single-file path, without a journal.
func TestWriteFileAtomicIsDurable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "encryption-config.yaml")
	r := record(t)
	if err := WriteFileAtomic(p, []byte("data"), ModeKey); err != nil {
		t.Fatal(err)
	}
	r.published(t, p)
}

// TestNewDirectoriesAndRemovalsAreDurable: a directory EnsureDir creates is followed by an fsync of its
// parent, and a file RemoveFile removes by an fsync of its directory.
func TestNewDirectoriesAndRemovalsAreDurable(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	r := record(t)
	if err := EnsureDir(dir, ModeDir, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "a"), dir} {
		mk := r.index("mkdir", d, 0)
		if mk < 0 || r.index("fsync", filepath.Dir(d), mk+1) < 0 {
			t.Errorf("%s: not created, or its parent not fsynced after; calls:\n%s", d, r)
		}
	}
	p := filepath.Join(dir, "sa.key.next")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveFile(p); err != nil {
		t.Fatal(err)
	}
	if rm := r.index("remove", p, 0); rm < 0 || r.index("fsync", dir, rm+1) < 0 {
		t.Errorf("%s: not removed, or its directory not fsynced after; calls:\n%s", p, r)
	}
}

// TestAuditRecordIsDurable: appended audit lines are fsynced before Record returns.
func TestAuditRecordIsDurable(t *testing.T) {
	l, err := OpenAuditLog(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	r := record(t)
	if err := l.Record(AuditEvent{Operation: AuditCreate, File: "x"}); err != nil {
		t.Fatal(err)
	}
	if r.index("fsync", l.Path, 0) < 0 {
		t.Errorf("the audit log was not fsynced; calls:\n%s", r)
	}
}
