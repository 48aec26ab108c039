package main

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
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
)

// The default state locations (root only). Variables so that tests can point them somewhere unwritable
// and check the per-user fallback.
var (
	defaultAuditLog  = pki.DefaultAuditLog
	defaultBackupDir = pki.DefaultBackupDir
)

// openState opens the audit log and, when wantBackups is set, resolves the backup root. An explicit
// --audit-log or --backup-dir is used as given and is an error at once when it cannot be written, whether
// or not anything will be written this run. A default that cannot be written falls back to the per-user
// state directory ($XDG_STATE_HOME/k8scrypto, else ~/.local/state/k8scrypto), with one notice for both.
func openState(auditExplicit, backupExplicit string, wantBackups bool, log *slog.Logger) (*pki.AuditLog, string, error) {
	var fellBack []any
	path := auditExplicit
	if path == "" {
		dir, fb, err := pki.StateDir("", filepath.Dir(defaultAuditLog), "")
		if err != nil {
			return nil, "", err
		}
		path = filepath.Join(dir, filepath.Base(defaultAuditLog))
		if fb {
			fellBack = append(fellBack, "audit-log", path)
		}
	}
	var root string
	if wantBackups {
		dir, fb, err := pki.StateDir(backupExplicit, defaultBackupDir, "backups")
		if err != nil {
			return nil, "", fmt.Errorf("--backup-dir: %w", err)
		}
		root = dir
		if fb {
			fellBack = append(fellBack, "backup-dir", root)
		}
	}
	audit, err := pki.OpenAuditLog(path)
	if err != nil {
		if auditExplicit != "" {
			err = fmt.Errorf("--audit-log: %w", err)
		}
		return nil, "", err
	}
	if len(fellBack) > 0 {
		log.Warn("the default state locations under /var are not writable (not root?); using the per-user state directory", fellBack...)
	}
	return audit, root, nil
}

// openAudit opens the audit log alone (see openState).
func openAudit(explicit string, log *slog.Logger) (*pki.AuditLog, error) {
	audit, _, err := openState(explicit, "", false, log)
	return audit, err
}

// keyRotationBackupRoot is where encryption-key and service-account-key rotations keep their backups: a
// subdirectory of --backup-dir that renewal's --keep-backups pruning never touches, because a backup of an
// old encryption key may be the only way to read values still stored under it.
func keyRotationBackupRoot(root string) string { return filepath.Join(root, "key-rotations") }

// beginRotation prepares a key-rotation step (encryption or service-account key): the audit log, the backup
// root, and the certificate directory's lock after recovering from any interrupted run. A dry run touches
// nothing and gets none of them, but refuses while an interrupted replacement is pending. release must be
// called when the step is done.
func beginRotation(cfg *pki.Config, f *clusterFlags, backupDir string, dryRun bool, now time.Time, log *slog.Logger) (audit *pki.AuditLog, root string, release func(), err error) {
	release = func() {}
	if dryRun {
		return nil, "", release, pendingBeforeDryRun(cfg, f.kubeconfigDir)
	}
	if audit, root, err = openState(f.auditLog, backupDir, true, log); err != nil {
		return nil, "", release, err
	}
	root = keyRotationBackupRoot(root)
	if _, err := os.Stat(cfg.CertDir); err != nil {
		return nil, "", release, fmt.Errorf("certificate directory %s: %w (set --cert-dir)", cfg.CertDir, err)
	}
	lock, err := lockAndRecover(cfg, f.kubeconfigDir, f.lockTimeout, audit, now, log)
	if err != nil {
		return nil, "", release, err
	}
	// Under the lock: a rotation killed while copying its backups left a partial copy.
	pki.SweepBackups(root)
	return audit, root, func() { _ = lock.Release() }, nil
}

// recoverDirs are the directories an interrupted run may have left temp files in.
func recoverDirs(cfg *pki.Config, kubeconfigDir string) []string {
	return []string{cfg.CertDir, filepath.Join(cfg.CertDir, "etcd"), kubeconfigDir}
}

