package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var updateOutput = flag.Bool("update", false, "rewrite the golden objects under testdata/output/")

// outputCase is one command of the output contract: its golden file's name, whether it runs on an initialized
// node, and its arguments ("DIR" stands for the case's directory, "ETCD" for the fake etcd's URL, "CAPIN" for
// the sha256: pin of DIR/pki/ca.crt).
type outputCase struct {
	name   string
	inited bool
	args   []string
	// setup are the commands that bring the node to where the command runs (earlier rotation steps, an
	// upload, an export), each of which must succeed.
	setup [][]string
	// api: a fake kube-apiserver (the one the unit tests of reencrypt and upload-certs use) that runs the
	// node's encryption config and holds Secrets, reached with DIR/admin.conf; etcd: a fake etcd gateway,
	// ETCD, storing one Secret under the first key of the node's encryption config.
	api, etcd bool
}

// outputCases are the commands whose -o json object is pinned by testdata/output/<name>.json and described in
// docs/output.md.
func outputCases() []outputCase {
	node := []string{"--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube", "--audit-log", "DIR/state/audit.log"}
	write := append(append([]string{}, node...), "--backup-dir", "DIR/backups")
	rot := []string{"--cert-dir", "DIR/pki", "--audit-log", "DIR/state/audit.log", "--backup-dir", "DIR/backups"}
	step := func(words ...string) []string { return append(words, rot...) }
	caStep := func(s string) []string { return append([]string{"ca", "rotate", s, "--ca", "ca"}, write...) }
	api := []string{"--kubeconfig", "DIR/admin.conf"}
	etcd := []string{"--etcd-endpoints", "ETCD"}
	key := []string{"--certificate-key", strings.Repeat("3c", 32)}
	// The second node of download-certs and import: its own directories, the shared files installed there.
	node2 := []string{"--cert-dir", "DIR/node2/pki", "--kubeconfig-dir", "DIR/node2/kube", "--audit-log", "DIR/node2/audit.log", "--ca-cert-hash", "CAPIN"}
	return []outputCase{
		{name: "init", args: append([]string{"init", "--config", "DIR/kubeadm.yaml"}, node...)},
		{name: "init-dry-run", args: append([]string{"init", "--dry-run", "--config", "DIR/kubeadm.yaml"}, node...)},
		{name: "renew-certs", inited: true, args: append([]string{"renew", "certs", "all", "--force"}, write...)},
		{name: "renew-certs-dry-run", inited: true, args: append([]string{"renew", "certs", "all", "--force", "--dry-run", "--on-renew", "systemctl restart kubelet"}, write...)},
		{name: "certs-check-expiration", inited: true, args: []string{"certs", "check-expiration", "--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube"}},
		{name: "sa-status", inited: true, args: []string{"sa", "status", "--cert-dir", "DIR/pki"}},
		{name: "sa-rotate-prepare", inited: true, args: step("sa", "rotate", "prepare")},
		{name: "sa-rotate-prepare-dry-run", inited: true, args: append(step("sa", "rotate", "prepare"), "--dry-run")},
		{name: "sa-rotate-promote", inited: true, setup: [][]string{step("sa", "rotate", "prepare")}, args: step("sa", "rotate", "promote")},
		{name: "sa-rotate-prune", inited: true, setup: [][]string{step("sa", "rotate", "prepare"), step("sa", "rotate", "promote")},
			args: step("sa", "rotate", "prune", "--yes")},
		{name: "encryption-status", inited: true, args: []string{"encryption", "status", "--cert-dir", "DIR/pki"}},
		{name: "encryption-rotate-prepare", inited: true, args: step("encryption", "rotate", "prepare")},
		{name: "encryption-rotate-prepare-dry-run", inited: true, args: append(step("encryption", "rotate", "prepare"), "--dry-run")},
		{name: "encryption-rotate-promote", inited: true, api: true, setup: [][]string{step("encryption", "rotate", "prepare")},
			args: append(step("encryption", "rotate", "promote"), api...)},
		{name: "encryption-reencrypt", inited: true, api: true, etcd: true,
			setup: [][]string{step("encryption", "rotate", "prepare"), append(step("encryption", "rotate", "promote"), api...)},
			args:  slices.Concat([]string{"encryption", "reencrypt", "--cert-dir", "DIR/pki", "--audit-log", "DIR/state/audit.log", "--checkpoint", "DIR/state/checkpoint.json"}, api, etcd)},
		{name: "encryption-rotate-prune", inited: true, api: true, etcd: true,
			setup: [][]string{step("encryption", "rotate", "prepare"), append(step("encryption", "rotate", "promote"), api...)},
			args:  slices.Concat(step("encryption", "rotate", "prune", "--yes"), api, etcd)},
		{name: "ca-renew", inited: true, args: append([]string{"ca", "renew", "ca"}, write...)},
		{name: "ca-renew-dry-run", inited: true, args: append([]string{"ca", "renew", "ca", "--dry-run"}, write...)},
		{name: "ca-rotate-prepare", inited: true, args: caStep("prepare")},
		{name: "ca-rotate-prepare-dry-run", inited: true, args: append(caStep("prepare"), "--dry-run")},
		{name: "ca-rotate-promote", inited: true, setup: [][]string{caStep("prepare")}, args: caStep("promote")},
		{name: "ca-rotate-prune", inited: true, setup: [][]string{caStep("prepare"), caStep("promote")}, args: append(caStep("prune"), "--yes")},
		{name: "certs-export", inited: true, args: []string{"certs", "export", "--cert-dir", "DIR/pki", "--out", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}},
		{name: "certs-import", inited: true,
			setup: [][]string{{"certs", "export", "--cert-dir", "DIR/pki", "--out", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}},
			args:  append([]string{"certs", "import", "--in", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}, node2...)},
		{name: "certs-import-dry-run", inited: true,
			setup: [][]string{{"certs", "export", "--cert-dir", "DIR/pki", "--out", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}},
			args:  append([]string{"certs", "import", "--dry-run", "--in", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}, node2...)},
		{name: "init-phase-upload-certs", inited: true, api: true,
			args: slices.Concat([]string{"init", "phase", "upload-certs", "--cert-dir", "DIR/pki"}, api, key)},
		{name: "join-phase-download-certs", inited: true, api: true,
			setup: [][]string{slices.Concat([]string{"init", "phase", "upload-certs", "--cert-dir", "DIR/pki"}, api, key)},
			args:  slices.Concat([]string{"join", "phase", "download-certs"}, api, key, node2)},
		{name: "version", args: []string{"version"}},
	}
}

