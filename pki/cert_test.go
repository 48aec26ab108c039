package pki_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

func testCA(t *testing.T, alg pki.Algorithm, name string) (*x509.Certificate, pki.CertRequest) {
	t.Helper()
	req := pki.CertRequest{CommonName: name, NotBefore: pkitest.Now.Add(-pki.Backdate), NotAfter: pkitest.Now.Add(pki.DefaultCAValidity)}
	ca, err := pki.NewSelfSignedCA(req, pkitest.MustKey(alg, "ca"), pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	return ca, req
}

func TestNewSelfSignedCA(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		ca, req := testCA(t, alg, "kubernetes")
		if ca.Subject.CommonName != "kubernetes" || len(ca.Subject.Organization) != 0 {
			t.Errorf("%s: subject %s", alg, ca.Subject)
		}
		if !slices.Equal(ca.DNSNames, []string{"kubernetes"}) || len(ca.IPAddresses) != 0 {
			t.Errorf("%s: SANs %v %v, want the CN as only DNS name", alg, ca.DNSNames, ca.IPAddresses)
		}
		if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign; ca.KeyUsage != want {
			t.Errorf("%s: KeyUsage %b, want %b", alg, ca.KeyUsage, want)
		}
		if len(ca.ExtKeyUsage) != 0 || !ca.BasicConstraintsValid || !ca.IsCA || ca.MaxPathLen != -1 || ca.MaxPathLenZero {
			t.Errorf("%s: EKU %v BC %v IsCA %v MaxPathLen %d/%v", alg, ca.ExtKeyUsage, ca.BasicConstraintsValid, ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero)
		}
		if !ca.NotBefore.Equal(req.NotBefore) || !ca.NotAfter.Equal(req.NotAfter) {
			t.Errorf("%s: validity %s..%s, want %s..%s", alg, ca.NotBefore, ca.NotAfter, req.NotBefore, req.NotAfter)
		}
		// Go derives the SKI from the SHA-256 of the subject public key bits (truncated to 20 bytes).
		if len(ca.SubjectKeyId) != 20 {
			t.Errorf("%s: SubjectKeyId %x", alg, ca.SubjectKeyId)
		}
		if err := ca.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: not self-signed: %v", alg, err)
		}
		if ca.SerialNumber.Sign() <= 0 || ca.SerialNumber.Cmp(bigMaxInt64()) >= 0 {
			t.Errorf("%s: serial %s outside [1, MaxInt64)", alg, ca.SerialNumber)
		}
	}
	if _, err := pki.NewSelfSignedCA(pki.CertRequest{}, pkitest.MustKey(pki.RSA2048, "ca"), nil); err == nil {
		t.Error("CA without a common name accepted")
	}
}

func TestSerialsAreDeterministicPerSeed(t *testing.T) {
	a, _ := testCA(t, pki.RSA2048, "kubernetes")
	b, _ := testCA(t, pki.RSA2048, "kubernetes")
	if !bytes.Equal(a.Raw, b.Raw) {
		t.Error("same key, request and seed gave different RSA CA certificates")
	}
	req := pki.CertRequest{CommonName: "kubernetes", NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(time.Hour)}
	c, err := pki.NewSelfSignedCA(req, pkitest.MustKey(pki.RSA2048, "ca"), pkitest.Rand(2))
	if err != nil {
		t.Fatal(err)
	}
	if c.SerialNumber.Cmp(a.SerialNumber) == 0 {
		t.Error("different seeds gave the same serial")
	}
}

func TestNewSignedCert(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		ca, _ := testCA(t, alg, "kubernetes")
		caKey := pkitest.MustKey(alg, "ca")
		leafKey := pkitest.MustKey(alg, "apiserver")
		req := pki.CertRequest{
			CommonName:   "kube-apiserver",
			Organization: []string{"system:masters"},
			AltNames: pki.AltNames{
				DNSNames: []string{"zeta", "alpha", "kubernetes", "alpha"},
				IPs:      []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("10.0.0.5"), net.ParseIP("10.96.0.1").To4(), net.ParseIP("::1")},
			},
			Usages:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			NotBefore: pkitest.Now.Add(-pki.Backdate),
			NotAfter:  pkitest.Now.Add(pki.DefaultCertValidity),
		}
		cert, err := pki.NewSignedCert(req, leafKey.Public(), ca, caKey, pkitest.Rand(3))
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "kube-apiserver" || !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) {
			t.Errorf("%s: subject %s", alg, cert.Subject)
		}
		// kubeadm's RemoveDuplicateAltNames: DNS sorted and de-duplicated, IPs de-duplicated in order.
		if want := []string{"alpha", "kubernetes", "zeta"}; !slices.Equal(cert.DNSNames, want) {
			t.Errorf("%s: DNS %v, want %v", alg, cert.DNSNames, want)
		}
		if got := ipStrings(cert.IPAddresses); !slices.Equal(got, []string{"10.96.0.1", "10.0.0.5", "::1"}) {
			t.Errorf("%s: IPs %v", alg, got)
		}
		// KeyEncipherment stays even for ECDSA, exactly as kubeadm sets it.
		if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; cert.KeyUsage != want {
			t.Errorf("%s: KeyUsage %b, want %b", alg, cert.KeyUsage, want)
		}
		if !slices.Equal(cert.ExtKeyUsage, req.Usages) || !cert.BasicConstraintsValid || cert.IsCA {
			t.Errorf("%s: EKU %v BC %v IsCA %v", alg, cert.ExtKeyUsage, cert.BasicConstraintsValid, cert.IsCA)
		}
		if len(cert.SubjectKeyId) != 0 || !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
			t.Errorf("%s: SKI %x AKI %x, want no SKI and AKI = CA SKI %x", alg, cert.SubjectKeyId, cert.AuthorityKeyId, ca.SubjectKeyId)
		}
		if !pki.KeyMatchesCert(leafKey, cert) || pki.KeyMatchesCert(caKey, cert) {
			t.Errorf("%s: KeyMatchesCert is wrong", alg)
		}
		if err := pki.VerifyChain(cert, nil, ca, pkitest.Now); err != nil {
			t.Errorf("%s: chain: %v", alg, err)
		}
		if err := pki.VerifyChain(cert, nil, ca, pkitest.Now.Add(pki.DefaultCertValidity+time.Minute)); err == nil {
			t.Errorf("%s: chain verifies after NotAfter", alg)
		}
		other, _ := testCA(t, alg, "other")
		if err := pki.VerifyChain(cert, nil, other, pkitest.Now); err == nil {
			t.Errorf("%s: chain verifies against an unrelated CA", alg)
		}
	}
}

