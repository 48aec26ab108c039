package pkitest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// FileState is what a test compares about one entry of a directory tree: any change in content, mode,
// type, link target or modification time shows up as a difference.
type FileState struct {
	Mode    fs.FileMode
	SHA256  string // regular files only
	ModTime time.Time
	Link    string // symlinks only
}

// Snapshot maps each path under a root (relative, slash-separated; "." is the root itself) to its state.
// A missing root gives an empty snapshot, so "the directory was not created" is a comparable state too.
type Snapshot map[string]FileState

// TakeSnapshot records every entry under root without following symlinks.
func TakeSnapshot(root string) (Snapshot, error) {
	s := Snapshot{}
	if _, err := os.Lstat(root); os.IsNotExist(err) {
		return s, nil
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		st := FileState{Mode: info.Mode(), ModTime: info.ModTime()}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if st.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p) // #nosec G304 G122 -- tests snapshot their own temporary trees
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			st.SHA256 = hex.EncodeToString(sum[:])
		case info.IsDir():
			st.ModTime = time.Time{} // a directory's mtime changes when a temp file comes and goes; its entries are compared instead
		}
		s[filepath.ToSlash(rel)] = st
		return nil
	})
	return s, err
}

// MustSnapshot is TakeSnapshot for tests.
func MustSnapshot(t interface {
	Helper()
	Fatalf(string, ...any)
}, root string) Snapshot {
	t.Helper()
	s, err := TakeSnapshot(root)
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return s
}

// Diff lists the differences from a to b, one line per path, sorted; empty means identical.
func Diff(a, b Snapshot) []string {
	var out []string
	for p, sa := range a {
		sb, ok := b[p]
		switch {
		case !ok:
			out = append(out, "removed "+p)
		case sa != sb:
			out = append(out, fmt.Sprintf("changed %s: %+v -> %+v", p, sa, sb))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, "added "+p)
		}
	}
	sort.Strings(out)
	return out
}
