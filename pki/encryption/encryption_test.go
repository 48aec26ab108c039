package encryption

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var secretsGR = schema.GroupResource{Resource: "secrets"}

// loadTransformer writes data to a file and loads it with the apiserver's own loader.
func loadTransformer(t *testing.T, data []byte) value.Transformer {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	loaded, err := encryptionconfig.LoadEncryptionConfig(ctx, path, false, "k8scrypto-test")
	if err != nil {
		t.Fatalf("apiserver loader rejected the file: %v\n%s", err, data)
	}
	tr, ok := loaded.Transformers[secretsGR]
	if !ok {
		t.Fatalf("no transformer for secrets in %v", loaded.Transformers)
	}
	return tr
}

func dataCtx(name string) value.Context {
	return value.DefaultContext("/registry/secrets/default/" + name)
}

func encrypt(t *testing.T, tr value.Transformer, name, plain string) []byte {
	t.Helper()
	out, err := tr.TransformToStorage(context.Background(), []byte(plain), dataCtx(name))
	if err != nil {
		t.Fatalf("encrypting %s: %v", name, err)
	}
	return out
}

// decrypt returns the plaintext and whether the apiserver considers the value stale (would rewrite it).
func decrypt(t *testing.T, tr value.Transformer, name string, stored []byte) (string, bool, error) {
	t.Helper()
	out, stale, err := tr.TransformFromStorage(context.Background(), stored, dataCtx(name))
	return string(out), stale, err
}

func mustMarshal(t *testing.T, cfg *apiserverv1.EncryptionConfiguration) []byte {
	t.Helper()
	data, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func firstKeys(cfg *apiserverv1.EncryptionConfiguration) []apiserverv1.Key {
	return KeysOf(cfg.Resources[0].Providers[0])
}

func TestBuildLoadsWithApiserverLoaderAndRoundTrips(t *testing.T) {
	for _, provider := range []string{Secretbox, AESCBC, AESGCM} {
		t.Run(provider, func(t *testing.T) {
			cfg, err := Build(Options{Provider: provider}, pkitest.Now, pkitest.Rand(1))
			if err != nil {
				t.Fatal(err)
			}
			keys := firstKeys(cfg)
			if len(keys) != 1 {
				t.Fatalf("want one key, got %d", len(keys))
			}
			raw, err := base64.StdEncoding.DecodeString(keys[0].Secret)
			if err != nil || len(raw) != KeySize {
				t.Fatalf("key is not %d bytes of standard base64: len %d, err %v", KeySize, len(raw), err)
			}
			data := mustMarshal(t, cfg)
			if bytes.Contains(data, []byte("identity")) {
				t.Errorf("identity must be left out without AllowPlaintextReads:\n%s", data)
			}
			tr := loadTransformer(t, data)
			stored := encrypt(t, tr, "s1", "top secret")
			wantPrefix := "k8s:enc:" + provider + ":v1:" + keys[0].Name + ":"
			if !bytes.HasPrefix(stored, []byte(wantPrefix)) {
				t.Fatalf("stored value starts %q, want prefix %q", stored[:min(len(stored), 60)], wantPrefix)
			}
			if bytes.Contains(stored, []byte("top secret")) {
				t.Fatal("stored value contains the plaintext")
			}
			if got, stale, err := decrypt(t, tr, "s1", stored); err != nil || got != "top secret" || stale {
				t.Fatalf("decrypt = %q, stale %v, err %v", got, stale, err)
			}
			if got := Classify(stored); got != provider+":"+keys[0].Name {
				t.Errorf("Classify = %q", got)
			}
			back, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustMarshal(t, back), data) {
				t.Errorf("Parse(Marshal(cfg)) does not marshal back to the same bytes")
			}
		})
	}
}

func TestBuildIsDeterministicWithInjectedRand(t *testing.T) {
	a, _ := Build(Options{}, pkitest.Now, pkitest.Rand(7))
	b, _ := Build(Options{}, pkitest.Now, pkitest.Rand(7))
	c, _ := Build(Options{}, pkitest.Now, pkitest.Rand(8))
	if !bytes.Equal(mustMarshal(t, a), mustMarshal(t, b)) {
		t.Error("same seed gave different files")
	}
	if firstKeys(a)[0].Secret == firstKeys(c)[0].Secret {
		t.Error("different seeds gave the same key")
	}
	if got := a.Resources[0].Providers[0]; got.Secretbox == nil {
		t.Errorf("default provider is %q, want secretbox", ProviderType(got))
	}
}

