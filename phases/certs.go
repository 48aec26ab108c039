package phases

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
)

// CertsPhase generates the cluster's certificate authorities and leaf certificates, one sub-phase per
// certificate of the catalogue, in kubeadm's order.
//
// INPUTS: the configuration; existing files under the certificate directory, which are reused when valid.
// OUTPUTS: <cert-dir>/{ca,apiserver,apiserver-kubelet-client,front-proxy-ca,front-proxy-client,
// apiserver-etcd-client}.{crt,key} and <cert-dir>/etcd/{ca,server,peer,healthcheck-client}.{crt,key}.
func CertsPhase() Phase {
	p := Phase{
		Name:  "certs",
		Short: "Certificate generation",
		Long:  "Generate the certificate authorities and certificates of the control plane, or check and reuse the existing ones.",
	}
	for _, spec := range pki.Catalog() {
		sub := Phase{
			Name:  spec.Name,
			Short: certShort(spec),
			Run: func(_ context.Context, d *Data) error {
				if spec.IsCA() {
					return ensureCA(d, spec)
				}
				return ensureLeaf(d, spec)
			},
			KeysNeeded: func(d *Data) []string {
				if (spec.Etcd && !d.Cfg.LocalEtcd) || haveAny(d, spec.CertPath(d.Cfg.CertDir), spec.KeyPath(d.Cfg.CertDir)) {
					return nil
				}
				return []string{spec.BaseName}
			},
			Outputs: func(d *Data) []string {
				return []string{spec.CertPath(d.Cfg.CertDir), spec.KeyPath(d.Cfg.CertDir)}
			},
		}
		if spec.Etcd {
			sub.RunIf = func(d *Data) (bool, string) {
				if !d.Cfg.LocalEtcd {
					return false, "external etcd: no etcd certificates are generated"
				}
				return true, ""
			}
		}
		p.Phases = append(p.Phases, sub)
	}
	return p
}

func certShort(s pki.CertSpec) string {
	if s.IsCA() {
		return fmt.Sprintf("Generate the self-signed %s certificate authority (%s)", s.Name, s.BaseName)
	}
	return fmt.Sprintf("Generate the %s certificate, signed by %s (%s)", s.Name, s.CAName, s.BaseName)
}

func haveAny(d *Data, paths ...string) bool {
	for _, p := range paths {
		if ok, err := d.Exists(p); ok || err != nil {
			return true
		}
	}
	return false
}

