package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// execOwn runs k8scrypto with exactly the given arguments (exec adds --config and the directories), with the
// same injected clock, keys and serials.
func (c *initCase) execOwn(args ...string) (int, string, string) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: c.keys,
		rand: pkitest.Rand(1), hostname: func() (string, error) { return "host-from-os", nil }}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

// apiserverSANs are the SANs of the certificate directory's apiserver.crt, as "DNS:x" and "IP:y".
func apiserverSANs(t *testing.T, certDir string) []string {
	t.Helper()
	cert := readPEMCert(t, filepath.Join(certDir, "apiserver.crt"))
	return pki.FormatAltNames(cert.DNSNames, cert.IPAddresses)
}

func parseResult(t *testing.T, out string) phases.Result {
	t.Helper()
	var r phases.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%s", err, out)
	}
	return r
}

// TestInitPhaseUnknownNameListsValidOnes: "init phase certz" and "init phase certs apiservr" are usage errors
// that list the names that exist at that level (cobra alone says only "unknown command"), and write nothing.
func TestInitPhaseUnknownNameListsValidOnes(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"init", "phase", "certz"}, []string{`unknown phase "certz"`, "did you mean certs?",
			"valid ones are: certs, sa, encryption-config, kubeconfig, kubeadm-config"}},
		{[]string{"init", "phase", "certs", "apiservr"}, []string{`unknown sub-phase of certs "apiservr"`, "did you mean apiserver?",
			"valid ones are: all, ca, apiserver, apiserver-kubelet-client, front-proxy-ca, front-proxy-client, etcd-ca, etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client"}},
		{[]string{"init", "phase", "kubeconfig", "root"}, []string{`unknown sub-phase of kubeconfig "root"`, "all, admin, super-admin, kubelet, controller-manager, scheduler"}},
	} {
		code, stdout, stderr := c.exec(tc.args...)
		if code != exitUsage || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q", tc.args, code, stdout)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, stderr, w)
			}
		}
	}
	if ents, _ := os.ReadDir(c.dir); len(ents) != 1 {
		t.Errorf("a rejected command created files: %v", ents)
	}
}

