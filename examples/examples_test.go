// Tests that every example works: configurations load, scripts run (against stub tools) and the systemd
// units pass systemd's own checks. The k8scrypto command lines in the examples are run for real by
// cmd/k8scrypto's examples_test.go.
package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
)

func TestEveryExampleConfigLoads(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		cfg, err := config.Load(f, config.Overrides{}, func() (string, error) { return "example-host", nil })
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.PKI.NodeName == "" || cfg.PKI.AdvertiseAddress == nil || len(cfg.PKI.Certs()) == 0 {
			t.Errorf("%s: incomplete PKI inputs %+v", f, cfg.PKI)
		}
	}
}

// kubeadm-config.yaml is the project's reference HA example (issue 2): it must stay one.
func TestHAExampleIsHA(t *testing.T) {
	cfg, err := config.Load("kubeadm-config.yaml", config.Overrides{}, func() (string, error) { return "unused", nil })
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKI
	if p.ControlPlaneEndpoint == "" || len(p.APIServerCertSANs) == 0 || p.ServiceSubnet == pki.DefaultServiceSubnet || p.Algorithm != pki.ECDSAP256 || !p.LocalEtcd {
		t.Errorf("not the HA example: endpoint %q, certSANs %v, service subnet %q, algorithm %s, local etcd %v",
			p.ControlPlaneEndpoint, p.APIServerCertSANs, p.ServiceSubnet, p.Algorithm, p.LocalEtcd)
	}
	if len(cfg.Extra) != 1 || !strings.Contains(string(cfg.Extra[0]), "KubeletConfiguration") {
		t.Errorf("the KubeletConfiguration document was not kept: %d extra documents", len(cfg.Extra))
	}
}

func TestScriptsParse(t *testing.T) {
	scripts, _ := filepath.Glob("*.sh")
	if len(scripts) < 2 {
		t.Fatalf("scripts: %v", scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
		if info, err := os.Stat(s); err != nil || info.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
}

// restart-control-plane.sh stops exactly the control-plane containers crictl lists, so the kubelet restarts them.
func TestRestartScriptStopsControlPlaneContainers(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "crictl.log")
	stub := filepath.Join(dir, "crictl")
	script := `#!/bin/sh
echo "$*" >> ` + log + `
case "$*" in
"ps --name ^kube-apiserver\$ --quiet") echo aaa ;;
"ps --name ^etcd\$ --quiet") echo eee; echo fff ;;
esac
`
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "restart-control-plane.sh")
	cmd.Env = append(os.Environ(), "CRICTL="+stub)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	calls, _ := os.ReadFile(log)
	var stops []string
	for _, l := range strings.Split(strings.TrimSpace(string(calls)), "\n") {
		if strings.HasPrefix(l, "stop ") {
			stops = append(stops, strings.TrimPrefix(l, "stop "))
		}
	}
	if strings.Join(stops, ",") != "aaa,eee,fff" {
		t.Errorf("stopped %v, want aaa,eee,fff; crictl calls:\n%s", stops, calls)
	}
	for _, want := range []string{"restarted kube-apiserver (aaa)", "restarted etcd (eee)", "restarted etcd (fff)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// The units pass "systemd-analyze verify" (syntax, the calendar expression, the timer-service pairing) with the
// binary path pointed at something executable.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the units are checked where systemd is")
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"k8scrypto-renew.service", "k8scrypto-renew.timer"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/k8scrypto", "/bin/true")
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The renewal service has no Condition*= : a failed condition skips a unit silently, so a node that cannot
// renew (an external CA) would never say so; the run itself must fail instead.
func TestRenewServiceIsNeverSkippedSilently(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("systemd", "k8scrypto-renew.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Condition") {
			t.Errorf("k8scrypto-renew.service: %q skips the renewal silently when it fails", line)
		}
	}
}
