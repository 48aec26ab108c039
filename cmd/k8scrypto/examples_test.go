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
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
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

// The node bootstrap script runs the real k8scrypto init, then kubeadm config validate and kubeadm init (a stub
// that checks it was given the rendered config k8scrypto just wrote), then check-expiration; a failing
// k8scrypto stops it before kubeadm, and a failing kubeadm config validate before kubeadm init.
func TestBootstrapScriptRunsInitThenKubeadm(t *testing.T) {
	for _, tt := range []struct {
		name           string
		config         string
		rejectRendered bool // the stub's "kubeadm config validate" fails
		wantKubeadm    string
	}{
		{"ha example", filepath.Join(examplesDir, "kubeadm-config.yaml"), false, "config validate --config R\ninit --config R\n"},
		{"invalid config", "", false, ""},
		{"kubeadm rejects the rendered config", filepath.Join(examplesDir, "kubeadm-config-single.yaml"), true, "config validate --config R\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
			// Not the default <kubeconfig-dir>/kubeadm-config.yaml, so that the script's --kubeadm-config-out counts.
			rendered := filepath.Join(dir, "rendered", "kubeadm.yaml")
			cfg := tt.config
			if cfg == "" {
				cfg = filepath.Join(dir, "bad.yaml")
				os.WriteFile(cfg, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [\"not a name\"]\n"), 0o600)
			}
			kubeadmArgs := filepath.Join(dir, "kubeadm.args")
			kubeadm := filepath.Join(dir, "kubeadm")
			stub := "#!/bin/sh\necho \"$*\" >> " + kubeadmArgs + "\n" +
				"for f; do :; done\n" + // the last argument: the config file
				"grep -q '^kind: ClusterConfiguration' \"$f\" || exit 3\n" +
				"if [ \"$1 $2\" = \"config validate\" ] && [ -n \"$STUB_REJECT\" ]; then echo 'kubeadm: invalid configuration' >&2; exit 4; fi\n"
			if err := os.WriteFile(kubeadm, []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", filepath.Join(examplesDir, "bootstrap-control-plane.sh"), cfg)
			cmd.Env = append(os.Environ(),
				"K8SCRYPTO="+k8scryptoWrapper(t, dir), "KUBEADM="+kubeadm, "RENDERED="+rendered,
				// Keep k8scrypto inside the test directory: every flag can come from K8SCRYPTO_<FLAG>.
				"K8SCRYPTO_CERT_DIR="+certDir, "K8SCRYPTO_KUBECONFIG_DIR="+kubeDir, "K8SCRYPTO_AUDIT_LOG="+filepath.Join(dir, "audit.log"))
			if tt.rejectRendered {
				cmd.Env = append(cmd.Env, "STUB_REJECT=1")
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			args, _ := os.ReadFile(kubeadmArgs)
			if got := strings.ReplaceAll(string(args), rendered, "R"); got != tt.wantKubeadm {
				t.Errorf("kubeadm ran as:\n%s\nwant:\n%s", got, tt.wantKubeadm)
			}
			if tt.rejectRendered {
				if err == nil || !strings.Contains(stderr.String(), "kubeadm: invalid configuration") {
					t.Errorf("the script went on after kubeadm config validate failed: %v\n%s", err, stderr.String())
				}
				return
			}
			if tt.config == "" {
				if err == nil {
					t.Fatal("the script succeeded with an invalid configuration")
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
			if _, err := os.Stat(filepath.Join(kubeDir, phases.KubeadmConfigFileName)); !os.IsNotExist(err) {
				t.Errorf("the kubeadm config was also written to the default path: %v", err)
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

// TestSingleExampleIsSingle: the single control-plane example stays that: no controlPlaneEndpoint and no extra
// SANs (nothing for a second node to join through), local etcd with no extra members, and every kubeconfig
// pointing at this node's own address.
func TestSingleExampleIsSingle(t *testing.T) {
	cfg, err := config.Load(filepath.Join(examplesDir, "kubeadm-config-single.yaml"), config.Overrides{}, func() (string, error) { return "node", nil })
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKI
	if p.ControlPlaneEndpoint != "" || len(p.APIServerCertSANs) > 0 || !p.LocalEtcd || len(p.EtcdServerCertSANs) > 0 || len(p.EtcdPeerCertSANs) > 0 {
		t.Errorf("not a single control plane: endpoint %q, certSANs %v, local etcd %v, etcd SANs %v %v",
			p.ControlPlaneEndpoint, p.APIServerCertSANs, p.LocalEtcd, p.EtcdServerCertSANs, p.EtcdPeerCertSANs)
	}
	for _, a := range cfg.Cluster.Etcd.Local.ExtraArgs {
		if strings.HasPrefix(a.Name, "initial-cluster") {
			t.Errorf("etcd is given %s=%s: a single node needs no peers", a.Name, a.Value)
		}
	}
	for _, k := range pki.Kubeconfigs() {
		if u, err := k.ServerURL(p); err != nil || u != "https://"+p.AdvertiseAddress.String()+":6443" {
			t.Errorf("%s points at %q (%v), want this node", k.FileName, u, err)
		}
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

// The second-node script installs the shared keys from a bundle that the first node exported (pinned to its
// CA), runs the real k8scrypto init for this node, then kubeadm join --control-plane (a stub that records
// its arguments): the node ends with the first node's CAs and encryption config and its own serving
// certificate; a bundle of another cluster stops it before kubeadm.
func TestJoinScriptInstallsSharedKeysThenJoins(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	k8s := k8scryptoWrapper(t, dir)
	run := func(env []string, args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(k8s, args...)
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	firstEnv := []string{"K8SCRYPTO_CERT_DIR=" + filepath.Join(first, "pki"), "K8SCRYPTO_KUBECONFIG_DIR=" + filepath.Join(first, "kube"), "K8SCRYPTO_AUDIT_LOG=" + filepath.Join(dir, "audit.log")}
	if _, stderr, err := run(firstEnv, "init", "--config", filepath.Join(examplesDir, "kubeadm-config.yaml"), "-q"); err != nil {
		t.Fatalf("first node: %v\n%s", err, stderr)
	}
	keyFile, bundle := filepath.Join(dir, "bundle.key"), filepath.Join(dir, "cluster.bundle")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("6d", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(firstEnv, "certs", "export", "--out", bundle, "--key-file", keyFile); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	caPEM, err := os.ReadFile(filepath.Join(first, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.ParseCertChain(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	// The second node's configuration: the HA example with its own name and address.
	example, err := os.ReadFile(filepath.Join(examplesDir, "kubeadm-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "cp-2.yaml")
	loaded, err := config.Load(filepath.Join(examplesDir, "kubeadm-config.yaml"), config.Overrides{}, func() (string, error) { return "unused", nil })
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(example), "name: "+loaded.PKI.NodeName, "name: cp-2")
	text = strings.ReplaceAll(text, "advertiseAddress: "+loaded.PKI.AdvertiseAddress.String(), "advertiseAddress: 10.0.0.22")
	if err := os.WriteFile(cfgFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeadmArgs, kubeadm := filepath.Join(dir, "kubeadm.args"), filepath.Join(dir, "kubeadm")
	if err := os.WriteFile(kubeadm, []byte("#!/bin/sh\necho \"$*\" >> "+kubeadmArgs+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	join := func(pin string) (string, error) {
		cmd := exec.Command("bash", filepath.Join(examplesDir, "join-control-plane.sh"), cfgFile)
		cmd.Env = append(os.Environ(), "K8SCRYPTO="+k8s, "KUBEADM="+kubeadm, "RENDERED="+filepath.Join(second, "kubeadm.yaml"),
			"BUNDLE="+bundle, "BUNDLE_KEY_FILE="+keyFile, "CA_CERT_HASH="+pin, "ENDPOINT=cp.example:6443", "TOKEN=abcdef.0123456789abcdef", "ADVERTISE_ADDRESS=10.0.0.22",
			"K8SCRYPTO_CERT_DIR="+filepath.Join(second, "pki"), "K8SCRYPTO_KUBECONFIG_DIR="+filepath.Join(second, "kube"), "K8SCRYPTO_AUDIT_LOG="+filepath.Join(dir, "audit2.log"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := join("sha256:" + strings.Repeat("0", 64)); err == nil || !strings.Contains(out, "another cluster") {
		t.Fatalf("a wrong pin: %v\n%s", err, out)
	}
	if _, err := os.Stat(kubeadmArgs); err == nil {
		t.Fatal("kubeadm ran after k8scrypto refused the bundle")
	}
	pin := phases.CAPin(ca)
	if out, err := join(pin); err != nil {
		t.Fatalf("join script: %v\n%s", err, out)
	}
	for _, f := range []string{"ca.crt", "ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key", "encryption-config.yaml"} {
		a, _ := os.ReadFile(filepath.Join(first, "pki", f))
		b, err := os.ReadFile(filepath.Join(second, "pki", f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s on the second node is not the first node's: %v", f, err)
		}
	}
	apiserver, err := os.ReadFile(filepath.Join(second, "pki", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := pki.ParseCertChain(apiserver)
	if err != nil || cert.CheckSignatureFrom(ca) != nil || !strings.Contains(strings.Join(cert.DNSNames, ","), "cp-2") || !strings.Contains(fmt.Sprint(cert.IPAddresses), "10.0.0.22") {
		t.Errorf("the second node's apiserver certificate: %v, names %v %v", err, cert.DNSNames, cert.IPAddresses)
	}
	args, _ := os.ReadFile(kubeadmArgs)
	if want := "join cp.example:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash " + pin + " --control-plane --apiserver-advertise-address 10.0.0.22\n"; string(args) != want {
		t.Errorf("kubeadm ran as %q, want %q", args, want)
	}
	for _, absent := range []string{"kubelet.conf", "super-admin.conf"} {
		if _, err := os.Stat(filepath.Join(second, "kube", absent)); err == nil {
			t.Errorf("%s written on the joining node: kubeadm join's preflight refuses an existing kubelet.conf", absent)
		}
	}
	// Re-running is safe: the shared files are kept, init reuses everything.
	if out, err := join(pin); err != nil || !strings.Contains(out, "kept") {
		t.Errorf("re-run: %v\n%s", err, out)
	}

	// With a JoinConfiguration (the cluster's ClusterConfiguration, this node's name, address and token),
	// the rendered file is a JoinConfiguration and kubeadm join is given only that.
	third := filepath.Join(dir, "third")
	joinCfg := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  name: cp-3\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: 10.0.0.23\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n---\n" +
		strings.Join(strings.Split(string(example), "\n---\n")[1:], "\n---\n")
	if err := os.WriteFile(cfgFile, []byte(joinCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(kubeadmArgs)
	rendered := filepath.Join(third, "kubeadm.yaml")
	cmd := exec.Command("bash", filepath.Join(examplesDir, "join-control-plane.sh"), cfgFile)
	cmd.Env = append(os.Environ(), "K8SCRYPTO="+k8s, "KUBEADM="+kubeadm, "RENDERED="+rendered, "BUNDLE="+bundle, "BUNDLE_KEY_FILE="+keyFile, "CA_CERT_HASH="+pin,
		"K8SCRYPTO_CERT_DIR="+filepath.Join(third, "pki"), "K8SCRYPTO_KUBECONFIG_DIR="+filepath.Join(third, "kube"), "K8SCRYPTO_AUDIT_LOG="+filepath.Join(dir, "audit3.log"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("join script with a JoinConfiguration: %v\n%s", err, out)
	}
	if args, _ := os.ReadFile(kubeadmArgs); string(args) != "join --config "+rendered+"\n" {
		t.Errorf("kubeadm ran as %q, want join --config %s", args, rendered)
	}
	r, err := os.ReadFile(rendered)
	if err != nil || !strings.Contains(string(r), "\nkind: JoinConfiguration\n") || !strings.Contains(string(r), "- "+pin+"\n") || strings.Contains(string(r), "kind: InitConfiguration") {
		t.Errorf("the rendered file is not a JoinConfiguration pinned to %s: %v\n%s", pin, err, r)
	}
}
