package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// CANames are the CAs "ca renew" and "ca rotate" know, in kubeadm's order.
var CANames = []string{"ca", "front-proxy-ca", "etcd-ca"}

// CARenewal is the plan of "ca renew": the new CA certificates and every file that embeds one, staged.
type CARenewal struct {
	Files   []pki.File
	Events  []pki.AuditEvent
	Renewed []RenewedCA
}

// RenewedCA describes one renewed CA.
type RenewedCA struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	OldSerial string    `json:"oldSerial"`
	Serial    string    `json:"serial"`
	NotAfter  time.Time `json:"notAfter"`
	// OldNotAfter is the replaced certificate's end: a component that still holds it verifies until then.
	OldNotAfter time.Time `json:"oldNotAfter"`
	// SubjectKeyID is unchanged (hex): every certificate the CA signed still names it as its authority.
	SubjectKeyID string `json:"subjectKeyId"`
	// Embedding lists the other files updated because they carry the CA certificate.
	Embedding []string `json:"embedding,omitempty"`
}

// PlanCARenewal re-issues each named CA's certificate with its own key: the same subject, key and
// SubjectKeyId, a new serial and a validity of caCertificateValidityPeriod from now, so that every
// certificate the CA signed still verifies against it. It works on an expired CA too: that is the
// recovery. In a ca.crt bundle only the certificate that matches ca.key is replaced, in place. For the
// cluster CA, the certificate-authority-data of every kubeconfig that carries the old certificate is
// updated in the same plan.
func PlanCARenewal(cfg *pki.Config, kubeconfigDir string, names []string, now time.Time, rnd io.Reader) (*CARenewal, error) {
	plan := &CARenewal{}
	for _, name := range names {
		if !slices.Contains(CANames, name) {
			return nil, fmt.Errorf("unknown CA %q; the CAs are %v", name, CANames)
		}
		i := slices.IndexFunc(cfg.Certs(), func(s pki.CertSpec) bool { return s.Name == name })
		if i < 0 {
			continue // external etcd: no etcd CA of ours
		}
		spec := cfg.Certs()[i]
		crtPath, keyPath := spec.CertPath(cfg.CertDir), spec.KeyPath(cfg.CertDir)
		data, err := readRegular(crtPath)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", name, err)
		}
		first, rest, err := pki.ParseCertChain(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crtPath, err)
		}
		bundle := append([]*x509.Certificate{first}, rest...)
		key, err := LoadKey(keyPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("CA %s has no key at %s: an external CA is renewed by whoever holds its key", name, keyPath)
		}
		if err != nil {
			return nil, err
		}
		at := slices.IndexFunc(bundle, func(c *x509.Certificate) bool { return pki.KeyMatchesCert(key, c) })
		if at < 0 {
			return nil, fmt.Errorf("%s matches none of the %d certificate(s) in %s", keyPath, len(bundle), crtPath)
		}
		old := bundle[at]
		renewed, err := reissueCA(old, key, now, cfg.CAValidity, rnd)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", name, err)
		}
		bundle[at] = renewed
		var pemData []byte
		for _, c := range bundle {
			pemData = append(pemData, pki.EncodeCert(c)...)
		}
		plan.Files = append(plan.Files, pki.File{Path: crtPath, Data: pemData, Mode: certFileMode(crtPath)})
		r := RenewedCA{Name: name, Path: crtPath, OldSerial: old.SerialNumber.String(), Serial: renewed.SerialNumber.String(),
			NotAfter: renewed.NotAfter.UTC(), OldNotAfter: old.NotAfter.UTC(), SubjectKeyID: fmt.Sprintf("%x", renewed.SubjectKeyId)}
		plan.Events = append(plan.Events, pki.AuditEvent{Time: now, Operation: pki.AuditRenew, File: crtPath, Serial: r.Serial, SHA256: pki.Fingerprint(renewed.Raw),
			Detail: fmt.Sprintf("ca renew %s: same key and SubjectKeyId, serial %s replaced, valid until %s", name, r.OldSerial, r.NotAfter.Format(time.RFC3339))})
		if name == pki.KubeconfigCAName {
			for _, k := range pki.Kubeconfigs() {
				f, ok, err := editKubeconfigCA(k.Path(kubeconfigDir), nil, swapCA(old, renewed))
				if err != nil {
					return nil, err
				}
				if ok {
					plan.Files = append(plan.Files, f)
					r.Embedding = append(r.Embedding, f.Path)
					plan.Events = append(plan.Events, pki.AuditEvent{Time: now, Operation: pki.AuditRenew, File: f.Path, Serial: r.Serial,
						Detail: "ca renew " + name + ": certificate-authority-data carries the renewed CA certificate"})
				}
			}
			// During a rotation kube-controller-manager signs with the signer alone (CASignerFile).
			sp := filepath.Join(cfg.CertDir, CASignerFile)
			data, err := readRegular(sp)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			if err == nil {
				if c, _, perr := pki.ParseCertChain(data); perr == nil && c.Equal(old) {
					plan.Files = append(plan.Files, pki.File{Path: sp, Data: pki.EncodeCert(renewed), Mode: certFileMode(sp)})
					r.Embedding = append(r.Embedding, sp)
					plan.Events = append(plan.Events, pki.AuditEvent{Time: now, Operation: pki.AuditRenew, File: sp, Serial: r.Serial, SHA256: pki.Fingerprint(renewed.Raw),
						Detail: "ca renew " + name + ": the signer's copy for kube-controller-manager carries the renewed CA certificate"})
				}
			}
		}
		plan.Renewed = append(plan.Renewed, r)
	}
	return plan, nil
}

// reissueCA signs old's content again with its own key for a new validity.
func reissueCA(old *x509.Certificate, key crypto.Signer, now time.Time, validity time.Duration, rnd io.Reader) (*x509.Certificate, error) {
	tmpl, err := pki.CATemplate(old, now.Add(-pki.Backdate).UTC(), now.Add(validity).UTC(), rnd)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(pki.RandOrDefault(rnd), tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// certFileMode keeps an existing certificate's mode (0644 unless tightened).
func certFileMode(path string) os.FileMode {
	if info, err := os.Stat(path); err == nil {
		return info.Mode().Perm()
	}
	return pki.ModeCert
}
