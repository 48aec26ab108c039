package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

const renewDay = 24 * time.Hour

func renewTestConfig(alg pki.Algorithm, extra string) []byte {
	return []byte(pkitest.KubeadmConfig(fmt.Sprintf("encryptionAlgorithm: %s\n%s\n", alg, extra)))
}

// renewCluster is a node made by "k8scrypto init" at pkitest.Now, with every state path inside the test's
// directory.
type renewCluster struct {
	t                          *testing.T
	dir, cfg, certDir, kubeDir string
	backupDir, auditLog        string
	keys                       pki.KeySource
}

func newRenewCluster(t *testing.T, alg pki.Algorithm, extra string) *renewCluster {
	t.Helper()
	dir := t.TempDir()
	c := &renewCluster{t: t, dir: dir, cfg: filepath.Join(dir, "kubeadm.yaml"), certDir: filepath.Join(dir, "pki"),
		kubeDir: filepath.Join(dir, "kube"), backupDir: filepath.Join(dir, "backups"), auditLog: filepath.Join(dir, "audit.log"),
		keys: pkitest.Keys()}
	if err := os.WriteFile(c.cfg, renewTestConfig(alg, extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := c.run(pkitest.Now, "init", "--config", c.cfg); code != 0 {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	return c
}

// paths are the flags that keep a command inside the test's directory.
func (c *renewCluster) paths() []string {
	return []string{"--cert-dir", c.certDir, "--kubeconfig-dir", c.kubeDir, "--audit-log", c.auditLog}
}

func (c *renewCluster) env(now time.Time) (*env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }, keys: c.keys,
		rand: pkitest.Rand(uint64(now.Unix())), hostname: func() (string, error) { return "unused", nil }}, &stdout, &stderr
}

// run runs k8scrypto in-process; "renew" gets the backup directory too.
func (c *renewCluster) run(now time.Time, args ...string) (int, string, string) {
	c.t.Helper()
	e, stdout, stderr := c.env(now)
	if args[0] == "certs" { // read-only: no audit log
		args = append(args, c.paths()[:4]...)
	} else {
		args = append(args, c.paths()...)
	}
	if args[0] == "renew" || args[0] == "ca" {
		args = append(args, "--backup-dir", c.backupDir)
	}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

func (c *renewCluster) renewJSON(now time.Time, args ...string) (int, phases.RenewResult, string) {
	c.t.Helper()
	code, stdout, stderr := c.run(now, append([]string{"renew", "certs", "-o", "json"}, args...)...)
	var res phases.RenewResult
	if stdout != "" {
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			c.t.Fatalf("renew -o json printed something else: %v\n%s", err, stdout)
		}
	}
	return code, res, stderr
}

// certs reads every leaf certificate and key of the node, keyed by kubeadm's name.
func (c *renewCluster) leaves() map[string]phases.CertificateExpiration {
	cfg := phases.DefaultPKIConfig(c.certDir)
	info := phases.CheckExpiration(cfg, c.kubeDir, pkitest.Now)
	out := map[string]phases.CertificateExpiration{}
	for _, r := range slices.Concat(info.Certificates, info.CertificateAuthorities) {
		out[r.Name] = r
	}
	return out
}

func fileHashes(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, _ := os.ReadFile(p)
			info, _ := d.Info()
			out[p] = fmt.Sprintf("%s %v", pki.Fingerprint(data), info.Mode())
			return nil
		})
	}
	return out
}

