package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var updateOutput = flag.Bool("update", false, "rewrite the golden objects under testdata/output/")

// outputCase is one command of the output contract: its golden file's name, whether it runs on an initialized
// node, and its arguments ("DIR" stands for the case's directory).
type outputCase struct {
	name   string
	inited bool
	args   []string
}

// outputCases are the commands whose -o json object is pinned by testdata/output/<name>.json and described in
// docs/output.md.
func outputCases() []outputCase {
	node := []string{"--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube", "--audit-log", "DIR/state/audit.log"}
	write := append(append([]string{}, node...), "--backup-dir", "DIR/backups")
	rot := []string{"--cert-dir", "DIR/pki", "--audit-log", "DIR/state/audit.log", "--backup-dir", "DIR/backups"}
	return []outputCase{
		{"init", false, append([]string{"init", "--config", "DIR/kubeadm.yaml"}, node...)},
		{"init-dry-run", false, append([]string{"init", "--dry-run", "--config", "DIR/kubeadm.yaml"}, node...)},
		{"renew-certs", true, append([]string{"renew", "certs", "all", "--force"}, write...)},
		{"renew-certs-dry-run", true, append([]string{"renew", "certs", "all", "--force", "--dry-run", "--on-renew", "systemctl restart kubelet"}, write...)},
		{"certs-check-expiration", true, []string{"certs", "check-expiration", "--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube"}},
		{"sa-status", true, []string{"sa", "status", "--cert-dir", "DIR/pki"}},
		{"sa-rotate-prepare", true, append([]string{"sa", "rotate", "prepare"}, rot...)},
		{"sa-rotate-prepare-dry-run", true, append([]string{"sa", "rotate", "prepare", "--dry-run"}, rot...)},
		{"encryption-status", true, []string{"encryption", "status", "--cert-dir", "DIR/pki"}},
		{"encryption-rotate-prepare", true, append([]string{"encryption", "rotate", "prepare"}, rot...)},
		{"encryption-rotate-prepare-dry-run", true, append([]string{"encryption", "rotate", "prepare", "--dry-run"}, rot...)},
		{"ca-renew", true, append([]string{"ca", "renew", "ca"}, write...)},
		{"ca-renew-dry-run", true, append([]string{"ca", "renew", "ca", "--dry-run"}, write...)},
		{"ca-rotate-prepare", true, append([]string{"ca", "rotate", "prepare", "--ca", "ca"}, write...)},
		{"ca-rotate-prepare-dry-run", true, append([]string{"ca", "rotate", "prepare", "--ca", "ca", "--dry-run"}, write...)},
		{"certs-export", true, []string{"certs", "export", "--cert-dir", "DIR/pki", "--out", "DIR/shared.bundle", "--key-file", "DIR/bundle.key"}},
		{"version", false, []string{"version"}},
	}
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
		args[i] = strings.ReplaceAll(a, "DIR", n.dir)
	}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}

// normalize makes an output independent of the test's directory and the build.
func normalize(out, dir string) string {
	out = strings.ReplaceAll(out, dir, "/TMP")
	out = strings.ReplaceAll(out, runtime.Version(), "GOVERSION")
	out = strings.ReplaceAll(out, runtime.GOOS+"/"+runtime.GOARCH, "GOOS/GOARCH")
	return out
}

func TestOutputGolden(t *testing.T) {
	for _, tc := range outputCases() {
		t.Run(tc.name, func(t *testing.T) {
			n := outputNode(t, tc.inited)
			dir := n.dir
			code, stdout, stderr := n.exec(append(tc.args, "-o", "json")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
			}
			got := normalize(stdout, dir)
			if tc.name == "renew-certs" {
				// Renewal takes its new keys from the fixture pool concurrently, so which certificate gets
				// which key varies from run to run: the new fingerprints are masked (the previous ones stay).
				got = renewedHashes.ReplaceAllString(got, `$1"$2": "HEX"`)
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
		{"init-phase-certs", false, append([]string{"init", "phase", "certs", "--config", "DIR/kubeadm.yaml"}, node...)},
		{"renew-certs-not-due", true, append([]string{"renew", "certs"}, append(node, "--backup-dir", "DIR/backups")...)},
		{"ca-renew-all-dry-run", true, append([]string{"ca", "renew", "--dry-run"}, append(node, "--backup-dir", "DIR/backups")...)},
		{"ca-rotate-prepare-etcd-ca-dry-run", true, append([]string{"ca", "rotate", "prepare", "--ca", "etcd-ca", "--dry-run"}, append(node, "--backup-dir", "DIR/backups")...)},
	}
	for _, tc := range append(outputCases(), more...) {
		t.Run(tc.name, func(t *testing.T) {
			n := outputNode(t, tc.inited)
			code, _, stderr := n.exec(append(tc.args, "-q")...)
			if code != 0 {
				t.Fatalf("-q: exit %d\n%s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("-q: stderr is not empty:\n%s", stderr)
			}
			n = outputNode(t, tc.inited)
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
				// A per-file line names a file or certificate the result already lists.
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
