package encryption

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// secretOf is a recognisable secret of n bytes; tests check it never appears in messages.
func secretOf(n int) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("S", n)))
}

func aesConfig(typ string, keys ...apiserverv1.Key) *apiserverv1.EncryptionConfiguration {
	p := providerWithKeys(typ, keys)
	return &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{
		Resources: []string{"secrets"},
		Providers: []apiserverv1.ProviderConfiguration{p, {Identity: &apiserverv1.IdentityConfiguration{}}},
	}}}
}

// TestKeySizeProblems: a 16- or 24-byte aescbc/aesgcm key (which the apiserver accepts) is a problem
// naming the entry, provider, key and size, without the secret; 32-byte keys and secretbox are not. The
// policy's wording and fix are phases' (TestKeySizePolicy there).
func TestKeySizeProblems(t *testing.T) {
	for _, typ := range []string{AESCBC, AESGCM} {
		for _, size := range []int{16, 24} {
			cfg := aesConfig(typ, apiserverv1.Key{Name: "short", Secret: secretOf(size)})
			if err := Validate(cfg); err != nil {
				t.Fatalf("%s %d bytes: the apiserver accepts it, but Validate says %v", typ, size, err)
			}
			ps := KeySizeProblems(cfg)
			if len(ps) != 1 || ps[0] != (KeySizeProblem{Entry: 0, Provider: 0, Type: typ, Name: "short", Size: size}) {
				t.Fatalf("%s key of %d bytes: problems %v", typ, size, ps)
			}
			for _, w := range []string{typ, `"short"`, "32", "AES-256"} {
				if !strings.Contains(ps[0].String(), w) {
					t.Errorf("%s/%d: %q does not mention %q", typ, size, ps[0], w)
				}
			}
			if strings.Contains(ps[0].String(), secretOf(size)) {
				t.Errorf("problem quotes the secret: %v", ps[0])
			}
		}
		if ps := KeySizeProblems(aesConfig(typ, apiserverv1.Key{Name: "ok", Secret: secretOf(32)})); len(ps) != 0 {
			t.Errorf("32-byte %s key: %v", typ, ps)
		}
	}
	if ps := KeySizeProblems(aesConfig(Secretbox, apiserverv1.Key{Name: "ok", Secret: secretOf(32)})); len(ps) != 0 {
		t.Errorf("secretbox: %v", ps)
	}
}

// TestShortKeyRotatesOut: the remedy works: prepare adds a 32-byte key next to a 16-byte write key,
// promote makes it the write key, prune removes the short one, and the result passes the policy.
func TestShortKeyRotatesOut(t *testing.T) {
	cfg := aesConfig(AESCBC, apiserverv1.Key{Name: "legacy", Secret: secretOf(16)})
	prepared, added, err := Prepare(cfg, pkitest.Now, pkitest.Rand(1))
	if err != nil {
		t.Fatalf("prepare refused the remedy: %v", err)
	}
	if len(added) != 1 {
		t.Fatalf("added %v", added)
	}
	promoted, _, err := Promote(prepared)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	pruned, _, err := Prune(promoted)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if ps := KeySizeProblems(pruned); len(ps) != 0 {
		t.Fatalf("after the rotation: %v", ps)
	}
	if keys := firstKeys(pruned); len(keys) != 1 || keys[0].Name != added[0].Key.Name {
		t.Errorf("keys after the rotation: %v", names(keys))
	}
}

// TestRotationNeverMakesAShortKeyTheWriteKey: promote refuses to move a short (hand-added) newest key
// first, and prune refuses to keep a short write key as the only key; both are a *WriteKeyError naming the
// key (phases adds the fix).
func TestRotationNeverMakesAShortKeyTheWriteKey(t *testing.T) {
	prepared := aesConfig(AESGCM,
		apiserverv1.Key{Name: "key-20250101T000000Z-aaaaaaaa", Secret: secretOf(32)},
		apiserverv1.Key{Name: "key-20260101T000000Z-bbbbbbbb", Secret: secretOf(16)})
	if st := Describe(prepared).Stage; st != StagePrepared {
		t.Fatalf("stage %s", st)
	}
	out, _, err := Promote(prepared)
	if err == nil || out != nil {
		t.Fatal("promote made a 16-byte key the write key")
	}
	if we := new(WriteKeyError); !errors.As(err, &we) || we.Op != "promote" {
		t.Errorf("promote: %v, want a *WriteKeyError", err)
	}
	for _, w := range []string{"promote refused", "aesgcm", "key-20260101T000000Z-bbbbbbbb", "16 bytes"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("promote error %q does not mention %q", err, w)
		}
	}
	promoted := aesConfig(AESGCM,
		apiserverv1.Key{Name: "key-20260101T000000Z-bbbbbbbb", Secret: secretOf(16)},
		apiserverv1.Key{Name: "key-20250101T000000Z-aaaaaaaa", Secret: secretOf(32)})
	_, _, err = Prune(promoted)
	if we := new(WriteKeyError); !errors.As(err, &we) || we.Op != "prune" || !strings.Contains(err.Error(), "prune refused") || !strings.Contains(err.Error(), "key-20260101T000000Z-bbbbbbbb") {
		t.Errorf("prune kept a 16-byte write key: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), secretOf(16)) {
		t.Errorf("error quotes the secret: %v", err)
	}
}
