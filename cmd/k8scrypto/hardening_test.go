package main

// Hardening through the CLI: the modes of every file whatever the umask, keys never written into
// directories others can write to, no secret in any output. The node harness (pkitest.Node, with the
// commands of this package run against it) is shared with crash_test.go, the real-binary SIGKILL test. The
// walk of an injected fault at every file-system step of every writing workflow is envelope behaviour and
// runs against phases, without argv (phases/crash_test.go, TestFaultAtEveryStep).

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/phasestest"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// hardeningConfig is the node of every hardening test: ECDSA-P256 keys, which are fast to make.
var hardeningConfig = pkitest.KubeadmConfig("encryptionAlgorithm: ECDSA-P256\n")

// node is a control-plane node's files (pkitest.Node) with the commands of this package run against them.
type node struct {
	*pkitest.Node
	t *testing.T
}

func newNode(t *testing.T) *node {
	t.Helper()
	return &node{Node: pkitest.NewNode(t, hardeningConfig), t: t}
}

// args completes a command line with the flags that keep the command inside the node's directory; init
// also gets the node's configuration. version takes no flags.
func (n *node) args(args ...string) []string {
	cmd := commandPath(args)
	out := slices.Clone(args)
	// Each only where the command has the flag (issue 15: a command lists only the flags it reads).
	add := func(flag, value string) {
		if hasFlag(args, flag) && !slices.Contains(args, "--"+flag) {
			out = append(out, "--"+flag, value)
		}
	}
	if strings.HasPrefix(cmd, "init") {
		add("config", n.Config)
	}
	add("checkpoint", n.checkpoint())
	add("cert-dir", n.CertDir)
	add("kubeconfig-dir", n.KubeDir)
	if !strings.HasPrefix(cmd, "certs check-expiration") {
		add("audit-log", n.AuditLog)
	}
	add("backup-dir", n.BackupDir)
	return out
}

// hasFlag says whether the command args name has the flag.
func hasFlag(args []string, flag string) bool {
	e, _, _ := testEnv(pkitest.Now)
	c, _, err := newRootCommand(e, &globals{}).Find(args)
	return err == nil && c.Flags().Lookup(flag) != nil
}

// checkpoint is where encryption reencrypt keeps its progress: outside the certificate directory, as its
// default under /var/lib/k8scrypto is.
func (n *node) checkpoint() string { return filepath.Join(n.Dir, "state", "reencrypt-checkpoint.json") }

// testEnv is the injected world of one run: a fixed clock, serials (and encryption keys) from a seeded
// reader, fresh ECDSA keys (a fixture source would hand a rotation the key it replaces).
func testEnv(now time.Time) (*env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }, rand: pkitest.Rand(uint64(now.UnixNano())),
		hostname: func() (string, error) { return "cp-1", nil }}, &stdout, &stderr
}

func (n *node) run(now time.Time, args ...string) (int, string, string) {
	n.t.Helper()
	e, stdout, stderr := testEnv(now)
	code := run(n.args(args...), e)
	return code, stdout.String(), stderr.String()
}

