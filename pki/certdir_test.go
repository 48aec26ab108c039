package pki_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
)

// TestPrepareCertDir: the directory and its missing parents are made with the mode asked for whatever the
// umask, and RemoveIfUnused takes back only what it made, only while nothing but (with the lock held) our
// lock file is in it.
func TestPrepareCertDir(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, tc := range []struct {
		name     string
		strict   bool
		lockHeld bool
		extra    string // a file put into the directory before RemoveIfUnused
		removed  bool
	}{
		{name: "lock held, only the lock", lockHeld: true, removed: true},
		{name: "strict, lock held, only the lock", strict: true, lockHeld: true, removed: true},
		{name: "lock not held: the lock is another run's", removed: false},
		{name: "another file", lockHeld: true, extra: "ca.crt", removed: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b", "pki")
			made, err := pki.PrepareCertDir(dir, tc.strict)
			if err != nil {
				t.Fatal(err)
			}
			want := pki.ModeDir
			if tc.strict {
				want = pki.ModeStrictDir
			}
			for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), dir} {
				if info, err := os.Stat(d); err != nil || info.Mode().Perm() != want {
					t.Fatalf("%s: %v %v, want mode %04o", d, err, info, want)
				}
			}
			lock, err := pki.AcquireLock(context.Background(), dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.extra != "" {
				if err := os.WriteFile(filepath.Join(dir, tc.extra), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			made.RemoveIfUnused(tc.lockHeld)
			_ = lock.Release()
			_, err = os.Lstat(filepath.Join(root, "a"))
			if gone := os.IsNotExist(err); gone != tc.removed {
				t.Errorf("created directories removed: %v, want %v", gone, tc.removed)
			}
			if !tc.removed {
				if _, err := os.Stat(filepath.Join(dir, pki.LockName)); err != nil {
					t.Errorf("the lock file went: %v", err)
				}
			}
		})
	}

	// A directory that existed is never removed, even empty.
	dir := t.TempDir()
	made, err := pki.PrepareCertDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	made.RemoveIfUnused(true)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("an existing directory was removed: %v", err)
	}
	var none *pki.CreatedDirs
	none.RemoveIfUnused(true) // a dry run has none: must not panic
}
