package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// runArgs runs k8scrypto in-process with exactly args (no paths added).
func (c *renewCluster) runArgs(now time.Time, args ...string) (int, string, string) {
	c.t.Helper()
	e, stdout, stderr := c.env(now)
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

// aRegularFile returns a path under a regular file: no one, root included, can create it.
func aRegularFile(t *testing.T, dir string) string {
	t.Helper()
	f := filepath.Join(dir, "a-file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRenewCertsUnusableBackupDirOrAuditLog: an explicit --backup-dir or --audit-log that cannot be
// written is an error at start, whether or not anything is due; with something due the run used to spin
// for ever holding the lock.
func TestRenewCertsUnusableBackupDirOrAuditLog(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	bad := filepath.Join(aRegularFile(t, c.dir), "sub")
	before := fileHashes(t, c.certDir, c.kubeDir)
	base := []string{"renew", "certs", "--cert-dir", c.certDir, "--kubeconfig-dir", c.kubeDir}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"backup-dir, nothing due", []string{"--audit-log", c.auditLog, "--backup-dir", bad}, "--backup-dir: " + bad},
		{"backup-dir, due", []string{"--audit-log", c.auditLog, "--backup-dir", bad, "--force"}, "--backup-dir: " + bad},
		{"audit-log, nothing due", []string{"--audit-log", filepath.Join(bad, "audit.log"), "--backup-dir", c.backupDir}, "--audit-log: "},
	} {
		type out struct {
			code           int
			stdout, stderr string
		}
		done := make(chan out, 1)
		go func() {
			code, stdout, stderr := c.runArgs(pkitest.Now.Add(30*renewDay), append(slices.Clone(base), tc.args...)...)
			done <- out{code, stdout, stderr}
		}()
		select {
		case o := <-done:
			if o.code != 1 || !strings.Contains(o.stderr, tc.want) || !strings.Contains(o.stderr, "not a directory") {
				t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tc.name, o.code, o.stderr, tc.want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: the run did not end", tc.name)
		}
	}
	if after := fileHashes(t, c.certDir, c.kubeDir); !sameHashes(before, after) {
		t.Error("files changed")
	}
}

// sameHashes compares fileHashes maps, ignoring the lock file (created by any run that locks).
func sameHashes(a, b map[string]string) bool {
	strip := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if filepath.Base(k) != pki.LockName {
				out[k] = v
			}
		}
		return out
	}
	return maps.Equal(strip(a), strip(b))
}