// TestInitFromEnvironmentEveryKind sets each kind of flag through K8SCRYPTO_<FLAG> on init itself and checks
// the effect on what is written; a flag on the command line beats the variable.
func TestInitFromEnvironmentEveryKind(t *testing.T) {
	t.Run("dry run", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		t.Setenv("K8SCRYPTO_DRY_RUN", "true")
		out := c.mustExec("init")
		if ents, _ := os.ReadDir(c.dir); len(ents) != 1 || !strings.HasPrefix(out, "Dry run") {
			t.Errorf("K8SCRYPTO_DRY_RUN=true wrote %v", ents)
		}
		c.mustExec("init", "--dry-run=false")
		if _, err := os.Stat(filepath.Join(c.certDir, "ca.crt")); err != nil {
			t.Errorf("--dry-run=false lost to K8SCRYPTO_DRY_RUN=true: %v", err)
		}
	})
	t.Run("strict permissions", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		t.Setenv("K8SCRYPTO_STRICT_PERMISSIONS", "true")
		c.mustExec("init", "phase", "certs", "ca")
		for p, want := range map[string]os.FileMode{"ca.crt": 0o600, ".": 0o700} {
			if info, err := os.Stat(filepath.Join(c.certDir, p)); err != nil || info.Mode().Perm() != want {
				t.Errorf("%s with K8SCRYPTO_STRICT_PERMISSIONS=true: %v, %v; want %o", p, info.Mode(), err, want)
			}
		}
	})
	t.Run("output", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		t.Setenv("K8SCRYPTO_OUTPUT", "json")
		if r := parseResult(t, c.mustExec("init", "phase", "certs", "ca")); len(r.Files) != 2 {
			t.Errorf("%d files in the result, want ca.crt and ca.key", len(r.Files))
		}
		if out := c.mustExec("init", "phase", "certs", "ca", "-o", "text"); !strings.HasPrefix(out, "ACTION") {
			t.Errorf("-o text lost to K8SCRYPTO_OUTPUT=json:\n%s", out)
		}
	})
	t.Run("quiet and verbose", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		t.Setenv("K8SCRYPTO_QUIET", "true")
		if _, _, stderr := c.exec("init", "phase", "certs", "ca"); stderr != "" {
			t.Errorf("K8SCRYPTO_QUIET=true: stderr %q", stderr)
		}
		t.Setenv("K8SCRYPTO_QUIET", "")
		t.Setenv("K8SCRYPTO_VERBOSE", "true")
		if _, _, stderr := c.exec("init", "phase", "certs", "ca"); !strings.Contains(stderr, "running phase phase=certs/ca") {
			t.Errorf("K8SCRYPTO_VERBOSE=true: stderr %q", stderr)
		}
	})
	t.Run("config, addresses and DNS domain", func(t *testing.T) {
		c := newInitCase(t, initTestConfig) // the file names the node cp-1
		t.Setenv("K8SCRYPTO_CONFIG", c.cfg)
		t.Setenv("K8SCRYPTO_ADVERTISE_ADDRESS", "10.1.2.3")
		t.Setenv("K8SCRYPTO_CONTROL_PLANE_ENDPOINT", "lb.env.example:6443")
		t.Setenv("K8SCRYPTO_SERVICE_DNS_DOMAIN", "env.example")
		args := []string{"init", "phase", "certs", "all", "--cert-dir", c.certDir, "--kubeconfig-dir", c.kubeDir, "--audit-log", c.log}
		if code, _, stderr := c.execOwn(args...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		sans := apiserverSANs(t, c.certDir)
		for _, want := range []string{"DNS:cp-1", "IP:10.1.2.3", "DNS:lb.env.example", "DNS:kubernetes.default.svc.env.example"} {
			if !slices.Contains(sans, want) {
				t.Errorf("apiserver.crt lacks %s from the environment: %v", want, sans)
			}
		}
		// Flags beat the variables.
		flagDir := filepath.Join(c.dir, "flags")
		args = []string{"init", "phase", "certs", "all", "--cert-dir", flagDir, "--audit-log", c.log, "--advertise-address", "10.9.9.9",
			"--control-plane-endpoint", "lb.flag.example", "--service-dns-domain", "flag.example"}
		if code, _, stderr := c.execOwn(args...); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		sans = apiserverSANs(t, flagDir)
		for _, want := range []string{"IP:10.9.9.9", "DNS:lb.flag.example", "DNS:kubernetes.default.svc.flag.example"} {
			if !slices.Contains(sans, want) {
				t.Errorf("apiserver.crt lacks %s from the flags: %v", want, sans)
			}
		}
		for _, lost := range []string{"IP:10.1.2.3", "DNS:lb.env.example", "DNS:kubernetes.default.svc.env.example"} {
			if slices.Contains(sans, lost) {
				t.Errorf("apiserver.crt has %s from the environment although a flag was given: %v", lost, sans)
			}
		}
	})
	t.Run("skip phases", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		t.Setenv("K8SCRYPTO_SKIP_PHASES", "sa,kubeadm-config")
		c.mustExec("init")
		for p, want := range map[string]bool{filepath.Join(c.certDir, "ca.crt"): true, filepath.Join(c.certDir, "sa.key"): false,
			filepath.Join(c.kubeDir, "admin.conf"): true, filepath.Join(c.kubeDir, phases.KubeadmConfigFileName): false} {
			if _, err := os.Stat(p); (err == nil) != want {
				t.Errorf("K8SCRYPTO_SKIP_PHASES=sa,kubeadm-config: %s exists %v, want %v", p, err == nil, want)
			}
		}
		c.mustExec("init", "--skip-phases", "kubeadm-config")
		if _, err := os.Stat(filepath.Join(c.certDir, "sa.key")); err != nil {
			t.Errorf("--skip-phases lost to K8SCRYPTO_SKIP_PHASES: %v", err)
		}
	})
}

// TestInitServiceDNSDomainFlag: --service-dns-domain reaches the API server certificate.
func TestInitServiceDNSDomainFlag(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	c.mustExec("init", "phase", "certs", "all", "--service-dns-domain", "corp.example")
	sans := apiserverSANs(t, c.certDir)
	if !slices.Contains(sans, "DNS:kubernetes.default.svc.corp.example") || slices.Contains(sans, "DNS:kubernetes.default.svc.cluster.local") {
		t.Errorf("apiserver.crt SANs %v, want kubernetes.default.svc.corp.example instead of the default domain", sans)
	}
}

