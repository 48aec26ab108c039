package pki

import (
	"os"
	"path/filepath"
)

// AuditRecover is the audit operation of a file that recovery completed or put back after an interrupted
// run.
const AuditRecover = "recover"

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