// startCase is the directory a case runs in: a node (initialized when the case says so), the fakes it
// needs, and its setup commands run.
func startCase(t *testing.T, tc outputCase) *outputDir {
	t.Helper()
	n := outputNode(t, tc.inited)
	if tc.inited {
		ca := filepath.Join(n.dir, "pki", "ca.crt")
		n.words = append(n.words, "CAPIN", phases.CAPin(mustParseCert(t, ca)))
	}
	if tc.api {
		api := &fakeAPIServer{secrets: map[string]*corev1.Secret{}, puts: map[string]int{}, types: map[string]int{},
			loaded: filepath.Join(n.dir, "pki", "encryption-config.yaml")}
		for i := range 3 {
			name := fmt.Sprintf("s-%d", i)
			api.secrets["default/"+name] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "7"}}
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		n.words = append(n.words, "APISERVER", srv.URL)
		// The node's admin.conf (its client certificate verifies for the fake, which asks for none), pointed at
		// the fake's plain HTTP address.
		admin, err := os.ReadFile(filepath.Join(n.dir, "kube", "admin.conf"))
		if err != nil {
			t.Fatal(err)
		}
		admin = regexp.MustCompile(`(?m)^(\s*)certificate-authority-data: .*$`).ReplaceAll(admin, nil)
		admin = regexp.MustCompile(`(?m)^(\s*)server: .*$`).ReplaceAll(admin, []byte("${1}server: "+srv.URL))
		writeFile(t, filepath.Join(n.dir, "admin.conf"), admin)
	}
	if tc.etcd {
		encPath := filepath.Join(n.dir, "pki", "encryption-config.yaml")
		gw := etcdGateway(t, filepath.Join(n.dir, "pki"), func() []string {
			cfg, _, err := encryption.Load(encPath)
			if err != nil {
				t.Error(err)
				return nil
			}
			first, _, _ := strings.Cut(encryptionSecrets(cfg)[0], "=")
			return []string{"k8s:enc:aescbc:v1:" + first + ":ciphertext"}
		})
		n.words = append(n.words, "ETCD", gw.URL)
	}
	for _, args := range tc.setup {
		if code, _, stderr := n.exec(args...); code != 0 {
			t.Fatalf("setup %v: exit %d\n%s", args, code, stderr)
		}
	}
	return n
}