// mustRun runs a command that has to succeed.
func (n *node) mustRun(now time.Time, args ...string) string {
	n.t.Helper()
	code, stdout, stderr := n.run(now, args...)
	if code != 0 {
		n.t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// checkConsistent and checkProtected are phasestest's checks, on this node.
func (n *node) checkConsistent(label string, now time.Time, complete bool) {
	n.t.Helper()
	phasestest.CheckConsistent(n.t, label, n.Node, now, complete)
}

func (n *node) checkProtected(label string, before pkitest.Snapshot, mayChange []string) {
	n.t.Helper()
	phasestest.CheckProtected(n.t, label, n.Node, before, mayChange)
}

// The commands run at these times: init, then each earlier stage an hour apart, the command a day later.
var (
	setupTime = pkitest.Now
	cmdTime   = pkitest.Now.Add(24 * time.Hour)
)

func initNode(n *node) { n.mustRun(setupTime, "init") }

func encryptionSecrets(cfg *encryption.Config) []string {
	var out []string
	for _, rc := range cfg.Resources {
		for _, p := range rc.Providers {
			for _, k := range encryption.KeysOf(p) {
				out = append(out, k.Name+"="+k.Secret)
			}
		}
	}
	return out
}

// Key hygiene.

// documentedMode is the mode README.md and docs/ give each file k8scrypto writes (rel is relative to the
// node's directory); ok is false for files the test itself wrote.
func (n *node) documentedMode(rel string, isDir, strict bool) (mode os.FileMode, ok bool) {
	if rest, isBackup := strings.CutPrefix(rel, "backups"); isBackup {
		if isDir {
			return 0o700, true
		}
		// A copy keeps the original's mode.
		orig, found := n.backedUp(rest)
		if !found {
			n.t.Errorf("%s: not a copy of a node file", rel)
			return 0, false
		}
		return n.documentedMode(orig, false, strict)
	}
	switch {
	case isDir && (rel == "pki" || rel == "pki/etcd" || rel == "kube"):
		if strict {
			return pki.ModeStrictDir, true
		}
		return pki.ModeDir, true
	case strings.HasSuffix(rel, ".crt"):
		if strict {
			return pki.ModeStrictCert, true
		}
		return pki.ModeCert, true
	case strings.HasPrefix(rel, "pki/"), strings.HasPrefix(rel, "kube/"), rel == "audit.log":
		// keys, sa.pub, sa.key.next, encryption-config.yaml, the lock, kubeconfigs, kubeadm-config.yaml
		return pki.ModeKey, true
	}
	return 0, false
}

// backedUp names the node file a backup copy is of: backups/[<sub>/]<UTC time>/<absolute path of the
// original>, relative to the node's directory.
func (n *node) backedUp(backupPath string) (string, bool) {
	i := strings.Index(backupPath, n.Dir+"/")
	if i < 0 {
		return "", false
	}
	return backupPath[i+len(n.Dir)+1:], true
}

// TestModesWhateverTheUmask runs every writing command under umask 0 and 077, with and without
// --strict-permissions, and checks every file and directory has exactly its documented mode. Not parallel:
// the umask belongs to the process.
func TestModesWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0, 0o077} {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("umask %04o strict %v", mask, strict), func(t *testing.T) {
				old := syscall.Umask(mask)
				defer syscall.Umask(old)
				n := newNode(t)
				for i, args := range [][]string{
					{"init"}, {"renew", "certs", "--force"}, {"encryption", "rotate", "prepare"}, {"sa", "rotate", "prepare"},
				} {
					if strict && hasFlag(args, "strict-permissions") { // the rotations write fixed modes
						args = append(args, "--strict-permissions")
					}
					n.mustRun(setupTime.Add(time.Duration(i)*time.Hour), args...)
				}
				seen := map[string]bool{}
				filepath.WalkDir(n.Dir, func(p string, d fs.DirEntry, err error) error {
					if err != nil || p == n.Dir {
						return err
					}
					rel, _ := filepath.Rel(n.Dir, p)
					info, _ := d.Info()
					want, ok := n.documentedMode(rel, d.IsDir(), strict)
					if !ok {
						return nil
					}
					seen[strings.SplitN(rel, "/", 2)[0]] = true
					if strings.HasPrefix(rel, "backups/") && !d.IsDir() {
						seen["backup copies"] = true
					}
					if got := info.Mode().Perm(); got != want {
						t.Errorf("%s: mode %04o, documented %04o", rel, got, want)
					}
					return nil
				})
				for _, top := range []string{"pki", "kube", "backups", "backup copies", "audit.log"} {
					if !seen[top] {
						t.Errorf("%s was not checked", top)
					}
				}
			})
		}
	}
}

