package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
)

const examplesDir = "../../examples"

// TestExamplesHelperProcess is k8scrypto itself when the bootstrap script runs it: the test binary re-executed
// with the command line after "--". The variable is not named K8SCRYPTO_*, which would set a flag.
func TestExamplesHelperProcess(t *testing.T) {
	if os.Getenv("EXAMPLES_TEST_HELPER") != "1" {
		t.Skip("helper process for the example script tests")
	}
	os.Exit(run(flag.Args(), &env{stdout: os.Stdout, stderr: os.Stderr, now: time.Now,
		hostname: func() (string, error) { return "bootstrap-host", nil }}))
}

// k8scryptoWrapper writes an executable that runs this test binary as k8scrypto.
func k8scryptoWrapper(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "k8scrypto")
	script := fmt.Sprintf("#!/bin/sh\nEXAMPLES_TEST_HELPER=1 exec %q -test.run='^TestExamplesHelperProcess$' -- \"$@\"\n", self)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The node bootstrap script runs the real k8scrypto init, then kubeadm init (a stub that checks it was given
// the rendered config k8scrypto just wrote), then check-expiration; a failing k8scrypto stops it before kubeadm.
func TestBootstrapScriptRunsInitThenKubeadm(t *testing.T) {
	for _, tt := range []struct {
		name   string
		config string
		ok     bool
	}{
		{"ha example", filepath.Join(examplesDir, "kubeadm-config.yaml"), true},
		{"invalid config", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
			rendered := filepath.Join(kubeDir, "kubeadm-config.yaml")
			cfg := tt.config
			if cfg == "" {
				cfg = filepath.Join(dir, "bad.yaml")
				os.WriteFile(cfg, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [\"not a name\"]\n"), 0o600)
			}
			kubeadmArgs := filepath.Join(dir, "kubeadm.args")
			kubeadm := filepath.Join(dir, "kubeadm")
			stub := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + kubeadmArgs + "\n[ \"$1 $2\" = \"init --config\" ] && grep -q '^kind: ClusterConfiguration' \"$3\" || exit 3\n"
			if err := os.WriteFile(kubeadm, []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", filepath.Join(examplesDir, "bootstrap-control-plane.sh"), cfg)
			cmd.Env = append(os.Environ(),
				"K8SCRYPTO="+k8scryptoWrapper(t, dir), "KUBEADM="+kubeadm, "RENDERED="+rendered,
				// Keep k8scrypto inside the test directory: every flag can come from K8SCRYPTO_<FLAG>.
				"K8SCRYPTO_CERT_DIR="+certDir, "K8SCRYPTO_KUBECONFIG_DIR="+kubeDir, "K8SCRYPTO_AUDIT_LOG="+filepath.Join(dir, "audit.log"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if !tt.ok {
				if err == nil {
					t.Fatal("the script succeeded with an invalid configuration")
				}
				if _, err := os.Stat(kubeadmArgs); err == nil {
					t.Error("kubeadm ran after k8scrypto failed")
				}
				if _, err := os.Stat(certDir); err == nil {
					t.Error("a failed k8scrypto init left files behind")
				}
				if !strings.Contains(stderr.String(), "apiServer.certSANs") {
					t.Errorf("stderr does not name the bad field:\n%s", stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("script: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			args, _ := os.ReadFile(kubeadmArgs)
			if got := strings.Fields(string(args)); strings.Join(got, " ") != "init --config "+rendered {
				t.Errorf("kubeadm ran with %q, want init --config %s", got, rendered)
			}
			out := stdout.String()
			for _, want := range []string{"Next step: kubeadm init --config " + rendered, "created   " + filepath.Join(kubeDir, "admin.conf"), "admin.conf", "CERTIFICATE AUTHORITY"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// exampleCommand returns the k8scrypto arguments of the crontab line or the systemd unit's ExecStart, with the
// example's production paths replaced by the test's.
func exampleCommand(t *testing.T, file string, replace map[string]string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "ExecStart="):
			line = strings.TrimPrefix(l, "ExecStart=")
		case l != "" && !strings.HasPrefix(l, "#") && !strings.Contains(l, "=") && file == "crontab":
			line = strings.Join(strings.Fields(l)[6:], " ") // minute hour dom month dow user
		}
	}
	fields := strings.Fields(line)
	if len(fields) < 3 || fields[0] != "/usr/local/bin/k8scrypto" {
		t.Fatalf("%s: no k8scrypto command line found (%q)", file, line)
	}
	args := fields[1:]
	for i, a := range args {
		if r, ok := replace[a]; ok {
			args[i] = r
		}
	}
	return args
}

// The renewal lines of the crontab and the systemd service run as written against a PKI made by init from the
// HA example: with nothing due they change nothing and do not restart anything; with --force they renew and
// call the restart hook.
func TestRenewalExamplesRunAsWritten(t *testing.T) {
	dir := t.TempDir()
	certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
	t.Setenv("K8SCRYPTO_KUBECONFIG_DIR", kubeDir)
	t.Setenv("K8SCRYPTO_AUDIT_LOG", filepath.Join(dir, "audit.log"))
	t.Setenv("K8SCRYPTO_BACKUP_DIR", filepath.Join(dir, "backups"))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := func() (*env, *bytes.Buffer, *bytes.Buffer) {
		var o, er bytes.Buffer
		return &env{stdout: &o, stderr: &er, now: func() time.Time { return now }, hostname: func() (string, error) { return "h", nil }}, &o, &er
	}
	en, out, errOut := e()
	if code := run([]string{"init", "--config", filepath.Join(examplesDir, "kubeadm-config.yaml"), "--cert-dir", certDir, "-o", "json"}, en); code != 0 {
		t.Fatalf("init: %d\n%s", code, errOut.String())
	}
	var res phases.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	rendered := filepath.Join(kubeDir, "kubeadm-config.yaml")
	if want := "kubeadm init --config " + rendered; res.NextCommand != want {
		t.Errorf("-o json nextCommand %q, want %q", res.NextCommand, want)
	}
	marker := filepath.Join(dir, "restarted")
	hook := filepath.Join(dir, "restart-control-plane")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$K8SCRYPTO_RENEWED\" >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	replace := map[string]string{"/etc/kubernetes/kubeadm-config.yaml": rendered, "/usr/local/sbin/k8scrypto-restart-control-plane": hook}
	for _, file := range []string{"crontab", "systemd/k8scrypto-renew.service"} {
		t.Run(file, func(t *testing.T) {
			os.Remove(marker)
			args := exampleCommand(t, file, replace)
			en, _, errOut := e()
			if code := run(args, en); code != 0 {
				t.Fatalf("%v: exit %d\n%s", args, code, errOut.String())
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the restart hook ran although nothing was due")
			}
			en, _, errOut = e()
			if code := run(append(args, "--force"), en); code != 0 {
				t.Fatalf("%v --force: exit %d\n%s", args, code, errOut.String())
			}
			renewed, err := os.ReadFile(marker)
			if err != nil || !strings.Contains(string(renewed), "apiserver") || !strings.Contains(string(renewed), "admin.conf") {
				t.Errorf("restart hook after a forced renewal: %q, %v", renewed, err)
			}
		})
	}
}