// outputNode is a directory with the kubeadm config, the bundle key, and (when inited) a node made by init.
func outputNode(t *testing.T, inited bool) *outputDir {
	t.Helper()
	n := &outputDir{dir: t.TempDir(), keys: pkitest.Keys()}
	dir := n.dir
	writeFile(t, filepath.Join(dir, "kubeadm.yaml"), []byte(initTestConfig))
	writeFile(t, filepath.Join(dir, "bundle.key"), []byte(strings.Repeat("ab", 32)+"\n"))
	if inited {
		if code, _, stderr := n.exec("init", "--config", dir+"/kubeadm.yaml", "--cert-dir", dir+"/pki", "--kubeconfig-dir", dir+"/kube",
			"--audit-log", dir+"/state/audit.log", "--encryption-provider", "aescbc"); code != 0 {
			t.Fatalf("init: exit %d\n%s", code, stderr)
		}
	}
	return n
}

// outputDir is a directory the output tests run commands in, with one key source for all its runs.
type outputDir struct {
	dir  string
	keys pki.KeySource
	seed uint64
	// words are the placeholders of a case's arguments and what they stand for, in pairs (CAPIN, ETCD,
	// APISERVER): replaced in the arguments, and back in the output.
	words []string
}

// exec runs k8scrypto in-process with the test clock, the directory's keys and seeded serials, exactly with
// args ("DIR" replaced by the directory).
func (n *outputDir) exec(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	n.seed++ // serials differ from run to run, as they do for real
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: n.keys,
		rand: pkitest.Rand(n.seed), hostname: func() (string, error) { return "node-a", nil }}
	args = append([]string(nil), args...)
	for i, a := range args {
		args[i] = strings.NewReplacer(append([]string{"DIR", n.dir}, n.words...)...).Replace(a)
	}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

// normalize makes an output independent of the test's directory, the fakes' addresses and the build.
func (n *outputDir) normalize(out string) string {
	out = strings.ReplaceAll(out, n.dir, "/TMP")
	for i := 0; i+1 < len(n.words); i += 2 {
		out = strings.ReplaceAll(out, n.words[i+1], n.words[i])
	}
	out = strings.ReplaceAll(out, runtime.Version(), "GOVERSION")
	out = strings.ReplaceAll(out, runtime.GOOS+"/"+runtime.GOARCH, "GOOS/GOARCH")
	return out
}

func TestOutputGolden(t *testing.T) {
	for _, tc := range outputCases() {
		t.Run(tc.name, func(t *testing.T) {
			n := startCase(t, tc)
			code, stdout, stderr := n.exec(append(tc.args, "-o", "json")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
			}
			got := n.normalize(stdout)
			if tc.name == "renew-certs" {
				// Renewal takes its new keys from the fixture pool concurrently, so which certificate gets
				// which key varies from run to run: the new fingerprints are masked (the previous ones stay).
				got = renewedHashes.ReplaceAllString(got, `$1"$2": "HEX"`)
			}
			if tc.name == "encryption-reencrypt" {
				// The run's measured duration and rate, on the wall clock.
				got = measured.ReplaceAllString(got, `"$1": 0`)
			}
			golden := filepath.Join("testdata", "output", tc.name+".json")
			if *updateOutput {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run with -update if the change is intended, and update docs/output.md):\n%s", tc.name, golden, got)
			}
		})
	}
}

