package phases_test

import (
	"crypto/x509"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// benchAlgorithms are every algorithm encryptionAlgorithm accepts. RSA-4096 key generation takes seconds per
// key, so "make bench" runs a fixed number of iterations (-benchtime Nx) rather than a time budget.
var benchAlgorithms = []pki.Algorithm{pki.RSA2048, pki.RSA3072, pki.RSA4096, pki.ECDSAP256, pki.ECDSAP384}

// BenchmarkInit measures a full certs+sa run into a new directory with fresh keys (pki.GenerateKey, the
// production key source): 11 keys, 10 certificates, one crash-safe commit. "make bench" runs it, or
//
//	go test -run '^$' -bench BenchmarkInit -benchtime 3x ./phases/
func BenchmarkInit(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			root := b.TempDir()
			for i := 0; b.Loop(); i++ {
				cfg := pkiConfigIn(filepath.Join(root, strconv.Itoa(i)), alg)
				if _, err := run(cfg, pkitest.Now, pki.GenerateKey, phases.Selection{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInitFixtureKeys is the same run without key generation: signing, encoding and the commit.
func BenchmarkInitFixtureKeys(b *testing.B) {
	for _, alg := range append(slices.Clone(pkitest.Algorithms), pki.RSA3072, pki.RSA4096) {
		b.Run(string(alg), func(b *testing.B) {
			keys := pkitest.Keys
			if !slices.Contains(pkitest.Algorithms, alg) {
				keys = func() pki.KeySource { return fixtureKeys(b, alg) } // testdata/keys, as TestLargeRSAFullRun
			}
			root := b.TempDir()
			for i := 0; b.Loop(); i++ {
				cfg := pkiConfigIn(filepath.Join(root, strconv.Itoa(i)), alg)
				if _, err := run(cfg, pkitest.Now, keys(), phases.Selection{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRerun measures the common cron case: every file exists and is verified, nothing is written.
func BenchmarkRerun(b *testing.B) {
	cfg := pkiConfig(b, pki.ECDSAP256)
	mustRun(b, cfg, pkitest.Now)
	for b.Loop() {
		if _, err := run(cfg, pkitest.Now, nil, phases.Selection{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaf measures one leaf: a fresh key and the apiserver certificate signed by an existing CA.
func BenchmarkLeaf(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			cfg := pkiConfig(b, alg)
			caKey, err := pki.GenerateKey("ca", alg)
			if err != nil {
				b.Fatal(err)
			}
			caSpec, _ := pki.LookupCert("ca")
			caReq, _ := caSpec.Request(cfg, pkitest.Now)
			ca, err := pki.NewSelfSignedCA(caReq, caKey, nil)
			if err != nil {
				b.Fatal(err)
			}
			spec, _ := pki.LookupCert("apiserver")
			req, err := spec.Request(cfg, pkitest.Now)
			if err != nil {
				b.Fatal(err)
			}
			var cert *x509.Certificate
			for b.Loop() {
				key, err := pki.GenerateKey("apiserver", alg)
				if err != nil {
					b.Fatal(err)
				}
				if cert, err = pki.NewSignedCert(req, key.Public(), ca, caKey, nil); err != nil {
					b.Fatal(err)
				}
			}
			_ = cert
		})
	}
}
