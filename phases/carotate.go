package phases

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki"
)

// CAStage is where a CA is in its rotation, read from its files.
type CAStage string

const (
	// CASteady: one certificate in the CA file, no staged key.
	CASteady CAStage = "steady"
	// CAPrepared: <ca>.key.next holds the new CA's key; the CA file trusts the old certificate (first, still
	// the signer) and the new one.
	CAPrepared CAStage = "prepared"
	// CAPromoted: the new key signs; the CA file trusts the new certificate (first) and the old one.
	CAPromoted CAStage = "promoted"
)

// CARotation rotates one CA to a new key with overlap, following the Kubernetes documentation's manual
// procedure: prepare adds the new CA to every trust bundle while the old one still signs, promote makes the
// new one the signer and re-issues every certificate and kubeconfig client certificate it signed, prune
// drops the old CA from the bundles. It is the third Rotation, beside the service-account keys and the
// encryption configuration.
type CARotation struct {
	Cfg           *pki.Config
	KubeconfigDir string
	Name          string // "ca", "front-proxy-ca" or "etcd-ca"
	Now           time.Time
	Keys          pki.KeySource
	Rand          io.Reader
	// Yes confirms prune.
	Yes bool

	spec   pki.CertSpec
	bundle []*x509.Certificate
	key    crypto.Signer
	next   crypto.Signer
	stage  CAStage
	// adopted: Plan of prepare found the node prepared already (the stage copied from the node where
	// prepare ran, or an earlier prepare here) and made no new key.
	adopted bool
}

// CAStageError refuses a step the CA's stage does not allow (exit status 3).
type CAStageError struct {
	Op, CA string
	Stage  CAStage
}

func (e *CAStageError) Error() string {
	return fmt.Sprintf("%s refused: the %s CA is in stage %s; next: %s", e.Op, e.CA, e.Stage, caNext(e.Stage, e.CA))
}

// ExitCode is the process exit status for a refused stage.
func (e *CAStageError) ExitCode() int { return 3 }

func caNext(s CAStage, name string) string {
	switch s {
	case CASteady:
		return fmt.Sprintf(`"k8scrypto ca rotate prepare --ca %s" when the CA is due for a new key ("k8scrypto ca renew %s" extends it with its own key)`, name, name)
	case CAPrepared:
		return fmt.Sprintf(`on every other control-plane node copy %s from this node and run "k8scrypto ca rotate prepare --ca %s" there (it adopts the copied stage); then restart, node by node, what it names (restart: %s); then "k8scrypto ca rotate promote --ca %s" on every control-plane node`,
			strings.Join(caStageFiles(name), ", "), name, caRestart(name, "prepare", "<cert-dir>"), name)
	}
	return fmt.Sprintf(`run "k8scrypto ca rotate promote --ca %s" on every control-plane node where it has not run (each re-issues its own certificates with the same new key; nothing to copy) and restart, node by node, what it names (restart: %s); once every client uses a certificate of the new CA, "k8scrypto ca rotate prune --ca %s --yes" on every control-plane node`, name, caRestart(name, "promote", "<cert-dir>"), name)
}

// caStageFiles are the files, relative to the certificate directory, that carry a prepared rotation of
// the CA name to another control-plane node: the bundle, the staged key and, for the cluster CA, the
// signer alone.
func caStageFiles(name string) []string {
	spec, _ := pki.LookupCert(name)
	out := []string{spec.CertPath(""), spec.KeyPath("") + ".next"}
	if name == pki.KubeconfigCAName {
		out = append(out, CASignerFile)
	}
	return out
}

func (r *CARotation) nextKeyPath() string { return r.spec.KeyPath(r.Cfg.CertDir) + ".next" }

// CASignerFile is the cluster CA's signing certificate alone while ca.crt is a bundle (from prepare to
// prune). kube-controller-manager signs with --cluster-signing-cert-file and refuses a file that holds more
// than one certificate ("expected 1 certificate, found 2"): it cannot start, and cannot sign a kubelet's
// CSR, with kubeadm's --cluster-signing-cert-file=ca.crt during the overlap (e2e TestCALife saw it exit).
// That flag must point at a copy of the signer for as long; this is that copy, kept in step by every step.
const CASignerFile = "ca-signer.crt"

