package pki_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestBackupSweepsLeftoverTemps: a run killed while copying a file into its backup directory leaves a temp
// file there, which no recovery of the certificate directory sees; the next backup set removes it and
// keeps the complete copies.
func TestBackupSweepsLeftoverTemps(t *testing.T) {
	root, src := t.TempDir(), filepath.Join(t.TempDir(), "apiserver.key")
	if err := os.WriteFile(src, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := pki.NewBackupSet(root, pkitest.Now)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := first.Save(src)
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(filepath.Dir(kept), ".apiserver.crt"+pki.TmpSuffix)
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := pki.NewBackupSet(root, pkitest.Now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Save(src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
	if data, err := os.ReadFile(kept); err != nil || string(data) != "key" {
		t.Errorf("complete backup copy lost: %q %v", data, err)
	}
}

// TestNewBackupSetUnusableRoot: a backup root that cannot be looked into fails at once with a
// *BackupRootError naming it; NewBackupSet used to loop for ever on any error but "does not exist". A regular file in the path is
// used because it stops root too (a 0500 directory does not).
func TestNewBackupSetUnusableRoot(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{file, filepath.Join(file, "backups")} {
		done := make(chan error, 1)
		go func() { _, err := pki.NewBackupSet(root, pkitest.Now); done <- err }()
		select {
		case err := <-done:
			// The error carries the root (the command layer adds the flag that chooses another).
			var be *pki.BackupRootError
			if !errors.As(err, &be) || be.Root != root || !strings.Contains(err.Error(), "backup directory "+root) {
				t.Errorf("%s: error %v", root, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: NewBackupSet did not return", root)
		}
	}
}

// TestNewBackupSetSameSecond: runs in the same second get -1, -2, ... directories, and pruning orders
// them numerically ("-2" before "-10") so the oldest go first.
func TestNewBackupSetSameSecond(t *testing.T) {
	root, src := t.TempDir(), filepath.Join(t.TempDir(), "apiserver.key")
	if err := os.WriteFile(src, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for range 12 {
		b, err := pki.NewBackupSet(root, pkitest.Now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Save(src); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, b.Dir)
	}
	stamp := pkitest.Now.UTC().Format(pki.BackupTimeFormat)
	for i, d := range dirs {
		want := filepath.Join(root, stamp)
		if i > 0 {
			want += fmt.Sprintf("-%d", i)
		}
		if d != want {
			t.Errorf("backup %d in %s, want %s", i, d, want)
		}
	}
	removed, err := pki.PruneBackups(root, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, dirs[:9]) {
		t.Errorf("pruned %v, want %v", removed, dirs[:9])
	}
}

// TestStateDirExplicitMustBeWritable: an explicit directory that cannot be created is an error at once,
// naming it; a creatable one is returned as given.
func TestStateDirExplicitMustBeWritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "backups")
	if _, _, err := pki.StateDir(bad, "/unused", "backups"); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("explicit %s: %v", bad, err)
	}
	good := filepath.Join(dir, "new", "backups")
	if got, fellBack, err := pki.StateDir(good, "/unused", "backups"); err != nil || got != good || fellBack {
		t.Errorf("explicit %s: %s %v %v", good, got, fellBack, err)
	}
	if _, err := os.Stat(good); !os.IsNotExist(err) {
		t.Error("checking created the directory")
	}
}