// TestOutputDocumentsEveryField: every top-level field of every golden object is named in docs/output.md, in
// the section of its command, so the document cannot drift from the output.
func TestOutputDocumentsEveryField(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "output.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(doc))
	for _, tc := range outputCases() {
		data, err := os.ReadFile(filepath.Join("testdata", "output", tc.name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		section, ok := sections[tc.name]
		if !ok {
			t.Errorf("docs/output.md has no section <a id=%q>", tc.name)
			continue
		}
		var keys []string
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !strings.Contains(section, "`"+k+"`") {
				t.Errorf("docs/output.md, section %s: field `%s` of %s is not documented", tc.name, k, tc.name)
			}
		}
	}
}

// renewedHashes are the fingerprints of a renewed certificate and its new key (item level, not "previous").
var renewedHashes = regexp.MustCompile(`(?m)^(      )"(sha256|keySHA256)": "[0-9a-f]{64}"`)

// measured are reencrypt's duration and rate fields.
var measured = regexp.MustCompile(`"(duration|perSecond)": [0-9.e+-]+`)

var docAnchor = regexp.MustCompile(`<a id="([a-z-]+)"></a>`)

// docSections splits docs/output.md at its anchors; a section runs to the next heading of level 2 or 3, and
// shares the field table of the section it points to with "fields as in [..](#anchor)".
func docSections(doc string) map[string]string {
	out := map[string]string{}
	locs := docAnchor.FindAllStringSubmatchIndex(doc, -1)
	for i, l := range locs {
		end := len(doc)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		out[doc[l[2]:l[3]]] = doc[l[1]:end]
	}
	ref := regexp.MustCompile(`fields as in \[[^\]]*\]\(#([a-z-]+)\)`)
	for name, s := range out {
		for _, m := range ref.FindAllStringSubmatch(s, -1) {
			out[name] = s + out[m[1]]
		}
	}
	return out
}

// TestOutputStreams: with -q a successful command writes nothing to stderr; without -v, stderr has at most
// one line per phase and no line that repeats a line of stdout.
func TestOutputStreams(t *testing.T) {
	node := []string{"--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube", "--audit-log", "DIR/state/audit.log"}
	more := []outputCase{
		{name: "init-phase-certs", inited: false, args: append([]string{"init", "phase", "certs", "all", "--config", "DIR/kubeadm.yaml"}, node...)},
		// init again on a node it made: every file reused, one line per phase (the reused files are in the result).
		{name: "init-again", inited: true, args: append([]string{"init", "--config", "DIR/kubeadm.yaml"}, node...)},
		{name: "init-again-strict", inited: true, args: append([]string{"init", "--config", "DIR/kubeadm.yaml", "--strict-permissions"}, node...)},
		{name: "renew-certs-not-due", inited: true, args: append([]string{"renew", "certs"}, append(node, "--backup-dir", "DIR/backups")...)},
		{name: "ca-renew-all-dry-run", inited: true, args: append([]string{"ca", "renew", "--dry-run"}, append(node, "--backup-dir", "DIR/backups")...)},
		{name: "ca-rotate-prepare-etcd-ca-dry-run", inited: true, args: append([]string{"ca", "rotate", "prepare", "--ca", "etcd-ca", "--dry-run"}, append(node, "--backup-dir", "DIR/backups")...)},
	}
	for _, tc := range append(outputCases(), more...) {
		t.Run(tc.name, func(t *testing.T) {
			n := startCase(t, tc)
			code, _, stderr := n.exec(append(tc.args, "-q")...)
			if code != 0 {
				t.Fatalf("-q: exit %d\n%s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("-q: stderr is not empty:\n%s", stderr)
			}
			n = startCase(t, tc)
			code, stdout, stderr := n.exec(tc.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			t.Logf("stderr:\n%s", stderr)
			out := map[string]bool{}
			for _, l := range strings.Split(stdout, "\n") {
				out[strings.TrimSpace(l)] = true
			}
			seen := map[string]int{}
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if l == "" {
					continue
				}
				if out[strings.TrimSpace(l)] {
					t.Errorf("stderr repeats a stdout line: %q", l)
				}
				// A per-file line names a file or certificate the result already lists. A warning may name
				// one: it says something about the file the result does not.
				if strings.HasPrefix(l, "warn: ") {
					continue
				}
				for _, m := range perFileAttr.FindAllStringSubmatch(l, -1) {
					if strings.Contains(stdout, m[2]) {
						t.Errorf("stderr has a per-file line without -v (the result lists %s): %q", m[2], l)
					}
				}
				seen[phaseOf(l)]++
			}
			for p, k := range seen {
				if k > 1 {
					t.Errorf("stderr has %d lines for phase %q without -v:\n%s", k, p, stderr)
				}
			}
		})
	}
}

var perFileAttr = regexp.MustCompile(`\b(file|certificate|path)=(\S+)`)

// phaseOf is the phase a progress line is about: its "[phase]" prefix, or the whole line.
func phaseOf(line string) string {
	if m := regexp.MustCompile(`\bphase=(\S+)`).FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return line
}

// TestEveryCommandHasAGolden: every command that runs has its object pinned by a golden file (and so a
// section of docs/output.md): its own, or, for the phase commands of init and kubeadm's spelling "certs
// renew", the object of the command they share it with.
func TestEveryCommandHasAGolden(t *testing.T) {
	cases := map[string]bool{}
	for _, tc := range outputCases() {
		cases[tc.name] = true
	}
	shares := func(name string) string {
		switch {
		case name == "init-phase-upload-certs":
			return name
		case strings.HasPrefix(name, "init-phase-"):
			return "init"
		case name == "certs-renew":
			return "renew-certs"
		}
		return name
	}
	e, _, _ := testEnv(pkitest.Now)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			if sub.Annotations[groupAnnotation] == "" {
				name := strings.ReplaceAll(strings.TrimPrefix(sub.CommandPath(), "k8scrypto "), " ", "-")
				if !cases[shares(name)] {
					t.Errorf("%s has no golden object (testdata/output/%s.json)", sub.CommandPath(), shares(name))
				}
			}
			walk(sub)
		}
	}
	walk(newRootCommand(e, &globals{}))
}
