package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockName is the lock file every writing command holds in the certificate directory.
const LockName = ".k8scrypto.lock"

// Lock is an exclusive advisory lock (flock) on a directory; it is released when the process dies, so a
// SIGKILLed run never leaves a stale lock.
type Lock struct{ f *os.File }

// AcquireLock takes the lock on dir, polling until timeout (0 means try once). Overlapping cron runs wait
// for each other instead of interleaving.
func AcquireLock(dir string, timeout time.Duration) (*Lock, error) {
	if err := EnsureDir(dir, ModeDir, false); err != nil {
		return nil, withHint(err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, ModeKey) // #nosec G304 -- the lock in the certificate directory; links are not followed
	if err != nil {
		return nil, withHint(fmt.Errorf("opening lock %s: %w", path, err))
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("another k8scrypto run holds %s; gave up after %s (raise --lock-timeout)", path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
