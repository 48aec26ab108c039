package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOutputPathsAreAbsolute: given relative --cert-dir, --kubeconfig-dir, --audit-log, --backup-dir, --config
// and --out, every path in the text and JSON output is absolute. It changes the working directory, so it never
// runs in parallel (t.Chdir restores it).
func TestOutputPathsAreAbsolute(t *testing.T) {
	for _, tc := range outputCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				n := startCase(t, tc)
				t.Chdir(n.dir)
				args := append([]string(nil), tc.args...)
				for i, a := range args {
					args[i] = strings.ReplaceAll(a, "DIR/", "")
				}
				code, stdout, stderr := n.exec(append(args, "-o", format)...)
				if code != 0 {
					t.Fatalf("-o %s: exit %d\n%s", format, code, stderr)
				}
				texts := []string{stdout, stderr}
				if format == "json" {
					var obj any
					if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
						t.Fatal(err)
					}
					texts = append(texts, jsonStrings(obj)...)
				}
				for _, s := range texts {
					for _, p := range relativePaths(s) {
						t.Errorf("-o %s: relative path %q in the output", format, p)
					}
				}
			}
		})
	}
}

// jsonStrings is every string value of a decoded JSON document.
func jsonStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, jsonStrings(x)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, x := range v {
			out = append(out, jsonStrings(x)...)
		}
		return out
	}
	return nil
}

// relativePaths are the words of s that name, relative to the working directory, a file under the paths the
// test gave relatively.
func relativePaths(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\n\"'(),;=:", r) }) {
		w = strings.TrimPrefix(w, "./")
		first, _, dir := strings.Cut(w, "/")
		switch {
		case dir && (first == "pki" || first == "kube" || first == "backups" || first == "state" || first == "node2"),
			w == "shared.bundle", w == "kubeadm.yaml", w == "bundle.key":
			out = append(out, w)
		}
	}
	return out
}
