package phases

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestRecoveryBeforeReadingCommands: a renewal killed half-way through its replacement (one file renamed,
// the journal in place) is completed before anything else by any command that can take the lock, and
// recorded: a "recover" line per completed file, and the killed run's own lines from its audit intent.
// A dry run never writes and says the replacement is pending; a command that cannot take the lock (held
// here; a monitoring user without write access is the same) reports it, naming the command that finishes it.
// The kill is runtime.Goexit at the fault hook: deferred calls run (the kernel closes the files and releases
// the lock of a killed process), nothing else does.
func TestRecoveryBeforeReadingCommands(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * day)
	names := []string{"apiserver", "etcd-server", "admin.conf"}
	isTarget := func(op pki.Op, path string) bool {
		d := filepath.Dir(path)
		return op == pki.OpRename && (d == e.certDir || d == filepath.Join(e.certDir, "etcd") || d == e.kubeDir) && !strings.HasPrefix(filepath.Base(path), ".")
	}
	renames := 0
	restore := pki.SetFaultHook(func(op pki.Op, path string) error {
		// Killed as it renames the second target into place: the first is new, the journal is there.
		if isTarget(op, path) {
			if renames++; renames == 2 {
				runtime.Goexit()
			}
		}
		return nil
	})
	done := make(chan bool)
	go func() {
		killed := true
		defer func() { done <- killed }()
		e.renewCerts(now, names, false, "")
		killed = false
	}()
	killed := <-done
	restore()
	if !killed {
		t.Fatal("the renewal was not killed at its second rename")
	}
	if len(pki.Interrupted(e.certDir)) == 0 {
		t.Fatal("no journal after the crash")
	}
	interrupted := snapshot(t, e.certDir, e.kubeDir)
	unchanged := func(label string) {
		t.Helper()
		after := snapshot(t, e.certDir, e.kubeDir)
		for p, h := range interrupted {
			if after[p] != h {
				t.Errorf("%s changed %s", label, p)
			}
		}
	}
	var log bytes.Buffer
	read := ReadOptions{Config: ConfigSource{Flags: config.Overrides{CertDir: e.certDir}}, KubeconfigDir: e.kubeDir, AuditLog: e.auditLog(),
		LockTimeout: 100 * time.Millisecond, Now: now, Log: slog.New(slog.NewTextHandler(&log, nil))}

	_, err := RenewCerts(context.Background(), RenewCertsOptions{RenewOptions: RenewOptions{KubeconfigDir: e.kubeDir, Now: now, DryRun: true, KeepBackups: 10},
		Config: read.Config, AuditLog: e.auditLog(), BackupDir: e.backupDir})
	if err == nil || !strings.Contains(err.Error(), "left a replacement pending in "+e.certDir) || !strings.Contains(err.Error(), `run "k8scrypto renew certs" as root`) ||
		!strings.Contains(err.Error(), "--dry-run writes nothing") || strings.Contains(err.Error(), "--force") {
		t.Errorf("dry run: %v", err)
	}
	unchanged("renew --dry-run")

	lock, err := pki.AcquireLock(context.Background(), e.certDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ExpirationReport(ExpirationOptions{ReadOptions: read})
	if info == nil || len(info.Certificates) == 0 || err == nil || !strings.Contains(err.Error(), "left a replacement pending") ||
		!strings.Contains(err.Error(), `run "k8scrypto renew certs" as root`) || !strings.Contains(err.Error(), "another k8scrypto run holds") {
		t.Errorf("check-expiration without the lock: report %v, err %v", info != nil, err)
	}
	unchanged("check-expiration without the lock")
	if _, err := SAStatus(context.Background(), read, APIServer{}); err == nil || !strings.Contains(err.Error(), "left a replacement pending") {
		t.Errorf("sa status without the lock: %v", err)
	}
	unchanged("sa status without the lock")
	lock.Release()

	info, err = ExpirationReport(ExpirationOptions{ReadOptions: read})
	if info == nil || err != nil || !strings.Contains(log.String(), "completed an interrupted replacement") {
		t.Fatalf("check-expiration with the lock: %v\n%s", err, log.String())
	}
	if left := PendingRecovery(e.certDir, e.kubeDir); len(left) > 0 {
		t.Fatalf("not recovered: %v", left)
	}
	// Every file is the new one, and the audit log says so.
	recovered := map[string]pki.AuditEvent{}
	renewed := map[string]pki.AuditEvent{}
	for _, ev := range pkitest.AuditLines(t, e.auditLog()) {
		switch {
		case ev.Operation == pki.AuditRecover:
			recovered[ev.File] = ev
		case ev.Operation == pki.AuditRenew && ev.Time.Equal(now):
			renewed[ev.File] = ev
		}
	}
	if len(recovered) == 0 {
		t.Fatal("no recover line")
	}
	for p, ev := range recovered {
		serial, sha := FileIdentity(p)
		if ev.Outcome != "ok" || ev.SHA256 != sha || ev.Serial != serial || sha == "" || ev.User == "" || ev.Host == "" || !strings.Contains(ev.Detail, "rolled forward") {
			t.Errorf("recover line %+v; file has serial %q sha256 %q", ev, serial, sha)
		}
	}
	for _, p := range []string{filepath.Join(e.certDir, "apiserver.crt"), filepath.Join(e.certDir, "etcd", "server.crt"), filepath.Join(e.kubeDir, "admin.conf")} {
		serial, sha := FileIdentity(p)
		ev, ok := renewed[p]
		if !ok || ev.Outcome != "ok" || ev.Serial != serial || ev.SHA256 != sha || !strings.Contains(ev.Detail, "by a later run") {
			t.Errorf("%s: the killed run's renew line %+v (found %v); file has serial %s", p, ev, ok, serial)
		}
	}
	if readCert(t, filepath.Join(e.certDir, "apiserver.crt")).NotBefore.Before(now.Add(-time.Hour)) {
		t.Error("apiserver.crt is not the renewed one")
	}
}
