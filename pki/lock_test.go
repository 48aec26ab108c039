package pki_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// TestLockExcludes: a second holder waits, gives up after its timeout with a message naming the lock and the
// flag, and gets the lock once the first releases it.
func TestLockExcludes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := pki.AcquireLock(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != pki.ModeDir {
		t.Errorf("lock directory: %v, %v", info, err)
	}
	if info, err := os.Stat(filepath.Join(dir, pki.LockName)); err != nil || info.Mode().Perm() != pki.ModeKey {
		t.Errorf("lock file: %v, %v", info, err)
	}
	start := time.Now()
	_, err = pki.AcquireLock(dir, 150*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), pki.LockName) || !strings.Contains(err.Error(), "--lock-timeout") {
		t.Fatalf("second AcquireLock = %v, want a timeout naming the lock and --lock-timeout", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", waited)
	}
	got := make(chan error, 1)
	go func() {
		l, err := pki.AcquireLock(dir, 5*time.Second)
		if err == nil {
			err = l.Release()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("waiter did not get the released lock: %v", err)
	}
	if err := first.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
}
