package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var initTestConfig = pkitest.KubeadmInit

// initCase is one isolated machine: a config file, a certificate directory, a kubeconfig directory and an
// audit log, all under a temporary directory.
type initCase struct {
	t                               *testing.T
	dir, cfg, certDir, kubeDir, log string
	keys                            pki.KeySource
}

func newInitCase(t *testing.T, yaml string) *initCase {
	t.Helper()
	return newInitCaseIn(t, yaml, t.TempDir())
}

// initMemDir is a temporary directory on tmpfs when there is one, for tests that repeat a full init many
// times and would otherwise wait on fsync.
func initMemDir(t *testing.T) string {
	t.Helper()
	if dir, err := os.MkdirTemp("/dev/shm", "k8scrypto-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return t.TempDir()
}

func newInitCaseIn(t *testing.T, yaml, dir string) *initCase {
	t.Helper()
	c := &initCase{t: t, dir: dir, cfg: filepath.Join(dir, "kubeadm.yaml"), certDir: filepath.Join(dir, "pki"),
		kubeDir: filepath.Join(dir, "kube"), log: filepath.Join(dir, "state", "audit.log"), keys: pkitest.Keys()}
	if err := os.WriteFile(c.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// exec runs k8scrypto in-process with the test clock, fixture keys and seeded serials. Paths that keep the
// run inside the test directory are appended unless the arguments already name them.
func (c *initCase) exec(args ...string) (int, string, string) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: c.keys,
		rand: pkitest.Rand(1), hostname: func() (string, error) { return "host-from-os", nil }}
	joined := strings.Join(args, " ")
	for flag, val := range map[string]string{"--cert-dir": c.certDir, "--kubeconfig-dir": c.kubeDir, "--audit-log": c.log, "--config": c.cfg} {
		if !strings.Contains(joined, flag) && !strings.Contains(joined, "--help") {
			args = append(args, flag, val)
		}
	}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

func (c *initCase) mustExec(args ...string) string {
	c.t.Helper()
	code, stdout, stderr := c.exec(args...)
	if code != 0 {
		c.t.Fatalf("k8scrypto %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// TestInitHelpListsPhasesInOrder: "init --help" lists every phase in run order, and "init phase certs"
// offers all and the sub-phases in kubeadm's order.
func TestInitHelpListsPhasesInOrder(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	out := c.mustExec("init", "--help")
	names := (&phases.Runner{Phases: phases.InitPhases()}).Names()
	last := -1
	for _, n := range names {
		i := strings.Index(out, "\n  "+n+"\n")
		if i < 0 {
			t.Fatalf("init --help does not list %q:\n%s", n, out)
		}
		if i < last {
			t.Errorf("%q is listed out of order", n)
		}
		last = i
	}
	out = c.mustExec("init", "phase", "certs", "--help")
	last = -1
	for _, n := range []string{"all", "ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client",
		"etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"} {
		i := strings.Index(out, "\n  "+n+" ")
		if i < 0 || i < last {
			t.Fatalf("init phase certs --help: %q missing or out of order:\n%s", n, out)
		}
		last = i
	}
}

// TestInitRejectsUnknownPhase: a bad --skip-phases is a usage error listing the valid names, before any file
// (not even the lock) is created.
func TestInitRejectsUnknownPhase(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	code, _, stderr := c.exec("init", "--skip-phases", "certs/etcd-ca,certs/nope")
	if code != exitUsage || !strings.Contains(stderr, `unknown phase "certs/nope"`) || !strings.Contains(stderr, "certs/apiserver-etcd-client, sa") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if ents, _ := os.ReadDir(c.dir); len(ents) != 1 {
		t.Errorf("a rejected command created files: %v", ents)
	}
	if code, _, stderr := c.exec("init", "phase", "certz"); code != exitUsage || !strings.Contains(stderr, "certz") {
		t.Errorf("init phase certz: exit %d, %q", code, stderr)
	}
}

// TestInitPhasesMatchRunner: "init phase certs all" then "init phase sa" produce byte for byte what the
// phases produce for the same configuration; phases' TestMatchesKubeadm compares those with kubeadm.
func TestInitPhasesMatchRunner(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	c.mustExec("init", "phase", "certs", "all")
	c.mustExec("init", "phase", "sa")

	cfg, err := config.Load(c.cfg, config.Overrides{CertDir: filepath.Join(c.dir, "direct")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := phases.NewData(cfg.PKI, pkitest.Now, pkitest.Keys(), nil)
	d.Rand = pkitest.Rand(1)
	if err := (&phases.Runner{Phases: phases.InitPhases()}).Run(context.Background(), d, phases.Selection{Only: []string{"certs", "sa"}}); err != nil {
		t.Fatal(err)
	}
	got, want := pkitest.MustSnapshot(t, c.certDir), pkitest.MustSnapshot(t, cfg.PKI.CertDir)
	delete(got, pki.LockName) // the CLI's lock file
	if len(got) != len(want) || len(want) != 24 {
		t.Fatalf("CLI wrote %d entries, the runner %d", len(got), len(want))
	}
	for p, st := range want {
		if got[p].SHA256 != st.SHA256 || got[p].Mode != st.Mode {
			t.Errorf("%s differs between the CLI and the runner", p)
		}
	}
	if _, err := os.Stat(c.kubeDir); !os.IsNotExist(err) {
		t.Error("init phase certs/sa wrote into the kubeconfig directory")
	}
}

// TestInitDryRun writes nothing, and prints each path with its subject and SANs.
func TestInitDryRun(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	out := c.mustExec("init", "--dry-run")
	if ents, _ := os.ReadDir(c.dir); len(ents) != 1 {
		t.Errorf("dry run created files: %v", ents)
	}
	for _, want := range []string{"Dry run: nothing was written", filepath.Join(c.certDir, "apiserver.crt"), "CN=kube-apiserver",
		"DNS:kubernetes.default.svc.cluster.local", "IP:10.96.0.1", filepath.Join(c.certDir, "etcd", "peer.key"), filepath.Join(c.certDir, "sa.pub")} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
}

// TestInitStructuredOutput: -o json and -o yaml print one versioned object listing every file with
// created, then reused on a re-run, and skipped for --skip-phases.
func TestInitStructuredOutput(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	parse := func(out, format string) phases.Result {
		var r phases.Result
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(out), &r)
		} else {
			err = yaml.Unmarshal([]byte(out), &r)
		}
		if err != nil {
			t.Fatalf("-o %s printed something else: %v\n%s", format, err, out)
		}
		if r.APIVersion != phases.ResultAPIVersion || r.Kind != "InitResult" || r.CertificatesDir != c.certDir {
			t.Errorf("-o %s: %s/%s in %s", format, r.APIVersion, r.Kind, r.CertificatesDir)
		}
		return r
	}
	actions := func(r phases.Result) map[string]int {
		m := map[string]int{}
		for _, f := range r.Files {
			m[f.Action]++
			if f.Path == "" && f.Action != phases.ActionSkipped {
				t.Errorf("result without a path: %+v", f)
			}
		}
		return m
	}
	r := parse(c.mustExec("init", "phase", "certs", "all", "-o", "json"), "json")
	if a := actions(r); a[phases.ActionCreated] != 20 || len(a) != 1 {
		t.Errorf("first run: %v, want 20 created", a)
	}
	r = parse(c.mustExec("init", "phase", "certs", "all", "-o", "yaml"), "yaml")
	if a := actions(r); a[phases.ActionReused] != 20 || len(a) != 1 {
		t.Errorf("re-run: %v, want 20 reused", a)
	}
	r = parse(c.mustExec("init", "--skip-phases", "sa", "--dry-run", "-o", "json"), "json")
	skipped := 0
	for _, f := range r.Files {
		if f.Phase == "sa" && f.Action == phases.ActionSkipped {
			skipped++
		}
	}
	if skipped != 2 || !r.DryRun {
		t.Errorf("--skip-phases sa --dry-run: %d skipped sa files, dryRun %v", skipped, r.DryRun)
	}
	for _, f := range r.Files {
		for _, s := range []string{f.SHA256, f.Subject} {
			if strings.Contains(s, "PRIVATE") {
				t.Error("key material in the output")
			}
		}
	}
}

// TestInitFromEnvironment: every flag can come from K8SCRYPTO_<FLAG>; a flag on the command line wins.
func TestInitFromEnvironment(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	envDir := filepath.Join(c.dir, "from-env")
	t.Setenv("K8SCRYPTO_CERT_DIR", envDir)
	t.Setenv("K8SCRYPTO_NODE_NAME", "Env-Node")
	t.Setenv("K8SCRYPTO_APISERVER_CERT_EXTRA_SANS", "api.example.com,192.168.7.7")
	t.Setenv("K8SCRYPTO_ENCRYPTION_ALGORITHM", "ECDSA-P256")
	t.Setenv("K8SCRYPTO_SERVICE_CIDR", "10.112.0.0/16")
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: c.keys, rand: pkitest.Rand(1)}
	if code := run([]string{"init", "phase", "certs", "all", "--config", c.cfg, "--audit-log", c.log}, e); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	cert := readPEMCert(t, filepath.Join(envDir, "apiserver.crt"))
	if pki.AlgorithmOf(cert.PublicKey) != pki.ECDSAP256 {
		t.Errorf("K8SCRYPTO_ENCRYPTION_ALGORITHM ignored: %s", pki.AlgorithmOf(cert.PublicKey))
	}
	for _, want := range []string{"DNS:env-node", "DNS:api.example.com", "IP:192.168.7.7", "IP:10.112.0.1"} {
		if !strings.Contains(strings.Join(pki.FormatAltNames(cert.DNSNames, cert.IPAddresses), ","), want) {
			t.Errorf("apiserver.crt lacks %s from the environment: %v %v", want, cert.DNSNames, cert.IPAddresses)
		}
	}
	// The flag beats the environment.
	flagDir := filepath.Join(c.dir, "from-flag")
	if code := run([]string{"init", "phase", "certs", "ca", "--config", c.cfg, "--audit-log", c.log, "--cert-dir", flagDir}, e); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(flagDir, "ca.crt")); err != nil {
		t.Errorf("--cert-dir lost to K8SCRYPTO_CERT_DIR: %v", err)
	}
	// A bad value from the environment is named by its variable.
	t.Setenv("K8SCRYPTO_LOCK_TIMEOUT", "soon")
	stderr.Reset()
	if code := run([]string{"init", "--dry-run", "--config", c.cfg}, e); code != exitUsage || !strings.Contains(stderr.String(), "K8SCRYPTO_LOCK_TIMEOUT") {
		t.Errorf("bad K8SCRYPTO_LOCK_TIMEOUT: exit %d, %q", code, stderr.String())
	}
}

// TestInitBadInputsChangeNothing runs init with each invalid input of issue 2 against an existing PKI and a
// fresh one: non-zero exit, a message naming the field or file, and no file changed.
func TestInitBadInputsChangeNothing(t *testing.T) {
	cases := []struct {
		name   string
		config string
		args   []string
		want   []string
	}{
		{"invalid SAN", initTestConfig, []string{"--apiserver-cert-extra-sans", "ok.example.com,bad_san!"}, []string{"apiServer.certSANs", "bad_san!"}},
		{"malformed CIDR", initTestConfig, []string{"--service-cidr", "10.96.0.0/99"}, []string{"networking.serviceSubnet", "10.96.0.0/99"}},
		{"unknown algorithm", initTestConfig, []string{"--encryption-algorithm", "RSA-1024"}, []string{"encryptionAlgorithm", "RSA-1024"}},
		{"validity longer than the CA's", pkitest.KubeadmConfig("certificateValidityPeriod: 100000h\n"), nil,
			[]string{"certificateValidityPeriod", "caCertificateValidityPeriod"}},
		{"v1beta3", strings.ReplaceAll(initTestConfig, "v1beta4", "v1beta3"), nil, []string{"kubeadm.k8s.io/v1beta3", "v1beta4"}},
		{"unknown field", initTestConfig + "certificateKey2: x\n", nil, []string{"InitConfiguration", "certificateKey2"}},
		{"broken YAML", initTestConfig + "nodeRegistration: [\n", nil, []string{"kubeadm.yaml"}},
		{"bad advertise address", initTestConfig, []string{"--advertise-address", "10.0.0.256"}, []string{"advertiseAddress", "10.0.0.256"}},
		{"bad endpoint", initTestConfig, []string{"--control-plane-endpoint", "lb_bad:6443"}, []string{"controlPlaneEndpoint", "lb_bad:6443"}},
		{"empty config file", "", nil, []string{"kubeadm.yaml", "no InitConfiguration or ClusterConfiguration", "no documents"}},
		{"misspelt kubeadm group", strings.ReplaceAll(initTestConfig, "kubeadm.k8s.io", "kubeadm.k8s.oi"), nil,
			[]string{"kubeadm.yaml", `"kubeadm.k8s.oi/v1beta4"`, "InitConfiguration belongs to kubeadm.k8s.io"}},
		{"duration of the wrong type", pkitest.KubeadmConfig("certificateValidityPeriod: banana\n"), nil,
			[]string{"kubeadm.yaml", "ClusterConfiguration: certificateValidityPeriod:", "banana"}},
	}
	for _, tc := range cases {
		for _, existing := range []bool{false, true} {
			name := tc.name + map[bool]string{false: " (fresh)", true: " (existing PKI)"}[existing]
			t.Run(name, func(t *testing.T) {
				c := newInitCase(t, initTestConfig)
				if existing {
					c.mustExec("init", "phase", "certs", "all")
					c.mustExec("init", "phase", "sa")
				}
				if err := os.WriteFile(c.cfg, []byte(tc.config), 0o600); err != nil {
					t.Fatal(err)
				}
				before := pkitest.MustSnapshot(t, c.dir)
				code, stdout, stderr := c.exec(append([]string{"init"}, tc.args...)...)
				if code == 0 {
					t.Fatalf("accepted; stdout:\n%s", stdout)
				}
				if !strings.HasPrefix(stderr, "error: ") {
					t.Errorf("stderr %q does not start with the one error line", stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr %q does not mention %q", stderr, w)
					}
				}
				if stdout != "" {
					t.Errorf("a failed command printed a result: %q", stdout)
				}
				if d := pkitest.Diff(before, pkitest.MustSnapshot(t, c.dir)); len(d) > 0 {
					t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
				}
			})
		}
	}
}

// TestInitBadExistingFileChangesNothing: a problem found by a phase (here a garbage key) fails the whole
// run, including the phases after it, so nothing of the run is written; only the lock file may appear.
func TestInitBadExistingFileChangesNothing(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	c.mustExec("init", "phase", "certs", "ca")
	if err := os.WriteFile(filepath.Join(c.certDir, "ca.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := pkitest.MustSnapshot(t, c.dir)
	code, _, stderr := c.exec("init")
	if code == 0 || !strings.Contains(stderr, filepath.Join(c.certDir, "ca.key")) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if d := pkitest.Diff(before, pkitest.MustSnapshot(t, c.dir)); len(d) > 0 {
		t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
	}
}

// TestInitFullRunFailsAtEveryStep fails each file-system step of a complete "init" (every phase, every
// file) in turn: the command fails, its directories are as before apart from the lock file and the empty
// audit log the command opens first, and the next run succeeds.
func TestInitFullRunFailsAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full init about two hundred times")
	}
	for n := 1; ; n++ {
		c := newInitCaseIn(t, initTestConfig, initMemDir(t))
		before := pkitest.MustSnapshot(t, c.dir)
		calls := 0
		restore := pki.SetFaultHook(func(op pki.Op, path string) error {
			if strings.HasPrefix(path, filepath.Dir(c.log)) {
				return nil // the audit log is written after the run, outside the transaction
			}
			if calls++; calls == n {
				return errors.New("injected fault")
			}
			return nil
		})
		code, _, stderr := c.exec("init")
		restore()
		if calls < n {
			if code != 0 {
				t.Fatalf("unfaulted run failed: %s", stderr)
			}
			if n < 50 {
				t.Fatalf("only %d steps: the hook does not see the run", n-1)
			}
			t.Logf("failed each of %d steps", n-1)
			break
		}
		after := pkitest.MustSnapshot(t, c.dir)
		if code == 0 {
			continue // the final directory sync after the transaction ended
		}
		if !strings.Contains(stderr, "injected fault") {
			t.Fatalf("step %d: %s", n, stderr)
		}
		// The lock is taken, and the audit log opened (so that an unwritable log fails early), before the run.
		for _, p := range []string{"pki", "pki/" + pki.LockName, "state", "state/audit.log"} {
			delete(after, p)
		}
		if d := pkitest.Diff(before, after); len(d) > 0 {
			t.Fatalf("step %d failed but files changed:\n%s", n, strings.Join(d, "\n"))
		}
		// The directory is as before, so every re-run is the same run; check a sample.
		if n%16 == 1 {
			if code, _, stderr := c.exec("init"); code != 0 {
				t.Fatalf("step %d: re-run failed: %s", n, stderr)
			}
		}
	}
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := pki.ParseCertChain(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}