// TestInitVerbosity: -v adds the phase-by-phase detail on stderr, -q silences progress, and stdout is the same
// result for all three; the summary line names no directory, since the files span several.
func TestInitVerbosity(t *testing.T) {
	type outcome struct{ stdout, stderr string }
	results := map[string]outcome{}
	for _, flag := range []string{"", "-v", "-q"} {
		c := newInitCase(t, initTestConfig)
		args := []string{"init"}
		if flag != "" {
			args = append(args, flag)
		}
		code, stdout, stderr := c.exec(args...)
		if code != 0 {
			t.Fatalf("init %s: exit %d: %s", flag, code, stderr)
		}
		results[flag] = outcome{strings.ReplaceAll(stdout, c.dir, "DIR"), stderr}
		if flag == "" {
			line := regexp.MustCompile(`(?m)^\d+ created, 0 reused, 0 skipped$`).FindString(stdout)
			if line == "" || strings.Contains(stdout, "skipped in") {
				t.Errorf("no summary line without a directory:\n%s", stdout)
			}
		}
	}
	def, verbose, quiet := results[""], results["-v"], results["-q"]
	if def.stdout != verbose.stdout || def.stdout != quiet.stdout {
		t.Errorf("stdout depends on verbosity:\n%s\n-v:\n%s\n-q:\n%s", def.stdout, verbose.stdout, quiet.stdout)
	}
	if def.stderr == "" || strings.Contains(def.stderr, "running phase") {
		t.Errorf("default stderr %q: want progress without the per-phase detail", def.stderr)
	}
	if !strings.Contains(verbose.stderr, "running phase phase=kubeadm-config") || len(verbose.stderr) <= len(def.stderr) {
		t.Errorf("-v stderr %q adds no detail", verbose.stderr)
	}
	if quiet.stderr != "" {
		t.Errorf("-q stderr %q, want nothing", quiet.stderr)
	}
	c := newInitCase(t, initTestConfig)
	if code, _, stderr := c.exec("init", "-v", "-q"); code != exitUsage || !strings.Contains(stderr, "-v and -q") {
		t.Errorf("-v -q: exit %d, %q", code, stderr)
	}
}

// TestInitKubeadmConfigOut: --kubeadm-config-out is where the rendered configuration goes (and what the next
// command names), instead of <kubeconfig-dir>/kubeadm-config.yaml; it loads back to what init used.
func TestInitKubeadmConfigOut(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	out := filepath.Join(c.dir, "elsewhere", "kc.yaml")
	r := parseResult(t, c.mustExec("init", "--kubeadm-config-out", out, "-o", "json"))
	if _, err := os.Stat(filepath.Join(c.kubeDir, phases.KubeadmConfigFileName)); !os.IsNotExist(err) {
		t.Errorf("the default path was written too: %v", err)
	}
	if !strings.HasSuffix(r.NextCommand, "--config "+out) {
		t.Errorf("nextCommand %q does not name %s", r.NextCommand, out)
	}
	cfg, err := config.Load(out, config.Overrides{}, func() (string, error) { return "other", nil })
	if err != nil {
		t.Fatalf("the rendered file does not load: %v", err)
	}
	if cfg.PKI.CertDir != c.certDir || cfg.PKI.NodeName != "cp-1" || cfg.PKI.AdvertiseAddress.String() != "10.0.0.5" {
		t.Errorf("the rendered file loads as %+v", cfg.PKI)
	}
}

