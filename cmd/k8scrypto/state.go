package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
)

// openAudit opens the audit log: the --audit-log path as given (an error if it cannot be written), else the
// default under /var, else the per-user state directory with one notice.
func openAudit(explicit string, log *slog.Logger) (*pki.AuditLog, error) {
	path := explicit
	if path == "" {
		dir, fellBack, err := pki.StateDir("", filepath.Dir(pki.DefaultAuditLog), "")
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, filepath.Base(pki.DefaultAuditLog))
		if fellBack {
			log.Warn("default audit log location is not writable; using the per-user state directory", "audit-log", path)
		}
	}
	return pki.OpenAuditLog(path)
}

// backupRoot resolves --backup-dir the same way.
func backupRoot(explicit string, log *slog.Logger) (string, error) {
	dir, fellBack, err := pki.StateDir(explicit, pki.DefaultBackupDir, "backups")
	if err != nil {
		return "", err
	}
	if fellBack {
		log.Warn("default backup location is not writable; using the per-user state directory", "backup-dir", dir)
	}
	return dir, nil
}

// keyRotationBackupRoot is where encryption-key and service-account-key rotations keep their backups: a
// subdirectory of --backup-dir that renewal's --keep-backups pruning never touches, because a backup of an
// old encryption key may be the only way to read values still stored under it.
func keyRotationBackupRoot(explicit string, log *slog.Logger) (string, error) {
	root, err := backupRoot(explicit, log)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "key-rotations"), nil
}

// beginRotation prepares a key-rotation step (encryption or service-account key): the audit log, the backup
// root, and the certificate directory's lock after recovering from any interrupted run. A dry run touches
// nothing and gets none of them. release must be called when the step is done.
func beginRotation(cfg *pki.Config, f *clusterFlags, backupDir string, dryRun bool, log *slog.Logger) (audit *pki.AuditLog, root string, release func(), err error) {
	release = func() {}
	if dryRun {
		return nil, "", release, nil
	}
	if audit, err = openAudit(f.auditLog, log); err != nil {
		return nil, "", release, err
	}
	if root, err = keyRotationBackupRoot(backupDir, log); err != nil {
		return nil, "", release, err
	}
	if _, err := os.Stat(cfg.CertDir); err != nil {
		return nil, "", release, fmt.Errorf("certificate directory %s: %w (set --cert-dir)", cfg.CertDir, err)
	}
	lock, err := lockAndRecover(cfg, f.kubeconfigDir, f.lockTimeout, log)
	if err != nil {
		return nil, "", release, err
	}
	// Under the lock: a rotation killed while copying its backups left a partial copy.
	pki.SweepBackups(root)
	return audit, root, func() { _ = lock.Release() }, nil
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