// LoadCert reads a certificate file, naming the file in any error.
func LoadCert(path string) (*x509.Certificate, []*x509.Certificate, error) {
	data, err := readRegular(path)
	if err != nil {
		return nil, nil, err
	}
	cert, rest, err := pki.ParseCertChain(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, rest, nil
}

// LoadKey reads a private key file, naming the file in any error (never its content).
func LoadKey(path string) (crypto.Signer, error) {
	data, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// caFiles is a CA's certificate file and key as read from the certificate directory: every certificate of
// the file (the CA's own first; more in a bundle during a CA rotation) and the key. Init (loadCA), renewal
// (loadRenewCA) and the expiry report (loadCAOnDisk) read CAs only through readCA, and each judges and
// words what it finds in its own terms: init refuses the run, renewal fails each certificate the CA
// signs, the report shows a problem.
type caFiles struct {
	crtPath, keyPath string
	certs            []*x509.Certificate
	key              crypto.Signer // nil when not read
	keyErr           error         // the key could not be read or parsed (fs.ErrNotExist when absent and looked for)
}

// readCA reads a CA's certificate file (an error when it cannot be read or parsed) and its key: when
// keyPresent is nil the key is read if it is there; otherwise only when keyPresent says so.
func readCA(crtPath, keyPath string, keyPresent func(path string) (bool, error)) (*caFiles, error) {
	cert, rest, err := LoadCert(crtPath)
	if err != nil {
		return nil, err
	}
	c := &caFiles{crtPath: crtPath, keyPath: keyPath, certs: append([]*x509.Certificate{cert}, rest...)}
	if keyPresent != nil {
		if present, err := keyPresent(keyPath); err != nil || !present {
			return c, err
		}
	}
	c.key, c.keyErr = LoadKey(keyPath)
	return c, nil
}

// notCA reports a CA certificate without the CA basic constraint or the certSign key usage.
func (c *caFiles) notCA() bool {
	cert := c.certs[0]
	return !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0
}

// keyMismatch reports a key that was read and does not belong to the CA certificate.
func (c *caFiles) keyMismatch() bool {
	return c.key != nil && !pki.KeyMatchesCert(c.key, c.certs[0])
}

// loadCA reads an existing CA and checks that it can sign today: the CA basic constraint and the certSign
// usage, the validity period, and (when the key is present) that the key belongs to the certificate. A CA
// without its key is an external CA.
func loadCA(d *Data, spec pki.CertSpec) (*CA, error) {
	restore := "restore it from a backup (a new CA would mean re-issuing everything it signed)"
	c, err := readCA(spec.CertPath(d.Cfg.CertDir), spec.KeyPath(d.Cfg.CertDir), d.Exists)
	if err != nil {
		return nil, fmt.Errorf("%w; %s", err, restore)
	}
	crtPath, keyPath, cert := c.crtPath, c.keyPath, c.certs[0]
	switch {
	case c.notCA():
		return nil, fmt.Errorf("%s is not a CA certificate (no CA basic constraint or no certSign key usage); restore the %s CA or remove it and its key to create a new one", crtPath, spec.Name)
	case d.Now.After(cert.NotAfter):
		if c.key == nil {
			return nil, fmt.Errorf("CA %s expired on %s and its key is not here (an external CA): have its owner renew it", crtPath, cert.NotAfter.UTC().Format("2006-01-02"))
		}
		return nil, fmt.Errorf("CA %s expired on %s; every certificate it signed is invalid until it is renewed with its own key: run \"k8scrypto ca renew %s\" (the same key and subject, so everything it signed verifies again), then \"k8scrypto renew certs\" and this command again", crtPath, cert.NotAfter.UTC().Format("2006-01-02"), spec.Name)
	case d.Now.Before(cert.NotBefore):
		return nil, fmt.Errorf("CA %s is not valid until %s; check the system clock", crtPath, cert.NotBefore.UTC().Format("2006-01-02 15:04 MST"))
	case c.keyErr != nil:
		return nil, fmt.Errorf("%w; %s", c.keyErr, restore)
	case c.keyMismatch():
		return nil, fmt.Errorf("%s does not match %s: restore the CA key that belongs to this certificate", keyPath, crtPath)
	}
	return &CA{Cert: cert, Key: c.key}, nil
}

func ensureCA(d *Data, spec pki.CertSpec) error {
	crtPath, keyPath := spec.CertPath(d.Cfg.CertDir), spec.KeyPath(d.Cfg.CertDir)
	haveCrt, err := d.Exists(crtPath)
	if err != nil {
		return err
	}
	haveKey, err := d.Exists(keyPath)
	if err != nil {
		return err
	}
	switch {
	case haveCrt:
		ca, err := loadCA(d, spec)
		if err != nil {
			return err
		}
		d.cas[spec.Name] = ca
		r := certResult(ca.Cert)
		r.Path = crtPath
		if ca.Key == nil {
			r.Reason = "external CA: no key present, certificates it signs must already exist"
		}
		d.Reuse(r)
		if ca.Key != nil {
			kr := keyResult(ca.Key)
			kr.Path = keyPath
			d.Reuse(kr)
		}
		return nil
	case haveKey:
		return fmt.Errorf("%s exists but %s does not: restore the CA certificate, or remove the key to create a new CA", keyPath, crtPath)
	}

	req, err := spec.Request(d.Cfg, d.Now)
	if err != nil {
		return err
	}
	if d.DryRun {
		d.cas[spec.Name] = &CA{Cert: &x509.Certificate{NotAfter: req.NotAfter}}
		r := caRequestResult(req)
		d.Stage(pki.File{Path: keyPath, Mode: pki.ModeKey}, FileResult{Type: "key"})
		d.Stage(pki.File{Path: crtPath, Mode: d.CertMode()}, r)
		return nil
	}
	key, err := d.Keys.Get(spec.BaseName)
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", spec.Name, err)
	}
	cert, err := pki.NewSelfSignedCA(req, key, d.Rand)
	if err != nil {
		return err
	}
	return d.stagePair(spec, cert, key, &CA{Cert: cert, Key: key})
}

// stagePair stages key then certificate (kubeadm's order) and remembers a CA.
func (d *Data) stagePair(spec pki.CertSpec, cert *x509.Certificate, key crypto.Signer, ca *CA) error {
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key for %s: %w", spec.Name, err)
	}
	d.Stage(pki.File{Path: spec.KeyPath(d.Cfg.CertDir), Data: keyPEM, Mode: pki.ModeKey}, keyResult(key))
	d.Stage(pki.File{Path: spec.CertPath(d.Cfg.CertDir), Data: pki.EncodeCert(cert), Mode: d.CertMode()}, certResult(cert))
	if ca != nil {
		d.cas[spec.Name] = ca
	}
	return nil
}

