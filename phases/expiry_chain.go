package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// caOnDisk is a CA file as the apiserver and etcd load it: every certificate in it is trusted (a bundle
// during a CA rotation), and the one whose public key is the CA key's signs.
type caOnDisk struct {
	certs []*x509.Certificate
	// problem says why the file cannot serve as the CA ("" when it can).
	problem string
}

// loadCAOnDisk reads the certificates of a CA file and checks its key (when present) against them.
func loadCAOnDisk(t certTarget) caOnDisk {
	c, err := readCA(t.CertPath, t.KeyPath, nil)
	if err != nil {
		return caOnDisk{problem: err.Error()}
	}
	ca := caOnDisk{certs: c.certs}
	switch {
	case errors.Is(c.keyErr, fs.ErrNotExist): // an external CA: nothing to match
	case c.keyErr != nil:
		ca.problem = c.keyErr.Error()
	case ca.signer(c.key) == nil:
		ca.problem = fmt.Sprintf("%s matches none of the %d certificate(s) in %s", t.KeyPath, len(ca.certs), t.CertPath)
	}
	return ca
}

// signer is the certificate of the file whose public key is key's, nil when none is.
func (ca caOnDisk) signer(key crypto.Signer) *x509.Certificate {
	for _, c := range ca.certs {
		if pki.KeyMatchesCert(key, c) {
			return c
		}
	}
	return nil
}

// chainProblem says what a peer verifying cert against the CA file would reject, apart from expiry (which
// the row reports on its own): a certificate no certificate of the CA file signed, or, when key is given,
// a key that is not the certificate's.
func chainProblem(cert *x509.Certificate, key crypto.Signer, keyErr error, ca caOnDisk, caName string) string {
	var problems []string
	if len(ca.certs) > 0 {
		signed := false
		for _, c := range ca.certs {
			if cert.CheckSignatureFrom(c) == nil {
				signed = true
				break
			}
		}
		if !signed {
			problems = append(problems, fmt.Sprintf("not signed by %s on disk (issuer %q): the apiserver rejects it", caName, cert.Issuer.String()))
		}
	}
	switch {
	case keyErr != nil:
		problems = append(problems, keyErr.Error())
	case key != nil && !pki.KeyMatchesCert(key, cert):
		problems = append(problems, "its private key does not match the certificate")
	}
	return strings.Join(problems, "; ")
}

// caEndOfLife warns about a CA that expires before a certificate it signs today would (validity): the
// signed certificate is cut short to the CA's end, and after that date nothing the CA signed verifies.
func caEndOfLife(r CertificateExpiration, now time.Time, validity time.Duration) string {
	if r.Missing || r.Error != "" || r.ExpirationDate.IsZero() || validity <= 0 || !r.ExpirationDate.Before(now.Add(validity)) {
		return ""
	}
	return fmt.Sprintf("CA %s expires on %s, before a certificate it signs today would (%s): renew it with its own key before then (\"k8scrypto ca renew %s\"), or rotate it to a new key (\"k8scrypto ca rotate prepare --ca %s\")",
		r.Name, r.ExpirationDate.Format(time.RFC3339), validity, r.Name, r.Name)
}
