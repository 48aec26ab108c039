package certshare

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// The offline bundle is one file:
//
//	magic    "K8SCRYPTO-BUNDLE" (16 bytes)
//	version  1 byte (BundleVersion)
//	kdf      1 byte: 0 a raw 32-byte key, 1 Argon2id of a passphrase
//	time     4 bytes, big-endian: Argon2id passes       (0 with a raw key)
//	memory   4 bytes, big-endian: Argon2id KiB          (0 with a raw key)
//	threads  1 byte: Argon2id lanes                     (0 with a raw key)
//	salt     16 bytes: Argon2id salt                    (zero with a raw key)
//	nonce    24 bytes: XChaCha20-Poly1305 nonce
//	box      XChaCha20-Poly1305 of a JSON object {"files": {entry: base64}}, the 67 header bytes above as
//	         additional data: a changed header, like a changed box, fails to open.
const (
	bundleMagic = "K8SCRYPTO-BUNDLE"
	// BundleVersion is the format written; a newer one is refused with a clear error.
	BundleVersion = 1
	headerSize    = len(bundleMagic) + 1 + 1 + 4 + 4 + 1 + 16 + chacha20poly1305.NonceSizeX

	kdfRawKey   = 0
	kdfArgon2id = 1
)

// Argon2id parameters for a passphrase: RFC 9106's second recommended option (3 passes over 64 MiB with 4
// lanes), about a quarter of a second on this project's 2-core machine: slow for a guesser, quick for a
// bootstrap script.
const (
	Argon2Time    = 3
	Argon2Memory  = 64 * 1024 // KiB
	Argon2Threads = 4
	// maxArgon2Memory bounds what a (hostile) header can make the reader allocate.
	maxArgon2Memory = 1024 * 1024 // 1 GiB in KiB
	maxArgon2Time   = 16
)

// BundleSecret opens or seals a bundle: exactly one of Key (32 bytes) and Passphrase.
type BundleSecret struct {
	Key        []byte
	Passphrase []byte
}

func (s BundleSecret) check() error {
	switch {
	case (len(s.Key) == 0) == (len(s.Passphrase) == 0):
		return errors.New("a bundle needs exactly one of a key and a passphrase")
	case len(s.Key) > 0 && len(s.Key) != KeySize:
		return fmt.Errorf("a bundle key must be %d bytes (%d hex digits)", KeySize, 2*KeySize)
	}
	return nil
}

type bundlePayload struct {
	Files map[string][]byte `json:"files"`
}

// SealBundle writes files into a bundle, sealed with secret; rnd supplies the salt and nonce.
func SealBundle(files Files, secret BundleSecret, rnd io.Reader) ([]byte, error) {
	if err := secret.check(); err != nil {
		return nil, err
	}
	h := make([]byte, headerSize)
	copy(h, bundleMagic)
	h[16] = BundleVersion
	salt := h[27:43]
	nonce := h[43:headerSize]
	if len(secret.Passphrase) > 0 {
		h[17] = kdfArgon2id
		binary.BigEndian.PutUint32(h[18:22], Argon2Time)
		binary.BigEndian.PutUint32(h[22:26], Argon2Memory)
		h[26] = Argon2Threads
		if _, err := io.ReadFull(rnd, salt); err != nil {
			return nil, fmt.Errorf("bundle salt: %w", err)
		}
	}
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("bundle nonce: %w", err)
	}
	key, err := bundleKey(h, secret)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(bundlePayload{Files: files})
	if err != nil {
		return nil, err
	}
	return aead.Seal(h, nonce, plain, h), nil
}

// BundleError is a bundle that cannot be opened; it says why without quoting any of its content.
type BundleError struct {
	Reason string
	// Problem, when set, is one the caller completes with its own command and flag names.
	Problem BundleProblem
}

// BundleProblem is a BundleError whose fix names the caller's commands or flags.
type BundleProblem int

const (
	NotABundle           BundleProblem = iota + 1 // not a k8scrypto bundle at all
	SealedWithKey                                 // opened with a passphrase, sealed with a raw key
	SealedWithPassphrase                          // opened with a raw key, sealed with a passphrase
)

func (e *BundleError) Error() string { return "not a usable k8scrypto bundle: " + e.Reason }

// OpenBundle checks and decrypts a bundle. Nothing is returned unless the whole file authenticates.
func OpenBundle(data []byte, secret BundleSecret) (Files, error) {
	if err := secret.check(); err != nil {
		return nil, err
	}
	switch {
	case len(data) == 0:
		return nil, &BundleError{Reason: "the file is empty"}
	case len(data) < len(bundleMagic) || !bytes.Equal(data[:len(bundleMagic)], []byte(bundleMagic)):
		return nil, &BundleError{Reason: "it does not start with " + bundleMagic, Problem: NotABundle}
	case len(data) < len(bundleMagic)+1:
		return nil, &BundleError{Reason: "it is truncated (no version)"}
	case data[16] > BundleVersion:
		return nil, &BundleError{Reason: fmt.Sprintf("it is format version %d, newer than this k8scrypto reads (%d): use the k8scrypto that exported it, or a newer one", data[16], BundleVersion)}
	case data[16] == 0:
		return nil, &BundleError{Reason: "format version 0 does not exist (the header is damaged)"}
	case len(data) < headerSize+chacha20poly1305.Overhead:
		return nil, &BundleError{Reason: fmt.Sprintf("it is truncated (%d bytes; the header and tag alone take %d)", len(data), headerSize+chacha20poly1305.Overhead)}
	}
	h := data[:headerSize]
	switch h[17] {
	case kdfRawKey:
		if len(secret.Key) == 0 {
			return nil, &BundleError{Reason: "it was sealed with a raw key", Problem: SealedWithKey}
		}
	case kdfArgon2id:
		if len(secret.Passphrase) == 0 {
			return nil, &BundleError{Reason: "it was sealed with a passphrase", Problem: SealedWithPassphrase}
		}
	default:
		return nil, &BundleError{Reason: fmt.Sprintf("unknown key derivation %d (the header is damaged)", h[17])}
	}
	key, err := bundleKey(h, secret)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, h[43:headerSize], data[headerSize:], h)
	if err != nil {
		return nil, &BundleError{Reason: "it does not authenticate: a wrong key or passphrase, or the file was altered or truncated"}
	}
	var p bundlePayload
	if err := json.Unmarshal(plain, &p); err != nil || p.Files == nil {
		return nil, &BundleError{Reason: "its content is not a file set (written by another program?)"}
	}
	return Files(p.Files), nil
}

// bundleKey derives the box key from the header's KDF fields.
func bundleKey(h []byte, secret BundleSecret) ([]byte, error) {
	if h[17] == kdfRawKey {
		return secret.Key, nil
	}
	t, m, threads := binary.BigEndian.Uint32(h[18:22]), binary.BigEndian.Uint32(h[22:26]), h[26]
	if t == 0 || t > maxArgon2Time || m < 8*uint32(threads) || m > maxArgon2Memory || threads == 0 {
		return nil, &BundleError{Reason: fmt.Sprintf("Argon2id parameters out of range (time %d, memory %d KiB, threads %d)", t, m, threads)}
	}
	return argon2.IDKey(secret.Passphrase, h[27:43], t, m, threads, chacha20poly1305.KeySize), nil
}
