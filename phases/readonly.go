package phases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
)

// PendingRecovery lists what recovery would act on: an interrupted replacement, or the audit intent of a
// run killed after its commit.
func PendingRecovery(certDir, kubeconfigDir string) []string {
	o := SessionOptions{CertDir: certDir, KubeconfigDir: kubeconfigDir}
	found := pki.Interrupted(certDir, recoverDirs(o)...)
	if p := filepath.Join(certDir, AuditIntentName); fileExists(p) {
		found = append(found, p)
	}
	return found
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// PendingError says that an interrupted run is not yet recovered, and how to finish it.
type PendingError struct {
	CertDir string
	Found   []string
	Cause   error // why this command could not recover it itself
}

func (e *PendingError) Error() string {
	msg := fmt.Sprintf("an interrupted k8scrypto run left a replacement pending in %s (%s): until it is completed the files may be a mix of old and new, and what is reported from them may be wrong; run \"k8scrypto renew certs\" as root (any k8scrypto command that can take the lock completes it first)",
		e.CertDir, strings.Join(e.Found, ", "))
	if e.Cause != nil {
		msg += fmt.Sprintf(" (this run could not: %v)", e.Cause)
	}
	return msg
}

// NothingPending is a dry run's check: it writes nothing, so it cannot recover, and would give advice about
// half-replaced files.
func NothingPending(certDir, kubeconfigDir string) error {
	if found := PendingRecovery(certDir, kubeconfigDir); len(found) > 0 {
		return &PendingError{CertDir: certDir, Found: found, Cause: errors.New("--dry-run writes nothing")}
	}
	return nil
}

// RecoverBeforeReading is the session of a command that only reads (check-expiration, status): when an
// interrupted run left something, it takes the lock and recovers like a writing command. A user who
// cannot (a monitoring user without write access) gets a *PendingError; the command still reports.
func RecoverBeforeReading(o SessionOptions) error {
	found := PendingRecovery(o.CertDir, o.KubeconfigDir)
	if len(found) == 0 {
		return nil
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	lock, err := acquireLock(context.Background(), o) // read-only commands wait for a lock only after an interrupted run
	if err != nil {
		return &PendingError{CertDir: o.CertDir, Found: found, Cause: err}
	}
	defer lock.Release()
	audit, _, err := openState(o.AuditLog, "", false, o.Log)
	if err != nil {
		return &PendingError{CertDir: o.CertDir, Found: found, Cause: err}
	}
	if err := recoverLocked(o, audit); err != nil {
		return &PendingError{CertDir: o.CertDir, Found: PendingRecovery(o.CertDir, o.KubeconfigDir), Cause: err}
	}
	return nil
}
