package pki

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
// for each other instead of interleaving; an ended ctx (a signal) stops the wait with ctx's error.
func AcquireLock(ctx context.Context, dir string, timeout time.Duration) (*Lock, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := EnsureDir(dir, ModeDir, false); err != nil {
			return nil, withHint(err)
		}
		path := filepath.Join(dir, LockName)
		f, err := openPrivate(path, os.O_RDWR)
		if err != nil {
			return nil, withHint(fmt.Errorf("opening lock %s: %w", path, err))
		}
		locked, err := flockUntil(ctx, f, path, deadline, timeout)
		if err != nil {
			return nil, err
		}
		// A failed first run removes the directory it created, lock file included (CreatedDirs.RemoveIfUnused),
		// while a run waiting here still has the old file open: holding a lock on a file no longer at path
		// would let a third run lock a new one beside us. Only a lock on the file at path counts.
		if sameFile(locked, path) {
			return &Lock{f: locked}, nil
		}
		_ = locked.Close() // a lock on an unlinked file protects nothing; take the one at path
	}
}

// flockUntil takes the exclusive flock on f, polling until deadline. On error f is closed.
func flockUntil(ctx context.Context, f *os.File, path string, deadline time.Time, timeout time.Duration) (*os.File, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close() // not locked: nothing is held, the lock error is the one to report
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close() // not locked: nothing is held
			return nil, &LockBusyError{Path: path, Timeout: timeout}
		}
		select {
		case <-ctx.Done():
			_ = f.Close() // not locked: nothing is held
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LockBusyError is a lock that another process held for the whole timeout.
type LockBusyError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockBusyError) Error() string {
	return fmt.Sprintf("%s is held by another process; gave up after %s", e.Path, e.Timeout)
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(path)
	return err == nil && os.SameFile(held, now)
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

// openPrivate opens (creating it if needed) one of k8scrypto's own files that must be ModeKey whatever the
// umask: the lock and the audit log. The creation goes through the fault hook. A file it creates gets
// exactly ModeKey; an existing one loses any group or other write bit (the lock and the audit trail must
// not be writable by others) but keeps read bits an operator gave it, for a log shipper say.
func openPrivate(path string, flag int) (*os.File, error) {
	if err := fault(OpCreate, path); err != nil {
		return nil, err
	}
	created := true
	// O_NONBLOCK: opening a FIFO planted here for writing would otherwise wait for a reader forever.
	flag |= syscall.O_NONBLOCK | noFollow
	f, err := os.OpenFile(path, flag|os.O_CREATE|os.O_EXCL, ModeKey) // #nosec G304 -- k8scrypto's lock or the operator's audit log; links are not followed
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, flag, 0) // #nosec G304 -- as above
	}
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("%s is a symbolic link, which k8scrypto does not follow: replace it with a regular file or remove it", path)
	case errors.Is(err, syscall.ENXIO):
		return nil, fmt.Errorf("%s: %w (a named pipe or device): remove it", path, ErrNotRegular)
	case err != nil:
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close() // failing anyway; a read-only handle or an unwritten file loses nothing
		return nil, err
	}
	if !info.Mode().IsRegular() {
		_ = f.Close() // as above
		return nil, fmt.Errorf("%s: %w: remove it", path, ErrNotRegular)
	}
	want := ModeKey
	if !created {
		want = info.Mode().Perm() &^ 0o022
	}
	if info.Mode().Perm() != want {
		if err := fault(OpChmod, path); err != nil {
			_ = f.Close() // as above
			return nil, err
		}
		// fchmod on the open file: the umask may have cleared bits, and the path cannot be swapped meanwhile.
		if err := f.Chmod(want); err != nil {
			_ = f.Close() // as above
			return nil, err
		}
	}
	return f, nil
}
