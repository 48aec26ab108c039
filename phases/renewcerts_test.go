package phases

// The envelope of "renew certs" reached without argv: the --on-renew hook and its pending marker, and the
// audit intent when the audit log fails after the commit (moved here from cmd/k8scrypto, which keeps the
// flag, exit-code and output tests).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// renewCerts runs RenewCerts on the env's files, as "renew certs NAMES [--force] [--on-renew HOOK]" with
// --backup-dir and --audit-log in the env's directory. It returns what was logged.
func (e *renewEnv) renewCerts(now time.Time, names []string, force bool, hook string) (*RenewResult, string, error) {
	e.t.Helper()
	var log bytes.Buffer
	res, err := RenewCerts(context.Background(), RenewCertsOptions{
		RenewOptions: RenewOptions{KubeconfigDir: e.kubeDir, Names: names, Now: now, Force: force, RotateKeys: true,
			Keys: e.keys, Rand: pkitest.Rand(uint64(now.Unix())), KeepBackups: 10, Log: slog.New(slog.NewTextHandler(&log, nil))},
		Config:   ConfigSource{File: e.cfgFile, Flags: config.Overrides{CertDir: e.certDir}, Hostname: func() (string, error) { return "cp-1", nil }},
		AuditLog: e.auditLog(), BackupDir: e.backupDir, LockTimeout: time.Second, OnRenew: hook, HookOutput: &log,
	})
	return res, log.String(), err
}

func (e *renewEnv) auditLog() string { return filepath.Join(e.dir, "audit.log") }

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRenewCertsHookRetried: a failed --on-renew is run again by the next run although nothing is due
// then, with the same names; once it succeeds it is not run again.
func TestRenewCertsHookRetried(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(day)
	out := filepath.Join(e.dir, "hook.out")
	_, _, err := e.renewCerts(now, []string{"apiserver"}, true, "exit 3")
	if err == nil || !strings.Contains(err.Error(), "--on-renew failed (the next run runs it again)") {
		t.Fatalf("failing hook: %v", err)
	}
	marker := filepath.Join(e.backupDir, HookPendingName)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no pending marker: %v", err)
	}
	// Without --on-renew the marker stays, with a warning.
	if _, log, err := e.renewCerts(now.Add(day), nil, false, ""); err != nil || !strings.Contains(log, "--on-renew command did not succeed") {
		t.Errorf("run without a hook: %v\n%s", err, log)
	}
	hook := `echo "$K8SCRYPTO_RENEWED|$K8SCRYPTO_RENEWED_BACKUP" >> ` + out
	if _, log, err := e.renewCerts(now.Add(2*day), nil, false, hook); err != nil {
		t.Fatalf("retry: %v\n%s", err, log)
	}
	got, _ := os.ReadFile(out)
	if want := "apiserver|" + filepath.Join(e.backupDir, now.UTC().Format(pki.BackupTimeFormat)) + "\n"; string(got) != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("marker left after the hook succeeded: %v", err)
	}
	if _, _, err := e.renewCerts(now.Add(3*day), nil, false, hook); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(out); string(again) != string(got) {
		t.Errorf("the hook ran again with nothing renewed: %q", again)
	}
}

// TestRenewCertsHookRunsWhenAuditFails: the certificates are committed but the audit log cannot be
// written: the hook must still restart the control plane, both errors are reported, and the next run
// records the lines from the audit intent left in the certificate directory.
func TestRenewCertsHookRunsWhenAuditFails(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(day)
	out := filepath.Join(e.dir, "hook.out")
	auditLog := e.auditLog()
	if err := os.WriteFile(auditLog, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	broken := false
	restore := pki.SetFaultHook(func(op pki.Op, path string) error {
		if !broken && op == pki.OpRename && filepath.Base(path) == "apiserver.crt" {
			// Committing: from now on the audit log cannot be appended to (a directory took its place).
			broken = true
			os.Rename(auditLog, auditLog+".saved")
			os.Mkdir(auditLog, 0o700)
		}
		return nil
	})
	_, _, err := e.renewCerts(now, []string{"apiserver"}, true, "touch "+out)
	restore()
	if !broken {
		t.Fatal("the fault hook never saw the commit")
	}
	if err == nil || !strings.Contains(err.Error(), "the certificates were renewed, but audit log") {
		t.Errorf("err %v", err)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("--on-renew did not run: %v", err)
	}
	cert := readCert(t, filepath.Join(e.certDir, "apiserver.crt"))
	if !cert.NotBefore.After(pkitest.Now) {
		t.Fatal("apiserver was not renewed")
	}
	if _, err := os.Stat(filepath.Join(e.certDir, AuditIntentName)); err != nil {
		t.Fatalf("no audit intent left for the next run: %v", err)
	}
	os.Remove(auditLog)
	os.Rename(auditLog+".saved", auditLog)
	if _, log, err := e.renewCerts(now.Add(day), nil, false, ""); err != nil {
		t.Fatalf("next run: %v\n%s", err, log)
	}
	found := false
	for _, ev := range pkitest.AuditLines(t, auditLog) {
		if ev.Operation == pki.AuditRenew && ev.Serial == cert.SerialNumber.String() && ev.SHA256 == pki.Fingerprint(cert.Raw) &&
			ev.Outcome == "ok" && strings.Contains(ev.Detail, "by a later run") && ev.Time.Equal(now) {
			found = true
		}
	}
	if !found {
		t.Error("the next run did not record the renew line of the certificate in place")
	}
	if _, err := os.Stat(filepath.Join(e.certDir, AuditIntentName)); !os.IsNotExist(err) {
		t.Errorf("audit intent left: %v", err)
	}
}
