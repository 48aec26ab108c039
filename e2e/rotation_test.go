package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Test 4: live key rotation on a running apiserver with --encryption-provider-config-automatic-reload:
// prepare → promote → reencrypt → prune, Secrets written at every stage, each stage waited on until the
// apiserver has loaded the file (its encryption-config controller polls once a minute). At the end every
// Secret reads back, etcd holds every Secret under the new key (read raw), and `encryption status` counts
// them all under the new key.
func TestEncryptionKeyRotationLive(t *testing.T) {
	t.Parallel() // own control plane; mostly waits for the apiserver's reload poll
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	kubeconfig := cp.adminKubeconfig(t)
	ns := createNamespace(ctx, t, admin, "e2e-rotate-")
	written := map[string]string{} // Secret name -> plaintext
	write := func(stage string) {
		t.Helper()
		for i := range 5 {
			name := fmt.Sprintf("%s-%d", stage, i)
			val := "plaintext-" + ns + "-" + name
			if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				StringData: map[string]string{"v": val},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("writing Secret %s at stage %s: %v", name, stage, err)
			}
			written[name] = val
		}
	}
	rotate := func(args ...string) encryptionState {
		t.Helper()
		if _, _, err := cp.run(t, append(append([]string{"encryption", "rotate"}, args...), "--cert-dir", cp.CertDir)...); err != nil {
			t.Fatalf("encryption rotate %s: %v (issue 3's encryption rotate command)", strings.Join(args, " "), err)
		}
		st := readEncryptionConfig(t, cp)
		waitEncryptionConfigLoaded(ctx, t, cp, admin, st)
		return st
	}

	st0 := readEncryptionConfig(t, cp)
	k0 := st0.Keys[0]
	write("initial")

	st := rotate("prepare")
	if len(st.Keys) != 2 || st.Keys[0] != k0 {
		t.Fatalf("after prepare the keys are %v, want [%s <new>]", st.Keys, k0)
	}
	k1 := st.Keys[1]
	write("prepared")
	expectStoredUnder(ctx, t, cp, ns, "prepared-0", st.Prefix(k0)) // the old key still writes

	// promote asks the apiserver which file it runs (waited for above) before moving the key first.
	st = rotate("promote", "--kubeconfig", kubeconfig)
	if !slices.Equal(st.Keys, []string{k1, k0}) {
		t.Fatalf("after promote the keys are %v, want [%s %s]", st.Keys, k1, k0)
	}
	write("promoted")
	expectStoredUnder(ctx, t, cp, ns, "promoted-0", st.Prefix(k1))
	expectStoredUnder(ctx, t, cp, ns, "initial-0", st.Prefix(k0)) // not rewritten yet

	if _, _, err := cp.run(t, "encryption", "reencrypt", "--kubeconfig", kubeconfig, "--cert-dir", cp.CertDir); err != nil {
		t.Fatalf("encryption reencrypt: %v", err)
	}
	if byPrefix := rawSecretPrefixes(ctx, t, cp); byPrefix[st.Prefix(k1)] != sum(byPrefix) {
		t.Fatalf("after reencrypt etcd holds Secrets by prefix %v; want all under %s", byPrefix, st.Prefix(k1))
	}
	write("reencrypted")

	pre := readFile(t, cp.EncryptionConfig())
	if _, _, err := cp.run(t, "encryption", "rotate", "prune", "--cert-dir", cp.CertDir); err == nil {
		t.Errorf("encryption rotate prune without --yes succeeded; it must refuse")
	}
	if !bytes.Equal(pre, readFile(t, cp.EncryptionConfig())) {
		t.Fatalf("a refused prune changed %s", cp.EncryptionConfig())
	}
	st = rotate(append([]string{"prune", "--yes", "--kubeconfig", kubeconfig}, cp.etcdArgs()...)...)
	if !slices.Equal(st.Keys, []string{k1}) {
		t.Fatalf("after prune the keys are %v, want [%s]", st.Keys, k1)
	}
	write("pruned")

	// Every Secret reads back through the apiserver (a GET without resourceVersion reads etcd, so each is
	// decrypted with the keys the apiserver now has: k1 alone).
	for name, val := range written {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Secret %s after prune: %v", name, err)
			continue
		}
		if string(s.Data["v"]) != val {
			t.Errorf("Secret %s reads %q, want %q", name, s.Data["v"], val)
		}
	}
	raw := rawSecretPrefixes(ctx, t, cp)
	if raw[st.Prefix(k1)] != sum(raw) || sum(raw) < len(written) {
		t.Fatalf("etcd holds Secrets by prefix %v; want all %d+ under %s", raw, len(written), st.Prefix(k1))
	}

	// encryption status, reading etcd, agrees with the raw count.
	out, _, err := cp.run(t, append([]string{"encryption", "status", "--cert-dir", cp.CertDir, "--kubeconfig", kubeconfig, "-o", "json"}, cp.etcdArgs()...)...)
	if err != nil {
		t.Fatalf("encryption status: %v", err)
	}
	counts, err := secretCounts([]byte(out))
	if err != nil {
		t.Fatalf("encryption status -o json: %v\n%s", err, out)
	}
	if want := st.Provider + ":" + k1; counts[want] != sum(raw) || len(counts) != 1 {
		t.Errorf("encryption status counts Secrets %v, want all %d under %s", counts, sum(raw), want)
	}
	// and, reading the apiserver's /metrics, says it runs the pruned file (its hash, as the apiserver
	// computes it, is the one waitEncryptionConfigLoaded saw).
	var view struct {
		APIServer struct {
			ConfigHash   string `json:"configHash"`
			RunsThisFile bool   `json:"runsThisFile"`
		} `json:"apiserver"`
	}
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatal(err)
	}
	if !view.APIServer.RunsThisFile || view.APIServer.ConfigHash != st.Hash {
		t.Errorf("encryption status --kubeconfig: apiserver %+v, want it running %s", view.APIServer, st.Hash)
	}
}

