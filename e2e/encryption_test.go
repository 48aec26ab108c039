package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// encryptionState is what the suite reads from encryption-config.yaml itself (not through k8scrypto), to
// check k8scrypto against an independent reading.
type encryptionState struct {
	Provider string   // type of the first provider of the entry covering secrets: secretbox, aescbc, aesgcm
	Keys     []string // that provider's key names in order; Keys[0] encrypts
	Hash     string   // sha256 of the file, as the apiserver labels the config it loaded
}

// Prefix is what a value written with the key named key starts with in etcd.
func (s encryptionState) Prefix(key string) string {
	return "k8s:enc:" + s.Provider + ":v1:" + key + ":"
}

// readEncryptionConfig decodes the file with the apiserver's v1 types, strictly.
func readEncryptionConfig(t testing.TB, cp *controlPlane) encryptionState {
	t.Helper()
	data, err := os.ReadFile(cp.EncryptionConfig())
	if os.IsNotExist(err) {
		t.Fatalf("k8scrypto init wrote no %s: the encryption-config phase (issue 3) has not landed", cp.EncryptionConfig())
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("%s: %v", cp.EncryptionConfig(), err)
	}
	st := encryptionState{Hash: fmt.Sprintf("sha256:%x", sha256.Sum256(data))}
	for _, rc := range cfg.Resources {
		if !slices.Contains(rc.Resources, "secrets") && !slices.Contains(rc.Resources, "*.*") && !slices.Contains(rc.Resources, "*.") {
			continue
		}
		if len(rc.Providers) == 0 {
			t.Fatalf("%s: the entry for secrets has no provider", cp.EncryptionConfig())
		}
		p := rc.Providers[0]
		var keys []apiserverv1.Key
		switch {
		case p.Secretbox != nil:
			st.Provider, keys = "secretbox", p.Secretbox.Keys
		case p.AESCBC != nil:
			st.Provider, keys = "aescbc", p.AESCBC.Keys
		case p.AESGCM != nil:
			st.Provider, keys = "aesgcm", p.AESGCM.Keys
		default:
			t.Fatalf("%s: secrets are not encrypted with a local key first (provider %+v)", cp.EncryptionConfig(), p)
		}
		for _, k := range keys {
			st.Keys = append(st.Keys, k.Name)
		}
		return st
	}
	t.Fatalf("%s: no resources entry covers secrets", cp.EncryptionConfig())
	return st
}

// waitEncryptionConfigLoaded waits until the apiserver reports, in the metric its encryption-config
// controller keeps, that it runs with the file's current content. The controller polls the file once a
// minute, so this takes up to a minute.
func waitEncryptionConfigLoaded(ctx context.Context, t testing.TB, cp *controlPlane, cs kubernetes.Interface, want encryptionState) {
	t.Helper()
	start := time.Now()
	err := waitFor(ctx, "the apiserver to reload "+cp.EncryptionConfig(), time.Second, func() error { return errExited(cp.apiserver) }, func(ctx context.Context) error {
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "apiserver_encryption_config_controller_last_config_info{") && strings.Contains(line, `hash="`+want.Hash+`"`) {
				return nil
			}
		}
		return fmt.Errorf("not yet loaded %s", want.Hash)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver loaded the new encryption config after %v", time.Since(start).Round(time.Second))
}

// rawValue reads a stored object straight from etcd, bypassing the apiserver.
func rawValue(ctx context.Context, t testing.TB, cp *controlPlane, key string) []byte {
	t.Helper()
	resp, err := cp.healthcheckEtcd(t).Get(ctx, key)
	if err != nil {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("etcd has no %s", key)
	}
	return resp.Kvs[0].Value
}

// Test 3: a Secret written through the API is stored in etcd under k8s:enc:<provider>:v1:<key>: of the
// first key of encryption-config.yaml, and the plaintext appears nowhere in the stored value. A ConfigMap
// (not encrypted) with the same data is the control: the raw read does find plaintext where there is some.
func TestSecretEncryptedInEtcd(t *testing.T) {
	cp := sharedControlPlane(t)
	st := readEncryptionConfig(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := cp.admin(t)

	ns := createNamespace(ctx, t, admin, "e2e-enc-")
	plaintext := "e2e-plaintext-" + ns
	_, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s"},
		StringData: map[string]string{"password": plaintext},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Data:       map[string]string{"password": plaintext},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if cm := rawValue(ctx, t, cp, "/registry/configmaps/"+ns+"/c"); !bytes.Contains(cm, []byte(plaintext)) {
		t.Fatalf("control: the raw ConfigMap does not contain its plaintext; the raw read is not seeing stored values")
	}
	v := rawValue(ctx, t, cp, "/registry/secrets/"+ns+"/s")
	if want := st.Prefix(st.Keys[0]); !bytes.HasPrefix(v, []byte(want)) {
		t.Errorf("stored Secret starts %q, want %q", v[:min(len(v), 60)], want)
	}
	if bytes.Contains(v, []byte(plaintext)) {
		t.Errorf("the stored Secret contains its plaintext")
	}

	got, err := admin.CoreV1().Secrets(ns).Get(ctx, "s", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data["password"]) != plaintext {
		t.Errorf("Secret reads back %q, want %q", got.Data["password"], plaintext)
	}
}

// createNamespace makes a namespace with a generated name and returns the name.
func createNamespace(ctx context.Context, t testing.TB, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}
