package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestBadValueFromEachSource: the same bad value, given as a flag, a K8SCRYPTO_* variable, a --settings key
// or the kubeadm configuration's field, is a usage error (exit 2) with the same message, naming the field,
// and nothing is written (issue 15). The field-by-field table of what is refused is phases'
// TestValuesValidatedTheSameFromEverySource; this one runs the four sources through the command line.
func TestBadValueFromEachSource(t *testing.T) {
	sans := make([]string, pki.MaxSANs+1)
	for i := range sans {
		sans[i] = fmt.Sprintf("n%d.example.com", i)
	}
	for _, tc := range []struct {
		name, flag, value string
		// kind and path place the value in the kubeadm configuration; "" when no field holds it.
		kind, path string
		fileValue  any
		want       string
	}{
		{"advertise address", "advertise-address", "0.0.0.0", "InitConfiguration", "localAPIEndpoint.advertiseAddress", "0.0.0.0",
			`localAPIEndpoint.advertiseAddress (--advertise-address): invalid value "0.0.0.0": the unspecified address`},
		{"node name", "node-name", "cp-1\t", "InitConfiguration", "nodeRegistration.name", "cp-1\t",
			`nodeRegistration.name (--node-name): invalid value "cp-1\t": control character U+0009`},
		{"cert SAN", "apiserver-cert-extra-sans", "255.255.255.255", "ClusterConfiguration", "apiServer.certSANs", []string{"255.255.255.255"},
			`apiServer.certSANs (--apiserver-cert-extra-sans): invalid value "255.255.255.255": the broadcast address`},
		{"too many cert SANs", "apiserver-cert-extra-sans", strings.Join(sans, ","), "ClusterConfiguration", "apiServer.certSANs", sans,
			fmt.Sprintf("apiServer.certSANs (--apiserver-cert-extra-sans): %d entries, more than the %d allowed", pki.MaxSANs+1, pki.MaxSANs)},
		{"pki dir", "cert-dir", "PKI\nDIR", "ClusterConfiguration", "certificatesDir", "PKI\nDIR",
			`certificatesDir (--cert-dir): invalid value`},
		{"algorithm", "encryption-algorithm", "DSA-1024", "ClusterConfiguration", "encryptionAlgorithm", "DSA-1024",
			`encryptionAlgorithm (--encryption-algorithm): unknown encryption algorithm "DSA-1024"`},
		{"duration", "lock-timeout", "soon", "", "", nil,
			`--lock-timeout (K8SCRYPTO_LOCK_TIMEOUT, settings key "lock-timeout"): invalid value "soon": time: invalid duration "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			value := strings.ReplaceAll(tc.value, "PKI", filepath.Join(dir, "pki"))
			fileValue := tc.fileValue
			if s, ok := fileValue.(string); ok {
				fileValue = strings.ReplaceAll(s, "PKI", filepath.Join(dir, "pki"))
			}
			base := map[string]string{"cert-dir": filepath.Join(dir, "pki"), "kubeconfig-dir": filepath.Join(dir, "kube"), "audit-log": filepath.Join(dir, "audit.log"),
				"node-name": "cp-1", "advertise-address": "10.0.0.5"}
			args := func(except string) []string {
				out := []string{"init"}
				for _, k := range []string{"cert-dir", "kubeconfig-dir", "audit-log", "node-name", "advertise-address"} {
					if k != except {
						out = append(out, "--"+k, base[k])
					}
				}
				return out
			}
			type source struct {
				name string
				args []string
				env  string
			}
			settings := filepath.Join(dir, "settings.yaml")
			quoted, _ := json.Marshal(value) // a YAML double-quoted scalar, control characters escaped
			if err := os.WriteFile(settings, []byte(tc.flag+": "+string(quoted)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			sources := []source{
				{"flag", append(args(tc.flag), "--"+tc.flag, value), ""},
				{"variable", args(tc.flag), value},
				{"settings", append(args(tc.flag), "--settings", settings), ""},
			}
			if tc.kind != "" {
				doc := map[string]any{"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": tc.kind}
				m := doc
				parts := strings.Split(tc.path, ".")
				for _, p := range parts[:len(parts)-1] {
					m[p] = map[string]any{}
					m = m[p].(map[string]any)
				}
				m[parts[len(parts)-1]] = fileValue
				data, _ := json.Marshal(doc)
				cfg := filepath.Join(dir, "kubeadm.yaml")
				if err := os.WriteFile(cfg, data, 0o600); err != nil {
					t.Fatal(err)
				}
				sources = append(sources, source{"kubeadm config", append(args(tc.flag), "--config", cfg), ""})
			}
			var msgs []string
			for _, src := range sources {
				if src.env != "" {
					t.Setenv(envName(tc.flag), src.env)
				} else {
					os.Unsetenv(envName(tc.flag))
				}
				var stdout, stderr bytes.Buffer
				code := run(src.args, &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: pkitest.Keys(), rand: pkitest.Rand(1), hostname: func() (string, error) { return "cp-1", nil }})
				msg := strings.TrimSpace(stderr.String()[max(strings.LastIndex(stderr.String(), "error: "), 0):])
				if code != 2 || !strings.Contains(msg, tc.want) {
					t.Errorf("%s: exit %d, %q; want 2 and %q", src.name, code, msg, tc.want)
				}
				msgs = append(msgs, src.name+": "+msg)
				if entries, _ := os.ReadDir(dir); len(entries) > 2 {
					t.Errorf("%s: a refused run wrote into %s: %d entries", src.name, dir, len(entries))
				}
			}
			for _, m := range msgs[1:] {
				_, a, _ := strings.Cut(msgs[0], ": ")
				_, b, _ := strings.Cut(m, ": ")
				if a != b {
					t.Errorf("different messages for the same value:\n%s\n%s", msgs[0], m)
				}
			}
		})
	}
}

// TestEtcdEndpointsBoundedFromEverySource: --etcd-endpoints is bounded like the other list inputs
// (pki.MaxListItems), with the same message and exit 2 from the flag, K8SCRYPTO_ETCD_ENDPOINTS and the
// settings file, for every command that takes it; nothing is dialled or written.
func TestEtcdEndpointsBoundedFromEverySource(t *testing.T) {
	endpoints := make([]string, pki.MaxListItems+1)
	for i := range endpoints {
		endpoints[i] = fmt.Sprintf("https://127.0.0.1:%d", 2000+i)
	}
	list := strings.Join(endpoints, ",")
	want := fmt.Sprintf("error: --etcd-endpoints: %d entries, more than the %d allowed: remove some\n", pki.MaxListItems+1, pki.MaxListItems)
	dir := t.TempDir()
	settings := filepath.Join(dir, "settings.yaml")
	quoted, _ := json.Marshal(endpoints) // a YAML flow sequence
	writeFile(t, settings, append([]byte("etcd-endpoints: "), quoted...))
	pkiDir := filepath.Join(dir, "pki")
	for _, cmd := range [][]string{
		{"encryption", "status"},
		{"encryption", "rotate", "prune", "--yes", "--kubeconfig", filepath.Join(dir, "admin.conf")},
		{"encryption", "reencrypt", "--kubeconfig", filepath.Join(dir, "admin.conf")},
	} {
		base := append(slices.Clone(cmd), "--cert-dir", pkiDir, "--audit-log", filepath.Join(dir, "audit.log"))
		for _, src := range []struct {
			name string
			args []string
			env  string
		}{
			{"flag", append(slices.Clone(base), "--etcd-endpoints", list), ""},
			{"variable", base, list},
			{"settings", append(slices.Clone(base), "--settings", settings), ""},
		} {
			if src.env != "" {
				t.Setenv("K8SCRYPTO_ETCD_ENDPOINTS", src.env)
			} else {
				os.Unsetenv("K8SCRYPTO_ETCD_ENDPOINTS")
			}
			code, stdout, stderr := execIn(t, src.args...)
			if code != 2 || stderr != want || stdout != "" {
				t.Errorf("%s from the %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(cmd[:2], " "), src.name, code, stdout, stderr, want)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a refused run wrote into %s: %d entries", dir, len(entries))
	}
}
