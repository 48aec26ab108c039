package phases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// The default state locations (root only). Variables so that tests can point them somewhere unwritable
// and check the per-user fallback.
var (
	DefaultAuditLog  = pki.DefaultAuditLog
	DefaultBackupDir = pki.DefaultBackupDir
)

// SessionOptions say where a command's state lives and how long it waits for the lock.
type SessionOptions struct {
	CertDir       string
	KubeconfigDir string
	LockTimeout   time.Duration
	// AuditLog and BackupDir are the operator's --audit-log and --backup-dir: used as given, and an error at
	// once when they cannot be written. Empty means the default under /var, else the per-user state directory.
	AuditLog  string
	BackupDir string
	// Backups resolves the backup root (commands that replace files); KeyRotations puts it in the
	// key-rotations/ subdirectory, which renewal's pruning never touches.
	Backups      bool
	KeyRotations bool
	// CreateCertDir creates a missing certificate directory (init), 0700 with Strict, and removes it again
	// when the run fails; otherwise the directory must exist (RequireCertDir words the error) or not (renew
	// checks it itself).
	CreateCertDir  bool
	Strict         bool
	RequireCertDir bool
	// DryRun opens a session that writes nothing (see DrySession).
	DryRun bool
	Now    time.Time
	Log    *slog.Logger
}

// Session is the one envelope of every command that writes: OpenSession opens the audit log and resolves
// the backup root (with one notice when they fall back to the per-user state directory), takes the
// certificate directory's lock and recovers what an interrupted run left; Commit replaces a set of staged
// files with their audit lines; Release drops the lock. A nil *Session, like a DrySession, is a dry run: it
// records nothing.
type Session struct {
	o SessionOptions
	// Audit is the audit log (nil in a dry run); AuditLog its path, the file the run appends to (or would);
	// BackupRoot where this run's backups go.
	Audit      *pki.AuditLog
	AuditLog   string
	BackupRoot string
	lock       *pki.Lock
	created    *pki.CreatedDirs
}

// DryRun reports whether the session writes nothing.
func (s *Session) DryRun() bool { return s == nil || s.o.DryRun }

// BeginSession opens a session, or with o.DryRun the dry one: OpenSession or DrySession.
func BeginSession(ctx context.Context, o SessionOptions) (*Session, error) {
	if o.DryRun {
		return DrySession(o)
	}
	return OpenSession(ctx, o)
}

// DrySession is the session of a dry run: the same state locations OpenSession resolves (the audit log the
// run would append to, the backup root its backups would go under), and the refusal of a run an interrupted
// one left pending (a dry run cannot recover it), but nothing is created, locked or written. Its Backups name
// the directory a real run at the same time would use; its Commit and Record do nothing, and backUp only
// names the copies.
func DrySession(o SessionOptions) (*Session, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := checkPathFlags(pathFlag{"--kubeconfig-dir", o.KubeconfigDir}, pathFlag{"--audit-log", o.AuditLog}, pathFlag{"--backup-dir", o.BackupDir}); err != nil {
		return nil, err
	}
	if o.RequireCertDir {
		if _, err := os.Stat(o.CertDir); err != nil {
			return nil, fmt.Errorf("certificate directory %s: %w (set --cert-dir)", o.CertDir, err)
		}
	}
	if err := NothingPending(o.CertDir, o.KubeconfigDir); err != nil {
		return nil, err
	}
	s := &Session{o: o}
	var err error
	if s.AuditLog, s.BackupRoot, err = statePaths(o.AuditLog, o.BackupDir, o.Backups, o.Log); err != nil {
		return nil, err
	}
	if err := pki.CheckAuditLog(s.AuditLog); err != nil {
		if o.AuditLog != "" {
			err = fmt.Errorf("--audit-log: %w", err)
		}
		return nil, err
	}
	if o.KeyRotations {
		s.BackupRoot = filepath.Join(s.BackupRoot, keyRotationsDir)
	}
	return s, nil
}

// keyRotationsDir is where encryption-key and service-account-key rotations keep their backups: a
// subdirectory of --backup-dir that renewal's --keep-backups pruning never touches, because a backup of an
// old encryption key may be the only way to read values still stored under it.
const keyRotationsDir = "key-rotations"