// TestKeysNeverWrittenIntoOpenDirectories: a private file is never put into a directory others can write to
// (they could swap it, or read it through a link they planted), through the CLI: the certificate directory,
// its etcd subdirectory, the kubeconfig directory and the backup directory. The command fails, says which
// directory and the chmod, and writes nothing there.
func TestKeysNeverWrittenIntoOpenDirectories(t *testing.T) {
	for _, c := range []struct {
		name  string
		open  func(n *node) string // makes a directory group- or world-writable and returns it
		args  []string
		setup bool
	}{
		{name: "certificate directory 0777", args: []string{"init"}, open: func(n *node) string {
			os.MkdirAll(n.CertDir, 0o700)
			os.Chmod(n.CertDir, 0o777)
			return n.CertDir
		}},
		{name: "etcd directory 0770", args: []string{"init"}, setup: true, open: func(n *node) string {
			dir := filepath.Join(n.CertDir, "etcd")
			os.Remove(filepath.Join(dir, "server.crt"))
			os.Remove(filepath.Join(dir, "server.key"))
			os.Chmod(dir, 0o770)
			return dir
		}},
		{name: "kubeconfig directory 0757", args: []string{"init"}, open: func(n *node) string {
			os.MkdirAll(n.KubeDir, 0o700)
			os.Chmod(n.KubeDir, 0o757)
			return n.KubeDir
		}},
		{name: "backup directory 0777", args: []string{"renew", "certs", "--force"}, setup: true, open: func(n *node) string {
			os.MkdirAll(n.BackupDir, 0o700)
			os.Chmod(n.BackupDir, 0o777)
			return n.BackupDir
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			if c.setup {
				initNode(n)
			}
			dir := c.open(n)
			before := n.Snap()
			code, _, stderr := n.run(cmdTime, c.args...)
			if code != 1 || !strings.Contains(stderr, dir+", which is group- or world-writable") || !strings.Contains(stderr, "chmod go-w "+dir) {
				t.Errorf("exit %d: %s", code, stderr)
			}
			if d := pkitest.NodeDiff(before, n.Snap()); len(d) > 0 {
				t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
			}
			if ents, _ := os.ReadDir(n.BackupDir); len(ents) > 0 {
				t.Errorf("%d entries written into the backup directory", len(ents))
			}
		})
	}
}

// secretForms are the ways a leaked key could appear in text: its PEM as k8scrypto writes it (body: the DER in
// base64) and that PEM in base64 (a kubeconfig's client-key-data form), its PKCS#8 DER in base64 and PKCS#8
// PEM in base64, and its private scalars (ECDSA D, RSA D and P) in hex and base64.
func secretForms(key crypto.Signer) []string {
	var out []string
	if p, err := pki.EncodePrivateKey(key); err == nil {
		if b, _ := pem.Decode(p); b != nil {
			out = append(out, base64.StdEncoding.EncodeToString(b.Bytes))
		}
		out = append(out, base64.StdEncoding.EncodeToString(p))
	}
	if der, err := x509.MarshalPKCS8PrivateKey(key); err == nil {
		out = append(out, base64.StdEncoding.EncodeToString(der),
			base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	}
	var raw [][]byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if b, err := k.Bytes(); err == nil {
			raw = append(raw, b)
		}
	case *rsa.PrivateKey:
		raw = append(raw, k.D.Bytes(), k.Primes[0].Bytes())
	}
	for _, r := range raw {
		out = append(out, rawForms(r)...)
	}
	return out
}

func rawForms(r []byte) []string {
	return []string{hex.EncodeToString(r), base64.StdEncoding.EncodeToString(r), base64.RawURLEncoding.EncodeToString(r)}
}

var (
	secretLine        = regexp.MustCompile(`(?m)^\s*secret:\s*"?([^"\s]+)"?\s*$`)
	clientKeyDataLine = regexp.MustCompile(`(?m)^\s*client-key-data:\s*"?([^"\s]+)"?\s*$`)
)

// heldSecret is a secret found on the node: its forms, and the file that held it (for the self-check that
// the search finds each secret in its own file).
type heldSecret struct {
	forms []string
	file  []byte
}

