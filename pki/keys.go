package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"k8s.io/client-go/util/keyutil"
)

// Algorithm is a key type, spelled as kubeadm's ClusterConfiguration.encryptionAlgorithm spells it.
type Algorithm string

const (
	RSA2048   Algorithm = "RSA-2048"
	RSA3072   Algorithm = "RSA-3072"
	RSA4096   Algorithm = "RSA-4096"
	ECDSAP256 Algorithm = "ECDSA-P256"
	ECDSAP384 Algorithm = "ECDSA-P384"
)

// Algorithms lists every supported algorithm, in the order kubeadm's validation message lists them.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096}

// ParseAlgorithm accepts the kubeadm spelling; an empty string means kubeadm's default, RSA-2048.
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return RSA2048, nil
	}
	for _, a := range Algorithms {
		if string(a) == s {
			return a, nil
		}
	}
	names := make([]string, len(Algorithms))
	for i, a := range Algorithms {
		names[i] = string(a)
	}
	return "", fmt.Errorf("unknown encryption algorithm %q: must be one of %s", s, strings.Join(names, ", "))
}

// KeySource makes the private key for the named file. Production code generates a fresh key; tests inject
// fixture keys, because since Go 1.26 rsa.GenerateKey and ecdsa.GenerateKey ignore a custom random reader.
// name is the file base of the key (for example "etcd/server" or "sa"), so a fixture can be chosen by name.
type KeySource func(name string, alg Algorithm) (crypto.Signer, error)

// GenerateKey is the production KeySource.
func GenerateKey(_ string, alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown encryption algorithm %q", alg)
}

// AlgorithmOf names the algorithm of a key, or "" when kubeadm could not have made it.
func AlgorithmOf(pub crypto.PublicKey) Algorithm {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048
		case 3072:
			return RSA3072
		case 4096:
			return RSA4096
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256
		case elliptic.P384():
			return ECDSAP384
		}
	}
	return ""
}

// EncodePrivateKey writes a key in the PEM form kubeadm writes: PKCS#1 for RSA, SEC 1 for ECDSA.
func EncodePrivateKey(key crypto.Signer) ([]byte, error) {
	return keyutil.MarshalPrivateKeyToPEM(key)
}

// EncodePublicKey writes a PKIX "PUBLIC KEY" PEM block, as kubeadm writes sa.pub.
func EncodePublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey reads the first private key PEM block (PKCS#1, SEC 1 or PKCS#8). Like kubeadm, only RSA and
// ECDSA keys are accepted. Errors never quote the input, which may be key material.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	key, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, errors.New("no valid private key PEM block (truncated or not a key?)")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return nil, errors.New("ed25519 keys are not supported by Kubernetes components; use RSA or ECDSA")
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// ParsePublicKeys reads every public key in a PEM file (sa.pub may hold several during a rotation).
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	keys, err := keyutil.ParsePublicKeysPEM(data)
	if err != nil {
		return nil, errors.New("no valid public key PEM block (truncated or not a key?)")
	}
	out := make([]crypto.PublicKey, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out, nil
}

// PublicKeysEqual reports whether two public keys are the same key.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// PublicKeyFingerprint is the SHA-256 of the PKIX DER of a public key: safe to print and log.
func PublicKeyFingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return Fingerprint(der), nil
}
