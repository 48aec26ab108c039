package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BackupTimeFormat names a backup directory by its UTC time; names sort in time order.
const BackupTimeFormat = "20060102T150405Z"

// DefaultBackupDir is where backups go when the operator names no directory (root only; see StateDir).
const DefaultBackupDir = "/var/lib/k8scrypto/backups"

// BackupSet is one run's backup directory, <root>/<UTC timestamp>/, created (0700) on first use. Each
// file is kept under its absolute path, so files from the certificate and kubeconfig directories never
// collide and a restore is a plain copy back.
type BackupSet struct {
	Root string
	Dir  string

	swept       bool
	createdRoot bool
}

// NewBackupSet names the backup directory for a run at now; nothing is created until Save. An error means
// the backup root cannot be looked into (permissions, a file in the way): nothing can be backed up there.
func NewBackupSet(root string, now time.Time) (*BackupSet, error) {
	stamp := now.UTC().Format(BackupTimeFormat)
	dir := filepath.Join(root, stamp)
	// Two runs in the same second (tests, or a retry) must not share a directory. Only "does not exist"
	// ends the search: any other error would be returned for every name, so it is the answer.
	for i := 1; i <= maxBackupsPerSecond; i++ {
		_, err := os.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return &BackupSet{Root: root, Dir: dir}, nil
		}
		if err != nil {
			return nil, &BackupRootError{Root: root, Err: err}
		}
		dir = filepath.Join(root, fmt.Sprintf("%s-%d", stamp, i))
	}
	return nil, fmt.Errorf("backup directory %s: %d backups already exist for %s; remove some", root, maxBackupsPerSecond, stamp)
}

// BackupRootError is a backup root that cannot be looked into (permissions, a file in the way). The
// command layer adds how to choose another.
type BackupRootError struct {
	Root string
	Err  error
}

func (e *BackupRootError) Error() string {
	return fmt.Sprintf("backup directory %s: %v", e.Root, e.Err)
}
func (e *BackupRootError) Unwrap() error { return e.Err }

// OpenBackupRootError refuses to copy File into a backup root that others can write to (Mode): the copies
// hold keys, and could be swapped or redirected there. The command layer adds how to choose another root.
type OpenBackupRootError struct {
	File, Root string
	Mode       fs.FileMode
}

func (e *OpenBackupRootError) Error() string {
	return fmt.Sprintf("refusing to back up %s into %s, which is group- or world-writable (mode %04o): make it writable by its owner only (chmod go-w %s)", e.File, e.Root, e.Mode, e.Root)
}

// maxBackupsPerSecond bounds the names NewBackupSet tries for one second.
const maxBackupsPerSecond = 1000

// Target is where Save would copy path, without copying anything: "" when path does not exist (nothing to
// back up), an error when it is not a regular file. A dry run lists its backups with it; Save uses it too.
func (b *BackupSet) Target(path string) (string, error) {
	dst, _, _, err := b.target(path)
	return dst, err
}

// target is Target, with the absolute source path and its file information.
func (b *BackupSet) target(path string) (dst, abs string, info fs.FileInfo, err error) {
	if abs, err = filepath.Abs(path); err != nil {
		return "", "", nil, err
	}
	info, err = os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil, nil
	}
	if err != nil {
		return "", "", nil, err
	}
	if !info.Mode().IsRegular() {
		return "", "", nil, fmt.Errorf("backing up %s: not a regular file (k8scrypto does not follow symbolic links: replace the link with the file it points to)", abs)
	}
	return filepath.Join(b.Dir, abs), abs, info, nil
}

// Save copies path (if it exists) into the backup set with its mode, synced before returning, and returns
// the copy's path ("" when there was nothing to back up).
func (b *BackupSet) Save(path string) (string, error) {
	dst, abs, info, err := b.target(path)
	if dst == "" || err != nil {
		return "", err
	}
	// No-follow and bounded: the check above and the read are two steps, and a file swapped in between
	// must not be a link or a device.
	data, err := ReadFileNoFollow(abs, MaxConfigSize)
	if err != nil {
		return "", fmt.Errorf("backing up %s: %w", abs, err)
	}
	if _, err := os.Lstat(b.Root); errors.Is(err, fs.ErrNotExist) {
		b.createdRoot = true
	}
	if err := EnsureDir(b.Root, ModeStrictDir, false); err != nil {
		return "", fmt.Errorf("creating backup directory: %w", err)
	}
	// The copies hold keys: in a directory others can write to, they could be swapped or redirected.
	if info, err := os.Stat(b.Root); err != nil {
		return "", err
	} else if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return "", &OpenBackupRootError{File: abs, Root: b.Root, Mode: perm}
	}
	if !b.swept {
		b.swept = true
		SweepBackups(b.Root)
	}
	if err := EnsureDir(filepath.Dir(dst), ModeStrictDir, false); err != nil {
		return "", fmt.Errorf("creating backup directory: %w", err)
	}
	if err := WriteFileAtomic(dst, data, info.Mode().Perm()); err != nil {
		return "", fmt.Errorf("backing up %s: %w", abs, err)
	}
	return dst, nil
}

