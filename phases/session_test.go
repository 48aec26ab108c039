package phases

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// TestLockBusyNamesTheFlag: a lock another run holds for the whole --lock-timeout is reported naming the
// lock file and the flag that waits longer (pki says only which lock and how long).
func TestLockBusyNamesTheFlag(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	held, err := pki.AcquireLock(context.Background(), certDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	_, err = OpenSession(context.Background(), SessionOptions{CertDir: certDir, KubeconfigDir: filepath.Join(dir, "kube"), AuditLog: filepath.Join(dir, "audit.log"),
		LockTimeout: 150 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), pki.LockName) || !strings.Contains(err.Error(), "another k8scrypto run holds") || !strings.Contains(err.Error(), "--lock-timeout") {
		t.Fatalf("OpenSession = %v, want the lock, the other run and --lock-timeout named", err)
	}
}
