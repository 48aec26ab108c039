package phases

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// secretOf is a recognisable secret of n bytes; tests check it never appears in messages.
func secretOf(n int) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("S", n)))
}

// encConfig is one secrets entry whose first provider (typ) holds keys, then identity.
func encConfig(typ string, keys ...apiserverv1.Key) *encryption.Config {
	p := apiserverv1.ProviderConfiguration{}
	switch typ {
	case encryption.AESCBC:
		p.AESCBC = &apiserverv1.AESConfiguration{Keys: keys}
	case encryption.AESGCM:
		p.AESGCM = &apiserverv1.AESConfiguration{Keys: keys}
	default:
		p.Secretbox = &apiserverv1.SecretboxConfiguration{Keys: keys}
	}
	return &encryption.Config{Resources: []apiserverv1.ResourceConfiguration{{
		Resources: []string{"secrets"},
		Providers: []apiserverv1.ProviderConfiguration{p, {Identity: &apiserverv1.IdentityConfiguration{}}},
	}}}
}

// TestKeySizePolicy: a 16- or 24-byte aescbc/aesgcm key (which the apiserver accepts) is refused for
// adoption with a message naming the provider, the key and the fix, without the secret; 32-byte keys and
// secretbox pass; status reports it as a warning instead. A short key in a later (read-only) provider
// cannot be rotated out: the fix says so.
func TestKeySizePolicy(t *testing.T) {
	for _, typ := range []string{encryption.AESCBC, encryption.AESGCM} {
		for _, size := range []int{16, 24} {
			cfg := encConfig(typ, apiserverv1.Key{Name: "short", Secret: secretOf(size)})
			err := checkKeySizes(cfg)
			if err == nil {
				t.Fatalf("%s key of %d bytes accepted", typ, size)
			}
			for _, w := range []string{typ, `"short"`, "32", "AES-256", `"k8scrypto encryption rotate prepare" adds a 32-byte key`, `"rotate prune --yes"`} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s/%d: error %q does not mention %q", typ, size, err, w)
				}
			}
			if strings.Contains(err.Error(), secretOf(size)) {
				t.Errorf("error quotes the secret: %v", err)
			}
			if st := describeEncryption(cfg); len(st.Warnings) != 1 || st.Warnings[0] != err.Error() {
				t.Errorf("status warnings = %q, want the policy's message", st.Warnings)
			}
		}
		if err := checkKeySizes(encConfig(typ, apiserverv1.Key{Name: "ok", Secret: secretOf(32)})); err != nil {
			t.Errorf("32-byte %s key refused: %v", typ, err)
		}
	}
	sb := encConfig(encryption.Secretbox, apiserverv1.Key{Name: "ok", Secret: secretOf(32)})
	if err := checkKeySizes(sb); err != nil || len(describeEncryption(sb).Warnings) != 0 {
		t.Errorf("secretbox: %v", err)
	}
	mixed := encConfig(encryption.Secretbox, apiserverv1.Key{Name: "ok", Secret: secretOf(32)})
	mixed.Resources[0].Providers[1] = apiserverv1.ProviderConfiguration{AESCBC: &apiserverv1.AESConfiguration{Keys: []apiserverv1.Key{{Name: "old", Secret: secretOf(16)}}}}
	if err := checkKeySizes(mixed); err == nil || !strings.Contains(err.Error(), "providers[1]") ||
		!strings.Contains(err.Error(), `remove it by hand once "k8scrypto encryption status --etcd-endpoints ..." shows no stored value uses it`) {
		t.Errorf("short key in a later provider: %v", err)
	}
}

// TestWriteKeyRefusalNamesTheFix: promote and prune refused for a short write key (pki's WriteKeyError)
// get the fix of their step.
func TestWriteKeyRefusalNamesTheFix(t *testing.T) {
	prepared := encConfig(encryption.AESGCM,
		apiserverv1.Key{Name: "key-20250101T000000Z-aaaaaaaa", Secret: secretOf(32)},
		apiserverv1.Key{Name: "key-20260101T000000Z-bbbbbbbb", Secret: secretOf(16)})
	_, _, err := encryption.Promote(prepared)
	we := new(encryption.WriteKeyError)
	if !errors.As(err, &we) {
		t.Fatalf("promote: %v", err)
	}
	if msg := writeKeyError(we).Error(); !strings.HasPrefix(msg, "promote refused") || !strings.HasSuffix(msg, `: remove that key from the file (nothing is written with it yet), then run "k8scrypto encryption rotate prepare", which adds a 32-byte key`) {
		t.Errorf("promote: %s", msg)
	}
	promoted := encConfig(encryption.AESGCM,
		apiserverv1.Key{Name: "key-20260101T000000Z-bbbbbbbb", Secret: secretOf(16)},
		apiserverv1.Key{Name: "key-20250101T000000Z-aaaaaaaa", Secret: secretOf(32)})
	if _, _, err = encryption.Prune(promoted); !errors.As(err, &we) {
		t.Fatalf("prune: %v", err)
	}
	if msg := writeKeyError(we).Error(); !strings.HasPrefix(msg, "prune refused") || !strings.Contains(msg, "add a 32-byte key second by hand") {
		t.Errorf("prune: %s", msg)
	}
}

// TestDuplicateKeyNameNamesTheRename: two keys of one name are a status warning that names the rename.
func TestDuplicateKeyNameNamesTheRename(t *testing.T) {
	cfg := encConfig(encryption.Secretbox, apiserverv1.Key{Name: "one", Secret: secretOf(32)}, apiserverv1.Key{Name: "one", Secret: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("T", 32)))})
	w := describeEncryption(cfg).Warnings
	if len(w) != 1 || !strings.Contains(w[0], `two keys named "one"`) || !strings.HasSuffix(w[0], `; rename one with "k8scrypto encryption rotate prepare" and drop the duplicate`) {
		t.Errorf("warnings %q", w)
	}
}

// TestPlaintextAndKMSNext: a config that writes plaintext names the repair (prepare, then promote); one whose
// entries all encrypt with a KMS plugin says that is fine.
func TestPlaintextAndKMSNext(t *testing.T) {
	identity := apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}}
	plain := &encryption.Config{Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}, Providers: []apiserverv1.ProviderConfiguration{identity}}}}
	if st := describeEncryption(plain); st.Stage != encryption.StagePlaintext || !strings.Contains(st.Next, `"k8scrypto encryption rotate prepare"`) || !strings.Contains(st.Next, `"k8scrypto encryption rotate promote`) {
		t.Errorf("identity first: stage %s, next %q; want plaintext, naming prepare and promote", st.Stage, st.Next)
	}
	kms := &encryption.Config{Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}, Providers: []apiserverv1.ProviderConfiguration{
		{KMS: &apiserverv1.KMSConfiguration{APIVersion: "v2", Name: "vault", Endpoint: "unix:///run/kms.sock"}}, identity}}}}
	if st := describeEncryption(kms); st.Stage != encryption.StageNone || !strings.Contains(st.Next, "KMS plugin, which is fine") {
		t.Errorf("KMS first: stage %s, next %q", st.Stage, st.Next)
	}
}