// OpenSession opens the state, takes the lock and recovers from any interrupted run, in that order.
func OpenSession(ctx context.Context, o SessionOptions) (*Session, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := checkPathFlags(pathFlag{"--kubeconfig-dir", o.KubeconfigDir}, pathFlag{"--audit-log", o.AuditLog}, pathFlag{"--backup-dir", o.BackupDir}); err != nil {
		return nil, err
	}
	s := &Session{o: o}
	var err error
	if s.Audit, s.BackupRoot, err = openState(o.AuditLog, o.BackupDir, o.Backups, o.Log); err != nil {
		return nil, err
	}
	s.AuditLog = s.Audit.Path
	if o.KeyRotations {
		s.BackupRoot = filepath.Join(s.BackupRoot, keyRotationsDir)
	}
	if o.RequireCertDir {
		if _, err := os.Stat(o.CertDir); err != nil {
			return nil, fmt.Errorf("certificate directory %s: %w (set --cert-dir)", o.CertDir, err)
		}
	}
	if o.CreateCertDir {
		if s.created, err = pki.PrepareCertDir(o.CertDir, o.Strict); err != nil {
			return nil, err
		}
	}
	if s.lock, err = lockAndRecover(ctx, o, s.Audit); err != nil {
		s.created.RemoveIfUnused(false) // another run's lock file keeps the directory
		return nil, err
	}
	if o.KeyRotations {
		// Under the lock: a rotation killed while copying its backups left a partial copy.
		pki.SweepBackups(s.BackupRoot)
	}
	return s, nil
}

// Release drops the lock; the kernel drops it with the process anyway, so a failed close is not reported.
func (s *Session) Release() {
	if s != nil {
		_ = s.lock.Release()
	}
}

// Fail ends a run that failed: the certificate directory init created is removed again when nothing was
// written to it, and the audit lines of a commit that failed and was undone are recorded as not applied.
// It returns err with whatever recording them added.
func (s *Session) Fail(err error) error {
	if s == nil {
		return err
	}
	err = s.abandon(err)
	s.created.RemoveIfUnused(true)
	return err
}

// Record appends lines to the audit log; a dry run records nothing.
func (s *Session) Record(events ...pki.AuditEvent) error {
	if s.DryRun() {
		return nil
	}
	return s.Audit.Record(events...)
}

// Backups starts this run's backup directory under the backup root (created on its first copy).
func (s *Session) Backups() (*pki.BackupSet, error) {
	bs, err := pki.NewBackupSet(s.BackupRoot, s.o.Now)
	return bs, backupError(err)
}

// openState opens the audit log and, when wantBackups is set, resolves the backup root. An explicit
// --audit-log or --backup-dir is used as given and is an error at once when it cannot be written, whether
// or not anything will be written this run. A default that cannot be written falls back to the per-user
// state directory ($XDG_STATE_HOME/k8scrypto, else ~/.local/state/k8scrypto), with one notice for both.
func openState(auditExplicit, backupExplicit string, wantBackups bool, log *slog.Logger) (*pki.AuditLog, string, error) {
	path, root, err := statePaths(auditExplicit, backupExplicit, wantBackups, log)
	if err != nil {
		return nil, "", err
	}
	audit, err := pki.OpenAuditLog(path)
	if err != nil {
		if auditExplicit != "" {
			err = fmt.Errorf("--audit-log: %w", err)
		}
		return nil, "", err
	}
	return audit, root, nil
}

