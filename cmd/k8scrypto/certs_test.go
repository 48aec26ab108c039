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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// kubeadm's table (cmd/kubeadm/app/cmd/certs.go certTextPrinter: the same tabwriter, so the missing row
// widens the first column and the CA block after the blank line is aligned on its own), 100 days after
// init, with kubelet.conf, front-proxy-client missing and etcd-ca without its key.
const wantExpirationTable = `CERTIFICATE                    EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
admin.conf                     Jan 02, 2027 03:04 UTC   265d            ca                      no      
apiserver                      Jan 02, 2027 03:04 UTC   265d            ca                      no      
apiserver-etcd-client          Jan 02, 2027 03:04 UTC   265d            etcd-ca                 yes     
apiserver-kubelet-client       Jan 02, 2027 03:04 UTC   265d            ca                      no      
controller-manager.conf        Jan 02, 2027 03:04 UTC   265d            ca                      no      
etcd-healthcheck-client        Jan 02, 2027 03:04 UTC   265d            etcd-ca                 yes     
etcd-peer                      Jan 02, 2027 03:04 UTC   265d            etcd-ca                 yes     
etcd-server                    Jan 02, 2027 03:04 UTC   265d            etcd-ca                 yes     
!MISSING! front-proxy-client                                                                    
kubelet.conf                   Jan 02, 2027 03:04 UTC   265d            ca                      no      
scheduler.conf                 Jan 02, 2027 03:04 UTC   265d            ca                      no      
super-admin.conf               Jan 02, 2027 03:04 UTC   265d            ca                      no      

CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED
ca                      Dec 31, 2035 03:04 UTC   9y              no      
etcd-ca                 Dec 31, 2035 03:04 UTC   9y              yes     
front-proxy-ca          Dec 31, 2035 03:04 UTC   9y              no      
`

func TestCheckExpirationTable(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	os.Remove(filepath.Join(c.certDir, "front-proxy-client.crt"))
	os.Remove(filepath.Join(c.certDir, "etcd", "ca.key"))
	code, stdout, stderr := c.run(pkitest.Now.Add(100*renewDay), "certs", "check-expiration")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != wantExpirationTable {
		t.Errorf("table:\n%s\nwant:\n%s", stdout, wantExpirationTable)
	}
}

