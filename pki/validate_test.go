package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// longName is a DNS name of exactly n bytes (labels of at most 63), made unique by i.
func longName(i, n int) string {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("s%04d", i))
	for b.Len() < n {
		if b.Len()%64 == 63 {
			b.WriteByte('.')
		} else {
			b.WriteByte('a')
		}
	}
	s := strings.TrimSuffix(b.String(), ".")
	for len(s) < n {
		s += "b"
	}
	return s
}

// TestMaxSANsCertificateFitsATLSHandshake measures the bound pki.MaxSANs stands for: the apiserver
// certificate with that many extra SANs, each as long as a DNS name can be (253 bytes), and the longest node
// name, DNS domain and control-plane endpoint, is issued, its size checked against the 64 KiB handshake
// message limit of Go clients (with what an RSA-4096 CA and key would add), and served in a real TLS
// handshake that verifies it. One SAN more is an error with the count.
func TestMaxSANsCertificateFitsATLSHandshake(t *testing.T) {
	sans := make([]string, pki.MaxSANs)
	for i := range sans {
		sans[i] = longName(i, 253)
	}
	cfg := &pki.Config{
		CertDir: "/etc/kubernetes/pki", NodeName: longName(9000, 253), AdvertiseAddress: net.ParseIP("10.0.0.5"), BindPort: 6443,
		ServiceSubnet: "10.96.0.0/12", DNSDomain: longName(9001, 253-len("kubernetes.default.svc.")), ControlPlaneEndpoint: longName(9002, 253) + ":6443",
		APIServerCertSANs: sans, LocalEtcd: true, Algorithm: pki.RSA2048, CertValidity: pki.DefaultCertValidity, CAValidity: pki.DefaultCAValidity,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the configuration at the bound is refused: %v", err)
	}
	spec, _ := pki.LookupCert("apiserver")
	req, err := spec.Request(cfg, pkitest.Now)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := testCA(t, pki.RSA2048, "kubernetes")
	caKey := pkitest.MustKey(pki.RSA2048, "ca")
	key := pkitest.MustKey(pki.RSA2048, "apiserver")
	leaf, err := pki.NewSignedCert(req, key.Public(), ca, caKey, pkitest.Rand(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(leaf.DNSNames); got < pki.MaxSANs {
		t.Fatalf("the certificate has %d DNS names, want at least %d", got, pki.MaxSANs)
	}
	// RSA-4096 instead of RSA-2048: a 256-byte longer modulus in the key and a 256-byte longer signature.
	// The Certificate handshake message adds its own header and length fields (under 16 bytes in TLS 1.2
	// and 1.3).
	const rsa4096Extra, messageOverhead, goLimit = 2 * 256, 16, 64 * 1024
	size := len(leaf.Raw)
	t.Logf("apiserver certificate with %d extra SANs of 253 bytes: %d bytes (%.1f KiB); %d with RSA-4096", pki.MaxSANs, size, float64(size)/1024, size+rsa4096Extra)
	if size+rsa4096Extra+messageOverhead >= goLimit {
		t.Errorf("the certificate at the bound (%d bytes, %d with RSA-4096) does not fit a 64 KiB handshake message: lower pki.MaxSANs", size, size+rsa4096Extra)
	}

	// A real handshake: the server sends it, the client verifies it for one of the SANs.
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	srvConn, cliConn := net.Pipe()
	done := make(chan error, 1)
	go func() {
		srv := tls.Server(srvConn, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}, Time: func() time.Time { return pkitest.Now }})
		done <- srv.Handshake()
	}()
	cli := tls.Client(cliConn, &tls.Config{RootCAs: roots, ServerName: sans[pki.MaxSANs-1], Time: func() time.Time { return pkitest.Now }})
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake with the certificate at the bound: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	cliConn.Close() // the raw pipes: a TLS close_notify on a synchronous pipe would wait for a reader
	srvConn.Close()

	cfg.APIServerCertSANs = append(sans, "one-more.example.com")
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("apiServer.certSANs: %d entries, more than the %d allowed", pki.MaxSANs+1, pki.MaxSANs)) {
		t.Errorf("one SAN past the bound: %v", err)
	}
}

// TestCheckText: the characters that cannot be rendered safely are refused with the field and the
// character's code point and offset; ordinary paths and names (spaces, non-ASCII letters) pass.
func TestCheckText(t *testing.T) {
	for _, ok := range []string{"", "/etc/kubernetes/pki", "/srv/my pki/ü", "cp-1"} {
		if err := pki.CheckText("f", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"a\nb": `f: invalid value "a\nb": control character U+000A at byte 1`, "\tx": "U+0009 at byte 0", "x\x00": "U+0000", "x\x7f": "U+007F",
		"x\u0085": "U+0085", "x\x1b[0m": "U+001B", "x\xff": "byte 1 is not UTF-8",
	} {
		if err := pki.CheckText("f", in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