// signerPath is where the rotation of the cluster CA keeps its signer alone; "" for the other CAs, which
// kube-controller-manager does not sign with.
func (r *CARotation) signerPath() string {
	if r.Name != pki.KubeconfigCAName {
		return ""
	}
	return filepath.Join(r.Cfg.CertDir, CASignerFile)
}

// Read reads the CA file, its key and a staged next key, and the stage they are in.
func (r *CARotation) Read() error {
	spec, ok := pki.LookupCert(r.Name)
	if !ok || !spec.IsCA() {
		return &UsageError{fmt.Errorf("--ca %q: the CAs are %s", r.Name, strings.Join(CANames, ", "))}
	}
	r.spec = spec
	first, rest, err := LoadCert(spec.CertPath(r.Cfg.CertDir))
	if err != nil {
		return err
	}
	r.bundle = append([]*x509.Certificate{first}, rest...)
	if r.key, err = LoadKey(spec.KeyPath(r.Cfg.CertDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the %s CA has no key at %s: an external CA is rotated by whoever holds its key", r.Name, spec.KeyPath(r.Cfg.CertDir))
		}
		return err
	}
	r.next, err = LoadKey(r.nextKeyPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	signer := slices.IndexFunc(r.bundle, func(c *x509.Certificate) bool { return pki.KeyMatchesCert(r.key, c) })
	switch {
	case signer < 0:
		return fmt.Errorf("%s matches none of the %d certificate(s) in %s", spec.KeyPath(r.Cfg.CertDir), len(r.bundle), spec.CertPath(r.Cfg.CertDir))
	case r.next != nil && len(r.bundle) == 2 && signer == 0 && pki.KeyMatchesCert(r.next, r.bundle[1]):
		r.stage = CAPrepared
	case r.next != nil && len(r.bundle) == 2 && signer == 0:
		return fmt.Errorf("the staged key %s does not match the new CA certificate, the second in %s: they come from different prepare runs; copy both from the node where prepare ran (or restore both from the backup of the prepare step)", r.nextKeyPath(), spec.CertPath(r.Cfg.CertDir))
	case r.next != nil:
		return fmt.Errorf("%s exists but %s (%d certificate(s)) does not hold the signer first and the staged key's certificate second: copy both from the node where prepare ran (or restore both from the backup of the prepare step)", r.nextKeyPath(), spec.CertPath(r.Cfg.CertDir), len(r.bundle))
	case len(r.bundle) > 1 && signer == 0 && slices.ContainsFunc(r.bundle[1:], func(c *x509.Certificate) bool { return c.NotBefore.After(r.bundle[0].NotBefore) }):
		// Promoted, the new CA signs and is the newest; a signer followed by a newer certificate is a
		// prepared bundle that came without its staged key.
		return fmt.Errorf("%s holds a CA certificate newer than its signer but there is no staged key %s: a prepared %s copied without its key (copy %s from the node where prepare ran), or a trust anchor added by hand after the signer (take it out for the rotation, add it back after prune)", spec.CertPath(r.Cfg.CertDir), r.nextKeyPath(), filepath.Base(spec.CertPath(r.Cfg.CertDir)), filepath.Base(r.nextKeyPath()))
	case len(r.bundle) > 1 && signer == 0:
		r.stage = CAPromoted
	case len(r.bundle) == 1:
		r.stage = CASteady
	default:
		return fmt.Errorf("%s holds %d certificates and the one that matches %s is not first: put the signer first (the apiserver and kubelets sign and verify with the first)", spec.CertPath(r.Cfg.CertDir), len(r.bundle), spec.KeyPath(r.Cfg.CertDir))
	}
	return nil
}

// Stage is the stage Read found.
func (r *CARotation) Stage() CAStage { return r.stage }

// Adopted says that Plan of prepare found the node prepared (the staged key and its certificate copied
// from another node, or an earlier prepare) and made no new key.
func (r *CARotation) Adopted() bool { return r.adopted }

// differs reports whether the file at path is absent, unreadable or holds other bytes than data.
func differs(path string, data []byte) bool {
	cur, err := readRegular(path)
	return err != nil || !bytes.Equal(cur, data)
}

// Check refuses a step out of order, and prune without --yes. prepare also runs on a prepared node: it
// adopts the stage copied from the node where prepare ran (Plan), or finds nothing to do.
func (r *CARotation) Check(_ context.Context, step string) error {
	want := map[string]CAStage{"prepare": CASteady, "promote": CAPrepared, "prune": CAPromoted}[step]
	if want == "" {
		return &UsageError{fmt.Errorf("unknown step %q: prepare, promote or prune", step)}
	}
	if r.stage != want && (step != "prepare" || r.stage != CAPrepared) {
		return &CAStageError{Op: "ca rotate " + step, CA: r.Name, Stage: r.stage}
	}
	if step == "prune" && !r.Yes {
		return &UsageError{fmt.Errorf("prune removes the old %s CA from every trust bundle: clients and certificates it signed stop working. Add --yes once every component runs with certificates of the new CA", r.Name)}
	}
	return nil
}

// Files lists what a step may replace: the CA pair and the staged key, the certificates the CA signs, and
// for the cluster CA the kubeconfigs.
func (r *CARotation) Files() []string {
	out := []string{r.spec.CertPath(r.Cfg.CertDir), r.spec.KeyPath(r.Cfg.CertDir), r.nextKeyPath()}
	if p := r.signerPath(); p != "" {
		out = append(out, p)
	}
	for _, s := range r.Cfg.Certs() {
		if s.CAName == r.Name {
			out = append(out, s.CertPath(r.Cfg.CertDir))
		}
	}
	if r.Name == pki.KubeconfigCAName {
		for _, k := range pki.Kubeconfigs() {
			out = append(out, k.Path(r.KubeconfigDir))
		}
	}
	return out
}

// Plan computes the step's files.
func (r *CARotation) Plan(_ context.Context, step string) (*RotationPlan, error) {
	plan := &RotationPlan{}
	crtPath := r.spec.CertPath(r.Cfg.CertDir)
	event := func(file, detail string, cert *x509.Certificate) {
		ev := pki.AuditEvent{Time: r.Now, Operation: pki.AuditRotate, File: file, Detail: "ca rotate " + step + " --ca " + r.Name + ": " + detail}
		if cert != nil {
			ev.Serial, ev.SHA256 = cert.SerialNumber.String(), pki.Fingerprint(cert.Raw)
		}
		plan.Events = append(plan.Events, ev)
	}
	var trust []*x509.Certificate
	switch {
	case step == "prepare" && r.stage == CAPrepared:
		// The stage is here already, copied from the node where prepare ran (Read checked that the staged
		// key matches the second certificate): no new key; this node's own files are brought to it.
		r.adopted = true
		trust = r.bundle
	case step == "prepare":
		old := r.bundle[0]
		alg := pki.AlgorithmOf(old.PublicKey)
		if alg == "" {
			alg = r.Cfg.Algorithm
		}
		keys := r.Keys
		if keys == nil {
			keys = pki.GenerateKey
		}
		key, err := keys(r.Name+".next", alg)
		if err != nil {
			return nil, err
		}
		next, err := pki.NewSelfSignedCA(pki.CertRequest{CommonName: old.Subject.CommonName, Organization: old.Subject.Organization,
			NotBefore: r.Now.Add(-pki.Backdate).UTC(), NotAfter: r.Now.Add(r.Cfg.CAValidity).UTC()}, key, r.Rand)
		if err != nil {
			return nil, err
		}
		keyPEM, err := pki.EncodePrivateKey(key)
		if err != nil {
			return nil, err
		}
		plan.Files = append(plan.Files, pki.File{Path: r.nextKeyPath(), Data: keyPEM, Mode: pki.ModeKey})
		event(r.nextKeyPath(), "new CA key staged", nil)
		trust = []*x509.Certificate{old, next}
		event(crtPath, "new CA certificate trusted second; the old one still signs", next)
	case step == "promote":
		old, next := r.bundle[0], r.bundle[1]
		keyPEM, err := pki.EncodePrivateKey(r.next)
		if err != nil {
			return nil, err
		}
		plan.Files = append(plan.Files, pki.File{Path: r.spec.KeyPath(r.Cfg.CertDir), Data: keyPEM, Mode: pki.ModeKey})
		plan.Obsolete = append(plan.Obsolete, r.nextKeyPath())
		trust = []*x509.Certificate{next, old}
		event(crtPath, "the new CA signs; the old one is still trusted", next)
		leaves, err := r.reissueLeaves(next, r.next, trust)
		if err != nil {
			return nil, err
		}
		plan.Files = append(plan.Files, leaves.Files...)
		plan.Events = append(plan.Events, leaves.Events...)
	case step == "prune":
		trust = []*x509.Certificate{r.bundle[0]}
		event(crtPath, fmt.Sprintf("%d old CA certificate(s) no longer trusted", len(r.bundle)-1), r.bundle[0])
	}
	var pemData []byte
	for _, c := range trust {
		pemData = append(pemData, pki.EncodeCert(c)...)
	}
	if !r.adopted || differs(crtPath, pemData) {
		plan.Files = append(plan.Files, pki.File{Path: crtPath, Data: pemData, Mode: certFileMode(crtPath)})
		if r.adopted {
			event(crtPath, "the copied stage adopted: old CA first (it still signs), new CA second, matching "+r.nextKeyPath(), trust[1])
		}
	}
	if p := r.signerPath(); p != "" {
		if step == "prune" {
			// ca.crt holds one certificate again: kube-controller-manager goes back to it.
			if _, err := os.Lstat(p); err == nil {
				plan.Obsolete = append(plan.Obsolete, p)
				event(p, "removed: "+crtPath+" is the signer alone again", nil)
			}
		} else if data := pki.EncodeCert(trust[0]); !r.adopted || differs(p, data) {
			plan.Files = append(plan.Files, pki.File{Path: p, Data: data, Mode: certFileMode(crtPath)})
			event(p, "the signing certificate alone, for kube-controller-manager's --cluster-signing-cert-file while "+crtPath+" is a bundle", trust[0])
		}
	}
	if r.Name == pki.KubeconfigCAName && step != "promote" {
		for _, k := range pki.Kubeconfigs() {
			f, ok, err := editKubeconfigCA(k.Path(r.KubeconfigDir), nil, trustOnly(trust))
			if err != nil {
				return nil, err
			}
			if ok {
				plan.Files = append(plan.Files, f)
				event(f.Path, "certificate-authority-data follows "+crtPath, nil)
			}
		}
	}
	return plan, nil
}

// reissueLeaves issues every certificate the CA signs again from the new CA, with the same subject, SANs,
// usages and key, for certificateValidityPeriod from now; for the cluster CA also every kubeconfig client
// certificate k8scrypto manages (a kubelet.conf that points at the kubelet's rotated certificate is the
// kubelet's: kube-controller-manager signs its next one with the new CA).
func (r *CARotation) reissueLeaves(ca *x509.Certificate, caKey crypto.Signer, trust []*x509.Certificate) (*RotationPlan, error) {
	plan := &RotationPlan{}
	reissue := func(cert *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
		notAfter := r.Now.Add(r.Cfg.CertValidity).UTC()
		if notAfter.After(ca.NotAfter) {
			notAfter = ca.NotAfter
		}
		return pki.NewSignedCert(pki.CertRequest{
			CommonName: cert.Subject.CommonName, RawSubject: cert.RawSubject, URIs: cert.URIs, EmailAddresses: cert.EmailAddresses,
			AltNames: pki.AltNames{DNSNames: cert.DNSNames, IPs: cert.IPAddresses}, Usages: cert.ExtKeyUsage,
			NotBefore: r.Now.Add(-pki.Backdate).UTC(), NotAfter: notAfter,
		}, pub, ca, caKey, r.Rand)
	}
	for _, s := range r.Cfg.Certs() {
		if s.CAName != r.Name {
			continue
		}
		path := s.CertPath(r.Cfg.CertDir)
		cert, _, err := LoadCert(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		renewed, err := reissue(cert, cert.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		plan.Files = append(plan.Files, pki.File{Path: path, Data: pki.EncodeCert(renewed), Mode: certFileMode(path)})
		plan.Events = append(plan.Events, pki.AuditEvent{Time: r.Now, Operation: pki.AuditRenew, File: path, Serial: renewed.SerialNumber.String(),
			SHA256: pki.Fingerprint(renewed.Raw), Detail: "ca rotate promote --ca " + r.Name + ": re-issued by the new CA, same key"})
	}
	if r.Name != pki.KubeconfigCAName {
		return plan, nil
	}
	for _, k := range pki.Kubeconfigs() {
		path := k.Path(r.KubeconfigDir)
		kc, err := LoadKubeconfig(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !kc.Embedded {
			f, ok, err := editKubeconfigCA(path, nil, trustOnly(trust))
			if err != nil {
				return nil, err
			}
			if ok {
				plan.Files = append(plan.Files, f)
			}
			continue
		}
		renewed, err := reissue(kc.ClientCert, kc.ClientKey.Public())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.FileName, err)
		}
		data, err := renderKubeconfig(kc, renewed, kc.ClientKey, ca)
		if err != nil {
			return nil, err
		}
		f, ok, err := editKubeconfigCA(path, data, trustOnly(trust))
		if err != nil {
			return nil, err
		}
		if !ok { // the rendered file already trusts exactly trust: it is written for its client certificate
			f = pki.File{Path: path, Data: data, Mode: pki.ModeKey}
		}
		plan.Files = append(plan.Files, f)
		plan.Events = append(plan.Events, pki.AuditEvent{Time: r.Now, Operation: pki.AuditRenew, File: path, Serial: renewed.SerialNumber.String(),
			SHA256: pki.Fingerprint(renewed.Raw), Detail: "ca rotate promote --ca " + r.Name + ": client certificate re-issued by the new CA, same key"})
	}
	return plan, nil
}

// editKubeconfigCA rewrites the embedded certificate-authority-data of every cluster of a kubeconfig with
// edit, which gets the certificates embedded now (nil when they do not parse) and returns what to embed
// instead (nil: leave that cluster as it is). data is the file's content, or nil to read path. ok is false
// when the file is absent or no cluster changed. Both "ca renew" (swapCA) and "ca rotate" (trustOnly) go
// through it.
func editKubeconfigCA(path string, data []byte, edit func([]*x509.Certificate) []*x509.Certificate) (pki.File, bool, error) {
	if data == nil {
		var err error
		data, err = readRegular(path)
		if errors.Is(err, fs.ErrNotExist) {
			return pki.File{}, false, nil
		}
		if err != nil {
			return pki.File{}, false, err
		}
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return pki.File{}, false, fmt.Errorf("%s: not a valid kubeconfig: %w", path, err)
	}
	changed := false
	for _, c := range cfg.Clusters {
		if len(c.CertificateAuthorityData) == 0 {
			continue // a file reference or the system roots: nothing embedded
		}
		var current []*x509.Certificate
		if first, rest, err := pki.ParseCertChain(c.CertificateAuthorityData); err == nil {
			current = append([]*x509.Certificate{first}, rest...)
		}
		next := edit(current)
		if next == nil {
			continue
		}
		var bundle []byte
		for _, ca := range next {
			bundle = append(bundle, pki.EncodeCert(ca)...)
		}
		if !bytes.Equal(bundle, c.CertificateAuthorityData) {
			c.CertificateAuthorityData, changed = bundle, true
		}
	}
	if !changed {
		return pki.File{}, false, nil
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return pki.File{}, false, err
	}
	return pki.File{Path: path, Data: out, Mode: pki.ModeKey}, true, nil
}

// trustOnly makes a kubeconfig trust exactly trust.
func trustOnly(trust []*x509.Certificate) func([]*x509.Certificate) []*x509.Certificate {
	return func([]*x509.Certificate) []*x509.Certificate { return trust }
}

// swapCA replaces old by renewed where a kubeconfig embeds it, and keeps the rest of its bundle.
func swapCA(old, renewed *x509.Certificate) func([]*x509.Certificate) []*x509.Certificate {
	return func(current []*x509.Certificate) []*x509.Certificate {
		i := slices.IndexFunc(current, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, old.Raw) })
		if i < 0 {
			return nil
		}
		out := slices.Clone(current)
		out[i] = renewed
		return out
	}
}

var _ Rotation = (*CARotation)(nil)
