package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// safetyCase is a node with certificates (for etcd's client pair) and an encryption config, a fake
// apiserver that serves Secrets and /metrics, and a fake etcd gateway whose stored values the test sets.
type safetyCase struct {
	*encCase
	api        *fakeAPIServer
	kubeconfig string
	etcd       string
	stored     []string // values the fake etcd holds under /registry/secrets/
}

func newSafetyCase(t *testing.T, secrets int) *safetyCase {
	t.Helper()
	c := &safetyCase{encCase: newEncCase(t)}
	c.mustExec("init", "phase", "certs", "all", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "node-a", "--advertise-address", "10.0.0.5")
	c.initPhase("encryption-config")
	c.api = &fakeAPIServer{secrets: map[string]*corev1.Secret{}, puts: map[string]int{}, types: map[string]int{}, loaded: c.encPath()}
	for i := range secrets {
		name := fmt.Sprintf("s-%02d", i)
		c.api.secrets["default/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "7"}}
	}
	srv := httptest.NewServer(c.api)
	t.Cleanup(srv.Close)
	c.kubeconfig = filepath.Join(c.dir, "admin.conf")
	if err := os.WriteFile(c.kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	c.etcd = etcdGateway(t, c.certDir, func() []string { return c.stored }).URL
	return c
}

// apiserverRuns makes the fake apiserver report the file as it is now, frozen: a later change on disk is
// "not loaded yet" until the next call.
func (c *safetyCase) apiserverRuns() {
	c.api.mu.Lock()
	defer c.api.mu.Unlock()
	c.api.runs = c.read(c.encPath())
}

// storeUnder makes etcd hold n values under each named key of the file's provider.
func (c *safetyCase) storeUnder(counts map[string]int) {
	c.stored = nil
	for key, n := range counts {
		for range n {
			if key == "plaintext" {
				c.stored = append(c.stored, "k8s\x00plain")
			} else {
				c.stored = append(c.stored, "k8s:enc:secretbox:v1:"+key+":ciphertext")
			}
		}
	}
}

func (c *safetyCase) keys() []string {
	cfg, _, err := encryption.Load(c.encPath())
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, k := range encryption.KeysOf(cfg.Resources[0].Providers[0]) {
		out = append(out, k.Name)
	}
	return out
}

func (c *safetyCase) etcdArgs() []string {
	return []string{"--etcd-endpoints", c.etcd}
}

// TestReencryptRefusedUntilTheAPIServerRunsTheFile: right after promote, before the apiserver's reload,
// reencrypt sends nothing, writes no checkpoint and exits 3 naming the command that waits; once the
// apiserver runs the promoted file, the same command rewrites, and counts what the apiserver stored again.
func TestReencryptRefusedUntilTheAPIServerRunsTheFile(t *testing.T) {
	c := newSafetyCase(t, 9)
	c.apiserverRuns()
	c.mustExec("encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	c.apiserverRuns()
	c.mustExec("encryption", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups, "--kubeconfig", c.kubeconfig)
	reencrypt := []string{"encryption", "reencrypt", "--cert-dir", c.certDir, "--kubeconfig", c.kubeconfig, "--checkpoint", c.cp}
	for _, extra := range [][]string{nil, {"--wait", "--wait-timeout", "1ms"}} {
		code, stdout, stderr := c.exec(append(reencrypt, extra...)...)
		if code != 3 || stdout != "" || !strings.Contains(stderr, "reencrypt refused") || !strings.Contains(stderr, "runs another version of the file") ||
			!strings.Contains(stderr, `"k8scrypto encryption reencrypt --cert-dir `+c.certDir+` --kubeconfig `+c.kubeconfig+` --wait"`) {
			t.Fatalf("reencrypt %v before the reload: exit %d\nstdout %s\nstderr %s", extra, code, stdout, stderr)
		}
	}
	if len(c.api.puts) != 0 {
		t.Fatalf("a refused reencrypt sent %d PUTs", len(c.api.puts))
	}
	if _, err := os.Stat(c.cp); err == nil {
		t.Fatal("a refused reencrypt wrote a checkpoint")
	}
	c.apiserverRuns()
	var res struct {
		Rewritten, Unchanged int
		ConfigHash           string
	}
	out := c.mustExec(append(reencrypt, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Rewritten != 9 || res.Unchanged != 0 || res.ConfigHash != encryption.FileHash(c.read(c.encPath())) {
		t.Fatalf("reencrypt once the apiserver runs the file: %+v (%v)\n%s", res, err, out)
	}
	// With --etcd-endpoints the run proves its work: values left under the old key fail it (exit 1).
	keys := c.keys()
	c.storeUnder(map[string]int{keys[0]: 8, keys[1]: 1})
	code, _, stderr := c.exec(append(reencrypt, c.etcdArgs()...)...)
	if code != 1 || !strings.Contains(stderr, "etcd still stores 1 value(s) under older keys") {
		t.Errorf("reencrypt with a value left under the old key: exit %d, %s", code, stderr)
	}
	c.storeUnder(map[string]int{keys[0]: 9})
	if code, _, stderr := c.exec(append(reencrypt, c.etcdArgs()...)...); code != 0 {
		t.Errorf("reencrypt with everything under the new key: exit %d, %s", code, stderr)
	}
}

// TestReencryptResourcesMustBeServed: a --resources name the apiserver does not serve is a usage error
// naming the served name it may have meant, before anything is sent.
func TestReencryptResourcesMustBeServed(t *testing.T) {
	c := newSafetyCase(t, 3)
	for _, name := range []string{"secret", "Secrets"} {
		code, _, stderr := c.exec("encryption", "reencrypt", "--cert-dir", c.certDir, "--kubeconfig", c.kubeconfig, "--checkpoint", c.cp, "--resources", name)
		if code != 2 || !strings.Contains(stderr, `"`+name+`"`) {
			t.Errorf("--resources %s: exit %d, %s", name, code, stderr)
		}
	}
	if len(c.api.puts) != 0 {
		t.Errorf("%d PUTs for names the apiserver does not serve", len(c.api.puts))
	}
}

// TestPruneNeedsProof: prune refuses (exit 3, file unchanged) without --kubeconfig and --etcd-endpoints,
// while the apiserver runs another file, and while etcd holds a value under a key it removes; it prunes
// with both proofs, or with the loudly named override.
func TestPruneNeedsProof(t *testing.T) {
	c := newSafetyCase(t, 0)
	c.apiserverRuns()
	c.mustExec("encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	c.mustExec("encryption", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	promoted := c.read(c.encPath())
	keys := c.keys()
	prune := func(extra ...string) (int, string) {
		t.Helper()
		code, _, stderr := c.rotate("encryption", "prune", append([]string{"--yes"}, extra...)...)
		if code != 0 && !bytes.Equal(c.read(c.encPath()), promoted) {
			t.Fatalf("a refused prune (%v) changed the file", extra)
		}
		return code, stderr
	}
	for _, tc := range []struct {
		name  string
		args  []string
		setup func()
		want  string
	}{
		{"no proof at all", nil, func() {}, "--etcd-endpoints"},
		{"no etcd count", []string{"--kubeconfig", c.kubeconfig}, func() {}, "--etcd-endpoints"},
		{"no apiserver check", c.etcdArgs(), func() {}, "--kubeconfig"},
		{"apiserver still on the prepared file", append([]string{"--kubeconfig", c.kubeconfig}, c.etcdArgs()...), func() { c.storeUnder(map[string]int{keys[0]: 3}) }, "runs another version of the file"},
		{"a value under the old key", append([]string{"--kubeconfig", c.kubeconfig}, c.etcdArgs()...), func() { c.apiserverRuns(); c.storeUnder(map[string]int{keys[0]: 3, keys[1]: 1}) }, "1 stored value(s) would be unreadable"},
	} {
		tc.setup()
		if code, stderr := prune(tc.args...); code != 3 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, %s; want 3 naming %q", tc.name, code, stderr, tc.want)
		}
	}
	c.storeUnder(map[string]int{keys[0]: 4})
	if code, stderr := prune(append([]string{"--kubeconfig", c.kubeconfig}, c.etcdArgs()...)...); code != 0 {
		t.Fatalf("prune with both proofs: exit %d, %s", code, stderr)
	}
	if got := c.keys(); len(got) != 1 || got[0] != keys[0] {
		t.Errorf("after prune the keys are %v, want [%s]", got, keys[0])
	}

	// The override, on a fresh rotation: prunes without proof, and says so on stderr.
	c.apiserverRuns()
	c.mustExec("encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	c.mustExec("encryption", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	code, _, stderr := c.rotate("encryption", "prune", "--yes", "--unsafe-skip-etcd-check")
	if code != 0 || !strings.Contains(stderr, "PRUNING WITHOUT PROOF") || len(c.keys()) != 1 {
		t.Errorf("prune --unsafe-skip-etcd-check: exit %d, keys %v, %s", code, c.keys(), stderr)
	}
}

// TestStatusNextFollowsTheMeasuredState: status's Next line and exit status follow what it measured, for
// each state of a rotation, with the flags of the run repeated in the suggested command.
func TestStatusNextFollowsTheMeasuredState(t *testing.T) {
	c := newSafetyCase(t, 0)
	c.apiserverRuns()
	status := func() (int, phases.EncryptionStatusResult, string) {
		t.Helper()
		code, out, stderr := c.exec(append([]string{"encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", c.kubeconfig, "-o", "json"}, c.etcdArgs()...)...)
		var st phases.EncryptionStatusResult
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s\n%s", err, out, stderr)
		}
		return code, st, stderr
	}
	check := func(state string, wantCode int, wantNext string, wantProblem string) {
		t.Helper()
		code, st, stderr := status()
		if code != wantCode || !strings.Contains(st.Next, wantNext) || (wantProblem == "") != (len(st.Problems) == 0) || !strings.Contains(strings.Join(st.Problems, "\n"), wantProblem) {
			t.Errorf("%s: exit %d, next %q, problems %q (stderr %s); want exit %d, next with %q, problem with %q", state, code, st.Next, st.Problems, stderr, wantCode, wantNext, wantProblem)
		}
	}
	k0 := c.keys()[0]
	c.storeUnder(map[string]int{k0: 2})
	check("steady, loaded", 0, "rotate prepare", "")

	c.mustExec("encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	check("prepared, not loaded", 1, "encryption rotate promote --cert-dir "+c.certDir+" --kubeconfig "+c.kubeconfig+" --wait", "runs another version")
	c.apiserverRuns()
	check("prepared, loaded", 0, "encryption rotate promote", "")

	c.mustExec("encryption", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	check("promoted, not loaded", 1, "encryption reencrypt --cert-dir "+c.certDir+" --kubeconfig "+c.kubeconfig+" --wait", "runs another version")
	c.apiserverRuns()
	check("promoted, loaded, values under the old key", 0, "2 value(s) are still under older keys", "")
	k1 := c.keys()[0]
	c.storeUnder(map[string]int{k1: 2})
	check("promoted, everything under the new key", 0, "rotate prune --yes --cert-dir "+c.certDir+" --kubeconfig "+c.kubeconfig+" --etcd-endpoints "+c.etcd, "")

	c.storeUnder(map[string]int{k1: 2, "key-gone": 1})
	check("a value under a key the file lacks", 1, "", "stored under keys this file does not have")
	c.storeUnder(map[string]int{k1: 2, "plaintext": 3})
	check("plaintext without identity", 1, "", "3 value(s) are stored in plaintext")
	if _, st, _ := status(); strings.Contains(strings.Join(st.Problems, ""), "keys this file does not have") {
		t.Errorf("plaintext values reported as under unknown keys: %q", st.Problems)
	}
}

// TestStatusFlagsKeysAndModes: two keys with one name, one secret under two names, and an encryption
// config others can read are reported by status, naming keys by name and fingerprint, never the secret.
func TestStatusFlagsKeysAndModes(t *testing.T) {
	c := newEncCase(t)
	if err := os.MkdirAll(c.certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	b := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	cfg := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - {name: one, secret: %s}
      - {name: one, secret: %s}
      - {name: copy, secret: %s}
`, a, b, a)
	if err := os.WriteFile(c.encPath(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := c.exec("encryption", "status", "--cert-dir", c.certDir, "--audit-log", c.audit)
	if code != 0 {
		t.Fatalf("status: exit %d, %s", code, stderr)
	}
	for _, want := range []string{`two keys named "one"`, `the same secret (fingerprint ` + encryption.Fingerprint(a) + `) under the names "one" and "copy"`, "mode 0644"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stdout+stderr, a) || strings.Contains(stdout+stderr, b) {
		t.Error("status quotes a key")
	}
}

// TestInitReportsLooseKeyModes: init reusing a private key or the encryption config that others can read
// says so on stderr without -v.
func TestInitReportsLooseKeyModes(t *testing.T) {
	c := newEncCase(t)
	c.mustExec("init", "phase", "certs", "all", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "node-a", "--advertise-address", "10.0.0.5")
	c.initPhase("encryption-config")
	for _, f := range []string{"ca.key", "encryption-config.yaml"} {
		if err := os.Chmod(filepath.Join(c.certDir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := c.exec("init", "phase", "certs", "ca", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "node-a", "--advertise-address", "10.0.0.5")
	if code != 0 || !strings.Contains(stderr, filepath.Join(c.certDir, "ca.key")) || !strings.Contains(stderr, "0644") {
		t.Errorf("init reusing ca.key 0644: exit %d, %s", code, stderr)
	}
	code, _, stderr = c.exec("init", "phase", "encryption-config", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "node-a", "--advertise-address", "10.0.0.5")
	if code != 0 || !strings.Contains(stderr, c.encPath()) || !strings.Contains(stderr, "0644") {
		t.Errorf("init reusing encryption-config.yaml 0644: exit %d, %s", code, stderr)
	}
}

// TestSAStatusReadsTheServedKeys: with --kubeconfig, sa status reads the apiserver's /openid/v1/jwks and
// names the key IDs of sa.pub it does not serve and the ones it serves that sa.pub lacks.
func TestSAStatusReadsTheServedKeys(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("sa")
	var st phases.SAStatusResult
	if err := json.Unmarshal([]byte(c.mustExec("sa", "status", "--cert-dir", c.certDir, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	kid := st.Pub[0].KeyID
	if len(kid) != 43 || st.Key.KeyID != kid {
		t.Fatalf("key IDs %q / %q: want sa.key's 43-character kid on both", st.Key.KeyID, kid)
	}
	var served []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/openid/v1/jwks" {
			http.NotFound(w, r)
			return
		}
		var keys []map[string]string
		for _, id := range served {
			keys = append(keys, map[string]string{"kid": id, "kty": "RSA", "use": "sig"})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(c.dir, "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	served = []string{"someone-elses"}
	out := c.mustExec("sa", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig)
	if !strings.Contains(out, "serves key IDs someone-elses; not "+kid+" from sa.pub") || !strings.Contains(out, "someone-elses not in sa.pub") {
		t.Errorf("sa status with a foreign key served:\n%s", out)
	}
	served = []string{kid}
	if err := json.Unmarshal([]byte(c.mustExec("sa", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.APIServer == nil || len(st.APIServer.Missing)+len(st.APIServer.Extra) != 0 || st.APIServer.KeyIDs[0] != kid {
		t.Errorf("sa status with sa.pub served: %+v", st.APIServer)
	}
}

// TestPlaintextConfigIsCalledOut: init reusing a config that writes Secrets in plaintext says so on stderr
// without -v, and status says it first and exits 1.
func TestPlaintextConfigIsCalledOut(t *testing.T) {
	c := newEncCase(t)
	if err := os.MkdirAll(c.certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if err := os.WriteFile(c.encPath(), []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n  - secretbox:\n      keys: [{name: k, secret: "+key+"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := c.exec("init", "phase", "encryption-config", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "n", "--advertise-address", "10.0.0.5")
	if code != 0 || !strings.Contains(stderr, "PLAINTEXT") || !strings.Contains(stderr, "secrets") {
		t.Errorf("init reusing a plaintext config: exit %d, %s", code, stderr)
	}
	code, stdout, _ := c.exec("encryption", "status", "--cert-dir", c.certDir, "--audit-log", c.audit)
	if code != 1 || !strings.HasPrefix(stdout, "PROBLEM: PLAINTEXT: secrets are written unencrypted") {
		t.Errorf("status of a plaintext config: exit %d\n%s", code, stdout)
	}
}