// statePaths resolves the audit log's path and, when wantBackups is set, the backup root, as openState
// uses them, and says once when they fall back to the per-user state directory. It creates nothing.
func statePaths(auditExplicit, backupExplicit string, wantBackups bool, log *slog.Logger) (string, string, error) {
	var fellBack []any
	path := auditExplicit
	if path == "" {
		dir, fb, err := pki.StateDir("", filepath.Dir(DefaultAuditLog), "")
		if err != nil {
			return "", "", err
		}
		path = filepath.Join(dir, filepath.Base(DefaultAuditLog))
		if fb {
			fellBack = append(fellBack, "audit-log", path)
		}
	}
	var root string
	if wantBackups {
		dir, fb, err := pki.StateDir(backupExplicit, DefaultBackupDir, "backups")
		if err != nil {
			return "", "", fmt.Errorf("--backup-dir: %w", err)
		}
		root = dir
		if fb {
			fellBack = append(fellBack, "backup-dir", root)
		}
	}
	if len(fellBack) > 0 {
		log.Warn("the default state locations under /var are not writable (not root?); using the per-user state directory", fellBack...)
	}
	return path, root, nil
}

// recoverDirs are the directories an interrupted run may have left temp files in.
func recoverDirs(o SessionOptions) []string {
	return []string{o.CertDir, filepath.Join(o.CertDir, "etcd"), o.KubeconfigDir}
}

// lockAndRecover takes the certificate directory's lock and repairs what a crashed run left behind, and
// records it in the audit log: every file whose replacement recovery completed or undid, and the audit
// lines of a run killed after its commit. Every command does it (or RecoverBeforeReading) before anything
// else.
func lockAndRecover(ctx context.Context, o SessionOptions, audit *pki.AuditLog) (*pki.Lock, error) {
	lock, err := acquireLock(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := recoverLocked(o, audit); err != nil {
		_ = lock.Release() // nothing to do about a failed close of the lock; the kernel drops it with the process
		return nil, err
	}
	return lock, nil
}

// acquireLock takes the certificate directory's lock, waiting up to --lock-timeout or until ctx ends (a signal).
func acquireLock(ctx context.Context, o SessionOptions) (*pki.Lock, error) {
	lock, err := pki.AcquireLock(ctx, o.CertDir, o.LockTimeout)
	if busy := new(pki.LockBusyError); errors.As(err, &busy) {
		return nil, fmt.Errorf("another k8scrypto run holds %s; gave up after %s (raise --lock-timeout)", busy.Path, busy.Timeout)
	}
	return lock, err
}

func recoverLocked(o SessionOptions, audit *pki.AuditLog) error {
	rep, err := pki.Recover(o.CertDir, recoverDirs(o)...)
	events := recoveryEvents(rep, o.Now.UTC())
	if err != nil {
		// What was repaired before the failure is still recorded.
		return errors.Join(fmt.Errorf("recovering from an interrupted run: %w", err), audit.Record(events...))
	}
	for _, p := range rep.RolledForward {
		o.Log.Warn("completed an interrupted replacement", "file", p)
	}
	for _, p := range rep.RolledBack {
		o.Log.Warn("undid a failed replacement that was interrupted", "file", p)
	}
	for _, p := range rep.Removed {
		o.Log.Warn("removed a leftover temporary file", "file", p)
	}
	if err := audit.Record(events...); err != nil {
		return fmt.Errorf("recovered from an interrupted run, but %w", err)
	}
	return flushAuditIntent(o.CertDir, audit, o.Now.UTC(), o.Log)
}

// recoveryEvents are the audit lines of a recovery: one per file it completed, put back or removed.
func recoveryEvents(rep pki.RecoverReport, now time.Time) []pki.AuditEvent {
	var out []pki.AuditEvent
	add := func(op, path, detail string) {
		serial, sha := FileIdentity(path)
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

// FileIdentity names what a certificate, key or kubeconfig file holds, by serial and fingerprint (of the
// certificate, or of a key's public half); empty for other files.
func FileIdentity(path string) (serial, sha string) {
	switch filepath.Ext(path) {
	case ".crt":
		if cert, _, err := LoadCert(path); err == nil {
			return cert.SerialNumber.String(), pki.Fingerprint(cert.Raw)
		}
	case ".key":
		if key, err := LoadKey(path); err == nil {
			sha, _ = pki.PublicKeyFingerprint(key.Public())
		}
	case ".conf":
		if kc, err := LoadKubeconfig(path); err == nil && kc.ClientCert != nil {
			return kc.ClientCert.SerialNumber.String(), pki.Fingerprint(kc.ClientCert.Raw)
		}
	}
	return serial, sha
}
