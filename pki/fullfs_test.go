package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// failingFS is the real file system whose writes or renames fail as a full or read-only one fails them.
type failingFS struct {
	osCalls
	op  string // "write" or "rename"
	err error
	// after lets that many calls of op succeed first (0: the first one fails).
	after int
	// only limits the failure to paths under it ("" for every path).
	only string
}

func (f *failingFS) fails(op, path string) bool {
	if op != f.op || !strings.HasPrefix(path, f.only) {
		return false
	}
	if f.after > 0 {
		f.after--
		return false
	}
	return true
}

func (f *failingFS) Write(fh *os.File, b []byte) (int, error) {
	if f.fails("write", fh.Name()) {
		return 0, &fs.PathError{Op: "write", Path: fh.Name(), Err: f.err}
	}
	return f.osCalls.Write(fh, b)
}

func (f *failingFS) Rename(from, to string) error {
	if f.fails("rename", to) {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: f.err}
	}
	return f.osCalls.Rename(from, to)
}

// tree is every entry of dir with its content and mode.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data := ""
		if !d.IsDir() {
			b, err := os.ReadFile(p) // #nosec G304 -- the test's own directory
			if err != nil {
				return err
			}
			data = string(b)
		}
		out[p] = info.Mode().String() + " " + data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFullOrReadOnlyDiskLeavesTheDirectoryAsItWas: ENOSPC or EROFS from the system call layer, at the write
// of a temp file or at a rename (the first target's, a later target's, or every one, the rollback journal's
// included), fails Commit with an error that says the file system is full or read-only and what to do; the
// directory is left exactly as it was, with nothing an interrupted run would leave (no journal, temp or kept
// link), so the next run has nothing to recover and never reports the failure as an interrupted run.
func TestFullOrReadOnlyDiskLeavesTheDirectoryAsItWas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    string
		err   error
		after int
		last  bool // fail only the renames of the last target
		hint  string
	}{
		{"full at the first write", "write", syscall.ENOSPC, 0, false, "the file system is full: free space"},
		{"full at a later write", "write", syscall.ENOSPC, 2, false, "the file system is full: free space"},
		{"full at the journal's rename", "rename", syscall.ENOSPC, 0, false, "the file system is full: free space"},
		// after 1: the journal is written, the commit point passed; then every rename fails, the rollback
		// journal's included, so the undo cannot be journalled
		{"full at every rename after the journal", "rename", syscall.ENOSPC, 1, false, "the file system is full: free space"},
		{"full at the last target's rename", "rename", syscall.ENOSPC, 0, true, "the file system is full: free space"},
		{"quota at every rename after the journal", "rename", syscall.EDQUOT, 1, false, "the file system is full: free space"},
		{"read-only at the first write", "write", syscall.EROFS, 0, false, "the file system is read-only: remount it read-write"},
		{"read-only at every rename after the journal", "rename", syscall.EROFS, 1, false, "the file system is read-only: remount it read-write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string]string{"a.crt": "old a", "b.key": "old b"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			files := []File{
				{Path: filepath.Join(dir, "a.crt"), Data: []byte("new a"), Mode: ModeCert},
				{Path: filepath.Join(dir, "b.key"), Data: []byte("new b"), Mode: ModeKey},
				{Path: filepath.Join(dir, "c.crt"), Data: []byte("new c"), Mode: ModeCert},
			}
			before := tree(t, dir)
			f := &failingFS{op: tc.op, err: tc.err, after: tc.after}
			if tc.last {
				f.only = files[2].Path
			}
			prev := sys
			sys = f
			err := Commit(dir, files)
			sys = prev
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("Commit: %v; want %v and %q", err, tc.err, tc.hint)
			}
			for _, wrong := range []string{"interrupted", "next k8scrypto run", "undoing the replacement failed"} {
				if strings.Contains(err.Error(), wrong) {
					t.Errorf("the message says %q:\n%s", wrong, err)
				}
			}
			after := tree(t, dir)
			for p, v := range before {
				if after[p] != v {
					t.Errorf("%s changed: %q -> %q", p, v, after[p])
				}
			}
			for p := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("%s was left behind", p)
				}
			}
			if left := Interrupted(dir, dir); len(left) > 0 {
				t.Errorf("the next run would find an interrupted run: %v", left)
			}
			// And the next run, on a disk with room again, commits.
			if err := Commit(dir, files); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "c.crt")); string(b) != "new c" {
				t.Errorf("c.crt = %q after the retry", b)
			}
		})
	}
}