// expectStoredUnder checks the raw etcd value of a Secret starts with prefix.
func expectStoredUnder(ctx context.Context, t testing.TB, cp *controlPlane, ns, name, prefix string) {
	t.Helper()
	v := rawValue(ctx, t, cp, "/registry/secrets/"+ns+"/"+name)
	if !bytes.HasPrefix(v, []byte(prefix)) {
		t.Errorf("Secret %s/%s is stored as %q..., want prefix %s", ns, name, v[:min(len(v), 50)], prefix)
	}
}

// rawSecretPrefixes counts every Secret in etcd by its k8s:enc:<provider>:v1:<key>: prefix ("plaintext"
// for unencrypted values), straight from etcd.
func rawSecretPrefixes(ctx context.Context, t testing.TB, cp *controlPlane) map[string]int {
	t.Helper()
	resp, err := cp.healthcheckEtcd(t).Get(ctx, "/registry/secrets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("listing Secrets in etcd: %v", err)
	}
	out := map[string]int{}
	for _, kv := range resp.Kvs {
		out[valuePrefix(kv.Value)]++
	}
	return out
}

// valuePrefix is k8s:enc:<provider>:v1:<key>: of an encrypted value, "plaintext" otherwise.
func valuePrefix(v []byte) string {
	if !bytes.HasPrefix(v, []byte("k8s:enc:")) {
		return "plaintext"
	}
	parts := bytes.SplitN(v, []byte(":"), 6)
	if len(parts) < 6 {
		return "malformed"
	}
	return string(bytes.Join(parts[:5], []byte(":"))) + ":"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// secretCounts finds, in `encryption status -o json`, the etcd count for the secrets resource (an object
// with "resource": "secrets" and "byLabel") and returns its byLabel map.
func secretCounts(out []byte) (map[string]int, error) {
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, err
	}
	var found map[string]int
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["resource"] == "secrets" {
				if bl, ok := v["byLabel"].(map[string]any); ok && found == nil {
					found = map[string]int{}
					for k, n := range bl {
						if f, ok := n.(float64); ok && f != 0 {
							found[k] = int(f)
						}
					}
					return
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	if found == nil {
		return nil, fmt.Errorf("no etcd count for secrets (an object with resource=secrets and byLabel)")
	}
	return found, nil
}

// adminKubeconfig writes a kubeconfig for a system:masters certificate signed by the cluster CA, for
// commands that take --kubeconfig, independent of the kubeconfig phase (test 2 covers that).
func (cp *controlPlane) adminKubeconfig(t testing.TB) string {
	t.Helper()
	certPEM, keyPEM := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "e2e-admin", []string{"system:masters"}, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: readFile(t, cp.cert("ca.crt"))}
	cfg.AuthInfos["e2e-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e-admin"}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "e2e-admin.conf")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
