package certshare

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seeded is a deterministic byte stream for salts and nonces.
type seeded struct{ r *rand.ChaCha8 }

func newSeeded(seed byte) *seeded {
	var s [32]byte
	s[0] = seed
	return &seeded{rand.NewChaCha8(s)}
}

func (s *seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func sampleFiles() Files {
	return Files{
		"ca.crt": []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"), "ca.key": []byte("ca key"),
		"sa.pub": []byte("sa pub"), "sa.key": []byte("sa key"), "etcd-ca.crt": []byte("etcd"), "etcd-ca.key": []byte("etcd key"),
		"front-proxy-ca.crt": []byte("fp"), "front-proxy-ca.key": []byte("fp key"), EntryEncryptionConfig: nil,
	}
}

var testKey = bytes.Repeat([]byte{0x42}, KeySize)

func TestSecretDataRoundTripAndWrongKey(t *testing.T) {
	files := sampleFiles()
	sealed, err := SealSecretData(files, testKey, newSeeded(1))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range sealed {
		if len(files[name]) > 0 && (len(v) != 12+len(files[name])+16 || bytes.Contains(v, files[name])) {
			t.Errorf("%s: %d sealed bytes for %d plain, or plaintext visible", name, len(v), len(files[name]))
		}
	}
	if len(sealed[EntryEncryptionConfig]) != 0 {
		t.Error("an absent file must stay an empty entry, as kubeadm uploads it")
	}
	got, err := OpenSecretData(sealed, testKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		if !bytes.Equal(got[name], v) {
			t.Errorf("%s: %q, want %q", name, got[name], v)
		}
	}
	wrong := bytes.Repeat([]byte{0x43}, KeySize)
	if _, err := OpenSecretData(sealed, wrong); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
	sealed["ca.key"][20] ^= 1
	if out, err := OpenSecretData(sealed, testKey); !errors.Is(err, ErrWrongKey) || out != nil {
		t.Errorf("one flipped bit: %v, %d entries returned", err, len(out))
	}
}

func TestParseKey(t *testing.T) {
	if k, err := ParseKey(strings.Repeat("ab", 32) + "\n"); err != nil || len(k) != 32 || k[0] != 0xab {
		t.Errorf("valid key: %x %v", k, err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("ab", 31), strings.Repeat("ab", 33), strings.Repeat("g", 64)} {
		if _, err := ParseKey(bad); err == nil || (len(bad) > 4 && strings.Contains(err.Error(), bad)) {
			t.Errorf("%q: err %v (must fail without quoting the value)", bad, err)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	files := sampleFiles()
	for name, secret := range map[string]BundleSecret{"key": {Key: testKey}, "passphrase": {Passphrase: []byte("correct horse battery staple")}} {
		data, err := SealBundle(files, secret, newSeeded(2))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("K8SCRYPTO-BUNDLE\x01")) {
			t.Errorf("%s: header %q", name, data[:17])
		}
		for _, v := range files {
			if len(v) > 0 && bytes.Contains(data, v) {
				t.Fatalf("%s: plaintext %q in the bundle", name, v)
			}
		}
		got, err := OpenBundle(data, secret)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(files) || !bytes.Equal(got["ca.key"], files["ca.key"]) || got[EntryEncryptionConfig] != nil {
			t.Errorf("%s: %v", name, got)
		}
	}
}

// TestBundleRefusals: every byte of a bundle is covered by its tag (a flipped bit anywhere fails), every
// truncation fails, and a wrong secret, a newer version, an empty file and the other kind of secret each
// get their own clear error; none returns a file.
func TestBundleRefusals(t *testing.T) {
	secret := BundleSecret{Key: testKey}
	data, err := SealBundle(sampleFiles(), secret, newSeeded(3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, bit := range []byte{1, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= bit
			if files, err := OpenBundle(bad, secret); err == nil || files != nil {
				t.Fatalf("bit %#x of byte %d flipped: opened (%v)", bit, i, err)
			}
		}
	}
	for n := range len(data) {
		if files, err := OpenBundle(data[:n], secret); err == nil || files != nil {
			t.Fatalf("truncated to %d bytes: opened", n)
		}
	}
	newer := bytes.Clone(data)
	newer[16] = BundleVersion + 1
	for _, tc := range []struct {
		name   string
		data   []byte
		secret BundleSecret
		want   string
	}{
		{"empty", nil, secret, "empty"},
		{"not a bundle", []byte("apiVersion: v1\nkind: Secret\n"), secret, "does not start with K8SCRYPTO-BUNDLE"},
		{"newer version", newer, secret, "version 2, newer than this k8scrypto reads (1)"},
		{"wrong key", data, BundleSecret{Key: bytes.Repeat([]byte{1}, KeySize)}, "does not authenticate"},
		{"passphrase for a keyed bundle", data, BundleSecret{Passphrase: []byte("x")}, "it was sealed with a raw key"},
		{"both", data, BundleSecret{Key: testKey, Passphrase: []byte("x")}, "exactly one"},
		{"short key", data, BundleSecret{Key: testKey[:16]}, "32 bytes"},
	} {
		if _, err := OpenBundle(tc.data, tc.secret); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	pp, err := SealBundle(sampleFiles(), BundleSecret{Passphrase: []byte("right")}, newSeeded(4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBundle(pp, BundleSecret{Passphrase: []byte("wrong")}); err == nil || !strings.Contains(err.Error(), "does not authenticate") {
		t.Errorf("wrong passphrase: %v", err)
	}
	if be := new(BundleError); !errors.As(err2(OpenBundle(pp, secret)), &be) || be.Problem != SealedWithPassphrase {
		t.Errorf("key for a passphrase bundle: %v", err)
	}
	// Hostile Argon2id parameters are refused before any memory is taken.
	hostile := bytes.Clone(pp)
	hostile[22], hostile[23] = 0xff, 0xff
	if _, err := OpenBundle(hostile, BundleSecret{Passphrase: []byte("right")}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("4 TiB of Argon2id memory: %v", err)
	}
}

func FuzzOpenBundle(f *testing.F) {
	secret := BundleSecret{Key: testKey}
	data, err := SealBundle(sampleFiles(), secret, newSeeded(5))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("K8SCRYPTO-BUNDLE\x01\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		files, err := OpenBundle(in, secret)
		if err == nil && !bytes.Equal(in, data) {
			// Only the sealed bytes authenticate; anything else opening is a forgery.
			t.Fatalf("a bundle other than the sealed one opened: %d entries", len(files))
		}
	})
}

// TestCollectAndCheck reads a directory's shared files and checks them as a set.
func TestCollectAndCheck(t *testing.T) {
	dir := t.TempDir()
	l := Layout{CertDir: dir}
	if _, err := Collect(l); err == nil {
		t.Fatal("an empty directory collected")
	}
	for name, path := range l.Paths() {
		if name == EntryEncryptionConfig {
			continue
		}
		os.MkdirAll(filepath.Dir(path), 0o700)
		os.WriteFile(path, []byte("junk "+name), 0o600)
	}
	files, err := Collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 9 || files[EntryEncryptionConfig] != nil || string(files["etcd-ca.key"]) != "junk etcd-ca.key" {
		t.Errorf("collected %v", files.Names())
	}
	if err := Check(files, l); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("junk passed the check: %v", err)
	}
	ext := Layout{CertDir: dir, ExternalEtcd: true}
	if _, ok := ext.Paths()["etcd-ca.crt"]; ok {
		t.Error("an external etcd's CA is not shared")
	}
}

// err2 is the error of a two-result call.
func err2[T any](_ T, err error) error { return err }