// TestInitDirectoryDefaults: without flags, kubeconfigs go to /etc/kubernetes and certificates to
// /etc/kubernetes/pki, as kubeadm's. The defaults are read from the flags and from a dry run (which writes
// nothing); the dry run is left out where /etc/kubernetes exists, as it would read the host's files.
func TestInitDirectoryDefaults(t *testing.T) {
	root := newRootCommand(defaultEnv(), &globals{})
	for _, path := range [][]string{{"init"}, {"init", "phase", "kubeconfig", "admin"}} {
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		kd, cd := cmd.Flag("kubeconfig-dir"), cmd.Flag("cert-dir")
		if kd == nil || kd.DefValue != "/etc/kubernetes" || cd == nil || cd.DefValue != "" || !strings.Contains(cd.Usage, "/etc/kubernetes/pki") {
			t.Errorf("%v: --kubeconfig-dir default %v, --cert-dir default %v", path, kd, cd)
		}
	}
	if pki.DefaultCertificateDir != "/etc/kubernetes/pki" {
		t.Errorf("default certificate directory %s", pki.DefaultCertificateDir)
	}
	if _, err := os.Stat("/etc/kubernetes"); err == nil {
		t.Skip("/etc/kubernetes exists here: a dry run would read it")
	}
	c := newInitCase(t, initTestConfig)
	code, stdout, stderr := c.execOwn("init", "--dry-run", "-o", "json", "--config", c.cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	r := parseResult(t, stdout)
	paths := map[string]bool{}
	for _, f := range r.Files {
		paths[f.Path] = true
	}
	if r.CertificatesDir != "/etc/kubernetes/pki" || !paths["/etc/kubernetes/pki/ca.crt"] || !paths["/etc/kubernetes/admin.conf"] ||
		!paths["/etc/kubernetes/"+phases.KubeadmConfigFileName] {
		t.Errorf("dry run without directory flags: certificatesDir %s, files %v", r.CertificatesDir, paths)
	}
}

// TestInitPhaseKubeconfigAdminAlone: "init phase kubeconfig admin" needs the CA, then writes admin.conf and
// nothing else.
func TestInitPhaseKubeconfigAdminAlone(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	code, _, stderr := c.exec("init", "phase", "kubeconfig", "admin")
	if code == 0 || !strings.Contains(stderr, filepath.Join(c.certDir, "ca.crt")) || !strings.Contains(stderr, "init phase certs ca") {
		t.Errorf("without a CA: exit %d, %q; want an error naming ca.crt and the phase that makes it", code, stderr)
	}
	if _, err := os.Stat(c.kubeDir); !os.IsNotExist(err) {
		t.Errorf("the failed phase created the kubeconfig directory: %v", err)
	}
	c.mustExec("init", "phase", "certs", "ca")
	before := pkitest.MustSnapshot(t, c.certDir)
	c.mustExec("init", "phase", "kubeconfig", "admin")
	ents, err := os.ReadDir(c.kubeDir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "admin.conf" {
		t.Errorf("init phase kubeconfig admin wrote %v (%v), want admin.conf alone", ents, err)
	}
	after := pkitest.MustSnapshot(t, c.certDir)
	delete(before, pki.LockName)
	delete(after, pki.LockName)
	if d := pkitest.Diff(before, after); len(d) > 0 {
		t.Errorf("the certificate directory changed:\n%s", strings.Join(d, "\n"))
	}
}

// TestInitOutputInPhaseOrder: the files of a full init are reported in the phases' order.
func TestInitOutputInPhaseOrder(t *testing.T) {
	c := newInitCase(t, initTestConfig)
	r := parseResult(t, c.mustExec("init", "-o", "json"))
	var order []string
	for _, f := range r.Files {
		top, _, _ := strings.Cut(f.Phase, "/")
		if len(order) == 0 || order[len(order)-1] != top {
			order = append(order, top)
		}
	}
	if want := []string{"certs", "sa", "encryption-config", "kubeconfig", "kubeadm-config"}; !slices.Equal(order, want) {
		t.Errorf("phases of the reported files, in order: %v, want %v", order, want)
	}
}

// TestInitWarnsAboutUnknownDocuments: a document neither k8scrypto nor kubeadm knows, next to a valid one, is a
// warning on stderr naming it (as kubeadm warns), not an error; -q silences it.
func TestInitWarnsAboutUnknownDocuments(t *testing.T) {
	c := newInitCase(t, initTestConfig+"---\napiVersion: example.com/v1\nkind: Widget\n")
	code, _, stderr := c.exec("init", "phase", "certs", "ca")
	if code != 0 || !strings.Contains(stderr, "warn: document 2 (example.com/v1, Kind=Widget)") || !strings.Contains(stderr, c.cfg) {
		t.Errorf("exit %d, stderr %q: want a warning naming the document and the file", code, stderr)
	}
	if _, _, stderr := c.exec("init", "phase", "certs", "ca", "-q"); stderr != "" {
		t.Errorf("-q: stderr %q", stderr)
	}
}
