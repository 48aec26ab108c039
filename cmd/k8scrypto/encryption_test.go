package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// encCase is a certificate directory the encryption and sa commands work on, with its own audit log and
// backup directory, a settable clock and one key source shared by every run (so a rotation gets a new key).
type encCase struct {
	t                                testing.TB
	dir, certDir, audit, backups, cp string
	keys                             pki.KeySource
	now                              time.Time
	seed                             uint64
}

func newEncCase(t testing.TB) *encCase {
	t.Helper()
	dir := t.TempDir()
	return &encCase{t: t, dir: dir, certDir: filepath.Join(dir, "pki"), audit: filepath.Join(dir, "state", "audit.log"),
		backups: filepath.Join(dir, "backups"), cp: filepath.Join(dir, "state", "checkpoint.json"), keys: pkitest.Keys(), now: pkitest.Now}
}

// exec runs k8scrypto in-process with the case's clock and keys.
func (c *encCase) exec(args ...string) (int, string, string) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	c.seed++
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return c.now }, keys: c.keys,
		rand: pkitest.Rand(c.seed), hostname: func() (string, error) { return "node-a", nil }}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

func (c *encCase) mustExec(args ...string) string {
	c.t.Helper()
	code, stdout, stderr := c.exec(args...)
	if code != 0 {
		c.t.Fatalf("k8scrypto %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// rotate runs "encryption rotate STEP" or "sa rotate STEP" with the case's paths.
func (c *encCase) rotate(group, step string, extra ...string) (int, string, string) {
	c.t.Helper()
	args := append([]string{group, "rotate", step, "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups}, extra...)
	return c.exec(args...)
}

func (c *encCase) initPhase(phase string, extra ...string) {
	c.t.Helper()
	c.mustExec(append([]string{"init", "phase", phase, "--cert-dir", c.certDir, "--kubeconfig-dir", filepath.Join(c.dir, "kube"),
		"--audit-log", c.audit, "--node-name", "node-a", "--advertise-address", "10.0.0.5"}, extra...)...)
}

func (c *encCase) encPath() string { return filepath.Join(c.certDir, encryption.FileName) }

func (c *encCase) read(path string) []byte {
	c.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	return data
}

func (c *encCase) status() phases.EncryptionStatusResult {
	c.t.Helper()
	var st phases.EncryptionStatusResult
	out := c.mustExec("encryption", "status", "--cert-dir", c.certDir, "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return st
}

// secrets lists every key secret ever written to the file, to check no output carries one.
func secretsIn(t *testing.T, data []byte) []string {
	t.Helper()
	cfg, err := encryption.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rc := range cfg.Resources {
		for _, p := range rc.Providers {
			for _, k := range encryption.KeysOf(p) {
				out = append(out, k.Secret)
			}
		}
	}
	return out
}

func TestEncryptionRotationThroughTheCommands(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("encryption-config", "--encryption-provider", "aescbc", "--encrypt-resources", "configmaps", "--allow-plaintext-reads")
	info, err := os.Stat(c.encPath())
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("encryption config: %v, mode %v", err, info)
	}
	v0 := c.read(c.encPath())
	secrets := secretsIn(t, v0)

	st := c.status()
	if st.Kind != "EncryptionStatus" || st.APIVersion != "k8scrypto.dev/v1alpha1" || st.Stage != encryption.StageSteady {
		t.Fatalf("status = %+v", st)
	}
	e0 := st.Entries[0]
	if strings.Join(e0.Resources, ",") != "secrets,configmaps" || len(e0.Providers) != 2 || e0.Providers[0].Type != "aescbc" || e0.Providers[1].Type != "identity" {
		t.Fatalf("entry = %+v", e0)
	}
	oldKey := e0.Providers[0].Keys[0]
	if oldKey.Fingerprint != encryption.Fingerprint(secrets[0]) || oldKey.Role != "write" {
		t.Fatalf("key = %+v", oldKey)
	}

	// Out of order: refused with exit 3, naming the stage; nothing written, nothing backed up.
	code, _, stderr := c.rotate("encryption", "promote")
	if code != 3 || !strings.Contains(stderr, "stage steady") || !strings.Contains(stderr, "rotate prepare") {
		t.Fatalf("promote when steady: exit %d, %s", code, stderr)
	}
	if !bytes.Equal(c.read(c.encPath()), v0) {
		t.Fatal("a refused promote changed the file")
	}
	if _, err := os.Stat(c.backups); err == nil {
		t.Fatal("a refused step made a backup")
	}

	c.now = c.now.Add(24 * time.Hour)
	code, out, stderr := c.rotate("encryption", "prepare", "-o", "json")
	if code != 0 {
		t.Fatalf("prepare: exit %d, %s", code, stderr)
	}
	var res phases.EncryptionRotateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Kind != "EncryptionRotateResult" || res.Stage != encryption.StagePrepared || len(res.Changes) != 1 || !strings.HasPrefix(res.Changes[0].Key.Name, "key-20260103T030405Z-") {
		t.Fatalf("prepare result = %+v", res)
	}
	if backup := c.read(res.Backups[0]); !bytes.Equal(backup, v0) {
		t.Fatal("the backup is not the file before prepare")
	}
	if info, _ := os.Stat(res.Backups[0]); info.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %04o", info.Mode().Perm())
	}
	v1 := c.read(c.encPath())
	secrets = append(secrets, secretsIn(t, v1)...)
	newName, newFP := res.Changes[0].Key.Name, res.Changes[0].Key.Fingerprint
	if fps := []string{encryption.Fingerprint(secrets[0]), encryption.Fingerprint(secrets[1]), encryption.Fingerprint(secrets[2])}; fps[0] != fps[1] || fps[2] != newFP {
		t.Fatalf("prepared file keys %v: want the old key then the new one (%s)", fps, newFP)
	}
	if st := c.status(); st.Stage != encryption.StagePrepared || st.Entries[0].Providers[0].Keys[1].Name != newName {
		t.Fatalf("after prepare: %+v", st)
	}

	code, _, stderr = c.rotate("encryption", "prepare")
	if code != 3 || !strings.Contains(stderr, "stage prepared") {
		t.Fatalf("prepare twice: exit %d, %s", code, stderr)
	}
	code, _, stderr = c.rotate("encryption", "prune", "--yes")
	if code != 3 || !strings.Contains(stderr, "stage prepared") {
		t.Fatalf("prune when prepared: exit %d, %s", code, stderr)
	}

	c.now = c.now.Add(time.Hour)
	c.mustExec("encryption", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	st = c.status()
	if st.Stage != encryption.StagePromoted || st.Entries[0].Providers[0].Keys[0].Name != newName {
		t.Fatalf("after promote: %+v", st)
	}

	// prune needs --yes, and says what it removes and that reencrypt must have run.
	v2 := c.read(c.encPath())
	code, _, stderr = c.rotate("encryption", "prune")
	if code != 2 || !strings.Contains(stderr, oldKey.Name) || !strings.Contains(stderr, "reencrypt") || !strings.Contains(stderr, "--yes") {
		t.Fatalf("prune without --yes: exit %d, %s", code, stderr)
	}
	if !bytes.Equal(c.read(c.encPath()), v2) {
		t.Fatal("prune without --yes changed the file")
	}
	c.now = c.now.Add(time.Hour)
	// Without the proofs it refuses (TestPruneNeedsProof); this cluster has no apiserver or etcd.
	code, out, stderr = c.rotate("encryption", "prune", "--yes", "--unsafe-skip-etcd-check")
	if code != 0 || !strings.Contains(out, "removed aescbc key "+oldKey.Name) || !strings.Contains(stderr, "PRUNING WITHOUT PROOF") {
		t.Fatalf("prune: exit %d\n%s\n%s", code, out, stderr)
	}
	st = c.status()
	if st.Stage != encryption.StageSteady || len(st.Entries[0].Providers[0].Keys) != 1 || st.Entries[0].Providers[0].Keys[0].Name != newName || st.Entries[0].Providers[1].Type != "identity" {
		t.Fatalf("after prune: %+v", st)
	}

	// The audit log: a rotate line per added or moved key, a remove line per pruned key, backups; no key.
	audit := string(c.read(c.audit))
	for _, want := range []string{
		`"operation":"rotate","file":"` + c.encPath() + `","sha256":"` + newFP + `"`,
		`"operation":"remove","file":"` + c.encPath() + `","sha256":"` + oldKey.Fingerprint + `"`,
		`"operation":"backup"`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s:\n%s", want, audit)
		}
	}
	for _, s := range secrets {
		if strings.Contains(audit, s) {
			t.Fatal("the audit log holds a key")
		}
	}
	text := c.mustExec("encryption", "status", "--cert-dir", c.certDir)
	if !strings.Contains(text, newName) || !strings.Contains(text, newFP) || !strings.Contains(text, "read (plaintext)") {
		t.Errorf("status text:\n%s", text)
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Fatal("status prints a key")
		}
	}
	// Key-rotation backups live apart from renewal's, so renewal's --keep-backups pruning never removes them.
	rotations := filepath.Join(c.backups, "key-rotations")
	ents, _ := os.ReadDir(rotations)
	if len(ents) != 3 {
		t.Errorf("%d backup directories under %s, want one per change (3)", len(ents), rotations)
	}
	if _, err := pki.PruneBackups(c.backups, 1); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(rotations); len(ents) != 3 {
		t.Errorf("renewal's backup pruning removed key-rotation backups: %d left", len(ents))
	}
}

func TestEncryptionRotateDryRunChangesNothing(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("encryption-config")
	before := c.read(c.encPath())
	code, out, stderr := c.rotate("encryption", "prepare", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run") || !strings.Contains(out, "added second secretbox key key-") {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if !bytes.Equal(before, c.read(c.encPath())) {
		t.Fatal("a dry run changed the file")
	}
	if _, err := os.Stat(c.backups); err == nil {
		t.Fatal("a dry run made a backup")
	}
}

func TestEncryptionMissingAndBrokenFiles(t *testing.T) {
	c := newEncCase(t)
	os.MkdirAll(c.certDir, 0o755)
	for _, args := range [][]string{
		{"encryption", "status", "--cert-dir", c.certDir},
		{"encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups},
	} {
		code, _, stderr := c.exec(args...)
		if code != 1 || !strings.Contains(stderr, "init phase encryption-config") {
			t.Errorf("%v without a file: exit %d, %s", args, code, stderr)
		}
	}
	c.initPhase("encryption-config")
	broken := bytes.Replace(c.read(c.encPath()), []byte("kind: EncryptionConfiguration"), []byte("kind: EncryptionConfig\nextra: 1"), 1)
	os.WriteFile(c.encPath(), broken, 0o600)
	code, _, stderr := c.rotate("encryption", "prepare")
	if code != 1 || !strings.Contains(stderr, c.encPath()) || !strings.Contains(stderr, "never overwrites") {
		t.Fatalf("broken file: exit %d, %s", code, stderr)
	}
	if !bytes.Equal(broken, c.read(c.encPath())) {
		t.Fatal("a broken file was rewritten")
	}
	// init keeps refusing it too, rather than making a new key.
	code, _, stderr = c.exec("init", "phase", "encryption-config", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "n", "--advertise-address", "10.0.0.5")
	if code == 0 || !strings.Contains(stderr, "never overwrites") {
		t.Fatalf("init over a broken file: exit %d, %s", code, stderr)
	}
}

func TestEncryptionInitFlagErrors(t *testing.T) {
	c := newEncCase(t)
	code, _, stderr := c.exec("init", "phase", "encryption-config", "--cert-dir", c.certDir, "--audit-log", c.audit, "--node-name", "n",
		"--advertise-address", "10.0.0.5", "--encryption-provider", "kms", "--kms-name", "vault", "--kms-endpoint", "tcp://10.0.0.1:80")
	if code == 0 || !strings.Contains(stderr, "unix") {
		t.Fatalf("kms over tcp: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(c.encPath()); err == nil {
		t.Fatal("a failed init wrote the file")
	}
	c.initPhase("encryption-config", "--encryption-provider", "kms", "--kms-name", "vault", "--kms-endpoint", "unix:///run/kms.sock")
	if st := c.status(); st.Stage != encryption.StageNone || st.Entries[0].Providers[0].Name != "vault" {
		t.Fatalf("kms status = %+v", st)
	}
	code, _, stderr = c.rotate("encryption", "prepare")
	if code != 3 || !strings.Contains(stderr, "KMS plugin") {
		t.Fatalf("prepare with kms: exit %d, %s", code, stderr)
	}
}

// fakeAPIServer answers the Secret list and update requests reencrypt makes, pages included, and records
// the content type of every update. Like kube-apiserver, it stores a Secret again (a new resourceVersion)
// on its first PUT, when it is still under the old key, and not on later ones. Its /metrics says it runs
// the encryption config at loaded (whatever that file holds when asked) unless runs is set.
type fakeAPIServer struct {
	mu      sync.Mutex
	secrets map[string]*corev1.Secret // namespace/name
	puts    map[string]int
	types   map[string]int
	limits  []string
	loaded  string
	runs    []byte
	// objects holds what was created in kube-system (upload-certs), by API path, as JSON objects.
	objects map[string]map[string]any
}

func (s *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	codec := scheme.Codecs.UniversalDeserializer()
	writeJSON := func(obj any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(obj)
	}
	switch {
	case r.URL.Path == "/metrics":
		runs := s.runs
		if runs == nil {
			runs, _ = os.ReadFile(s.loaded)
		}
		fmt.Fprintf(w, "# TYPE apiserver_encryption_config_controller_last_config_info gauge\napiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:aa\",hash=%q} 1\n", encryption.FileHash(runs))
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/secrets":
		s.limits = append(s.limits, r.URL.Query().Get("limit"))
		var keys []string
		for k := range s.secrets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var limit int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		start := sort.SearchStrings(keys, r.URL.Query().Get("continue")+"\x00")
		if r.URL.Query().Get("continue") == "" {
			start = 0
		}
		end := min(len(keys), start+limit)
		list := &corev1.SecretList{TypeMeta: metav1.TypeMeta{Kind: "SecretList", APIVersion: "v1"}}
		for _, k := range keys[start:end] {
			list.Items = append(list.Items, *s.secrets[k])
		}
		if end < len(keys) {
			list.Continue = keys[end-1]
		}
		writeJSON(list)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"):
		body, _ := io.ReadAll(r.Body)
		s.types[r.Header.Get("Content-Type")]++
		obj, _, err := codec.Decode(body, nil, nil)
		sec, ok := obj.(*corev1.Secret)
		if err != nil || !ok {
			http.Error(w, fmt.Sprintf("bad body: %v", err), http.StatusBadRequest)
			return
		}
		key := sec.Namespace + "/" + sec.Name
		if s.puts[key]++; s.puts[key] == 1 {
			sec.ResourceVersion += "1"
			s.secrets[key] = sec
		}
		sec.TypeMeta = metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"}
		writeJSON(sec)
	case strings.Contains(r.URL.Path, "/namespaces/kube-system/"):
		s.kubeSystem(w, r)
	default:
		http.Error(w, r.Method+" "+r.URL.Path+" not served", http.StatusNotFound)
	}
}

// kubeSystem creates, reads and replaces objects in kube-system by path, as the dynamic client sends them
// (what upload-certs creates and download-certs reads).
func (s *fakeAPIServer) kubeSystem(w http.ResponseWriter, r *http.Request) {
	if s.objects == nil {
		s.objects = map[string]map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	notFound := func() {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		var obj map[string]any
		if err := json.NewDecoder(r.Body).Decode(&obj); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		meta := obj["metadata"].(map[string]any)
		path := r.URL.Path
		if r.Method == http.MethodPost {
			path += "/" + meta["name"].(string)
			if _, exists := s.objects[path]; exists {
				w.WriteHeader(http.StatusConflict)
				json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409})
				return
			}
		}
		meta["uid"], meta["resourceVersion"] = "uid-"+meta["name"].(string), "1"
		if sd, ok := obj["stringData"].(map[string]any); ok { // as the apiserver stores it
			data := map[string]any{}
			for k, v := range sd {
				data[k] = base64.StdEncoding.EncodeToString([]byte(v.(string)))
			}
			obj["data"] = data
			delete(obj, "stringData")
		}
		s.objects[path] = obj
		json.NewEncoder(w).Encode(obj)
	case http.MethodGet:
		obj, ok := s.objects[r.URL.Path]
		if !ok {
			notFound()
			return
		}
		json.NewEncoder(w).Encode(obj)
	default:
		notFound()
	}
}

func TestReencryptCommandAgainstAFakeAPIServer(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("encryption-config")
	api := &fakeAPIServer{secrets: map[string]*corev1.Secret{}, puts: map[string]int{}, types: map[string]int{}, loaded: c.encPath()}
	for i := range 23 {
		ns, name := fmt.Sprintf("ns-%d", i%3), fmt.Sprintf("s-%02d", i)
		api.secrets[ns+"/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "7"}, Data: map[string][]byte{"k": []byte("v")}}
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	kubeconfig := filepath.Join(c.dir, "admin.conf")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, srv.URL)), 0o600)

	code, _, stderr := c.exec("encryption", "reencrypt", "--cert-dir", c.certDir)
	if code != 2 || !strings.Contains(stderr, "--kubeconfig") {
		t.Fatalf("without --kubeconfig: exit %d, %s", code, stderr)
	}
	code, out, stderr := c.exec("encryption", "reencrypt", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "--page-size", "5", "--workers", "3", "--checkpoint", c.cp, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	var res phases.ReencryptResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	st := c.status()
	if res.Kind != "ReencryptResult" || res.Rewritten != 23 || res.Errors != 0 || res.Server != srv.URL || res.Target != "secretbox:"+st.Entries[0].Providers[0].Keys[0].Name {
		t.Fatalf("result = %+v", res)
	}
	if len(api.puts) != 23 || api.types["application/vnd.kubernetes.protobuf"] != 23 {
		t.Errorf("puts = %d, content types %v: want every Secret sent once, as protobuf", len(api.puts), api.types)
	}
	if strings.Join(api.limits, ",") != "5,5,5,5,5" {
		t.Errorf("list limits = %v", api.limits)
	}
	if strings.Contains(stderr, "\r") {
		t.Error("a progress bar was drawn on a stderr that is not a terminal")
	}
	if _, err := os.Stat(c.cp); err == nil {
		t.Error("checkpoint left after a complete run")
	}
	code, out, _ = c.exec("encryption", "reencrypt", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "--checkpoint", c.cp)
	if code != 0 || !strings.Contains(out, "0 object(s) rewritten under "+res.Target+", 23 unchanged (already under it)") || !strings.Contains(out, "objects/s") {
		t.Fatalf("text summary: exit %d\n%s", code, out)
	}
}

// BenchmarkReencryptClientSide measures what the client side of reencrypt costs (list decode, protobuf
// encode, HTTP) against an in-process server that stores nothing: an upper bound for the CLI, not a
// cluster measurement (the e2e suite measures against a real apiserver and etcd).
func BenchmarkReencryptClientSide(b *testing.B) {
	c := newEncCase(b)
	c.initPhase("encryption-config")
	const n = 5000
	api := &fakeAPIServer{secrets: map[string]*corev1.Secret{}, puts: map[string]int{}, types: map[string]int{}, loaded: c.encPath()}
	for i := range n {
		ns, name := fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("s-%05d", i)
		api.secrets[ns+"/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "7"},
			Data: map[string][]byte{"tls.crt": bytes.Repeat([]byte("x"), 1500), "tls.key": bytes.Repeat([]byte("y"), 1600)}}
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	kubeconfig := filepath.Join(c.dir, "admin.conf")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)), 0o600)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if code, _, stderr := c.exec("encryption", "reencrypt", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "--checkpoint", c.cp, "-q"); code != 0 {
			b.Fatal(stderr)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "objects/s")
}

// metricsAPIServer serves kube-apiserver's encryption metrics for whatever file content runs holds.
type metricsAPIServer struct {
	mu   sync.Mutex
	runs []byte // the encryption config the fake apiserver "loaded"
	code int    // answer /metrics with this status instead, when set
}

func (s *metricsAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	if s.code != 0 {
		http.Error(w, "forbidden", s.code)
		return
	}
	fmt.Fprintf(w, `# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:aa",hash=%q} 1
# TYPE apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds gauge
apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds{apiserver_id_hash="sha256:aa",status="success"} 1.7645e+09
`, encryption.FileHash(s.runs))
}

func (s *metricsAPIServer) load(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs = data
}

// TestEncryptionStagesWaitForTheAPIServer: with --kubeconfig, status says whether the apiserver runs the
// file on disk, and promote and prune refuse until it runs the file the previous stage wrote, without
// changing it.
func TestEncryptionStagesWaitForTheAPIServer(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("encryption-config")
	api := &metricsAPIServer{runs: c.read(c.encPath())}
	srv := httptest.NewServer(api)
	defer srv.Close()
	kubeconfig := filepath.Join(c.dir, "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	status := func() phases.EncryptionStatusResult {
		t.Helper()
		var st phases.EncryptionStatusResult
		code, out, stderr := c.exec("encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "-o", "json")
		if err := json.Unmarshal([]byte(out), &st); err != nil || st.APIServer == nil {
			t.Fatalf("%v\n%s", err, out)
		}
		// exit 1 exactly while the apiserver runs another version of the file
		if want := map[bool]int{true: 0, false: 1}[st.APIServer.RunsThisFile]; code != want {
			t.Fatalf("status exit %d with the apiserver %+v, want %d: %s", code, st.APIServer, want, stderr)
		}
		return st
	}
	if st := status(); !st.APIServer.RunsThisFile || st.APIServer.ConfigHash != encryption.FileHash(c.read(c.encPath())) || st.APIServer.LastReload == nil {
		t.Errorf("steady file, loaded: apiserver = %+v", st.APIServer)
	}

	c.mustExec("encryption", "rotate", "prepare", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	prepared := c.read(c.encPath())
	if st := status(); st.APIServer.RunsThisFile {
		t.Errorf("after prepare, before the reload: apiserver = %+v, want not running this file", st.APIServer)
	}
	_, out, _ := c.exec("encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig)
	if !strings.Contains(out, "Apiserver: "+srv.URL+" runs another version of the file") || !strings.HasPrefix(out, "PROBLEM: the apiserver runs another version of this file\n") {
		t.Errorf("text status does not say the apiserver runs another file:\n%s", out)
	}
	code, _, stderr := c.rotate("encryption", "promote", "--kubeconfig", kubeconfig)
	if code == 0 || !strings.Contains(stderr, "promote refused") || !strings.Contains(stderr, "runs another version") {
		t.Fatalf("promote before the apiserver loaded the prepared file: exit %d, %s", code, stderr)
	}
	if !bytes.Equal(c.read(c.encPath()), prepared) {
		t.Fatal("a refused promote changed the file")
	}

	api.load(prepared)
	if code, _, stderr := c.rotate("encryption", "promote", "--kubeconfig", kubeconfig); code != 0 {
		t.Fatalf("promote once the apiserver runs the prepared file: exit %d, %s", code, stderr)
	}
	promoted := c.read(c.encPath())
	// No etcd listens on port 1: prune must refuse on the apiserver's answer before it counts anything.
	noEtcd := []string{"--etcd-endpoints", "https://127.0.0.1:1"}
	code, _, stderr = c.rotate("encryption", "prune", append([]string{"--yes", "--kubeconfig", kubeconfig}, noEtcd...)...)
	if code != 3 || !strings.Contains(stderr, "prune refused") || !strings.Contains(stderr, "runs another version") {
		t.Fatalf("prune before the apiserver loaded the promoted file: exit %d, %s", code, stderr)
	}
	if !bytes.Equal(c.read(c.encPath()), promoted) {
		t.Fatal("a refused prune changed the file")
	}
	api.load(promoted)
	// Once the apiserver runs the promoted file, prune goes on to its etcd count (which fails here).
	code, _, stderr = c.rotate("encryption", "prune", append([]string{"--yes", "--kubeconfig", kubeconfig}, noEtcd...)...)
	if code != 1 || !strings.Contains(stderr, "etcd") || strings.Contains(stderr, "refused") || !bytes.Equal(c.read(c.encPath()), promoted) {
		t.Fatalf("prune once the apiserver runs the promoted file, etcd unreachable: exit %d, %s", code, stderr)
	}

	// An apiserver that cannot be asked is an error, never a silent pass.
	api.mu.Lock()
	api.code = http.StatusForbidden
	api.mu.Unlock()
	code, _, stderr = c.exec("encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig)
	if code == 0 || !strings.Contains(stderr, "403") || !strings.Contains(stderr, "/metrics") {
		t.Errorf("status with /metrics forbidden: exit %d, %s", code, stderr)
	}
}

// TestEncryptionStatusWarnsOfAShortAESKey: status still reads a file whose aescbc key is not AES-256 (the
// apiserver accepts 16 and 24 bytes), but says so on stderr, naming the key and not quoting it.
func TestEncryptionStatusWarnsOfAShortAESKey(t *testing.T) {
	c := newEncCase(t)
	if err := os.MkdirAll(c.certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	cfg := `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys:
      - name: legacy
        secret: ` + secret + `
  - identity: {}
`
	if err := os.WriteFile(c.encPath(), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := c.exec("encryption", "status", "--cert-dir", c.certDir, "--audit-log", c.audit)
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "legacy") || !strings.Contains(stderr, "32") {
		t.Errorf("stderr does not warn about the 16-byte key %q:\n%s", "legacy", stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Error("status output quotes the key")
	}
}