// CA returns the named certificate authority: created or loaded earlier in this run, else loaded from disk.
func (d *Data) CA(name string) (*CA, error) {
	if ca, ok := d.cas[name]; ok {
		return ca, nil
	}
	spec, ok := pki.LookupCert(name)
	if !ok || !spec.IsCA() {
		return nil, fmt.Errorf("unknown CA %q", name)
	}
	crtPath := spec.CertPath(d.Cfg.CertDir)
	if ok, err := d.Exists(crtPath); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("CA certificate %s not found: run \"k8scrypto init phase certs %s\" first", crtPath, name)
	}
	ca, err := loadCA(d, spec)
	if err != nil {
		return nil, err
	}
	d.cas[name] = ca
	return ca, nil
}

func ensureLeaf(d *Data, spec pki.CertSpec) error {
	crtPath, keyPath := spec.CertPath(d.Cfg.CertDir), spec.KeyPath(d.Cfg.CertDir)
	ca, err := d.CA(spec.CAName)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.Name, err)
	}
	req, err := spec.Request(d.Cfg, d.Now)
	if err != nil {
		return err
	}
	haveCrt, err := d.Exists(crtPath)
	if err != nil {
		return err
	}
	haveKey, err := d.Exists(keyPath)
	if err != nil {
		return err
	}
	fix := reissueFix(d, spec, ca, crtPath, keyPath)
	switch {
	case haveCrt && haveKey:
		unreadable := fmt.Sprintf("restore it from a backup, or remove %s and %s and run init again to issue a new pair", crtPath, keyPath)
		cert, chain, err := LoadCert(crtPath)
		if err != nil {
			return fmt.Errorf("%w; %s", err, unreadable)
		}
		key, err := LoadKey(keyPath)
		if err != nil {
			return fmt.Errorf("%w; %s", err, unreadable)
		}
		var problems []string
		if !pki.KeyMatchesCert(key, cert) {
			problems = append(problems, fmt.Sprintf("%s does not match %s", keyPath, crtPath))
		}
		if ca.Cert.Raw == nil { // the CA is being created in this (dry) run
			problems = append(problems, fmt.Sprintf("it cannot be signed by the %s CA this run creates", spec.CAName))
		} else if err := pki.VerifyChain(cert, chain, ca.Cert, d.Now); err != nil {
			problems = append(problems, fmt.Sprintf("it does not verify against %s: %v", spec.CAName, err))
		}
		if missing := pki.MissingSANs(cert, pki.NormalizeAltNames(req.AltNames)); len(missing) > 0 {
			problems = append(problems, "it lacks SANs the configuration asks for: "+strings.Join(missing, ", "))
		}
		if len(problems) > 0 {
			return fmt.Errorf("existing certificate %s cannot be reused: %s; %s", crtPath, strings.Join(problems, "; "), fix)
		}
		r := certResult(cert)
		r.Path = crtPath
		d.Reuse(r)
		r = keyResult(key)
		r.Path = keyPath
		d.Reuse(r)
		return nil
	case haveCrt:
		return fmt.Errorf("%s exists but its key %s does not: restore the key, or %s", crtPath, keyPath, fix)
	case haveKey:
		// Renew needs the old certificate (it keeps its subject and SANs), so the fix here is the key's: k8scrypto
		// does not replace a private key on its own, and a key without its certificate is of no use.
		return fmt.Errorf("%s exists but its certificate %s does not: restore the certificate, or move the key out of the directory (keep it until the cluster works) and re-run to create a new pair", keyPath, crtPath)
	}
	if ca.external() {
		return fmt.Errorf("external CA mode: %s has no key, so %s must be provided (signed by that CA) at %s and %s",
			spec.CAName, spec.Name, crtPath, keyPath)
	}
	if req.NotAfter.After(ca.Cert.NotAfter) {
		return fmt.Errorf("certificateValidityPeriod: %s would expire on %s, after its CA %s (%s); shorten the period or renew the CA",
			spec.Name, req.NotAfter.Format("2006-01-02"), spec.CAName, ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	}
	if d.DryRun {
		d.Stage(pki.File{Path: keyPath, Mode: pki.ModeKey}, FileResult{Type: "key"})
		d.Stage(pki.File{Path: crtPath, Mode: d.CertMode()}, requestResult(req))
		return nil
	}
	key, err := d.Keys.Get(spec.BaseName)
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", spec.Name, err)
	}
	cert, err := pki.NewSignedCert(req, key.Public(), ca.Cert, ca.Key, d.Rand)
	if err != nil {
		return err
	}
	return d.stagePair(spec, cert, key, nil)
}

