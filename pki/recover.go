package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RecoverReport says what Recover found from an interrupted run.
type RecoverReport struct {
	RolledForward []string // targets whose interrupted replacement was completed
	RolledBack    []string // targets of a failed replacement whose interrupted undo was completed
	Removed       []string // leftover temp files removed
}

// Recover finishes or discards a replacement that a crash interrupted: with a journal in journalDir every
// journalled temp file still present is renamed into place (they were complete and synced before the
// journal was written); then leftover temp files in dirs are removed. Every command that writes calls it
// first, under the lock.
func Recover(journalDir string, dirs ...string) (RecoverReport, error) {
	var rep RecoverReport
	jpath := filepath.Join(journalDir, journalName)
	data, err := ReadFileNoFollow(jpath, MaxConfigSize)
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(data, &j); err != nil {
			// The journal is written atomically, so this is not ours or was edited by hand.
			return rep, fmt.Errorf("%s is not a k8scrypto journal (%v); inspect it and remove it", jpath, err)
		}
		if j.Rollback {
			if err := undo(j.Entries); err != nil {
				return rep, fmt.Errorf("undoing an interrupted replacement (journal %s): %w", jpath, err)
			}
			for _, e := range j.Entries {
				rep.RolledBack = append(rep.RolledBack, e.Target)
			}
		} else {
			for _, e := range j.Entries {
				if _, err := os.Lstat(e.Temp); err == nil {
					if err := rename(e.Temp, e.Target); err != nil {
						return rep, fmt.Errorf("completing interrupted replacement of %s: %w", e.Target, err)
					}
					rep.RolledForward = append(rep.RolledForward, e.Target)
				}
			}
		}
		if err := syncDirsOf(j.Entries); err != nil {
			return rep, err
		}
		finish(jpath, j.Entries)
	case !errors.Is(err, fs.ErrNotExist):
		return rep, err
	}
	for _, dir := range dirs {
		if CheckNoLinksBelow(journalDir, filepath.Join(dir, journalName)) != nil {
			// A linked subdirectory is outside the tree k8scrypto writes (Commit refuses it): not ours to clean.
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return rep, err
		}
		for _, ent := range ents {
			name := ent.Name()
			if isLeftover(name) {
				p := filepath.Join(dir, name)
				if err := remove(p); err != nil {
					return rep, err
				}
				rep.Removed = append(rep.Removed, p)
			}
		}
	}
	return rep, nil
}

// isLeftover reports whether a file name is a temp file or a kept previous version, which an interrupted
// run leaves for Recover.
func isLeftover(name string) bool {
	return strings.HasPrefix(name, ".") && (strings.HasSuffix(name, tmpSuffix) || strings.HasSuffix(name, oldSuffix))
}

// IsBookkeeping reports whether a file name is one of k8scrypto's temp, rollback or journal files.
func IsBookkeeping(name string) bool {
	return name == journalName || isLeftover(name)
}

// Interrupted lists what an interrupted run left for Recover: the journal in journalDir, and temp files and
// kept previous versions in dirs. It takes no lock and changes nothing, so commands that only read can tell
// that the files may be a mix of old and new; a run writing at this instant shows the same.
func Interrupted(journalDir string, dirs ...string) []string {
	var found []string
	if _, err := os.Lstat(filepath.Join(journalDir, journalName)); err == nil {
		found = append(found, filepath.Join(journalDir, journalName))
	}
	for _, dir := range dirs {
		ents, _ := os.ReadDir(dir) // an unreadable directory is reported by the command that reads it
		for _, ent := range ents {
			if isLeftover(ent.Name()) {
				found = append(found, filepath.Join(dir, ent.Name()))
			}
		}
	}
	return found
}