// Discard removes the backup directory of a run that failed before replacing anything (its copies back up
// nothing that changed), and the backup root too when this set created it and it is left empty.
func (b *BackupSet) Discard() {
	if b == nil || filepath.Dir(b.Dir) != filepath.Clean(b.Root) {
		return
	}
	_ = os.RemoveAll(b.Dir) // best effort: the run has failed already
	if b.createdRoot {
		_ = os.Remove(b.Root) // only when empty
	}
}

// SweepBackups removes the temp files a run killed while copying left in its backup directory: each is a
// partial copy, and its complete original was never replaced (backups are taken before any write). Save
// sweeps before its first copy; a run that may not take a backup itself calls it too, so that recovery
// does not depend on the next run having something to back up.
func SweepBackups(root string) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return
	}
	defer r.Close()
	_ = fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && IsBookkeeping(d.Name()) {
			_ = r.Remove(p) // inside the root: a link swapped in cannot send it elsewhere
		}
		return nil
	})
}

// PruneBackups keeps the newest keep backup directories under root and removes the rest; it returns the
// removed directories. Only directories named by BackupTimeFormat are touched.
func PruneBackups(root string, keep int) ([]string, error) {
	doomed, err := BackupsToPrune(root, keep, "")
	var removed []string
	for _, p := range doomed {
		if err := os.RemoveAll(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, err
}

// BackupsToPrune lists, oldest first, the backup directories under root that PruneBackups(root, keep) would
// remove, counting adding (a run's backup directory not yet made, as a dry run predicts it; "" for none) as
// one of them. It removes nothing.
func BackupsToPrune(root string, keep int, adding string) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("keep-backups must be at least 1, got %d", keep)
	}
	ents, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		stamp, _, _ := strings.Cut(e.Name(), "-")
		if _, err := time.Parse(BackupTimeFormat, stamp); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	if adding != "" && filepath.Dir(adding) == filepath.Clean(root) && !slices.Contains(names, filepath.Base(adding)) {
		names = append(names, filepath.Base(adding))
	}
	// Oldest first: by time, then by the same-second suffix as a number ("-2" before "-10").
	slices.SortFunc(names, func(a, b string) int {
		sa, na, _ := strings.Cut(a, "-")
		sb, nb, _ := strings.Cut(b, "-")
		if c := strings.Compare(sa, sb); c != 0 {
			return c // the format sorts in time order
		}
		ia, _ := strconv.Atoi(na)
		ib, _ := strconv.Atoi(nb)
		return ia - ib
	})
	var doomed []string
	for len(names) > keep {
		doomed = append(doomed, filepath.Join(root, names[0]))
		names = names[1:]
	}
	return doomed, nil
}

// StateDir resolves a directory for k8scrypto's state (backups, audit log). An explicit path is used as
// given, and is an error when it cannot be created or written: the operator asked for it. The default
// (under /var) is used when it can be created and written; otherwise, for a user trying k8scrypto without
// root, the fallback is $XDG_STATE_HOME/k8scrypto/<sub> (else ~/.local/state/k8scrypto/<sub>), and
// fellBack is true so the caller can say so once.
func StateDir(explicit, def, sub string) (dir string, fellBack bool, err error) {
	if explicit != "" {
		if err := CheckWritableDir(explicit); err != nil {
			return "", false, err
		}
		return explicit, false, nil
	}
	if CheckWritableDir(def) == nil {
		return def, false, nil
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", false, fmt.Errorf("%s is not writable and no home directory is known: %w", def, err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "k8scrypto", sub), true, nil
}

// CheckWritableDir returns nil when dir exists and is a writable directory, or could be created (its
// nearest existing ancestor is a writable directory); otherwise it says why not. It creates nothing
// but a probe file, removed at once.
func CheckWritableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err == nil {
			if !info.IsDir() {
				return fmt.Errorf("%s cannot be used as a directory: %s is not a directory", dir, d)
			}
			f, err := os.CreateTemp(d, ".k8scrypto-probe-*")
			if err != nil {
				return fmt.Errorf("%s cannot be created or written: %w", dir, err)
			}
			_ = f.Close()
			_ = os.Remove(f.Name())
			return nil
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("%s cannot be created: %w", dir, err)
		}
	}
}