func TestBuildOptions(t *testing.T) {
	t.Run("plaintext reads keep identity last", func(t *testing.T) {
		cfg, err := Build(Options{AllowPlaintextReads: true}, pkitest.Now, pkitest.Rand(1))
		if err != nil {
			t.Fatal(err)
		}
		ps := cfg.Resources[0].Providers
		if len(ps) != 2 || ps[1].Identity == nil || ps[0].Secretbox == nil {
			t.Fatalf("providers = %+v, want secretbox then identity", ps)
		}
		tr := loadTransformer(t, mustMarshal(t, cfg))
		// A value written before encryption was turned on is still readable, and stale (reencrypt rewrites it).
		got, stale, err := decrypt(t, tr, "old", []byte("k8s\x00plain"))
		if err != nil || got != "k8s\x00plain" || !stale {
			t.Fatalf("plaintext read = %q, stale %v, err %v", got, stale, err)
		}
	})
	t.Run("without plaintext reads a plaintext value is unreadable", func(t *testing.T) {
		cfg, _ := Build(Options{}, pkitest.Now, pkitest.Rand(1))
		tr := loadTransformer(t, mustMarshal(t, cfg))
		if _, _, err := decrypt(t, tr, "old", []byte("k8s\x00plain")); err == nil {
			t.Fatal("plaintext value was readable without identity")
		}
	})
	t.Run("extra resources", func(t *testing.T) {
		cfg, err := Build(Options{Resources: []string{"configmaps", "secrets", "configmaps", "*.apps"}}, pkitest.Now, pkitest.Rand(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(cfg.Resources[0].Resources, ","); got != "secrets,configmaps,*.apps" {
			t.Errorf("resources = %s", got)
		}
	})
	t.Run("a wildcard covering secrets replaces it", func(t *testing.T) {
		cfg, err := Build(Options{Resources: []string{"*.*"}}, pkitest.Now, pkitest.Rand(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(cfg.Resources[0].Resources, ","); got != "*.*" {
			t.Errorf("resources = %s, want *.* alone (the apiserver rejects overlaps)", got)
		}
	})
	t.Run("kms v2", func(t *testing.T) {
		cfg, err := Build(Options{Provider: KMS, KMSName: "vault", KMSEndpoint: "unix:///run/kms.sock"}, pkitest.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		kms := cfg.Resources[0].Providers[0].KMS
		if kms == nil || kms.APIVersion != "v2" || kms.Name != "vault" || kms.CacheSize != nil {
			t.Fatalf("kms = %+v", kms)
		}
		data := mustMarshal(t, cfg)
		if _, err := Parse(data); err != nil {
			t.Fatal(err)
		}
		if st := Describe(cfg); st.Stage != StageNone {
			t.Errorf("kms stage = %s, want none", st.Stage)
		}
	})
	for name, o := range map[string]Options{
		"unknown provider":       {Provider: "rot13"},
		"kms without endpoint":   {Provider: KMS, KMSName: "x"},
		"kms over tcp":           {Provider: KMS, KMSName: "x", KMSEndpoint: "tcp://1.2.3.4:80"},
		"kms name with colon":    {Provider: KMS, KMSName: "a:b", KMSEndpoint: "unix:///k.sock"},
		"kms flags on secretbox": {Provider: Secretbox, KMSName: "x"},
		"capital resource":       {Resources: []string{"ConfigMaps"}},
		"bare star":              {Resources: []string{"*"}},
		"events.k8s.io":          {Resources: []string{"*.events.k8s.io"}},
		"extensions":             {Resources: []string{"deployments.extensions"}},
		"overlap":                {Resources: []string{"configmaps", "*."}},
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			if _, err := Build(o, pkitest.Now, pkitest.Rand(1)); err == nil {
				t.Fatalf("Build(%+v) succeeded", o)
			}
		})
	}
}

const goodKey = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==" // 30 bytes: wrong for every provider

var key32 = base64.StdEncoding.EncodeToString(make([]byte, 32))

func TestParseRejectsBrokenFilesWithoutLeakingKeys(t *testing.T) {
	secret := "U0VDUkVUU0VDUkVUU0VDUkVUU0VDUkVUU0VDUkVUMTI="
	head := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
	for name, doc := range map[string]string{
		"empty":            "",
		"not yaml":         "{{{",
		"wrong kind":       "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n",
		"no resources":     head + "resources: []\n",
		"unknown field":    head + "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: " + secret + "\n        secrte: x\n",
		"bad base64":       head + "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: '" + secret + "!!'\n",
		"short key":        head + "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: " + goodKey + "\n",
		"two providers":    head + "resources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: " + secret + "\n    identity: {}\n",
		"no keys":          head + "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys: []\n",
		"unnamed key":      head + "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - secret: " + secret + "\n",
		"duplicate field":  head + "resources:\n- resources: [secrets]\n  resources: [configmaps]\n  providers:\n  - identity: {}\n",
		"secret as number": head + "resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: [" + secret + "]\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatal("Parse accepted a broken file")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:16]) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
	t.Run("old kind is read as the apiserver reads it and written in the current form", func(t *testing.T) {
		cfg, err := Parse([]byte("apiVersion: v1\nkind: EncryptionConfig\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: " + secret + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if out := string(mustMarshal(t, cfg)); !strings.Contains(out, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n") {
			t.Fatalf("rewritten as:\n%s", out)
		}
	})
}

func TestParseKeepsTheFileWithoutDefaults(t *testing.T) {
	doc := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - kms:\n      apiVersion: v2\n      name: vault\n      endpoint: unix:///kms.sock\n"
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resources[0].Providers[0].KMS.Timeout != nil {
		t.Error("Parse applied the timeout default: writing the file back would add fields the operator never set")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Load(filepath.Join(dir, "missing.yaml")); !IsNotExist(err) {
		t.Errorf("missing file: err = %v, want not-exist", err)
	}
	if _, _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kind: Nope\n"), 0o600)
	if _, _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("bad file: err = %v", err)
	}
}

var keyNameRE = regexp.MustCompile(`^key-\d{8}T\d{6}Z-[0-9a-f]{8}$`)

func TestKeyNames(t *testing.T) {
	cfg, _ := Build(Options{}, pkitest.Now, pkitest.Rand(1))
	name := firstKeys(cfg)[0].Name
	if !keyNameRE.MatchString(name) || !strings.HasPrefix(name, "key-20260102T030405Z-") {
		t.Fatalf("name %q is not key-<UTC time>-<hex> at %s", name, pkitest.Now)
	}
	// The clock went back an hour: the new name still sorts after the old one.
	next, _, err := Prepare(cfg, pkitest.Now.Add(-time.Hour), pkitest.Rand(2))
	if err != nil {
		t.Fatal(err)
	}
	added := firstKeys(next)[1].Name
	if !strings.HasPrefix(added, "key-20260102T030406Z-") {
		t.Errorf("with the clock behind, new name = %s, want one second after the newest", added)
	}
	if newestKey(firstKeys(next)) != 1 {
		t.Error("the key added by prepare is not the newest")
	}
	// A random source that always returns the same bytes still never reuses a name.
	zero := bytes.NewReader(make([]byte, 1<<12))
	a, _ := Build(Options{}, pkitest.Now, zero)
	b, _, err := Prepare(a, pkitest.Now, zero)
	if err != nil {
		t.Fatal(err)
	}
	if ks := firstKeys(b); ks[0].Name == ks[1].Name {
		t.Errorf("name reused: %s", ks[0].Name)
	}
	if _, err := NewKey(nil, pkitest.Now, bytes.NewReader(nil)); err == nil {
		t.Error("an exhausted random source gave a key")
	}
}

func TestFingerprint(t *testing.T) {
	// sha256 of 32 zero bytes is 66687aad f862bd77 ...
	if got := Fingerprint(key32); got != "66687aadf862bd77" {
		t.Errorf("Fingerprint = %s", got)
	}
	if Fingerprint("!!") != "" {
		t.Error("fingerprint of non-base64")
	}
}

func TestSafeErrorsNeverPrintSecrets(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	cfg := &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{
		Resources: []string{"secrets"},
		Providers: []apiserverv1.ProviderConfiguration{{
			Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: "k", Secret: secret}}},
			AESCBC:    &apiserverv1.AESConfiguration{Keys: []apiserverv1.Key{{Name: "k", Secret: secret}}},
		}},
	}}}
	err := Validate(cfg)
	if err == nil {
		t.Fatal("two provider types in one element accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("validation error quotes the key: %v", err)
	}
	if !strings.Contains(err.Error(), "providers[0]") {
		t.Errorf("error does not name the field: %v", err)
	}
}

func TestErrorsIsStageError(t *testing.T) {
	cfg, _ := Build(Options{}, pkitest.Now, pkitest.Rand(1))
	_, _, err := Promote(cfg)
	var se *StageError
	if !errors.As(err, &se) || se.Op != "promote" || se.Status.Stage != StageSteady {
		t.Fatalf("err = %#v", err)
	}
}
