package phases

import (
	"errors"
	"log/slog"
	"strings"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
)

// ConfigSource is where a command's configuration comes from: kubeadm's configuration file (--config), the
// flags over it (the K8SCRYPTO_* variables and the settings file have been applied to them), and the host,
// whose name is the default node name. resolve is the one place that turns it into a configuration.
type ConfigSource struct {
	File     string
	Flags    config.Overrides
	Hostname func() (string, error)
}

// Resolved is a command's configuration.
type Resolved struct {
	PKI *pki.Config
	// Kubeadm is the loaded kubeadm configuration, when it was loaded in full.
	Kubeadm *config.Config
	// SANsLoaded: the SANs come from a loaded configuration (--config or a SAN flag), so renewal compares
	// certificates with them; kubeadm's defaults (host name, default-route address) may not be what init used.
	SANsLoaded bool
	// ExplicitAlgorithm: a key algorithm was asked for, by --encryption-algorithm or the configuration.
	ExplicitAlgorithm bool
	// Notices say what the configuration's resolution chose or changed by itself (config.Config.Notices);
	// the commands that write certificates from it log them.
	Notices []string
}

// configUse says how much of the configuration a command needs.
type configUse int

const (
	// forInit loads it in full: files, flags and what is guessed from the host.
	forInit configUse = iota
	// forMaintenance (rotations, status) loads the file when given, else takes kubeadm's defaults and the
	// flags, nothing guessed from the host.
	forMaintenance
	// forRenewal is forMaintenance, loaded in full as soon as a flag that decides SANs is given.
	forRenewal
	// forReport (check-expiration) reads only the certificate directory and external etcd: from the file
	// when given, else the defaults.
	forReport
)

// resolve turns the source into the command's configuration and says on log, as warnings, what the
// resolution decided by itself (Notices: a node name it lower-cased, an address it picked) and what of the
// file it ignores (the configuration's Warnings). Every command resolves here, so every command says them
// the same way, dry run or not; -q (errors only) silences them, as it does every warning.
func (s ConfigSource) resolve(use configUse, log *slog.Logger) (*Resolved, error) {
	r, err := s.resolveValues(use)
	// A malformed value is a usage error whatever its source (exit 2); the message is the same from each.
	var invalid *config.InvalidError
	if errors.As(err, &invalid) {
		return nil, &UsageError{err}
	}
	if r != nil && r.PKI != nil {
		// Every path a command reports is absolute, whatever the flag or file gave.
		r.PKI.CertDir = pki.AbsPath(r.PKI.CertDir)
	}
	if r != nil && log != nil {
		if r.Kubeadm != nil {
			for _, w := range r.Kubeadm.Warnings {
				log.Warn(w, "config", s.File)
			}
		}
		for _, n := range r.Notices {
			log.Warn(n)
		}
	}
	return r, err
}

func (s ConfigSource) resolveValues(use configUse) (*Resolved, error) {
	full := func() (*Resolved, error) {
		c, err := config.Load(s.File, s.Flags, s.Hostname)
		if err != nil {
			return nil, err
		}
		return &Resolved{PKI: c.PKI, Kubeadm: c, SANsLoaded: true, ExplicitAlgorithm: true, Notices: c.Notices}, nil
	}
	switch {
	case use == forInit:
		return full()
	case use == forReport:
		if s.File == "" {
			if err := config.Invalid(checkCertDirFlag(s.Flags.CertDir)); err != nil {
				return nil, err
			}
			return &Resolved{PKI: DefaultPKIConfig(s.Flags.CertDir)}, nil
		}
		c, err := config.Load(s.File, config.Overrides{CertDir: s.Flags.CertDir}, s.Hostname)
		if err != nil {
			return nil, err
		}
		return &Resolved{PKI: c.PKI, Kubeadm: c, Notices: c.Notices}, nil
	case use == forRenewal && s.sanFlagsSet(), s.File != "":
		return full()
	}
	// Without a file, only the certificate directory, the algorithm and the permissions come from the
	// flags; they are checked as the full configuration checks them, with the same messages.
	r := &Resolved{PKI: DefaultPKIConfig(s.Flags.CertDir)}
	r.PKI.StrictPermissions = s.Flags.StrictPermissions
	var algErr error
	if s.Flags.EncryptionAlgorithm != "" {
		alg, err := pki.ParseAlgorithm(s.Flags.EncryptionAlgorithm)
		if err != nil {
			algErr = &pki.FieldError{Field: "encryptionAlgorithm", Reason: err.Error()}
		}
		r.PKI.Algorithm, r.ExplicitAlgorithm = alg, true
	}
	if err := config.Invalid(checkCertDirFlag(s.Flags.CertDir), algErr); err != nil {
		return nil, err
	}
	return r, nil
}

