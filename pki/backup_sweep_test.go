package pki_test

import (
	"os"
	"path/filepath"
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
	first := pki.NewBackupSet(root, pkitest.Now)
	kept, err := first.Save(src)
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(filepath.Dir(kept), ".apiserver.crt"+pki.TmpSuffix)
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.NewBackupSet(root, pkitest.Now.Add(time.Hour)).Save(src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
	if data, err := os.ReadFile(kept); err != nil || string(data) != "key" {
		t.Errorf("complete backup copy lost: %q %v", data, err)
	}
}