// collectSecrets adds every private key and encryption key now on the node (certificate directory, kubeconfigs,
// staged sa key, backups) to secrets, keyed by a description.
func (n *node) collectSecrets(secrets map[string]heldSecret) {
	n.t.Helper()
	filepath.WalkDir(n.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(n.Dir, p)
		switch name := d.Name(); {
		case strings.HasSuffix(name, ".key") || name == sakeys.NextName:
			if k, err := pki.ParsePrivateKey(data); err == nil {
				// The file's own bytes in base64 too: what a kubeconfig embedding this file would hold.
				forms := append(secretForms(k), base64.StdEncoding.EncodeToString(data))
				secrets[rel+" "+pki.Fingerprint(data)] = heldSecret{forms, data}
			}
		case strings.HasSuffix(name, ".conf"):
			if kc, err := phases.ParseKubeconfig(p, data); err == nil {
				forms := secretForms(kc.ClientKey)
				for _, m := range clientKeyDataLine.FindAllSubmatch(data, -1) {
					forms = append(forms, string(m[1]))
				}
				secrets[rel+" "+pki.Fingerprint(data)] = heldSecret{forms, data}
			}
		case name == encryption.FileName:
			for _, m := range secretLine.FindAllSubmatch(data, -1) {
				s := string(m[1])
				forms := []string{s, base64.StdEncoding.EncodeToString([]byte(s))}
				if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
					forms = append(forms, rawForms(raw)...)
				}
				secrets[rel+" secret "+s[:min(4, len(s))]+"..."] = heldSecret{forms, data}
			}
		}
		return nil
	})
}

// commandPath is the command a command line runs: its words before the first flag.
func commandPath(args []string) string {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// allCommands lists every runnable command of the tree ("init phase certs apiserver", ...), but cobra's own
// help and completion.
func allCommands() []string {
	e, _, _ := testEnv(pkitest.Now)
	var out []string
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			p := strings.TrimSpace(path + " " + sub.Name())
			if sub.Runnable() {
				out = append(out, p)
			}
			walk(sub, p)
		}
	}
	walk(newRootCommand(e, &globals{}), "")
	return out
}

// fakeEtcdGateway serves etcd's JSON gateway (POST /v3/kv/range) over TLS with the node's own etcd server
// certificate, requiring a client certificate of the node's etcd CA as kubeadm's etcd does. Every range
// under /registry/secrets/ holds one value per key name given, in the apiserver's stored format.
func fakeEtcdGateway(t *testing.T, n *node, keyNames func() []string) *httptest.Server {
	t.Helper()
	return etcdGateway(t, n.CertDir, func() []string {
		var values []string
		for _, name := range keyNames() {
			values = append(values, "k8s:enc:secretbox:v1:"+name+":ciphertext")
		}
		return values
	})
}

