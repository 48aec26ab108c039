package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// keySeeds are real key files in every encoding k8scrypto reads, plus ones it must refuse.
func keySeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, alg := range pkitest.Algorithms {
		key := pkitest.MustKey(alg, "ca")
		data, err := pki.EncodePrivateKey(key)
		if err != nil {
			f.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			f.Fatal(err)
		}
		pub, err := pki.EncodePublicKey(key.Public())
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pub, data[:len(data)/2])
	}
	_, edKey, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), []byte("-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----\n"))
	return out
}

// FuzzParsePrivateKey: private key loading never panics, never quotes its input in an error (the input may
// be a key), and whatever it accepts is an RSA or ECDSA key that survives k8scrypto's own encoding.
func FuzzParsePrivateKey(f *testing.F) {
	for _, s := range keySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := pki.ParsePrivateKey(data)
		if err != nil {
			assertNotQuoted(t, err, data)
			return
		}
		switch key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey:
		default:
			t.Fatalf("accepted a %T; only RSA and ECDSA keys are valid", key)
		}
		enc, err := pki.EncodePrivateKey(key)
		if err != nil {
			t.Fatalf("accepted key cannot be written back: %v", err)
		}
		again, err := pki.ParsePrivateKey(enc)
		if err != nil || !pki.PublicKeysEqual(key.Public(), again.Public()) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParsePublicKeys: sa.pub loading never panics or quotes its input, and every key it returns can be
// fingerprinted and written back.
func FuzzParsePublicKeys(f *testing.F) {
	for _, s := range keySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := pki.ParsePublicKeys(data)
		if err != nil {
			assertNotQuoted(t, err, data)
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for _, k := range keys {
			if _, err := pki.PublicKeyFingerprint(k); err != nil {
				t.Fatalf("accepted %T cannot be fingerprinted: %v", k, err)
			}
			enc, err := pki.EncodePublicKey(k)
			if err != nil {
				t.Fatalf("accepted %T cannot be written back: %v", k, err)
			}
			again, err := pki.ParsePublicKeys(enc)
			if err != nil || len(again) != 1 || !pki.PublicKeysEqual(k, again[0]) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

// assertNotQuoted fails when an error message repeats a stretch of the input long enough to be key material.
func assertNotQuoted(t *testing.T, err error, data []byte) {
	t.Helper()
	msg := []byte(err.Error())
	const window = 24
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) >= window && bytes.HasPrefix(line, []byte("-----")) {
			continue // PEM armour names the block type, which messages may name too
		}
		for i := 0; i+window <= len(line); i += window {
			if bytes.Contains(msg, line[i:i+window]) {
				t.Fatalf("error quotes its input: %q", msg)
			}
		}
	}
}