func TestCheckExpirationStructured(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(100 * renewDay)
	code, stdout, stderr := c.run(now, "certs", "check-expiration", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// kubeadm's field names, as in output.kubeadm.k8s.io/v1alpha3.
	var raw struct {
		APIVersion   string           `json:"apiVersion"`
		Kind         string           `json:"kind"`
		Certificates []map[string]any `json:"certificates"`
		CAs          []map[string]any `json:"certificateAuthorities"`
	}
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.APIVersion != "k8scrypto.dev/v1alpha1" || raw.Kind != "CertificateExpirationInfo" || len(raw.Certificates) != 12 || len(raw.CAs) != 3 {
		t.Fatalf("%s %s %d %d", raw.APIVersion, raw.Kind, len(raw.Certificates), len(raw.CAs))
	}
	api := raw.Certificates[1]
	for _, k := range []string{"name", "expirationDate", "residualTime", "externallyManaged", "caName", "missing"} {
		if _, ok := api[k]; !ok {
			t.Errorf("certificate field %q missing: %v", k, api)
		}
	}
	if api["name"] != "apiserver" || api["expirationDate"] != "2027-01-02T03:04:05Z" || api["residualTime"] != float64(265*24*3600) || api["caName"] != "ca" {
		t.Errorf("apiserver %v", api)
	}
	if _, ok := raw.CAs[0]["caName"]; ok {
		t.Errorf("a CA has a caName: %v", raw.CAs[0])
	}
	code, stdout, _ = c.run(now, "certs", "check-expiration", "-o", "yaml")
	var info phases.ExpirationInfo
	if err := yaml.Unmarshal([]byte(stdout), &info); code != 0 || err != nil || info.Certificates[0].Name != "admin.conf" || !info.CheckTime.Equal(now) {
		t.Errorf("yaml: exit %d %v %+v", code, err, info.Certificates)
	}
}

func TestCheckExpirationFailWithin(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(300 * renewDay) // 65 days left
	if code, _, stderr := c.run(now, "certs", "check-expiration", "--fail-within", "1440h"); code != 0 {
		t.Errorf("60 days asked, 65 left: exit %d %s", code, stderr)
	}
	code, stdout, stderr := c.run(now, "certs", "check-expiration", "--fail-within", "1680h")
	if code != 1 || !strings.Contains(stderr, "error: 12 certificate(s) expire within 1680h0m0s or cannot be checked:\n  admin.conf: expires on 2027-01-02T03:04:05Z") {
		t.Errorf("70 days asked: exit %d %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "CERTIFICATE ") {
		t.Error("the table must still be printed")
	}
	// A missing file a node must have fails the check; a missing super-admin.conf does not.
	os.Remove(filepath.Join(c.kubeDir, "super-admin.conf"))
	if code, _, stderr := c.run(now, "certs", "check-expiration", "--fail-within", "24h"); code != 0 {
		t.Errorf("without super-admin.conf: exit %d %s", code, stderr)
	}
	os.Remove(filepath.Join(c.kubeDir, "scheduler.conf"))
	if code, _, stderr := c.run(now, "certs", "check-expiration", "--fail-within", "24h"); code != 1 || !strings.Contains(stderr, "scheduler.conf: missing") {
		t.Errorf("without scheduler.conf: exit %d %s", code, stderr)
	}
	// Without --fail-within only unreadable files fail.
	if code, _, _ := c.run(now, "certs", "check-expiration"); code != 0 {
		t.Errorf("missing files without --fail-within: exit %d", code)
	}
	os.WriteFile(filepath.Join(c.certDir, "apiserver.crt"), []byte("not a certificate"), 0o644)
	code, stdout, stderr = c.run(now, "certs", "check-expiration")
	if code != 1 || !strings.Contains(stdout, "!UNREADABLE! apiserver") || !strings.Contains(stderr, "apiserver: ") {
		t.Errorf("unreadable: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestCheckExpirationMetricsFile(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	dir := filepath.Join(c.dir, "textfile")
	os.Mkdir(dir, 0o755)
	metrics := filepath.Join(dir, "k8scrypto.prom")
	now := pkitest.Now.Add(10 * renewDay)
	code, _, stderr := c.run(now, "certs", "check-expiration", "--metrics-file", metrics, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	info, err := os.Stat(metrics)
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("metrics file: %v %v", err, info)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left next to the metrics file: %v", ents)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(mustRead(t, metrics)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fams[phases.MetricExpiration].GetMetric()); n != 15 {
		t.Errorf("%d expiration series, want 12 certificates and 3 CAs", n)
	}
	found := false
	for _, m := range fams[phases.MetricExpiration].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "name" && l.GetValue() == "admin.conf" {
				found = true
				if want := float64(pkitest.Now.Add(pki.DefaultCertValidity).Unix()); m.GetGauge().GetValue() != want {
					t.Errorf("admin.conf expiration %v, want %v", m.GetGauge().GetValue(), want)
				}
			}
		}
	}
	if !found {
		t.Error("no admin.conf series")
	}
	if v := fams[phases.MetricCheckTime].GetMetric()[0].GetGauge().GetValue(); v != float64(now.Unix()) {
		t.Errorf("check time %v", v)
	}
	// An unwritable destination is an error, and nothing else is left behind.
	code, _, stderr = c.run(now, "certs", "check-expiration", "--metrics-file", filepath.Join(c.dir, "no-such-dir", "m.prom"))
	if code != 1 || !strings.Contains(stderr, "--metrics-file") {
		t.Errorf("unwritable metrics file: exit %d %s", code, stderr)
	}
}

func TestCheckExpirationExternalEtcdConfig(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	os.WriteFile(c.cfg, renewTestConfig(pki.ECDSAP256, "etcd:\n  external:\n    endpoints: [https://etcd.example.com:2379]"), 0o600)
	code, stdout, stderr := c.run(pkitest.Now, "certs", "check-expiration", "--config", c.cfg, "-o", "json")
	var info phases.ExpirationInfo
	json.Unmarshal([]byte(stdout), &info)
	if code != 0 || len(info.Certificates) != 8 || len(info.CertificateAuthorities) != 2 {
		t.Errorf("external etcd: exit %d %s: %d certificates, %d CAs", code, stderr, len(info.Certificates), len(info.CertificateAuthorities))
	}
}

// TestCheckExpirationFailsForAForeignKubeconfig: a kubeconfig whose client certificate another cluster's
// CA signed (the apiserver rejects it) makes check-expiration exit 1, with !INVALID! in the table and the
// reason on stderr, though its dates are fine.
func TestCheckExpirationFailsForAForeignKubeconfig(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	other := newRenewCluster(t, pki.ECDSAP384, "") // fixture keys per algorithm: another CA key
	// other's admin.conf has the same names and dates, signed by other's CA.
	data, err := os.ReadFile(filepath.Join(other.kubeDir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.kubeDir, "admin.conf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := c.run(pkitest.Now.Add(renewDay), "certs", "check-expiration")
	if code != 1 || !strings.Contains(stdout, "!INVALID! admin.conf") || !strings.Contains(stderr, "admin.conf: not signed by ca on disk") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestExpiredCARecoveredByFollowingTheMessages: long after every CA expired, each command's error names
// the command that fixes it; running exactly the quoted k8scrypto commands, as an operator would, brings
// the node back: init succeeds, every CA keeps its key, and check-expiration reports nothing wrong.
func TestExpiredCARecoveredByFollowingTheMessages(t *testing.T) {
	c := newRenewCluster(t, pki.ECDSAP256, "")
	keyBefore, err := os.ReadFile(filepath.Join(c.certDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	later := pkitest.Now.Add(11 * 365 * renewDay)
	quoted := regexp.MustCompile(`"(k8scrypto [^"]+)"`)
	var followed []string
	// follow runs a command; when it fails, it runs the k8scrypto commands its error quotes (each the same
	// way), then the command again, as an operator reading the messages would.
	var follow func(args []string, depth int)
	follow = func(args []string, depth int) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			code, _, stderr := c.run(later, args...)
			if code == 0 {
				return
			}
			if attempt == 4 || depth == 4 {
				t.Fatalf("%v still fails after following %v:\n%s", args, followed, stderr)
			}
			cmds := quoted.FindAllStringSubmatch(stderr, -1)
			if len(cmds) == 0 {
				t.Fatalf("%v failed without naming a command to run:\n%s", args, stderr)
			}
			for _, m := range cmds {
				next := strings.Fields(strings.TrimPrefix(m[1], "k8scrypto "))
				if slices.Equal(next, args) || next[0] == "init" {
					continue
				}
				followed = append(followed, m[1])
				follow(next, depth+1)
			}
		}
	}
	follow([]string{"init", "--config", c.cfg}, 0)
	if len(followed) == 0 || !slices.ContainsFunc(followed, func(s string) bool { return strings.HasPrefix(s, "k8scrypto ca renew") }) {
		t.Errorf("recovered without a ca renew: %v", followed)
	}
	if keyAfter, _ := os.ReadFile(filepath.Join(c.certDir, "ca.key")); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the recovery replaced ca.key")
	}
	code, stdout, stderr := c.run(later, "certs", "check-expiration", "--fail-within", "720h")
	if code != 0 {
		t.Errorf("check-expiration after the recovery: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("followed: %v", followed)
}