// TestRenewStateFallback: without root the default /var locations cannot be written; the audit log and
// the backups then go to $XDG_STATE_HOME/k8scrypto (else ~/.local/state/k8scrypto), with exactly one
// notice on stderr. The defaults are pointed under a regular file, which root cannot write either.
func TestRenewStateFallback(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	unwritable := aRegularFile(t, c.dir)
	oldAudit, oldBackup := phases.DefaultAuditLog, phases.DefaultBackupDir
	phases.DefaultAuditLog, phases.DefaultBackupDir = filepath.Join(unwritable, "log", "audit.log"), filepath.Join(unwritable, "lib", "backups")
	t.Cleanup(func() { phases.DefaultAuditLog, phases.DefaultBackupDir = oldAudit, oldBackup })

	xdg, home := filepath.Join(c.dir, "xdg"), filepath.Join(c.dir, "home")
	for i, tc := range []struct {
		xdg  string
		base string
	}{
		{xdg, filepath.Join(xdg, "k8scrypto")},
		{"", filepath.Join(home, ".local", "state", "k8scrypto")},
	} {
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		t.Setenv("HOME", home)
		now := pkitest.Now.Add(time.Duration(i+1) * renewDay)
		code, _, stderr := c.runArgs(now, "renew", "certs", "apiserver", "--force", "--cert-dir", c.certDir, "--kubeconfig-dir", c.kubeDir)
		if code != 0 {
			t.Fatalf("XDG_STATE_HOME=%q: exit %d: %s", tc.xdg, code, stderr)
		}
		if n := strings.Count(stderr, "per-user state directory"); n != 1 || strings.Count(stderr, "warn") != 1 {
			t.Errorf("XDG_STATE_HOME=%q: want exactly one notice, got:\n%s", tc.xdg, stderr)
		}
		audit := filepath.Join(tc.base, "audit.log")
		if !strings.Contains(stderr, audit) || !strings.Contains(stderr, filepath.Join(tc.base, "backups")) {
			t.Errorf("XDG_STATE_HOME=%q: the notice does not name both locations:\n%s", tc.xdg, stderr)
		}
		lines := pkitest.AuditLines(t, audit)
		if !slices.ContainsFunc(lines, func(ev pki.AuditEvent) bool {
			return ev.Operation == pki.AuditRenew && ev.File == filepath.Join(c.certDir, "apiserver.crt") && ev.Time.Equal(now)
		}) {
			t.Errorf("XDG_STATE_HOME=%q: no renew line in %s", tc.xdg, audit)
		}
		ents, err := os.ReadDir(filepath.Join(tc.base, "backups"))
		if err != nil || len(ents) != 1 || ents[0].Name() != now.UTC().Format(pki.BackupTimeFormat) {
			t.Errorf("XDG_STATE_HOME=%q: backups %v %v", tc.xdg, ents, err)
		}
		if _, err := os.Stat(filepath.Join(tc.base, "backups", now.UTC().Format(pki.BackupTimeFormat), c.certDir, "apiserver.key")); err != nil {
			t.Errorf("XDG_STATE_HOME=%q: the key was not backed up there: %v", tc.xdg, err)
		}
	}
	// With nothing to say (-q), no notice either.
	code, stdout, stderr := c.runArgs(pkitest.Now.Add(3*renewDay), "renew", "certs", "-q", "--cert-dir", c.certDir, "--kubeconfig-dir", c.kubeDir)
	if code != 0 || stdout != "" || stderr != "" {
		t.Errorf("-q: exit %d %q %q", code, stdout, stderr)
	}
}

