package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// Backdate is how far before "now" a new certificate's NotBefore lies, as kubeadm's CertificateBackdate,
// so that nodes with slightly skewed clocks accept it at once.
const Backdate = 5 * time.Minute

// AltNames are a certificate's subject alternative names.
type AltNames = certutil.AltNames

// CertRequest is everything that varies between the certificates k8scrypto issues.
type CertRequest struct {
	CommonName   string
	Organization []string
	AltNames     AltNames
	Usages       []x509.ExtKeyUsage
	NotBefore    time.Time
	NotAfter     time.Time
	// RawSubject, when set, is the subject's DER used as is (renewal keeps every RDN of the certificate it
	// replaces); CommonName and Organization then only name the request in errors.
	RawSubject []byte
	// URIs and EmailAddresses are SANs kubeadm never sets; renewal keeps those of the certificate it replaces.
	URIs           []*url.URL
	EmailAddresses []string
}

// serialNumber returns a uniform value in [1, MaxInt64), kubeadm's serial scheme. rnd is injected so tests
// produce fixed serials.
func serialNumber(rnd io.Reader) (*big.Int, error) {
	n, err := randInt(rnd, big.NewInt(math.MaxInt64-1))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// NewSelfSignedCA issues a CA certificate exactly as kubeadm's NewSelfSignedCACert: CN as the only DNS SAN,
// DigitalSignature|KeyEncipherment|CertSign, no EKU, no path length limit. Go adds the SubjectKeyId.
func NewSelfSignedCA(req CertRequest, key crypto.Signer, rnd io.Reader) (*x509.Certificate, error) {
	if req.CommonName == "" {
		return nil, errors.New("a CA certificate needs a common name")
	}
	serial, err := serialNumber(rnd)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		DNSNames:              CAAltNames(req).DNSNames,
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(readerOr(rnd), tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate %q: %w", req.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// CAAltNames are the SANs NewSelfSignedCA puts in a CA certificate: its common name, as kubeadm does. A dry
// run reports them from here so that it shows what the real run writes.
func CAAltNames(req CertRequest) AltNames {
	return AltNames{DNSNames: []string{req.CommonName}}
}

// NewSignedCert issues a leaf exactly as kubeadm's NewSignedCert: DigitalSignature|KeyEncipherment (for ECDSA
// too), the requested EKUs, DNS names de-duplicated and sorted, IPs de-duplicated in order. Go sets the
// AuthorityKeyId from the CA's SubjectKeyId.
func NewSignedCert(req CertRequest, pub crypto.PublicKey, ca *x509.Certificate, caKey crypto.Signer, rnd io.Reader) (*x509.Certificate, error) {
	if req.CommonName == "" {
		return nil, errors.New("a certificate needs a common name")
	}
	if len(req.Usages) == 0 {
		return nil, fmt.Errorf("certificate %q needs at least one extended key usage", req.CommonName)
	}
	serial, err := serialNumber(rnd)
	if err != nil {
		return nil, err
	}
	names := NormalizeAltNames(req.AltNames)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		RawSubject:            req.RawSubject,
		DNSNames:              names.DNSNames,
		IPAddresses:           names.IPs,
		URIs:                  req.URIs,
		EmailAddresses:        req.EmailAddresses,
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           req.Usages,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(readerOr(rnd), tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", req.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// NormalizeAltNames applies kubeadm's RemoveDuplicateAltNames: DNS names de-duplicated and sorted, IPs
// de-duplicated keeping the first occurrence.
func NormalizeAltNames(in AltNames) AltNames {
	var out AltNames
	if in.DNSNames != nil {
		out.DNSNames = slices.Compact(slices.Sorted(slices.Values(in.DNSNames)))
	}
	seen := map[string]bool{}
	for _, ip := range in.IPs {
		if !seen[ip.String()] {
			seen[ip.String()] = true
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}

// EncodeCert returns one CERTIFICATE PEM block.
func EncodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// ParseCertChain reads a certificate file: the first block is the certificate, later blocks intermediates
// (as kubeadm's TryLoadCertChainFromDisk).
func ParseCertChain(data []byte) (*x509.Certificate, []*x509.Certificate, error) {
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return nil, nil, errors.New("no valid CERTIFICATE PEM block (truncated or not a certificate?)")
	}
	return certs[0], certs[1:], nil
}

// VerifyChain checks that cert chains to ca at time now, for any key usage (kubeadm's VerifyCertChain).
func VerifyChain(cert *x509.Certificate, intermediates []*x509.Certificate, ca *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// MissingSANs lists the wanted names the certificate lacks, as "DNS:x" and "IP:y". DNS names compare
// case-insensitively and exactly (a wildcard in the certificate does not stand in for a wanted name).
func MissingSANs(cert *x509.Certificate, want AltNames) []string {
	var missing []string
	for _, d := range want.DNSNames {
		if !slices.ContainsFunc(cert.DNSNames, func(have string) bool { return strings.EqualFold(have, d) }) {
			missing = append(missing, "DNS:"+d)
		}
	}
	for _, ip := range want.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			missing = append(missing, "IP:"+ip.String())
		}
	}
	return missing
}

// FormatAltNames renders SANs for people: "DNS:a, DNS:b, IP:1.2.3.4".
func FormatAltNames(dns []string, ips []net.IP) []string {
	out := make([]string, 0, len(dns)+len(ips))
	for _, d := range dns {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range ips {
		out = append(out, "IP:"+ip.String())
	}
	return out
}

// Fingerprint is the SHA-256 of DER bytes, lower-case hex, as audit logs and status output show it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// KeyMatchesCert reports whether key is the private half of cert's public key.
func KeyMatchesCert(key crypto.Signer, cert *x509.Certificate) bool {
	return PublicKeysEqual(key.Public(), cert.PublicKey)
}

// SameCert reports whether two certificates are byte-identical.
func SameCert(a, b *x509.Certificate) bool { return bytes.Equal(a.Raw, b.Raw) }

// CATemplate is old's CA certificate made anew for [notBefore, notAfter] with a fresh serial: the same
// subject (its DER, every RDN), SubjectKeyId, key usages, basic constraints and SANs, so that whatever the
// old certificate signed verifies against the new one. Used to renew a CA with its own key.
func CATemplate(old *x509.Certificate, notBefore, notAfter time.Time, rnd io.Reader) (*x509.Certificate, error) {
	if !old.IsCA {
		return nil, fmt.Errorf("%q is not a CA certificate", old.Subject.CommonName)
	}
	serial, err := serialNumber(rnd)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            old.RawSubject,
		SubjectKeyId:          old.SubjectKeyId,
		DNSNames:              old.DNSNames,
		IPAddresses:           old.IPAddresses,
		URIs:                  old.URIs,
		EmailAddresses:        old.EmailAddresses,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              old.KeyUsage,
		ExtKeyUsage:           old.ExtKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            old.MaxPathLen,
		MaxPathLenZero:        old.MaxPathLenZero,
	}, nil
}

// RandOrDefault is rnd, or crypto/rand when rnd is nil.
func RandOrDefault(rnd io.Reader) io.Reader { return readerOr(rnd) }
