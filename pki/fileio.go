package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// File modes k8scrypto writes, independent of the umask (kubeadm's modes; see StrictModes for CIS).
const (
	ModeKey        os.FileMode = 0o600
	ModeCert       os.FileMode = 0o644
	ModeDir        os.FileMode = 0o755
	ModeStrictCert os.FileMode = 0o600
	ModeStrictDir  os.FileMode = 0o700
)

// Names of k8scrypto's own bookkeeping files. Leftovers from a crash are recognised by these suffixes.
const (
	tmpSuffix   = ".k8scrypto-tmp"
	oldSuffix   = ".k8scrypto-old"
	journalName = ".k8scrypto-journal.json"
)

// Op names a file-system step, for fault injection.
type Op string

const (
	OpCreate  Op = "create"
	OpWrite   Op = "write"
	OpSync    Op = "sync"
	OpRename  Op = "rename"
	OpLink    Op = "link"
	OpMkdir   Op = "mkdir"
	OpSyncDir Op = "syncdir"
	OpChmod   Op = "chmod"
	OpRemove  Op = "remove"
)

var faultHook func(op Op, path string) error

// SetFaultHook installs a hook called before every file-system step; a non-nil return fails that step.
// Tests only: it lets them fail the Nth write, fsync or rename. It returns a function restoring the previous hook.
// Steps whose failure is ignored on purpose (best-effort removal of temp files after an error) are not
// hooked: failing them would test nothing.
func SetFaultHook(h func(op Op, path string) error) (restore func()) {
	prev := faultHook
	faultHook = h
	return func() { faultHook = prev }
}

func fault(op Op, path string) error {
	if faultHook == nil {
		return nil
	}
	if err := faultHook(op, path); err != nil {
		return &fs.PathError{Op: string(op), Path: path, Err: err}
	}
	return nil
}

// File is one file to write.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// EnsureDir creates dir and its missing parents with mode (whatever the umask), and fsyncs the parent of
// each directory it creates so that the new entry survives a crash. Existing directories keep their mode
// unless tighten is set, in which case group and other bits outside mode are removed. On failure the
// directories it created are removed again.
func EnsureDir(dir string, mode os.FileMode, tighten bool) error {
	_, err := EnsureDirCreated(dir, mode, tighten)
	return err
}

// EnsureDirCreated is EnsureDir, returning the directories it created, parents first, so that a caller can
// remove them again if a later step fails. On error it has removed them itself.
func EnsureDirCreated(dir string, mode os.FileMode, tighten bool) ([]string, error) {
	var created []string
	if err := ensureDir(dir, mode, tighten, &created); err != nil {
		for i := len(created) - 1; i >= 0; i-- {
			// Best effort, and only if still empty: the error being returned is the one to act on.
			_ = os.Remove(created[i])
		}
		return nil, err
	}
	return created, nil
}

