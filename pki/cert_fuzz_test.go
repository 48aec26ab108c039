package pki_test

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// FuzzParseCertChain: certificate loading never panics or quotes its input, and what it accepts can be
// checked the way phases check a reused certificate (chain, SANs, key match, fingerprint) without panicking,
// and written back unchanged.
func FuzzParseCertChain(f *testing.F) {
	alg := pki.ECDSAP256
	caKey, leafKey := pkitest.MustKey(alg, "ca"), pkitest.MustKey(alg, "apiserver")
	ca, err := pki.NewSelfSignedCA(pki.CertRequest{CommonName: "kubernetes", NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(pki.DefaultCAValidity)}, caKey, pkitest.Rand(1))
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := pki.NewSignedCert(pki.CertRequest{
		CommonName: "kube-apiserver", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AltNames:  pki.AltNames{DNSNames: []string{"kubernetes"}, IPs: []net.IP{net.ParseIP("10.96.0.1")}},
		NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(pki.DefaultCertValidity),
	}, leafKey.Public(), ca, caKey, pkitest.Rand(2))
	if err != nil {
		f.Fatal(err)
	}
	caPEM, leafPEM := pki.EncodeCert(ca), pki.EncodeCert(leaf)
	f.Add(caPEM)
	f.Add(append(append([]byte{}, leafPEM...), caPEM...))
	f.Add(leafPEM[:len(leafPEM)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	keyPEM, _ := pki.EncodePrivateKey(leafKey)
	f.Add(keyPEM)

	want := pki.AltNames{DNSNames: []string{"kubernetes"}, IPs: []net.IP{net.ParseIP("10.96.0.1")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, chain, err := pki.ParseCertChain(data)
		if err != nil {
			assertNotQuoted(t, err, data)
			return
		}
		// What phases do with a certificate they find on disk must not panic on a strange one.
		_ = pki.VerifyChain(cert, chain, ca, pkitest.Now)
		_ = pki.VerifyChain(cert, chain, cert, pkitest.Now.Add(time.Hour))
		_ = pki.MissingSANs(cert, want)
		_ = pki.FormatAltNames(cert.DNSNames, cert.IPAddresses)
		_ = pki.KeyMatchesCert(leafKey, cert)
		_ = pki.AlgorithmOf(cert.PublicKey)
		_ = pki.Fingerprint(cert.Raw)
		again, _, err := pki.ParseCertChain(pki.EncodeCert(cert))
		if err != nil || !pki.SameCert(cert, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