// TestRenewCertsKeepsTenBackupsByDefault: twelve renewals with the default --keep-backups leave the ten
// newest backup directories; the two oldest are removed, each with a "remove" audit line.
func TestRenewCertsKeepsTenBackupsByDefault(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	var dirs []string
	for i := range 12 {
		code, res, stderr := c.renewJSON(pkitest.Now.Add(time.Duration(i+1)*renewDay), "apiserver", "--force")
		if code != 0 || res.BackupDir == "" {
			t.Fatalf("run %d: exit %d: %s", i, code, stderr)
		}
		dirs = append(dirs, res.BackupDir)
	}
	ents, err := os.ReadDir(c.backupDir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range ents {
		kept = append(kept, filepath.Join(c.backupDir, e.Name()))
	}
	if !slices.Equal(kept, dirs[2:]) {
		t.Errorf("kept %v, want the newest ten %v", kept, dirs[2:])
	}
	var removed []string
	for _, ev := range pkitest.AuditLines(t, c.auditLog) {
		if ev.Operation == pki.AuditRemove {
			if ev.Outcome != "ok" || ev.User == "" || ev.Host == "" || ev.Time.IsZero() {
				t.Errorf("remove line %+v", ev)
			}
			removed = append(removed, ev.File)
		}
	}
	if !slices.Equal(removed, dirs[:2]) {
		t.Errorf("remove lines for %v, want %v", removed, dirs[:2])
	}
}

// The --on-renew hook's retry and the audit intent after a failed audit log are envelope behaviour, tested
// against RenewCerts in phases (renewcerts_test.go).

// TestAuditLineContent checks every field of the lines init and renew write against the files on disk:
// create lines of a new PKI, reuse lines of a second init, renew and rotate lines of a renewal with new
// keys, and renew and reuse lines of one with --rotate-keys=false.
func TestAuditLineContent(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "") // init at pkitest.Now
	host, _ := os.Hostname()
	check := func(ev pki.AuditEvent, when time.Time) {
		t.Helper()
		if !ev.Time.Equal(when) || ev.Outcome != "ok" || ev.User == "" || ev.Host != host || ev.File == "" {
			t.Errorf("line %+v: time, outcome, user, host or file wrong", ev)
		}
	}
	idOf := func(path string) (string, string) {
		t.Helper()
		serial, sha := phases.FileIdentity(path)
		if sha == "" {
			t.Fatalf("%s: no identity", path)
		}
		return serial, sha
	}
	byOp := func(when time.Time) map[string]map[string]pki.AuditEvent {
		out := map[string]map[string]pki.AuditEvent{}
		for _, ev := range pkitest.AuditLines(t, c.auditLog) {
			if ev.Time.Equal(when) {
				if out[ev.Operation] == nil {
					out[ev.Operation] = map[string]pki.AuditEvent{}
				}
				out[ev.Operation][ev.File] = ev
			}
		}
		return out
	}
	apiCrt, apiKey, admin := filepath.Join(c.certDir, "apiserver.crt"), filepath.Join(c.certDir, "apiserver.key"), filepath.Join(c.kubeDir, "admin.conf")
	matches := func(op string, ev pki.AuditEvent, path string, wantSerial bool) {
		t.Helper()
		serial, sha := idOf(path)
		if ev.SHA256 != sha || (wantSerial && ev.Serial != serial) {
			t.Errorf("%s %s: line serial %q sha256 %q, file has %q %q", op, path, ev.Serial, ev.SHA256, serial, sha)
		}
	}

	lines := byOp(pkitest.Now)
	for _, p := range []string{apiCrt, apiKey, admin} {
		ev, ok := lines[pki.AuditCreate][p]
		if !ok {
			t.Fatalf("no create line for %s: %v", p, lines)
		}
		check(ev, pkitest.Now)
		matches("create", ev, p, !strings.HasSuffix(p, ".key"))
	}
	// A second init reuses every file.
	reinit := pkitest.Now.Add(time.Hour)
	if code, _, stderr := c.run(reinit, "init", "--config", c.cfg); code != 0 {
		t.Fatalf("second init: exit %d %s", code, stderr)
	}
	lines = byOp(reinit)
	for _, p := range []string{apiCrt, apiKey, admin} {
		ev, ok := lines[pki.AuditReuse][p]
		if !ok {
			t.Fatalf("no reuse line for %s", p)
		}
		check(ev, reinit)
		matches("reuse", ev, p, !strings.HasSuffix(p, ".key"))
	}
	// Renewal with new keys: renew (with the replaced serial) and rotate lines.
	oldSerial, _ := idOf(apiCrt)
	renew1 := pkitest.Now.Add(renewDay)
	if code, _, stderr := c.run(renew1, "renew", "certs", "apiserver", "admin.conf", "--force"); code != 0 {
		t.Fatalf("renew: exit %d %s", code, stderr)
	}
	lines = byOp(renew1)
	for _, p := range []string{apiCrt, admin} {
		ev := lines[pki.AuditRenew][p]
		check(ev, renew1)
		matches("renew", ev, p, true)
	}
	if ev := lines[pki.AuditRenew][apiCrt]; !strings.Contains(ev.Detail, "replaces serial "+oldSerial) {
		t.Errorf("renew line does not name the replaced serial: %+v", ev)
	}
	check(lines[pki.AuditRotate][apiKey], renew1)
	matches("rotate", lines[pki.AuditRotate][apiKey], apiKey, false)
	// Renewal keeping the key: a reuse line with the key's fingerprint.
	renew2 := renew1.Add(renewDay)
	if code, _, stderr := c.run(renew2, "renew", "certs", "apiserver", "--force", "--rotate-keys=false"); code != 0 {
		t.Fatalf("renew: exit %d %s", code, stderr)
	}
	lines = byOp(renew2)
	check(lines[pki.AuditRenew][apiCrt], renew2)
	matches("renew", lines[pki.AuditRenew][apiCrt], apiCrt, true)
	check(lines[pki.AuditReuse][apiKey], renew2)
	matches("reuse", lines[pki.AuditReuse][apiKey], apiKey, false)
	if _, ok := lines[pki.AuditRotate]; ok {
		t.Error("--rotate-keys=false wrote a rotate line")
	}
}

// TestRecoveryBeforeReadingCommands (a killed renewal completed first by the commands that read, and
// reported by those that cannot take the lock) runs against phases, in phases/recovery_test.go.