// lockAndRecover takes the certificate directory's lock and repairs what a crashed run left behind, and
// records it in the audit log: every file whose replacement recovery completed or undid, and the audit
// lines of a run killed after its commit. Every command calls it (or recoverBeforeReading) before
// anything else.
func lockAndRecover(cfg *pki.Config, kubeconfigDir string, timeout time.Duration, audit *pki.AuditLog, now time.Time, log *slog.Logger) (*pki.Lock, error) {
	lock, err := pki.AcquireLock(cfg.CertDir, timeout)
	if err != nil {
		return nil, err
	}
	if err := recoverLocked(cfg, kubeconfigDir, audit, now, log); err != nil {
		_ = lock.Release() // nothing to do about a failed close of the lock; the kernel drops it with the process
		return nil, err
	}
	return lock, nil
}

func recoverLocked(cfg *pki.Config, kubeconfigDir string, audit *pki.AuditLog, now time.Time, log *slog.Logger) error {
	rep, err := pki.Recover(cfg.CertDir, recoverDirs(cfg, kubeconfigDir)...)
	events := recoveryEvents(rep, now.UTC())
	if err != nil {
		// What was repaired before the failure is still recorded.
		return errors.Join(fmt.Errorf("recovering from an interrupted run: %w", err), audit.Record(events...))
	}
	for _, p := range rep.RolledForward {
		log.Warn("completed an interrupted replacement", "file", p)
	}
	for _, p := range rep.RolledBack {
		log.Warn("undid a failed replacement that was interrupted", "file", p)
	}
	for _, p := range rep.Removed {
		log.Warn("removed a leftover temporary file", "file", p)
	}
	if err := audit.Record(events...); err != nil {
		return fmt.Errorf("recovered from an interrupted run, but %w", err)
	}
	return flushAuditIntent(cfg.CertDir, audit, now.UTC(), log)
}

// recoveryEvents are the audit lines of a recovery: one per file it completed, put back or removed.
func recoveryEvents(rep pki.RecoverReport, now time.Time) []pki.AuditEvent {
	var out []pki.AuditEvent
	add := func(op, path, detail string) {
		serial, sha := fileIdentity(path)
		out = append(out, pki.AuditEvent{Time: now, Operation: op, File: path, Serial: serial, SHA256: sha, Outcome: "ok", Detail: detail})
	}
	for _, p := range rep.RolledForward {
		add(pki.AuditRecover, p, "completed a replacement interrupted after its commit point (rolled forward); the file now in place is the new one")
	}
	for _, p := range rep.RolledBack {
		add(pki.AuditRecover, p, "finished undoing a failed replacement that was interrupted (rolled back); the file now in place is the previous one")
	}
	for _, p := range rep.Removed {
		out = append(out, pki.AuditEvent{Time: now, Operation: pki.AuditRemove, File: p, Outcome: "ok",
			Detail: "leftover temporary file of an interrupted run (never in use)"})
	}
	return out
}

// fileIdentity names what a certificate, key or kubeconfig file holds, by serial and fingerprint (of the
// certificate, or of a key's public half); empty for other files.
func fileIdentity(path string) (serial, sha string) {
	switch {
	case strings.HasSuffix(path, ".crt"):
		if cert, _, err := phases.LoadCert(path); err == nil {
			return cert.SerialNumber.String(), pki.Fingerprint(cert.Raw)
		}
	case strings.HasSuffix(path, ".key"):
		if key, err := phases.LoadKey(path); err == nil {
			sha, _ = pki.PublicKeyFingerprint(key.Public())
		}
	case strings.HasSuffix(path, ".conf"):
		if kc, err := phases.LoadKubeconfig(path); err == nil && kc.ClientCert != nil {
			return kc.ClientCert.SerialNumber.String(), pki.Fingerprint(kc.ClientCert.Raw)
		}
	}
	return serial, sha
}

// auditIntentName is the file, in the certificate directory, that holds a run's audit lines from before its
// commit until they are in the audit log. A run killed in between leaves it, and the next run's recovery
// records the lines: with outcome ok when the files it names hold what the run wrote, else as not applied.
const auditIntentName = ".k8scrypto-audit-pending.json"

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
	if err := pki.WriteFileAtomic(filepath.Join(certDir, auditIntentName), data, pki.ModeKey); err != nil {
		return fmt.Errorf("recording the audit intent: %w", err)
	}
	return nil
}