// checkCertDirFlag checks a --cert-dir given without a configuration file as the configuration's
// certificatesDir is checked.
func checkCertDirFlag(dir string) error {
	return pki.CheckText("certificatesDir", dir)
}

// sanFlagsSet reports whether a flag that decides certificate SANs was given, which needs the full
// configuration (host name, addresses) resolved.
func (s ConfigSource) sanFlagsSet() bool {
	o := s.Flags
	return o.NodeName != "" || o.AdvertiseAddress != "" || o.ControlPlaneEndpoint != "" || o.ServiceCIDR != "" ||
		o.ServiceDNSDomain != "" || len(o.APIServerCertSANs) > 0
}

// DefaultPKIConfig is the configuration renewal and expiry checks use without --config: kubeadm's defaults
// for what names and validity depend on, and nothing guessed from the host.
func DefaultPKIConfig(certDir string) *pki.Config {
	if certDir == "" {
		certDir = pki.DefaultCertificateDir
	}
	return &pki.Config{
		CertDir:      certDir,
		LocalEtcd:    true,
		CertValidity: pki.DefaultCertValidity,
		CAValidity:   pki.DefaultCAValidity,
	}
}

// RenewArgs are the flags of this run that decide certificate SANs and key algorithm, as "renew certs"
// takes them. The fix init suggests for a certificate lacking SANs repeats them: without them renew keeps
// the old certificate's SANs and init would fail again. Flags set through K8SCRYPTO_* variables are
// rendered as flags, so the command works in any environment.
func (s ConfigSource) RenewArgs() []string {
	var args []string
	if s.File != "" {
		args = append(args, "--config", pki.AbsPath(s.File)) // the command may be run from another directory
	}
	o := s.Flags
	add := func(flag, value string) {
		if value != "" {
			args = append(args, flag, value)
		}
	}
	add("--node-name", o.NodeName)
	add("--advertise-address", o.AdvertiseAddress)
	add("--control-plane-endpoint", o.ControlPlaneEndpoint)
	add("--service-cidr", o.ServiceCIDR)
	add("--service-dns-domain", o.ServiceDNSDomain)
	add("--apiserver-cert-extra-sans", strings.Join(o.APIServerCertSANs, ","))
	add("--encryption-algorithm", o.EncryptionAlgorithm)
	return args
}

// pathFlag is a path given by a flag (or its K8SCRYPTO_* variable, or the settings file) that no kubeadm
// configuration field holds.
type pathFlag struct{ flag, path string }

// absolute makes each non-empty path absolute in place: every path a command reports (text and JSON) is
// absolute, whatever the flag gave, so a result read later or elsewhere still names the file.
func absolute(paths ...*string) {
	for _, p := range paths {
		if *p != "" {
			*p = pki.AbsPath(*p)
		}
	}
}

// absolute makes the options' paths absolute (see absolute).
func (o *RotateOptions) absolute() {
	absolute(&o.CertDir, &o.KubeconfigDir, &o.AuditLog, &o.BackupDir)
}

// checkPathFlags refuses a path holding a control character as the configuration's own paths are refused
// (pki.CheckText): a usage error naming the flag, before anything is written.
func checkPathFlags(paths ...pathFlag) error {
	var errs []error
	for _, p := range paths {
		errs = append(errs, pki.CheckText(p.flag, p.path))
	}
	if err := config.Invalid(errs...); err != nil {
		return &UsageError{err}
	}
	return nil
}

// checkList bounds a list input (pki.MaxListItems) and refuses control characters in its items: a usage
// error naming the flag and the count.
func checkList(flag string, items []string) error {
	errs := []error{pki.CheckCount(flag, len(items), pki.MaxListItems)}
	for _, it := range items {
		errs = append(errs, pki.CheckText(flag, it))
	}
	if err := config.Invalid(errs...); err != nil {
		return &UsageError{err}
	}
	return nil
}