// reissueFix says how to replace a leaf that cannot be reused. With the CA's key that is "renew certs NAME
// --force" with the flags that decide this run's SANs: without them renew keeps the old certificate's SANs,
// and this run would fail again. Renew refuses a certificate of an external CA: only that CA can issue it.
func reissueFix(d *Data, spec pki.CertSpec, ca *CA, crtPath, keyPath string) string {
	if ca.external() {
		caSpec, _ := pki.LookupCert(spec.CAName)
		return fmt.Sprintf("%s is an external CA (%s has no key %s), so k8scrypto cannot re-issue it: have that CA issue a new %s certificate with the SANs the configuration asks for, and replace %s and %s with it",
			spec.CAName, caSpec.CertPath(d.Cfg.CertDir), caSpec.KeyPath(d.Cfg.CertDir), spec.Name, crtPath, keyPath)
	}
	return fmt.Sprintf("run \"%s\" to re-issue it with the SANs of this run's configuration (the old files are backed up)", RenewCommand(d, spec.Name))
}

// RenewCommand renders "k8scrypto renew certs NAME --force" with the flags that make renew issue the
// certificate this run asks for: --cert-dir, the command-line flags of this run that decide SANs (RenewArgs),
// or, when there are none, the resolved values themselves, so that renew resolves the same configuration
// instead of copying the old certificate's SANs.
func RenewCommand(d *Data, name string) string {
	c := d.Cfg
	args := []string{"k8scrypto", "renew", "certs", name, "--force"}
	if c.CertDir != pki.DefaultCertificateDir {
		args = append(args, "--cert-dir", c.CertDir)
	}
	if len(d.RenewArgs) > 0 {
		args = append(args, d.RenewArgs...)
	} else {
		add := func(flag, value, def string) {
			if value != "" && value != def {
				args = append(args, flag, value)
			}
		}
		add("--node-name", c.NodeName, "")
		if c.AdvertiseAddress != nil {
			add("--advertise-address", c.AdvertiseAddress.String(), "")
		}
		add("--control-plane-endpoint", c.ControlPlaneEndpoint, "")
		add("--service-cidr", c.ServiceSubnet, pki.DefaultServiceSubnet)
		add("--service-dns-domain", c.DNSDomain, pki.DefaultDNSDomain)
		add("--apiserver-cert-extra-sans", strings.Join(c.APIServerCertSANs, ","), "")
		add("--encryption-algorithm", string(c.Algorithm), string(pki.RSA2048))
	}
	if c.StrictPermissions && !slices.Contains(args, "--strict-permissions") {
		args = append(args, "--strict-permissions")
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes an argument for a POSIX shell when it holds anything but plainly safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// keyResult describes a private key by the fingerprint of its public half.
func keyResult(key crypto.Signer) FileResult {
	r := FileResult{Type: "key"}
	if fp, err := pki.PublicKeyFingerprint(key.Public()); err == nil {
		r.SHA256 = fp
	}
	return r
}