func ensureDir(dir string, mode os.FileMode, tighten bool, created *[]string) error {
	info, err := os.Stat(dir)
	if err == nil {
		if !info.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		if tighten && info.Mode().Perm()&^mode != 0 {
			return chmod(dir, info.Mode().Perm()&mode)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := ensureDir(parent, mode, false, created); err != nil {
		return err
	}
	if err := fault(OpMkdir, dir); err != nil {
		return err
	}
	if err := sys.Mkdir(dir, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if info, serr := os.Stat(dir); serr == nil && info.IsDir() {
				// Another process made it between the stat and the mkdir: it owns its mode and durability.
				return nil
			}
			return fmt.Errorf("%s exists but is not a directory (a symbolic link to a missing directory?): remove it or create what it points to", dir)
		}
		return err
	}
	*created = append(*created, dir)
	if err := chmod(dir, mode); err != nil {
		return err
	}
	return syncDir(parent)
}

func chmod(path string, mode os.FileMode) error {
	if err := fault(OpChmod, path); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// remove deletes path; a missing path is not an error.
func remove(path string) error {
	if err := fault(OpRemove, path); err != nil {
		return err
	}
	if err := sys.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveFile removes path and fsyncs its directory, so that the removal survives a crash; a missing path
// is not an error. Both steps go through the fault hook.
func RemoveFile(path string) error {
	if err := remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// checkTarget refuses to write through a symlink or over a directory, and refuses to put a private file
// (no group/other bits) into a directory others can write to, where it could be swapped.
func checkTarget(f File) error {
	if info, err := os.Lstat(f.Path); err == nil {
		if info.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link; refusing to write through it (replace it with a regular file or remove it)", f.Path)
		}
		if info.IsDir() {
			return fmt.Errorf("%s is a directory: move it away so that the file can be written", f.Path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(f.Path)
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if f.Mode&0o077 == 0 && info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("refusing to write private file %s into %s, which is group- or world-writable (mode %04o): make it writable by its owner only (chmod go-w %s)", f.Path, dir, info.Mode().Perm(), dir)
	}
	return nil
}

// WriteFileAtomic replaces path with data: a temp file in the same directory, chmod, write, fsync, rename,
// fsync the directory. Readers see the old or the new file, never a mix.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return Commit("", []File{{Path: path, Data: data, Mode: mode}})
}

// writeTemp writes f next to its target and returns the temp file, still open and not yet synced (see
// syncTemps), and its path.
func writeTemp(f File) (*os.File, string, error) {
	dir, base := filepath.Split(f.Path)
	tmpPath := filepath.Join(dir, "."+base+tmpSuffix)
	if err := fault(OpCreate, tmpPath); err != nil {
		return nil, "", err
	}
	// O_EXCL|O_NOFOLLOW: never reuse or follow something planted at the temp name. A leftover from a crash is
	// removed by Recover before any write; this removal only makes room, and O_EXCL reports what it missed.
	_ = os.Remove(tmpPath)
	fh, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, f.Mode) // #nosec G304 -- next to the target, exclusive, links not followed
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*os.File, string, error) {
		// Already failing: the temp is unused, and a leftover is removed by the next Recover.
		_ = fh.Close()
		_ = os.Remove(tmpPath)
		return nil, "", err
	}
	if err := fault(OpChmod, tmpPath); err != nil {
		return fail(err)
	}
	if err := fh.Chmod(f.Mode); err != nil { // the umask may have cleared bits
		return fail(err)
	}
	if err := fault(OpWrite, tmpPath); err != nil {
		return fail(err)
	}
	if _, err := sys.Write(fh, f.Data); err != nil {
		return fail(err)
	}
	return fh, tmpPath, nil
}

// syncTemps fsyncs and closes the temp files written for targets. The fsyncs run concurrently: the file
// system commits concurrent fsyncs together (one ext4 journal commit for many files), so a PKI of 22
// files costs a few fsyncs instead of 22. The fault hook still sees every step in order, from this
// goroutine. Every file is closed whatever happens; the first error is returned, naming its target.
func syncTemps(fhs []*os.File, targets []string) error {
	closeAll := func() {
		for _, fh := range fhs {
			_ = fh.Close() // already failing; the temps are removed by the caller
		}
	}
	for i, fh := range fhs {
		if err := fault(OpSync, fh.Name()); err != nil {
			closeAll()
			return fmt.Errorf("writing %s: %w", targets[i], err)
		}
	}
	errs := make([]error, len(fhs))
	var wg sync.WaitGroup
	for i, fh := range fhs {
		wg.Go(func() { errs[i] = sys.Fsync(fh) })
	}
	wg.Wait()
	for i, fh := range fhs {
		if err := fh.Close(); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("writing %s: %w", targets[i], err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	if err := fault(OpSyncDir, dir); err != nil {
		return err
	}
	d, err := os.Open(dir) // #nosec G304 -- a directory k8scrypto writes into, opened to fsync it
	if err != nil {
		return err
	}
	defer d.Close() // read-only handle: the fsync's result is what matters
	return sys.Fsync(d)
}

func rename(from, to string) error {
	if err := fault(OpRename, to); err != nil {
		return err
	}
	return sys.Rename(from, to)
}

type journalEntry struct {
	Target string `json:"target"`
	Temp   string `json:"temp"`
	Old    string `json:"old,omitempty"`
}

type journal struct {
	// Rollback marks a replacement that failed part-way and is being undone; Recover then finishes undoing
	// it instead of rolling it forward, so a crash during the undo cannot leave a mix of old and new files.
	Rollback bool           `json:"rollback,omitempty"`
	Entries  []journalEntry `json:"entries"`
}

// Commit writes files as one unit: after a returned error every target is as it was; after a crash at any
// instant, Recover (run first by every command) completes the replacement if it had reached its commit
// point (the journal in journalDir) and discards it otherwise. A single file needs no journal: one rename
// is atomic. journalDir is the certificate directory; it may be "" only for a single file.
func Commit(journalDir string, files []File) error {
	return withHint(commit(journalDir, files))
}

// withHint adds what to do about the file-system errors an operator fixes outside k8scrypto.
func withHint(err error) error {
	var hint string
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		hint = "the file system is full: free space, then run the command again"
	case errors.Is(err, syscall.EROFS):
		hint = "the file system is read-only: remount it read-write, then run the command again"
	case errors.Is(err, fs.ErrPermission):
		hint = "run as the owner of the directory (usually root), then run the command again"
	default:
		return err
	}
	if strings.Contains(err.Error(), hint) {
		return err
	}
	return fmt.Errorf("%w; %s", err, hint)
}

// CheckCommit runs the checks Commit makes before it writes anything (no file twice, no link or directory
// in a target's place, no private file in a directory others can write, no link below journalDir), so that
// a caller with work to do just before the commit (recording its audit intent) can refuse first.
func CheckCommit(journalDir string, files []File) error {
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f.Path] {
			return fmt.Errorf("internal error: %s is written twice in one transaction", f.Path)
		}
		seen[f.Path] = true
		if err := checkTarget(f); err != nil {
			return err
		}
		if err := CheckNoLinksBelow(journalDir, f.Path); err != nil {
			return err
		}
	}
	return nil
}

func commit(journalDir string, files []File) error {
	if len(files) == 0 {
		return nil
	}
	if err := CheckCommit(journalDir, files); err != nil {
		return err
	}
	if len(files) > 1 && journalDir == "" {
		return errors.New("internal error: a multi-file commit needs a journal directory")
	}
	entries := make([]journalEntry, 0, len(files))
	// cleanup runs before the commit point, when the targets are untouched: a temp or kept link it fails to
	// remove is only clutter, which the next Recover removes.
	cleanup := func() {
		for _, e := range entries {
			_ = os.Remove(e.Temp)
			if e.Old != "" {
				_ = os.Remove(e.Old)
			}
		}
	}
	fhs := make([]*os.File, 0, len(files))
	targets := make([]string, 0, len(files))
	for _, f := range files {
		fh, tmp, err := writeTemp(f)
		if err != nil {
			for _, fh := range fhs {
				_ = fh.Close() // already failing; the temps are removed by cleanup
			}
			cleanup()
			return fmt.Errorf("writing %s: %w", f.Path, err)
		}
		fhs, targets = append(fhs, fh), append(targets, f.Path)
		// Absolute paths: a crash is recovered by a later run, which may start in another working directory.
		entries = append(entries, journalEntry{Target: AbsPath(f.Path), Temp: AbsPath(tmp)})
	}
	if err := syncTemps(fhs, targets); err != nil {
		cleanup()
		return err
	}
	// Keep a hard link to each file being replaced, so a failure half-way can put it back.
	for i := range entries {
		e := &entries[i]
		if _, err := os.Lstat(e.Target); err != nil {
			continue
		}
		dir, base := filepath.Split(e.Target)
		old := filepath.Join(dir, "."+base+oldSuffix)
		_ = os.Remove(old) // a leftover from a crash; if it stays, the link below fails and says so
		if err := fault(OpLink, old); err != nil {
			cleanup()
			return fmt.Errorf("keeping the previous %s: %w", e.Target, err)
		}
		if err := sys.Link(e.Target, old); err != nil {
			cleanup()
			return fmt.Errorf("keeping the previous %s: %w", e.Target, err)
		}
		e.Old = old
	}
	jpath := ""
	if len(files) > 1 {
		// The commit point: once the journal is on disk, a crash is completed by Recover.
		jpath = filepath.Join(journalDir, journalName)
		jdata, _ := json.Marshal(journal{Entries: entries}) // plain strings: cannot fail
		if err := WriteFileAtomic(jpath, jdata, ModeKey); err != nil {
			cleanup()
			return fmt.Errorf("writing journal: %w", err)
		}
	}
	for _, e := range entries {
		if err := rename(e.Temp, e.Target); err != nil {
			return abort(jpath, entries, fmt.Errorf("replacing %s: %w", e.Target, err))
		}
	}
	// Without the directory sync the renames may not survive a crash, so a failure here is a failed commit.
	if err := syncDirsOf(entries); err != nil {
		return abort(jpath, entries, err)
	}
	finish(jpath, entries)
	return nil
}

// AbsPath makes p absolute, or returns it as given when the working directory is unknown: paths that
// another run or another program reads (journal entries, audit intents, kubeadm's configuration, a
// suggested command) must not depend on the directory this run started in.
func AbsPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// abort undoes a partly applied replacement and returns cause. The journal is first turned into a rollback
// journal, so that a crash during the undo is finished in the same direction by Recover. When that cannot be
// written (a full or read-only file system fails the rollback journal as it failed the replacement), the
// undo is made all the same and then the forward journal removed: left in place, it would make the next run
// complete a replacement this one reported as failed, and report a full disk as an interrupted run. Only a
// crash during that undo can then leave a mix, which is what the rollback journal was for.
func abort(jpath string, entries []journalEntry, cause error) error {
	rollback := true
	if jpath != "" {
		jdata, _ := json.Marshal(journal{Rollback: true, Entries: entries}) // plain strings: cannot fail
		if err := WriteFileAtomic(jpath, jdata, ModeKey); err != nil {
			rollback = false
			if uerr := undo(entries); uerr != nil {
				// The forward journal is still in place and every temp file not yet renamed still exists.
				return fmt.Errorf("%w (undoing the replacement failed too: %v; the next k8scrypto run completes it)", cause, errors.Join(err, uerr))
			}
		}
	}
	if rollback {
		if err := undo(entries); err != nil {
			return fmt.Errorf("%w (undoing the replacement failed too: %v; the next k8scrypto run retries the undo)", cause, err)
		}
	}
	if jpath != "" {
		// The undo is complete. A rollback journal that survives only makes the next run repeat it, which
		// finds nothing left to undo; a forward one that survives finds no temp file left to rename, and
		// only ends the transaction again. cause is the error worth reporting.
		_ = remove(jpath)
	}
	_ = syncDirsOf(entries) // best effort: the undo is complete in any case
	return cause
}

// undo puts every target back as it was before a replacement, judging from what is on disk, so that it can
// be repeated after a crash: a target whose temp file still exists was never replaced and is left alone (no
// call that could fail again: a rename is what failed on a full disk); a replaced target gets its kept
// previous version back, or is removed when it did not exist before; leftover temps and kept links are
// removed.
func undo(entries []journalEntry) error {
	var errs []error
	for _, e := range entries {
		_, tmpErr := os.Lstat(e.Temp)
		if renamed := errors.Is(tmpErr, fs.ErrNotExist); !renamed {
			// The target was never replaced; a temp or kept link left behind is removed by the next Recover.
			_ = os.Remove(e.Temp)
			if e.Old != "" {
				_ = os.Remove(e.Old)
			}
			continue
		}
		if e.Old != "" {
			if _, err := os.Lstat(e.Old); err == nil {
				if err := rename(e.Old, e.Target); err != nil {
					errs = append(errs, err)
					continue
				}
				_ = os.Remove(e.Old) // gone with the rename, unless both names were one file already
			}
			// Restored, or restored before a crash (the kept link is gone with the rename).
			continue
		}
		if err := remove(e.Target); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func syncDirsOf(entries []journalEntry) error {
	seen := map[string]bool{}
	for _, e := range entries {
		d := filepath.Dir(e.Target)
		if !seen[d] {
			seen[d] = true
			if err := syncDir(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish ends a completed replacement: the journal and the kept previous versions go. Nothing here can
// make the targets inconsistent, so errors are not reported: a journal that survives or reappears after a
// crash finds no temp file left and only ends the transaction again.
func finish(jpath string, entries []journalEntry) {
	if jpath != "" {
		_ = os.Remove(jpath) // see above: a surviving journal only ends the transaction again
	}
	for _, e := range entries {
		if e.Old != "" {
			_ = os.Remove(e.Old) // a kept link left behind is removed by the next Recover
		}
	}
	if jpath != "" {
		_ = syncDir(filepath.Dir(jpath)) // a journal that reappears after a crash only ends the transaction again
	}
}