// etcdGateway is a fake etcd JSON gateway, TLS with certDir's etcd server certificate and client
// authentication, that stores values() under /registry/secrets/default/s-<i>.
func etcdGateway(t *testing.T, certDir string, values func() []string) *httptest.Server {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "etcd", "server.crt"), filepath.Join(certDir, "etcd", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(certDir, "etcd", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key []byte `json:"key"`
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v3/kv/range" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"code":5,"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		type kv struct {
			Key            []byte `json:"key"`
			CreateRevision string `json:"create_revision"`
			Value          []byte `json:"value,omitempty"`
		}
		resp := map[string]any{"header": map[string]string{"cluster_id": "1", "revision": "42", "raft_term": "2"}}
		if strings.HasPrefix(string(req.Key), "/registry/secrets/") {
			var kvs []kv
			for i, v := range values() {
				kvs = append(kvs, kv{Key: fmt.Appendf(nil, "/registry/secrets/default/s-%d", i), CreateRevision: "3", Value: []byte(v)})
			}
			resp["kvs"], resp["count"] = kvs, strconv.Itoa(len(kvs))
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// encryptionKeyNames are the key names of the node's encryption config.
func (n *node) encryptionKeyNames() []string {
	cfg, _, err := encryption.Load(phases.EncryptionConfigPath(n.CertDir))
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, s := range encryptionSecrets(cfg) {
		out = append(out, strings.SplitN(s, "=", 2)[0])
	}
	return out
}

// TestNoSecretInAnyOutput runs every command of the tree (checked against cobra's own list) on an ECDSA and
// an RSA node, with its expected exit code, and looks for every private key and encryption key the node ever
// held, in every form secretForms lists, in stdout, stderr, the audit log, the metrics file, the reencrypt
// checkpoint, and the names of every file (backups included). None may appear.
func TestNoSecretInAnyOutput(t *testing.T) {
	for _, alg := range []string{"ECDSA-P256", "RSA-2048"} {
		t.Run(alg, func(t *testing.T) {
			n := newNode(t)
			writeFile(t, n.Config, []byte(strings.Replace(hardeningConfig, "ECDSA-P256", alg, 1)))
			scanForSecrets(t, n, alg)
		})
	}
}

func scanForSecrets(t *testing.T, n *node, alg string) {
	secrets := map[string]heldSecret{}
	var corpus strings.Builder
	ran := map[string]bool{} // commands that ran with their expected exit code 0
	step := 0
	// want is a command line with its expected exit code.
	type want struct {
		code int
		args []string
	}
	ok := func(args ...string) want { return want{0, args} }
	refused := func(args ...string) want { return want{3, args} }
	// A prune that would remove keys needs --yes: a usage error. The bare group commands print their help.
	noYes := func(args ...string) want { return want{2, args} }
	runAll := func(cmds ...want) {
		t.Helper()
		for _, c := range cmds {
			step++
			code, stdout, stderr := n.run(setupTime.Add(time.Duration(step)*time.Minute), c.args...)
			corpus.WriteString(stdout)
			corpus.WriteString(stderr)
			if code != c.code {
				t.Errorf("%v: exit %d, want %d\n%s", c.args, code, c.code, stderr)
			}
			if code != 0 && !strings.Contains(stderr, "error: ") {
				t.Errorf("%v: exit %d without an error message", c.args, code)
			}
			if code == 0 {
				ran[commandPath(c.args)] = true
			}
			n.collectSecrets(secrets)
		}
	}
	mustFail := func(args []string, breakIt func(), restore func()) {
		t.Helper()
		breakIt()
		step++
		code, stdout, stderr := n.run(setupTime.Add(time.Duration(step)*time.Minute), append(args, "-v")...)
		corpus.WriteString(stdout)
		corpus.WriteString(stderr)
		n.collectSecrets(secrets)
		if code != 1 || !strings.Contains(stderr, "error: ") {
			t.Errorf("%v on broken input: exit %d, want 1 with an error message\n%s", args, code, stderr)
		}
		restore()
	}
	metrics := filepath.Join(n.Dir, "metrics", "k8scrypto.prom")
	if err := os.MkdirAll(filepath.Dir(metrics), 0o700); err != nil {
		t.Fatal(err)
	}
	var certPhases, kubeconfigPhases []want
	for _, c := range allCommands() {
		if rest, isCert := strings.CutPrefix(c, "init phase certs "); isCert {
			certPhases = append(certPhases, ok("init", "phase", "certs", rest, "-v"))
		}
		if rest, isKC := strings.CutPrefix(c, "init phase kubeconfig "); isKC {
			kubeconfigPhases = append(kubeconfigPhases, ok("init", "phase", "kubeconfig", rest, "-v", "-o", "json"))
		}
	}
	runAll(
		ok("version"), ok("version", "-o", "json"),
		ok("init", "--dry-run", "-v"), ok("init", "--dry-run", "-o", "json"),
		ok("init", "-v"), ok("init", "-o", "json", "-v"), ok("init", "-o", "yaml"),
		ok("init", "phase"), ok("init", "phase", "certs"), ok("init", "phase", "kubeconfig"), ok("renew"), ok("certs"),
		ok("encryption"), ok("encryption", "rotate"), ok("sa"), ok("sa", "rotate"),
	)
	runAll(certPhases...)
	runAll(kubeconfigPhases...)
	runAll(
		ok("init", "phase", "encryption-config", "-v", "-o", "json"), ok("init", "phase", "sa", "-v"),
		ok("init", "phase", "kubeadm-config", "-v"), ok("init", "phase", "kubeadm-config", "-o", "yaml"),
		ok("certs", "check-expiration"), ok("certs", "check-expiration", "-o", "json"), ok("certs", "check-expiration", "-o", "yaml"),
		ok("certs", "check-expiration", "--metrics-file", metrics, "-v"),
		ok("renew", "certs", "-v"), ok("renew", "certs", "--force", "--dry-run", "-v"),
		ok("renew", "certs", "--force", "-v", "-o", "json"), ok("renew", "certs", "--force", "--rotate-keys=false", "-o", "yaml", "-v"),
		ok("renew", "certs", "apiserver", "admin.conf", "--force", "-v"),
		ok("certs", "renew", "-v"), ok("certs", "renew", "--force", "-v", "-o", "json"),
		ok("encryption", "status"), ok("encryption", "status", "-o", "json"), ok("encryption", "status", "-o", "yaml", "-v"),
		ok("encryption", "rotate", "prepare", "--dry-run", "-v"), ok("encryption", "rotate", "prepare", "-v", "-o", "json"),
		ok("encryption", "status", "-v"), ok("encryption", "rotate", "promote", "-v"),
		noYes("encryption", "rotate", "prune", "-v"),
	)
	// status and reencrypt against the fake etcd gateway and a fake apiserver, mid-rotation (two keys).
	gw := fakeEtcdGateway(t, n, n.encryptionKeyNames)
	api := &fakeAPIServer{secrets: map[string]*corev1.Secret{}, puts: map[string]int{}, types: map[string]int{}, loaded: filepath.Join(n.CertDir, "encryption-config.yaml")}
	for i := range 7 {
		api.secrets[fmt.Sprintf("default/s-%d", i)] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("s-%d", i), ResourceVersion: "7"}}
	}
	apiSrv := httptest.NewServer(api)
	defer apiSrv.Close()
	adminConf := filepath.Join(n.Dir, "admin-for-reencrypt.conf")
	admin, err := os.ReadFile(filepath.Join(n.KubeDir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// The real admin.conf (client key embedded) pointed at the fake: its key must not reach the output either.
	admin = regexp.MustCompile(`(?m)^(\s*)certificate-authority-data: .*$`).ReplaceAll(admin, nil)
	admin = regexp.MustCompile(`(?m)^(\s*)server: .*$`).ReplaceAll(admin, []byte("${1}server: "+apiSrv.URL))
	writeFile(t, adminConf, admin)
	runAll(
		ok("encryption", "status", "--etcd-endpoints", gw.URL, "-v"), ok("encryption", "status", "--etcd-endpoints", gw.URL, "-o", "json"),
		ok("encryption", "reencrypt", "--kubeconfig", adminConf, "--page-size", "3", "-v"),
		ok("encryption", "reencrypt", "--kubeconfig", adminConf, "-o", "yaml", "-v"),
		want{1, []string{"encryption", "reencrypt", "--kubeconfig", filepath.Join(n.Dir, "missing.conf"), "-v"}},
	)
	if len(api.puts) != len(api.secrets) {
		t.Errorf("reencrypt rewrote %d of %d Secrets: it did not run its successful path", len(api.puts), len(api.secrets))
	}
	runAll(
		ok("encryption", "rotate", "prune", "--yes", "--unsafe-skip-etcd-check", "-v", "-o", "yaml"), ok("encryption", "status", "-o", "json"),
		ok("sa", "status"), ok("sa", "status", "-o", "json"),
		ok("sa", "rotate", "prepare", "--dry-run", "-v"), ok("sa", "rotate", "prepare", "-v", "-o", "json"),
		ok("sa", "status", "-o", "yaml"), ok("sa", "rotate", "promote", "-v"),
		noYes("sa", "rotate", "prune", "-v"),
		ok("sa", "rotate", "prune", "--yes", "-v", "-o", "json"),
		refused("sa", "rotate", "promote", "-v"), // out of order
	)
	// The shared keys: uploaded to and downloaded from the fake apiserver (the node's own files come back
	// identical), sealed into a bundle and imported back, with a key file and with a passphrase.
	keyFile, passFile := filepath.Join(n.Dir, "bundle.key"), filepath.Join(n.Dir, "bundle.pass")
	writeFile(t, keyFile, []byte(strings.Repeat("5a", 32)+"\n"))
	writeFile(t, passFile, []byte("a passphrase that is long enough\n"))
	caPin := phases.CAPin(mustParseCert(t, filepath.Join(n.CertDir, "ca.crt")))
	runAll(
		ok("init", "phase", "upload-certs", "--kubeconfig", adminConf, "--certificate-key", strings.Repeat("3c", 32), "-v"),
		ok("join", "phase", "download-certs", "--kubeconfig", adminConf, "--certificate-key", strings.Repeat("3c", 32), "--ca-cert-hash", caPin, "-v"),
		ok("init", "phase", "upload-certs", "--kubeconfig", adminConf, "-o", "json"),
		ok("certs", "export", "--out", filepath.Join(n.Dir, "out", "k.bundle"), "--key-file", keyFile, "-v"),
		ok("certs", "export", "--out", filepath.Join(n.Dir, "out", "p.bundle"), "--passphrase-file", passFile, "-o", "json"),
		ok("certs", "import", "--in", filepath.Join(n.Dir, "out", "k.bundle"), "--key-file", keyFile, "-v"),
		ok("certs", "import", "--in", filepath.Join(n.Dir, "out", "p.bundle"), "--passphrase-file", passFile, "--ca-cert-hash", caPin, "-o", "yaml"),
		ok("ca"), ok("ca", "rotate"), ok("join"), ok("join", "phase"),
		ok("ca", "renew", "-v"), ok("ca", "renew", "etcd-ca", "--dry-run", "-o", "json"),
		ok("ca", "rotate", "prepare", "--ca", "front-proxy-ca", "--dry-run", "-v"), ok("ca", "rotate", "prepare", "--ca", "front-proxy-ca", "-o", "json"),
		refused("ca", "rotate", "prune", "--ca", "front-proxy-ca", "--yes"), // out of order
		ok("ca", "rotate", "promote", "--ca", "front-proxy-ca", "-v"),
		ok("ca", "rotate", "prune", "--ca", "front-proxy-ca", "--yes", "-o", "yaml"),
	)
	for _, c := range allCommands() {
		if !ran[c] {
			t.Errorf("%q never ran successfully: the scan must cover every command", c)
		}
	}
	// Error paths, with -v, on broken files that hold keys.
	replace := func(rel string, edit func([]byte) []byte) (func(), func()) {
		p := filepath.Join(n.Dir, rel)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return func() { writeFile(t, p, edit(bytes.Clone(orig))) }, func() { writeFile(t, p, orig) }
	}
	truncate := func(b []byte) []byte { return b[:len(b)*2/3] }
	// cutAfter cuts a kubeconfig 61 characters into a field (not a whole base64 quantum): check-expiration
	// reads no key, and a client key is not parsed for a plain-HTTP server.
	cutAfter := func(field string) func([]byte) []byte {
		return func(b []byte) []byte { return b[:bytes.Index(b, []byte(field+": "))+len(field)+2+61] }
	}
	swapSecret := func(secret string) func([]byte) []byte {
		return func(b []byte) []byte {
			return secretLine.ReplaceAll(b, []byte("        secret: "+secret))
		}
	}
	for _, c := range []struct {
		rel  string
		edit func([]byte) []byte
		args []string
	}{
		{"pki/apiserver.key", truncate, []string{"init"}},
		{"pki/apiserver.key", truncate, []string{"renew", "certs", "apiserver", "--force", "--rotate-keys=false"}},
		{"pki/ca.key", truncate, []string{"init"}},
		{"pki/ca.key", truncate, []string{"renew", "certs", "--force"}},
		{"pki/sa.key", truncate, []string{"sa", "rotate", "prepare"}},
		{"pki/sa.key", truncate, []string{"sa", "status"}},
		{"pki/apiserver-etcd-client.key", truncate, []string{"encryption", "status", "--etcd-endpoints", gw.URL}},
		{"kube/admin.conf", truncate, []string{"init"}},
		{"kube/admin.conf", truncate, []string{"renew", "certs", "admin.conf", "--force"}},
		{"kube/admin.conf", cutAfter("client-certificate-data"), []string{"certs", "check-expiration", "-o", "json"}},
		{"admin-for-reencrypt.conf", cutAfter("client-key-data"), []string{"encryption", "reencrypt", "--kubeconfig", adminConf}},
		{"pki/" + encryption.FileName, swapSecret(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))), []string{"encryption", "status"}},
		{"pki/" + encryption.FileName, swapSecret("bm90LWEtMzItYnl0ZS1rZXk-but-not-base64!!"), []string{"encryption", "rotate", "prepare"}},
		{"pki/" + encryption.FileName, swapSecret(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789ab"))), []string{"init"}},
		{"pki/" + encryption.FileName, func(b []byte) []byte { return bytes.Replace(b, []byte("kind: EncryptionConfiguration\n"), nil, 1) }, []string{"encryption", "status"}},
		{"pki/" + encryption.FileName, func(b []byte) []byte { return bytes.Replace(b, []byte("secretbox:"), []byte("secretbox: ["), 1) }, []string{"init"}},
	} {
		breakIt, restore := replace(c.rel, c.edit)
		mustFail(c.args, breakIt, restore)
	}
	n.collectSecrets(secrets)

	// The text to search: every output, the audit log, the metrics file, any reencrypt checkpoint, and
	// every file name under the node.
	for _, p := range []string{n.AuditLog, metrics} {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			t.Fatalf("%s: %v (empty: the commands did not run as planned)", p, err)
		}
		corpus.Write(data)
	}
	if data, err := os.ReadFile(n.checkpoint()); err == nil {
		corpus.Write(data)
	}
	backups := 0
	filepath.WalkDir(n.Dir, func(p string, d fs.DirEntry, err error) error {
		corpus.WriteString("\n" + p)
		if strings.HasPrefix(p, n.BackupDir+"/") && !d.IsDir() {
			backups++
		}
		return nil
	})
	if backups == 0 {
		t.Error("no backup was taken: their names were not searched")
	}
	text := corpus.String()
	idx := newLeakIndex(text)
	for what, s := range secrets {
		if idx.leaks(s.forms) {
			t.Errorf("%s appears in the output", what)
		}
		// The search finds each secret in the file that holds it (PEM, client-key-data, secret: line).
		if !newLeakIndex(string(s.file)).leaks(s.forms) {
			t.Errorf("%s: the search does not find it in its own file", what)
		}
	}
	// ... and in the other forms a log line could quote: the private scalar in hex, base64 of the PEM.
	k, err := pki.ParsePrivateKey(secrets[firstKey(secrets, "pki/sa.key")].file)
	if err != nil {
		t.Fatal(err)
	}
	var scalar []byte
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		scalar, _ = k.Bytes()
	case *rsa.PrivateKey:
		scalar = k.Primes[0].Bytes()
	}
	forms := secretForms(k)
	p, _ := pki.EncodePrivateKey(k)
	if !newLeakIndex("level=INFO d="+hex.EncodeToString(scalar)[5:40]+"\n").leaks(forms) ||
		!newLeakIndex("client-key-data: "+base64.StdEncoding.EncodeToString(p)+"\n").leaks(forms) {
		t.Fatal("the search does not find a key that is there")
	}
	if min := map[string]int{"ECDSA-P256": 60, "RSA-2048": 60}[alg]; len(secrets) < min {
		t.Errorf("only %d keys collected: the commands did not run as planned", len(secrets))
	}
	t.Logf("%s: %d commands, %d keys and encryption keys searched for in %d bytes of output, audit log, metrics and file names",
		alg, step, len(secrets), len(text))
}

// firstKey is the description of a collected secret held in file rel.
func firstKey(secrets map[string]heldSecret, rel string) string {
	for what := range secrets {
		if strings.Fields(what)[0] == rel {
			return what
		}
	}
	return ""
}

// leakIndex finds any 24-character stretch of a secret in a text.
type leakIndex struct {
	text  string
	grams map[string]bool
}

const leakWindow = 24

func newLeakIndex(text string) *leakIndex {
	idx := &leakIndex{text: text, grams: map[string]bool{}}
	for i := 0; i+leakWindow <= len(text); i++ {
		idx.grams[text[i:i+leakWindow]] = true
	}
	return idx
}

// leaks reports whether any form appears: a form shorter than the window whole, a longer one by any of its
// windows (taken every 8 characters, so any 32 consecutive characters of it are found).
func (idx *leakIndex) leaks(forms []string) bool {
	for _, f := range forms {
		if len(f) < leakWindow {
			if len(f) >= 12 && strings.Contains(idx.text, f) {
				return true
			}
			continue
		}
		for i := 0; i+leakWindow <= len(f); i += leakWindow / 3 {
			if idx.grams[f[i:i+leakWindow]] {
				return true
			}
		}
	}
	return false
}

func mustParseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
