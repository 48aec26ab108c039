// Package certshare holds the files every control-plane node of a cluster shares (the three CAs, the
// service-account key pair and the encryption-at-rest config) and the two sealed forms they travel in:
// kubeadm's kubeadm-certs Secret data (AES-256-GCM per entry, kubeadm's copycerts format, so that an
// unmodified "kubeadm join --control-plane --certificate-key" reads what k8scrypto uploads and the other
// way round) and k8scrypto's offline bundle (one XChaCha20-Poly1305 box, versioned, keyed by a raw key or
// an Argon2id passphrase). It reads, seals and opens; it never writes a file and never prints.
package certshare

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
)

// Entry names, as kubeadm's copycerts names them in the kubeadm-certs Secret ("etcd/ca.crt" becomes
// "etcd-ca.crt"), plus k8scrypto's own entry for the encryption config, which kubeadm decrypts with the
// others and then ignores.
const (
	EntryEncryptionConfig = "encryption-config.yaml"
)

// kubeadmEntries are the files kubeadm's copycerts transfers for a local etcd, by the path under the
// certificate directory.
var kubeadmEntries = []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub", "sa.key", "etcd/ca.crt", "etcd/ca.key"}

// EntryName is kubeadm's Secret entry name for a path under the certificate directory.
func EntryName(rel string) string { return strings.ReplaceAll(rel, "/", "-") }

// Files are the shared files by entry name; an empty value is a file that was absent (kubeadm uploads an
// empty entry for it and skips it on download).
type Files map[string][]byte

// Layout says which files a cluster shares and where each lives.
type Layout struct {
	CertDir string
	// ExternalEtcd: no etcd CA to share (kubeadm then shares the external etcd client files, which
	// k8scrypto does not manage).
	ExternalEtcd bool
}

// Paths maps every entry to its file.
func (l Layout) Paths() map[string]string {
	out := map[string]string{}
	for _, rel := range kubeadmEntries {
		if l.ExternalEtcd && strings.HasPrefix(rel, "etcd/") {
			continue
		}
		out[EntryName(rel)] = filepath.Join(l.CertDir, filepath.FromSlash(rel))
	}
	out[EntryEncryptionConfig] = filepath.Join(l.CertDir, EntryEncryptionConfig)
	return out
}

// Collect reads the shared files of a certificate directory (bounded reads of regular files). The CA,
// service-account and (when present) encryption files must exist: a join with a partial set would
// generate a CA of its own.
func Collect(l Layout) (Files, error) {
	out := Files{}
	for name, path := range l.Paths() {
		data, err := pki.ReadFile(path, pki.MaxConfigSize)
		if errors.Is(err, fs.ErrNotExist) && name == EntryEncryptionConfig {
			out[name] = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		out[name] = data
	}
	return out, nil
}

// Names lists the entries in a stable order.
func (f Files) Names() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// KeySize is the size of the certificate key (kubeadm's --certificate-key, 64 hex digits) and of a raw
// bundle key.
const KeySize = 32

// ParseKey reads a 32-byte key written as 64 hex digits, kubeadm's --certificate-key form. It never
// repeats the value in an error.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("a key must be %d hex digits (%d bytes), as \"kubeadm certs certificate-key\" prints it; this one has %d characters", 2*KeySize, KeySize, len(s))
	}
	return key, nil
}

// SealSecretData encrypts every entry as kubeadm's copycerts does: AES-256-GCM with a random 12-byte nonce
// written before the ciphertext; an empty entry stays empty.
func SealSecretData(files Files, key []byte, rnd io.Reader) (map[string][]byte, error) {
	gcm, err := secretAEAD(key)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for name, data := range files {
		if len(data) == 0 {
			out[name] = []byte{}
			continue
		}
		nonce := make([]byte, gcm.NonceSize())
		if _, err := io.ReadFull(rnd, nonce); err != nil {
			return nil, fmt.Errorf("nonce for %s: %w", name, err)
		}
		out[name] = gcm.Seal(nonce, nonce, data, nil)
	}
	return out, nil
}

// ErrWrongKey is an entry that does not decrypt: the key is not the one the Secret was sealed with, or
// the entry was altered (the caller names the flag that gave the key).
var ErrWrongKey = errors.New("the data does not decrypt with this key")

// OpenSecretData decrypts every entry, or none: one entry that does not decrypt fails the whole Secret, as
// kubeadm's download does.
func OpenSecretData(data map[string][]byte, key []byte) (Files, error) {
	gcm, err := secretAEAD(key)
	if err != nil {
		return nil, err
	}
	out := Files{}
	for name, sealed := range data {
		if len(sealed) == 0 {
			out[name] = nil
			continue
		}
		if len(sealed) < gcm.NonceSize() {
			return nil, fmt.Errorf("entry %s: %w", name, ErrWrongKey)
		}
		plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", name, ErrWrongKey)
		}
		out[name] = plain
	}
	return out, nil
}

func secretAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("the certificate key must be %d bytes", KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Check says whether files are a usable set for a joining control plane: every CA certificate with a key
// that matches it, the service-account pair, each entry what its name says. The encryption config is
// checked by the caller (it needs the apiserver's validation).
func Check(files Files, l Layout) error {
	var problems []string
	for name := range l.Paths() {
		if _, ok := files[name]; !ok {
			problems = append(problems, name+" is missing")
		}
	}
	for _, ca := range []string{"ca", "front-proxy-ca", "etcd-ca"} {
		crt, key := files[ca+".crt"], files[ca+".key"]
		if len(crt) == 0 && len(key) == 0 {
			continue
		}
		cert, _, err := pki.ParseCertChain(crt)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s.crt: %v", ca, err))
			continue
		}
		k, err := pki.ParsePrivateKey(key)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s.key: %v", ca, err))
			continue
		}
		if !pki.KeyMatchesCert(k, cert) || !cert.IsCA {
			problems = append(problems, fmt.Sprintf("%s.key does not match %s.crt, or it is not a CA", ca, ca))
		}
	}
	if key, pub := files["sa.key"], files["sa.pub"]; len(key) > 0 || len(pub) > 0 {
		k, err := pki.ParsePrivateKey(key)
		if err != nil {
			problems = append(problems, "sa.key: "+err.Error())
		} else if pubs, err := pki.ParsePublicKeys(pub); err != nil || !slices.ContainsFunc(pubs, func(p crypto.PublicKey) bool { return pki.PublicKeysEqual(p, k.Public()) }) {
			problems = append(problems, "sa.pub does not hold sa.key's public key")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("the shared files are not a usable set: %s", strings.Join(problems, "; "))
	}
	return nil
}