// clearAuditIntent removes the intent once its lines are in the audit log.
func clearAuditIntent(certDir string) error {
	if err := os.Remove(filepath.Join(certDir, auditIntentName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s (the next run records its audit lines again): %w", auditIntentName, err)
	}
	return nil
}

// flushAuditIntent records the audit lines a killed run left in its intent. Recovery has run: the
// replacement is complete or undone, so the files all hold the new bytes or none do.
func flushAuditIntent(certDir string, audit *pki.AuditLog, now time.Time, log *slog.Logger) error {
	path := filepath.Join(certDir, auditIntentName)
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

// flushAfterFailedCommit adds to a failed run's error the recording of its audit intent: a failed commit was
// undone, so the intent is recorded as not applied. While a replacement is still pending (the undo failed
// too), err is returned as it is and the next run's recovery decides.
func flushAfterFailedCommit(err error, cfg *pki.Config, kubeconfigDir string, audit *pki.AuditLog, now time.Time, log *slog.Logger) error {
	if len(pki.Interrupted(cfg.CertDir, recoverDirs(cfg, kubeconfigDir)...)) > 0 {
		return err
	}
	return errors.Join(err, flushAuditIntent(cfg.CertDir, audit, now, log))
}

// pendingRecovery lists what recovery would act on: an interrupted replacement, or the audit intent of a
// run killed after its commit.
func pendingRecovery(cfg *pki.Config, kubeconfigDir string) []string {
	found := pki.Interrupted(cfg.CertDir, recoverDirs(cfg, kubeconfigDir)...)
	if p := filepath.Join(cfg.CertDir, auditIntentName); fileExists(p) {
		found = append(found, p)
	}
	return found
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// pendingError says that an interrupted run is not yet recovered, and how to finish it.
type pendingError struct {
	certDir string
	found   []string
	cause   error // why this command could not recover it itself
}

func (e *pendingError) Error() string {
	msg := fmt.Sprintf("an interrupted k8scrypto run left a replacement pending in %s (%s): until it is completed the files may be a mix of old and new, and what is reported from them may be wrong; run \"k8scrypto renew certs\" as root (any k8scrypto command that can take the lock completes it first)",
		e.certDir, strings.Join(e.found, ", "))
	if e.cause != nil {
		msg += fmt.Sprintf(" (this run could not: %v)", e.cause)
	}
	return msg
}

// pendingBeforeDryRun is a dry run's check: it writes nothing, so it cannot recover, and would give advice
// about half-replaced files.
func pendingBeforeDryRun(cfg *pki.Config, kubeconfigDir string) error {
	if found := pendingRecovery(cfg, kubeconfigDir); len(found) > 0 {
		return &pendingError{certDir: cfg.CertDir, found: found, cause: errors.New("--dry-run writes nothing")}
	}
	return nil
}

// recoverBeforeReading is the recovery of a command that only reads (check-expiration, status): when an
// interrupted run left something, it takes the lock and recovers like a writing command. A user who
// cannot (a monitoring user without write access) gets a *pendingError; the command still reports.
func recoverBeforeReading(cfg *pki.Config, kubeconfigDir, auditLog string, timeout time.Duration, now time.Time, log *slog.Logger) error {
	found := pendingRecovery(cfg, kubeconfigDir)
	if len(found) == 0 {
		return nil
	}
	lock, err := pki.AcquireLock(cfg.CertDir, timeout)
	if err != nil {
		return &pendingError{certDir: cfg.CertDir, found: found, cause: err}
	}
	defer lock.Release()
	audit, err := openAudit(auditLog, log)
	if err != nil {
		return &pendingError{certDir: cfg.CertDir, found: found, cause: err}
	}
	if err := recoverLocked(cfg, kubeconfigDir, audit, now, log); err != nil {
		return &pendingError{certDir: cfg.CertDir, found: pendingRecovery(cfg, kubeconfigDir), cause: err}
	}
	return nil
}

// auditEvents turns a run's file results into audit lines: every created or reused key, certificate and
// other secret-bearing file.
func auditEvents(r phases.Result, now time.Time, outcome string) []pki.AuditEvent {
	var out []pki.AuditEvent
	for _, f := range r.Files {
		var op string
		switch f.Action {
		case phases.ActionCreated:
			op = pki.AuditCreate
		case phases.ActionReused:
			op = pki.AuditReuse
		default:
			continue
		}
		out = append(out, pki.AuditEvent{Time: now, Operation: op, File: f.Path, Serial: f.Serial, SHA256: f.SHA256, Outcome: outcome, Detail: f.Phase})
	}
	return out
}
