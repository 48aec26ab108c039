package pki_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

func TestParseAlgorithm(t *testing.T) {
	for _, a := range pki.Algorithms {
		got, err := pki.ParseAlgorithm(string(a))
		if err != nil || got != a {
			t.Errorf("ParseAlgorithm(%q) = %q, %v", a, got, err)
		}
	}
	if got, err := pki.ParseAlgorithm(""); err != nil || got != pki.RSA2048 {
		t.Errorf("empty algorithm = %q, %v; want kubeadm's default RSA-2048", got, err)
	}
	for _, bad := range []string{"rsa-2048", "RSA-1024", "ECDSA-P521", "Ed25519"} {
		_, err := pki.ParseAlgorithm(bad)
		if err == nil {
			t.Errorf("ParseAlgorithm(%q) accepted", bad)
			continue
		}
		// The message names the bad value and every valid one, in kubeadm's order.
		for _, want := range []string{bad, "ECDSA-P256, ECDSA-P384, RSA-2048, RSA-3072, RSA-4096"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseAlgorithm(%q) error %q does not mention %q", bad, err, want)
			}
		}
	}
}

// TestGenerateKey checks every algorithm gives the key type and size kubeadm's GeneratePrivateKey gives.
func TestGenerateKey(t *testing.T) {
	want := map[pki.Algorithm]func(any) bool{
		pki.RSA2048:   func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 2048 },
		pki.RSA3072:   func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 3072 },
		pki.RSA4096:   func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 4096 },
		pki.ECDSAP256: func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P256() },
		pki.ECDSAP384: func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P384() },
	}
	for _, alg := range pki.Algorithms {
		if alg == pki.RSA4096 && testing.Short() {
			continue
		}
		key, err := pki.GenerateKey("x", alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !want[alg](key) {
			t.Errorf("%s: got %T", alg, key)
		}
		if got := pki.AlgorithmOf(key.Public()); got != alg {
			t.Errorf("AlgorithmOf(%s key) = %q", alg, got)
		}
	}
	if _, err := pki.GenerateKey("x", "RSA-1024"); err == nil {
		t.Error("GenerateKey accepted RSA-1024")
	}
}

// TestEncodePrivateKey checks the PEM block types kubeadm writes (PKCS#1, SEC 1) and the round trip.
func TestEncodePrivateKey(t *testing.T) {
	for alg, blockType := range map[pki.Algorithm]string{pki.RSA2048: "RSA PRIVATE KEY", pki.ECDSAP256: "EC PRIVATE KEY"} {
		key := pkitest.MustKey(alg, "ca")
		data, err := pki.EncodePrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block, rest := pem.Decode(data)
		if block == nil || block.Type != blockType || len(block.Headers) != 0 || len(rest) != 0 {
			t.Fatalf("%s: want exactly one %q block, got %v (rest %d bytes)", alg, blockType, block, len(rest))
		}
		back, err := pki.ParsePrivateKey(data)
		if err != nil {
			t.Fatal(err)
		}
		if !pki.PublicKeysEqual(key.Public(), back.Public()) {
			t.Errorf("%s: round trip changed the key", alg)
		}
	}
}

// TestParsePrivateKeyFormats checks what kubeadm's TryLoadKeyFromDisk accepts (PKCS#1, SEC 1, PKCS#8 RSA and
// ECDSA) and what it refuses (Ed25519, garbage, truncation), without echoing the input.
func TestParsePrivateKeyFormats(t *testing.T) {
	rsaKey := pkitest.MustKey(pki.RSA2048, "ca")
	ecKey := pkitest.MustKey(pki.ECDSAP256, "ca")
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for name, data := range map[string][]byte{"pkcs8-rsa": pkcs8(rsaKey), "pkcs8-ec": pkcs8(ecKey)} {
		if _, err := pki.ParsePrivateKey(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, edKey, err := ed25519.GenerateKey(pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.ParsePrivateKey(pkcs8(edKey)); err == nil || !strings.Contains(err.Error(), "ed25519") {
		t.Errorf("ed25519 key: err = %v, want a refusal naming ed25519", err)
	}
	good, _ := pki.EncodePrivateKey(rsaKey)
	for name, data := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a key at all\n"),
		"truncated": good[:len(good)/2],
		"cert-only": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		_, err := pki.ParsePrivateKey(data)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if len(data) >= 24 && strings.Contains(err.Error(), string(data[8:24])) {
			t.Errorf("%s: error quotes the input: %v", name, err)
		}
	}
}

func TestPublicKeyEncodingAndFingerprint(t *testing.T) {
	key := pkitest.MustKey(pki.ECDSAP256, "sa")
	data, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("sa.pub block = %v, want PUBLIC KEY (PKIX)", block)
	}
	// Two keys in one file (a rotation) are both read.
	other := pkitest.MustKey(pki.ECDSAP256, "ca")
	more, _ := pki.EncodePublicKey(other.Public())
	pubs, err := pki.ParsePublicKeys(append(data, more...))
	if err != nil || len(pubs) != 2 {
		t.Fatalf("ParsePublicKeys = %d keys, %v", len(pubs), err)
	}
	if !pki.PublicKeysEqual(pubs[0], key.Public()) || !pki.PublicKeysEqual(pubs[1], other.Public()) {
		t.Error("ParsePublicKeys returned other keys")
	}
	if pki.PublicKeysEqual(key.Public(), other.Public()) {
		t.Error("PublicKeysEqual says two different keys are equal")
	}
	if _, err := pki.ParsePublicKeys([]byte("garbage")); err == nil {
		t.Error("ParsePublicKeys accepted garbage")
	}
	fp1, err := pki.PublicKeyFingerprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	fp2, _ := pki.PublicKeyFingerprint(other.Public())
	if len(fp1) != 64 || fp1 == fp2 {
		t.Errorf("fingerprints %q and %q: want distinct 64-hex-digit SHA-256", fp1, fp2)
	}
}
