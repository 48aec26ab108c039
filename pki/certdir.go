package pki

import (
	"os"
	"path/filepath"
)

// CreatedDirs are the directories PrepareCertDir made for this run, parents first.
type CreatedDirs struct {
	dirs []string
}

// PrepareCertDir creates the certificate directory and its missing parents, 0755 or 0700 with strict
// (whatever the umask), before the lock is taken in it. It records what it created so that a failed first
// run can leave the disk as it found it (RemoveIfUnused).
func PrepareCertDir(dir string, strict bool) (*CreatedDirs, error) {
	mode := ModeDir
	if strict {
		mode = ModeStrictDir
	}
	created, err := EnsureDirCreated(dir, mode, false)
	if err != nil {
		return nil, withHint(err)
	}
	return &CreatedDirs{dirs: created}, nil
}

// RemoveIfUnused removes the directories PrepareCertDir created, deepest first, as long as they are empty:
// a failed first run must not leave a certificate directory behind. With lockHeld (call it then while still
// holding the lock, so that no other k8scrypto run is writing there) the lock file does not count; without,
// a lock file is another run's and keeps the directory. Best effort: anything else in a directory keeps it.
func (c *CreatedDirs) RemoveIfUnused(lockHeld bool) {
	if c == nil {
		return
	}
	for i := len(c.dirs) - 1; i >= 0; i-- {
		dir := c.dirs[i]
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		if lockHeld && len(entries) == 1 && entries[0].Name() == LockName && entries[0].Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, LockName)); err != nil {
				return
			}
		}
		if err := os.Remove(dir); err != nil { // fails, as it should, unless empty
			return
		}
	}
}