func TestNewSignedCertRequiresCNAndUsage(t *testing.T) {
	ca, _ := testCA(t, pki.RSA2048, "kubernetes")
	key := pkitest.MustKey(pki.RSA2048, "ca")
	base := pki.CertRequest{CommonName: "x", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(time.Hour)}
	noCN, noEKU := base, base
	noCN.CommonName = ""
	noEKU.Usages = nil
	for name, req := range map[string]pki.CertRequest{"no CN": noCN, "no EKU": noEKU} {
		if _, err := pki.NewSignedCert(req, key.Public(), ca, key, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNormalizeAltNames(t *testing.T) {
	in := pki.AltNames{
		DNSNames: []string{"b", "a", "b", "*.w.example.com"},
		IPs:      []net.IP{net.ParseIP("fd00::1"), net.ParseIP("1.2.3.4"), net.ParseIP("FD00:0::1"), net.IPv4(1, 2, 3, 4)},
	}
	out := pki.NormalizeAltNames(in)
	if want := []string{"*.w.example.com", "a", "b"}; !slices.Equal(out.DNSNames, want) {
		t.Errorf("DNS %v, want %v", out.DNSNames, want)
	}
	if got := ipStrings(out.IPs); !slices.Equal(got, []string{"fd00::1", "1.2.3.4"}) {
		t.Errorf("IPs %v", got)
	}
	if in.DNSNames[0] != "b" {
		t.Error("NormalizeAltNames modified its input")
	}
	if out := pki.NormalizeAltNames(pki.AltNames{}); out.DNSNames != nil || out.IPs != nil {
		t.Errorf("empty input gave %+v", out)
	}
}

func TestMissingSANs(t *testing.T) {
	cert := &x509.Certificate{DNSNames: []string{"Kubernetes", "*.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}
	want := pki.AltNames{DNSNames: []string{"kubernetes", "foo.example.com"}, IPs: []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("10.0.0.2")}}
	got := pki.MissingSANs(cert, want)
	// Case-insensitive DNS, IPv4 in either length; a wildcard does not stand in for a wanted name.
	if !slices.Equal(got, []string{"DNS:foo.example.com", "IP:10.0.0.2"}) {
		t.Errorf("MissingSANs = %v", got)
	}
}

func TestParseCertChain(t *testing.T) {
	ca, _ := testCA(t, pki.ECDSAP256, "kubernetes")
	other, _ := testCA(t, pki.RSA2048, "other")
	data := append(pki.EncodeCert(ca), pki.EncodeCert(other)...)
	cert, rest, err := pki.ParseCertChain(data)
	if err != nil || !pki.SameCert(cert, ca) || len(rest) != 1 || !pki.SameCert(rest[0], other) {
		t.Fatalf("ParseCertChain: %v, %d intermediates", err, len(rest))
	}
	one := pki.EncodeCert(ca)
	for name, bad := range map[string][]byte{"empty": nil, "garbage": []byte("garbage"), "truncated": one[:len(one)-40]} {
		if _, _, err := pki.ParseCertChain(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	if got := pki.Fingerprint([]byte("x")); got != hex.EncodeToString(sum[:]) {
		t.Errorf("Fingerprint = %s", got)
	}
	if got := pki.FormatAltNames([]string{"a"}, []net.IP{net.ParseIP("::1")}); !slices.Equal(got, []string{"DNS:a", "IP:::1"}) {
		t.Errorf("FormatAltNames = %v", got)
	}
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func bigMaxInt64() *big.Int { return big.NewInt(math.MaxInt64) }
