package pki_test

import (
	"context"
	"errors"
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
	first, err := pki.AcquireLock(context.Background(), dir, 0)
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
	_, err = pki.AcquireLock(context.Background(), dir, 150*time.Millisecond)
	var busy *pki.LockBusyError
	if !errors.As(err, &busy) || filepath.Base(busy.Path) != pki.LockName || busy.Timeout != 150*time.Millisecond || !strings.Contains(err.Error(), pki.LockName) {
		t.Fatalf("second AcquireLock = %v, want a *LockBusyError naming the lock and the timeout", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", waited)
	}
	got := make(chan error, 1)
	go func() {
		l, err := pki.AcquireLock(context.Background(), dir, 5*time.Second)
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

// TestLockFollowsARemovedLockFile: a failed first run removes the directory it created, lock file and all,
// while another run waits on that file. The waiter must end up holding the lock at the path, so a third
// run is still excluded, rather than a lock on the unlinked file beside a new one.
func TestLockFollowsARemovedLockFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := pki.AcquireLock(context.Background(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan *pki.Lock, 1)
	go func() {
		l, err := pki.AcquireLock(context.Background(), dir, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		waiter <- l
	}()
	time.Sleep(300 * time.Millisecond) // the waiter has opened the old lock file and polls flock on it
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	second := <-waiter
	defer func() { _ = second.Release() }()
	if third, err := pki.AcquireLock(context.Background(), dir, 0); err == nil {
		_ = third.Release()
		t.Fatal("a third run got the lock while the waiter held one: the waiter locked the removed file")
	}
}