func TestRenewCertsNothingDue(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	marker := filepath.Join(c.dir, "hook-ran")
	before := fileHashes(t, c.certDir, c.kubeDir)
	code, stdout, stderr := c.run(pkitest.Now.Add(30*renewDay), "renew", "certs", "--on-renew", "touch "+marker)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "CERTIFICATE   ") || !strings.Contains(stdout, "apiserver                  not-due") || !strings.HasSuffix(stdout, "12 not-due\n") {
		t.Errorf("text output:\n%s", stdout)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("--on-renew ran although nothing was renewed")
	}
	if _, err := os.Stat(c.backupDir); err == nil {
		t.Error("a backup directory was created although nothing was replaced")
	}
	delete(before, filepath.Join(c.certDir, pki.LockName))
	after := fileHashes(t, c.certDir, c.kubeDir)
	delete(after, filepath.Join(c.certDir, pki.LockName))
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Error("files changed")
	}
	// Quiet: nothing at all on stdout or stderr, so cron mails nothing.
	code, stdout, stderr = c.run(pkitest.Now.Add(31*renewDay), "renew", "certs", "-q")
	if code != 0 || stdout != "" || stderr != "" {
		t.Errorf("-q with nothing due: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestRenewCertsRenewsAndAudits(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * renewDay)
	hookOut := filepath.Join(c.dir, "hook.out")
	code, res, stderr := c.renewJSON(now, "--on-renew", `echo "$K8SCRYPTO_RENEWED|$K8SCRYPTO_RENEWED_BACKUP" > `+hookOut+`; echo hook-stdout`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if res.APIVersion != "k8scrypto.dev/v1alpha1" || res.Kind != "CertificateRenewal" || len(res.Renewed()) != 12 || !res.Time.Equal(now) {
		t.Fatalf("result %s %s renewed %v", res.APIVersion, res.Kind, res.Renewed())
	}
	if !strings.Contains(stderr, "hook-stdout") {
		t.Errorf("the hook's stdout must go to stderr (stdout carries the JSON): %q", stderr)
	}
	hook, _ := os.ReadFile(hookOut)
	if want := strings.Join(res.Renewed(), ",") + "|" + res.BackupDir + "\n"; string(hook) != want {
		t.Errorf("hook saw %q, want %q", hook, want)
	}
	if !strings.HasPrefix(res.BackupDir, c.backupDir+"/") {
		t.Errorf("backup dir %s", res.BackupDir)
	}
	for name, r := range c.leaves() {
		if r.Kind != phases.KindCA && !r.ExpirationDate.Equal(now.Add(pki.DefaultCertValidity)) {
			t.Errorf("%s expires %s, want now + 365d", name, r.ExpirationDate)
		}
	}
	// The audit log: one renew line per certificate, one rotate line per key, one backup line per file,
	// fingerprints only.
	data, err := os.ReadFile(c.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.Contains(data, []byte("BEGIN")) {
		t.Fatal("the audit log holds PEM data")
	}
	ops := map[string]int{}
	byFile := map[string]pki.AuditEvent{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev pki.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if !ev.Time.Equal(now) {
			continue // init's lines
		}
		ops[ev.Operation]++
		if ev.Operation != pki.AuditBackup {
			byFile[ev.Operation+" "+ev.File] = ev
		}
		if ev.Outcome != "ok" || ev.User == "" || ev.Host == "" {
			t.Errorf("audit line %+v", ev)
		}
	}
	if ops[pki.AuditRenew] != 12 || ops[pki.AuditRotate] != 12 || ops[pki.AuditBackup] != 19 {
		t.Errorf("audit operations %v, want 12 renew, 12 rotate, 19 backup", ops)
	}
	for _, it := range res.Certificates {
		ev := byFile[pki.AuditRenew+" "+it.Path]
		if ev.Serial != it.Serial || ev.SHA256 != it.SHA256 || !strings.Contains(ev.Detail, "replaces serial "+it.Previous.Serial) {
			t.Errorf("%s: audit %+v", it.Name, ev)
		}
	}
	apiKey := byFile[pki.AuditRotate+" "+filepath.Join(c.certDir, "apiserver.key")]
	if apiKey.SHA256 == "" || !strings.Contains(apiKey.Detail, "replaces key sha256 ") {
		t.Errorf("apiserver key audit %+v", apiKey)
	}
	if info, err := os.Stat(c.auditLog); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v", info.Mode())
	}
}

func TestRenewCertsExitStatus(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * renewDay)
	os.Remove(filepath.Join(c.certDir, "front-proxy-ca.key"))
	os.Remove(filepath.Join(c.kubeDir, "super-admin.conf"))
	code, res, stderr := c.renewJSON(now)
	if code != 1 || !strings.Contains(stderr, "error: 1 certificate(s) need attention:\n  front-proxy-client: front-proxy-client is due") ||
		!strings.Contains(stderr, "its CA front-proxy-ca is external") {
		t.Errorf("external CA: exit %d, stderr %s", code, stderr)
	}
	if len(res.Renewed()) != 10 {
		t.Errorf("the others must be renewed: %v", res.Renewed())
	}
	// The hook's failure is reported after the files are written.
	code, stdout, stderr := c.run(now.Add(renewDay), "renew", "certs", "apiserver", "--force", "--on-renew", "exit 3")
	if code != 1 || !strings.Contains(stderr, `the certificates were renewed, but --on-renew failed (the next run runs it again): "exit 3": exit status 3`) || !strings.Contains(stdout, "1 renewed;") {
		t.Errorf("failing hook: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if r := c.leaves()["apiserver"]; !r.ExpirationDate.Equal(now.Add(renewDay + pki.DefaultCertValidity)) {
		t.Errorf("apiserver not renewed before the hook failed: %s", r.ExpirationDate)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nope"}, 2, `unknown certificate "nope"`},
		{[]string{"ca"}, 2, "k8scrypto never renews CAs"},
		{[]string{"--threshold", "9000h"}, 2, "every run would renew every certificate"},
		{[]string{"--keep-backups", "0"}, 2, "--keep-backups"},
		{[]string{"--encryption-algorithm", "DSA"}, 2, "unknown encryption algorithm"},
	} {
		before := fileHashes(t, c.dir)
		code, _, stderr := c.run(now.Add(2*renewDay), append([]string{"renew", "certs"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
		if fmt.Sprint(before) != fmt.Sprint(fileHashes(t, c.dir)) {
			t.Errorf("%v: a refused command changed files", tc.args)
		}
	}
	// A certificate directory that does not exist is not created.
	e, _, stderr2 := c.env(now)
	none := filepath.Join(c.dir, "none")
	if code := run([]string{"renew", "certs", "--cert-dir", none, "--audit-log", c.auditLog, "--backup-dir", c.backupDir}, e); code != 1 || !strings.Contains(stderr2.String(), "does not exist") {
		t.Errorf("missing cert dir: exit %d %s", code, stderr2)
	}
	if _, err := os.Stat(none); err == nil {
		t.Error("renew created the certificate directory")
	}
}

func TestRenewCertsWithoutConfigKeepsAlgorithmAndSANs(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "apiServer:\n  certSANs: [old.example.com]")
	// A later configuration that asks for other SANs is only read with --config.
	os.WriteFile(c.cfg, renewTestConfig(pki.ECDSAP256, "apiServer:\n  certSANs: [new.example.com]"), 0o600)
	now := pkitest.Now.Add(250 * renewDay)
	c.keys = nil
	code, res, stderr := c.renewJSON(now, "apiserver")
	if code != 0 || len(res.Renewed()) != 1 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	it := res.Certificates[0]
	if it.AddedSANs != nil || it.UnrequestedSANs != nil {
		t.Errorf("SANs compared without a configuration: %+v", it)
	}
	key, err := phases.LoadKey(filepath.Join(c.certDir, "apiserver.key"))
	if err != nil || pki.AlgorithmOf(key.Public()) != pki.ECDSAP256 {
		t.Errorf("without --config the key algorithm must be kept (ECDSA-P256), got %s", pki.AlgorithmOf(key.Public()))
	}
	code, res, stderr = c.renewJSON(now.Add(renewDay), "apiserver", "--config", c.cfg)
	if code != 0 || !slices.Equal(res.Certificates[0].AddedSANs, []string{"DNS:new.example.com"}) ||
		!slices.Equal(res.Certificates[0].UnrequestedSANs, []string{"DNS:old.example.com"}) {
		t.Errorf("with --config: exit %d %s %+v", code, stderr, res.Certificates)
	}
}

func TestCertsRenewIsKubeadmsSpelling(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	e, stdout, stderr := c.env(pkitest.Now.Add(250 * renewDay))
	args := append([]string{"certs", "renew", "apiserver", "-o", "json", "--backup-dir", c.backupDir}, c.paths()...)
	var res phases.RenewResult
	if code := run(args, e); code != 0 || json.Unmarshal(stdout.Bytes(), &res) != nil || !slices.Equal(res.Renewed(), []string{"apiserver"}) {
		t.Errorf("certs renew apiserver: exit %d %s %s", code, stdout, stderr)
	}
}

func TestRenewCertsDryRun(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	before := fileHashes(t, c.dir)
	code, stdout, stderr := c.run(pkitest.Now.Add(250*renewDay), "renew", "certs", "--dry-run")
	if code != 0 || !strings.HasPrefix(stdout, "Dry run: nothing was written.\n") || !strings.Contains(stdout, "12 would-renew") {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if fmt.Sprint(before) != fmt.Sprint(fileHashes(t, c.dir)) {
		t.Error("dry run changed files (or took the lock, or wrote the audit log)")
	}
}

// TestRenewCertsDailyForFiveYears is the "done when": a cron entry runs "renew certs" every day for
// five years against a 10-year CA. Every run succeeds, and on every day every certificate and kubeconfig
// client certificate is valid and chains to its CA; a monitoring check with a 30-day window never fires.
func TestRenewCertsDailyForFiveYears(t *testing.T) {
	if testing.Short() {
		t.Skip("five years of daily runs")
	}
	c := newRenewCluster(t, pki.ECDSAP256, "")
	c.keys = nil // fresh ECDSA keys: more rotations than there are fixtures
	cas := map[string]*pki.CertSpec{}
	for _, s := range pki.Catalog() {
		if s.IsCA() {
			cas[s.Name] = &s
		}
	}
	renewals := 0
	start := pkitest.Now.Add(2 * time.Hour) // cron at 05:04 daily
	for d := 0; d <= 5*365+1; d++ {
		now := start.Add(time.Duration(d) * renewDay)
		code, stdout, stderr := c.run(now, "renew", "certs", "--config", c.cfg, "-q")
		if code != 0 {
			t.Fatalf("day %d (%s): exit %d\n%s\n%s", d, now.Format(time.DateOnly), code, stdout, stderr)
		}
		renewed := strings.Count(stdout, " renewed ")
		renewals += renewed
		info := phases.CheckExpiration(phases.DefaultPKIConfig(c.certDir), c.kubeDir, now)
		if p := info.ExpiringWithin(30 * renewDay); len(p) != 0 {
			t.Fatalf("day %d: %v", d, p)
		}
		if renewed == 0 && d%91 != 0 {
			continue
		}
		// Chains, on days something changed and quarterly.
		for _, r := range info.Certificates {
			cert, _, err := pki.ParseCertChain(mustRead(t, r.Path))
			if r.Kind == phases.KindKubeconfig {
				kc, kerr := phases.LoadKubeconfig(r.Path)
				cert, err = kc.ClientCert, kerr
			}
			if err != nil {
				t.Fatalf("day %d: %s: %v", d, r.Name, err)
			}
			caCert, _, _ := pki.ParseCertChain(mustRead(t, cas[r.CAName].CertPath(c.certDir)))
			if err := pki.VerifyChain(cert, nil, caCert, now); err != nil {
				t.Fatalf("day %d: %s does not verify: %v", d, r.Name, err)
			}
		}
	}
	// 12 certificates, renewed about every 243 days (at a third of 365 days left) over five years.
	if renewals < 12*7 || renewals > 12*8 {
		t.Errorf("%d renewals in five years, want 84 to 96", renewals)
	}
	if ents, _ := os.ReadDir(c.backupDir); len(ents) > 10 {
		t.Errorf("%d backup directories kept, want at most 10", len(ents))
	}
	t.Logf("%d renewals", renewals)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The helper process: a real second k8scrypto for lock and crash tests. It runs only when the parent test
// sets RENEW_TEST_HELPER (not a K8SCRYPTO_ variable, which would be read as a flag).
func TestRenewHelperProcess(t *testing.T) {
	if os.Getenv("RENEW_TEST_HELPER") != "1" {
		t.Skip("helper process for the lock and crash tests")
	}
	var args []string
	json.Unmarshal([]byte(os.Getenv("RENEW_TEST_ARGS")), &args)
	now, _ := time.Parse(time.RFC3339, os.Getenv("RENEW_TEST_NOW"))
	n := 0
	crashAt, _ := strconv.Atoi(os.Getenv("RENEW_TEST_CRASH_AT"))
	hold := os.Getenv("RENEW_TEST_HOLD")
	held := false
	pki.SetFaultHook(func(op pki.Op, path string) error {
		n++
		if n == crashAt {
			os.Exit(86) // dies at this instant: no deferred call, no cleanup, like SIGKILL
		}
		if hold != "" && !held && op == pki.OpMkdir {
			// Creating this run's backup directory, so under the lock: tell the parent, then keep the lock a
			// while. (Steps before the lock, such as opening the audit log, are hooked too.)
			held = true
			os.WriteFile(hold, nil, 0o600)
			time.Sleep(1500 * time.Millisecond)
		}
		return nil
	})
	os.Exit(run(args, &env{stdout: os.Stdout, stderr: os.Stderr, now: func() time.Time { return now }, hostname: os.Hostname}))
}

func (c *renewCluster) helper(now time.Time, extraEnv []string, args ...string) *exec.Cmd {
	args = append(append(args, c.paths()...), "--backup-dir", c.backupDir)
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRenewHelperProcess$")
	cmd.Env = append(os.Environ(), "RENEW_TEST_HELPER=1", "RENEW_TEST_ARGS="+string(a), "RENEW_TEST_NOW="+now.Format(time.RFC3339))
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func TestRenewCertsLockContention(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * renewDay)
	held := filepath.Join(c.dir, "held")
	first := c.helper(now, []string{"RENEW_TEST_HOLD=" + held}, "renew", "certs", "-o", "json")
	var out1, err1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &err1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, held)
	// A second run waits for the first, then finds nothing to do.
	second := c.helper(now, nil, "renew", "certs", "-o", "json", "--lock-timeout", "1m")
	start := time.Now()
	out2, err := second.Output()
	waited := time.Since(start)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v\n%s", err, err1.String())
	}
	var r1, r2 phases.RenewResult
	json.Unmarshal(out1.Bytes(), &r1)
	json.Unmarshal(out2, &r2)
	if len(r1.Renewed()) != 12 || len(r2.Renewed()) != 0 || len(r2.Certificates) != 12 {
		t.Errorf("first renewed %v, second renewed %v of %d", r1.Renewed(), r2.Renewed(), len(r2.Certificates))
	}
	if waited < 500*time.Millisecond {
		t.Errorf("the second run did not wait for the lock (%s)", waited)
	}
	// With a short --lock-timeout the second run gives up and says why.
	os.Remove(held)
	first = c.helper(now.Add(renewDay), []string{"RENEW_TEST_HOLD=" + held}, "renew", "certs", "apiserver", "--force")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, held)
	third := c.helper(now.Add(renewDay), nil, "renew", "certs", "--lock-timeout", "100ms")
	out3, err := third.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out3), "another k8scrypto run holds") {
		t.Errorf("short lock timeout: %v %s", err, out3)
	}
	if err := first.Wait(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", path)
}

// TestRenewCertsKilledAtEveryStep kills a real renewal process at each file-system step in turn. The next
// run repairs (completes or undoes) the interrupted replacement before anything else and renews what is
// due; afterwards no temp file is left, every certificate matches its key and the CA files are untouched.
func TestRenewCertsKilledAtEveryStep(t *testing.T) {
	tmpl := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * renewDay)
	names := []string{"apiserver", "etcd-server", "admin.conf"}
	// Count the steps of an uninterrupted run.
	steps := 0
	{
		c := cloneCluster(t, tmpl)
		restore := pki.SetFaultHook(func(pki.Op, string) error { steps++; return nil })
		code, _, stderr := c.run(now, append([]string{"renew", "certs"}, names...)...)
		restore()
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	stride := 1
	if testing.Short() {
		stride = 7
	}
	caBefore := caHashes(t, tmpl)
	for i := 1; i <= steps; i += stride {
		c := cloneCluster(t, tmpl)
		old := fileHashes(t, c.certDir, c.kubeDir)
		out, err := c.helper(now, []string{"RENEW_TEST_CRASH_AT=" + strconv.Itoa(i)}, append([]string{"renew", "certs"}, names...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 86 {
			t.Fatalf("step %d: the helper did not die there: %v %s", i, err, out)
		}
		// The next run, after a day: recovers first, then renews what is still due.
		code, stdout, stderr := c.run(now.Add(renewDay), append([]string{"renew", "certs", "-o", "json"}, names...)...)
		if code != 0 {
			t.Fatalf("step %d: the run after the crash failed: exit %d %s", i, code, stderr)
		}
		var res phases.RenewResult
		json.Unmarshal([]byte(stdout), &res)
		if len(res.Renewed()) != 0 && len(res.Renewed()) != 3 {
			t.Errorf("step %d: renewed %v after the crash; want all three or none (already done)", i, res.Renewed())
		}
		for _, dir := range []string{c.certDir, filepath.Join(c.certDir, "etcd"), c.kubeDir} {
			ents, _ := os.ReadDir(dir)
			for _, ent := range ents {
				if pki.IsBookkeeping(ent.Name()) {
					t.Errorf("step %d: %s left in %s", i, ent.Name(), dir)
				}
			}
		}
		after := fileHashes(t, c.certDir, c.kubeDir)
		for _, n := range []string{"apiserver.crt", "apiserver.key", "etcd/server.crt", "etcd/server.key"} {
			if p := filepath.Join(c.certDir, n); after[p] == old[p] {
				t.Errorf("step %d: %s was not renewed in the end", i, n)
			}
		}
		for _, n := range []string{"apiserver", "etcd/server"} {
			cert, _, _ := pki.ParseCertChain(mustRead(t, filepath.Join(c.certDir, n+".crt")))
			key, err := phases.LoadKey(filepath.Join(c.certDir, n+".key"))
			if err != nil || !pki.KeyMatchesCert(key, cert) {
				t.Errorf("step %d: %s: key does not match (%v)", i, n, err)
			}
		}
		kc, err := phases.LoadKubeconfig(filepath.Join(c.kubeDir, "admin.conf"))
		if err != nil || !pki.KeyMatchesCert(kc.ClientKey, kc.ClientCert) || !kc.ClientCert.NotAfter.After(now.Add(300*renewDay)) {
			t.Errorf("step %d: admin.conf after recovery: %v", i, err)
		}
		if got := caHashes(t, c); fmt.Sprint(relocateHashes(caBefore, tmpl.dir, c.dir)) != fmt.Sprint(got) {
			t.Errorf("step %d: CA files changed", i)
		}
		// Whether the killed run or the next one renewed it, the certificate in place has its renew line.
		lines := pkitest.AuditLines(t, c.auditLog)
		for _, p := range []string{filepath.Join(c.certDir, "apiserver.crt"), filepath.Join(c.certDir, "etcd", "server.crt"), filepath.Join(c.kubeDir, "admin.conf")} {
			serial, sha := phases.FileIdentity(p)
			if !slices.ContainsFunc(lines, func(ev pki.AuditEvent) bool {
				return ev.Operation == pki.AuditRenew && ev.File == p && ev.Outcome == "ok" && ev.Serial == serial && ev.SHA256 == sha
			}) {
				t.Errorf("step %d: no audit line for the %s in place (serial %s)", i, p, serial)
			}
		}
		if _, err := os.Stat(filepath.Join(c.certDir, phases.AuditIntentName)); !os.IsNotExist(err) {
			t.Errorf("step %d: audit intent left: %v", i, err)
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("killed at %d of %d steps", (steps+stride-1)/stride, steps)
}

func caHashes(t *testing.T, c *renewCluster) map[string]string {
	out := map[string]string{}
	for p, h := range fileHashes(t, c.certDir) {
		if b := filepath.Base(p); strings.HasPrefix(b, "ca.") || strings.HasPrefix(b, "front-proxy-ca.") {
			out[p] = h
		}
	}
	return out
}

func relocateHashes(m map[string]string, from, to string) map[string]string {
	out := map[string]string{}
	for p, h := range m {
		out[strings.Replace(p, from, to, 1)] = h
	}
	return out
}

func cloneCluster(t *testing.T, src *renewCluster) *renewCluster {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src.dir, p)
		info, _ := d.Info()
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	c := *src
	re := func(p string) string { return strings.Replace(p, src.dir, dst, 1) }
	c.dir, c.cfg, c.certDir, c.kubeDir, c.backupDir, c.auditLog = dst, re(c.cfg), re(c.certDir), re(c.kubeDir), re(c.backupDir), re(c.auditLog)
	c.keys = nil
	return &c
}
