package main

import (
	"log/slog"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
)

// beginRotation opens the session of a key-rotation step (encryption or service-account key). A dry run
// touches nothing and gets none of it, but refuses while an interrupted replacement is pending. release must
// be called when the step is done.
func beginRotation(cfg *pki.Config, f *clusterFlags, backupDir string, dryRun bool, now time.Time, log *slog.Logger) (audit *pki.AuditLog, root string, release func(), err error) {
	release = func() {}
	if dryRun {
		return nil, "", release, phases.NothingPending(cfg.CertDir, f.kubeconfigDir)
	}
	s, err := phases.OpenSession(phases.SessionOptions{
		CertDir: cfg.CertDir, KubeconfigDir: f.kubeconfigDir, LockTimeout: f.lockTimeout, AuditLog: f.auditLog,
		BackupDir: backupDir, Backups: true, KeyRotations: true, RequireCertDir: true, Now: now, Log: log,
	})
	if err != nil {
		return nil, "", release, err
	}
	return s.Audit, s.BackupRoot, s.Release, nil
}

// recoverBeforeReading is the recovery of a command that only reads (see phases.RecoverBeforeReading).
func recoverBeforeReading(cfg *pki.Config, kubeconfigDir, auditLog string, timeout time.Duration, now time.Time, log *slog.Logger) error {
	return phases.RecoverBeforeReading(phases.SessionOptions{
		CertDir: cfg.CertDir, KubeconfigDir: kubeconfigDir, AuditLog: auditLog, LockTimeout: timeout, Now: now, Log: log,
	})
}
