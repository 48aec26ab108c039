package encryption_test

import (
	"testing"

	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// BenchmarkBuild is the in-memory part of generating encryption-config.yaml, per provider: a fresh key
// from crypto/rand, the apiserver's validation and the YAML encoding (the phase adds the atomic write,
// see BenchmarkEncryptionConfigPhase in phases).
func BenchmarkBuild(b *testing.B) {
	for _, provider := range []string{encryption.Secretbox, encryption.AESGCM, encryption.AESCBC} {
		b.Run(provider, func(b *testing.B) {
			for b.Loop() {
				cfg, err := encryption.Build(encryption.Options{Provider: provider}, pkitest.Now, nil)
				if err != nil {
					b.Fatal(err)
				}
				data, err := encryption.Marshal(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := encryption.Parse(data); err != nil {
					b.Fatalf("the generated file does not load back: %v", err)
				}
			}
		})
	}
}
