package phases

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// AuditIntentName is the file, in the certificate directory, that holds a run's audit lines from before its
// commit until they are in the audit log. A run killed in between leaves it, and the next run's recovery
// records the lines: with outcome ok when the files it names hold what the run wrote, else as not applied.
const AuditIntentName = ".k8scrypto-audit-pending.json"

type auditIntent struct {
	Events []pki.AuditEvent `json:"events"`
	// Files maps each file the run replaces to the SHA-256 of the bytes it writes.
	Files map[string]string `json:"files"`
}

// writeAuditIntent records, before a commit, the audit lines the commit will need.
func writeAuditIntent(certDir string, events []pki.AuditEvent, files []pki.File) error {
	in := auditIntent{Events: events, Files: map[string]string{}}
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		in.Files[pki.AbsPath(f.Path)] = hex.EncodeToString(sum[:])
	}
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(certDir, AuditIntentName), data, pki.ModeKey); err != nil {
		return fmt.Errorf("recording the audit intent: %w", err)
	}
	return nil
}

// clearAuditIntent removes the intent once its lines are in the audit log.
func clearAuditIntent(certDir string) error {
	if err := os.Remove(filepath.Join(certDir, AuditIntentName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s (the next run records its audit lines again): %w", AuditIntentName, err)
	}
	return nil
}

// flushAuditIntent records the audit lines a killed run left in its intent. Recovery has run: the
// replacement is complete or undone, so the files all hold the new bytes or none do.
func flushAuditIntent(certDir string, audit *pki.AuditLog, now time.Time, log *slog.Logger) error {
	path := filepath.Join(certDir, AuditIntentName)
	data, err := pki.ReadFileNoFollow(path, pki.MaxConfigSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var in auditIntent
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("%s is not a k8scrypto audit intent (%v); inspect it and remove it", path, err)
	}
	applied := len(in.Files) > 0
	for p, want := range in.Files {
		got, err := pki.ReadFileNoFollow(p, pki.MaxConfigSize)
		sum := sha256.Sum256(got)
		if err != nil || hex.EncodeToString(sum[:]) != want {
			applied = false
		}
	}
	for i := range in.Events {
		e := &in.Events[i]
		note := fmt.Sprintf("recorded at %s by a later run: the run was stopped before it could", now.Format(time.RFC3339))
		if !applied && e.Operation != pki.AuditBackup {
			e.Outcome = "not applied: the run was stopped before its commit point; the previous files are in place"
		}
		if e.Detail != "" {
			note = e.Detail + "; " + note
		}
		e.Detail = note
	}
	if err := audit.Record(in.Events...); err != nil {
		return fmt.Errorf("recording the audit lines of an interrupted run: %w", err)
	}
	log.Warn("recorded the audit lines of an interrupted run", "lines", len(in.Events), "applied", applied)
	return clearAuditIntent(certDir)
}
