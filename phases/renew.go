package phases

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki"
)

// Renewal outcomes of one certificate.
const (
	RenewRenewed    = "renewed"
	RenewWouldRenew = "would-renew" // dry run
	RenewNotDue     = "not-due"
	RenewMissing    = "missing"
	RenewSkipped    = "skipped" // not k8scrypto's to renew (the kubelet rotates its own client certificate)
	RenewFailed     = "failed"
)

// RenewKind is the kind of "renew certs" structured output.
const RenewKind = "CertificateRenewal"

// RenewItem is the outcome for one certificate. It never holds key material, only fingerprints.
type RenewItem struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // certificate or kubeconfig
	Path   string `json:"path"`
	CAName string `json:"caName"`
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Required is false for files a node may lack (super-admin.conf, kubelet.conf) unless named explicitly.
	Required bool `json:"required"`

	Serial   string    `json:"serial,omitempty"`   // the certificate in place after the run
	SHA256   string    `json:"sha256,omitempty"`   // of its DER
	NotAfter time.Time `json:"notAfter,omitzero"`  // of the certificate in place after the run
	Previous *CertRef  `json:"previous,omitempty"` // the replaced certificate
	// KeyRotated says a new key was made; KeySHA256 fingerprints the public half of the key in use.
	KeyRotated bool   `json:"keyRotated,omitempty"`
	KeySHA256  string `json:"keySHA256,omitempty"`
	// AddedSANs are names the configuration asks for that the old certificate lacked; UnrequestedSANs are
	// names the certificate has (and keeps) that the configuration no longer asks for.
	AddedSANs       []string `json:"addedSANs,omitempty"`
	UnrequestedSANs []string `json:"unrequestedSANs,omitempty"`
	// ClampedToCA is set when the validity period was cut to end with the signing CA.
	ClampedToCA bool     `json:"clampedToCA,omitempty"`
	Backups     []string `json:"backups,omitempty"`
}

// CertRef identifies a replaced certificate and the key it had.
type CertRef struct {
	Serial    string    `json:"serial"`
	SHA256    string    `json:"sha256"`
	NotAfter  time.Time `json:"notAfter"`
	KeySHA256 string    `json:"keySHA256,omitempty"`
}

// RenewResult is what "renew certs" prints with -o json|yaml.
type RenewResult struct {
	APIVersion      string      `json:"apiVersion"`
	Kind            string      `json:"kind"`
	Time            time.Time   `json:"time"`
	DryRun          bool        `json:"dryRun"`
	CertificatesDir string      `json:"certificatesDir"`
	KubeconfigDir   string      `json:"kubeconfigDir"`
	BackupDir       string      `json:"backupDir,omitempty"`
	Certificates    []RenewItem `json:"certificates"`
	// PrunedBackups are the old backup directories removed to keep --keep-backups (they held keys).
	PrunedBackups []string `json:"prunedBackups,omitempty"`
	// PruneError says why old backups could not all be removed; the renewal itself succeeded.
	PruneError string `json:"pruneError,omitempty"`
	// OnRenew is the --on-renew command the run ran (or would run): for this run's renewals, or an earlier
	// run's whose hook did not succeed.
	OnRenew string `json:"onRenew,omitempty"`
	// AuditLog is the file the run's audit lines are appended to.
	AuditLog string `json:"auditLog,omitempty"`
}

// Renewed lists the names of the renewed certificates.
func (r RenewResult) Renewed() []string {
	var out []string
	for _, it := range r.Certificates {
		if it.Action == RenewRenewed {
			out = append(out, it.Name)
		}
	}
	return out
}

// renewedOrWould lists the names of the certificates renewed, or in a dry run those that would be.
func (r RenewResult) renewedOrWould() []string {
	var out []string
	for _, it := range r.Certificates {
		if it.Action == RenewRenewed || it.Action == RenewWouldRenew {
			out = append(out, it.Name)
		}
	}
	return out
}

// Problems lists the items that need a person: failures, and missing files a node must have.
func (r RenewResult) Problems() []RenewItem {
	var out []RenewItem
	for _, it := range r.Certificates {
		if it.Action == RenewFailed || (it.Action == RenewMissing && it.Required) {
			out = append(out, it)
		}
	}
	return out
}

// RenewOptions are the inputs of one renewal run.
type RenewOptions struct {
	Cfg           *pki.Config
	KubeconfigDir string
	// CheckSANs compares certificates with the SANs the configuration asks for. Set it only when a
	// configuration was loaded: defaults (host name, default-route address) may not be what init used.
	CheckSANs bool
	// Names selects certificates ("apiserver", "admin.conf"); empty or "all" selects every one.
	Names []string
	// Now is read once by the caller.
	Now time.Time
	// Threshold renews a certificate whose remaining lifetime is under it; 0 means a third of the
	// certificate's own lifetime (cert-manager's default), at most a third of Cfg.CertValidity.
	Threshold  time.Duration
	Force      bool
	RotateKeys bool
	// Algorithm of new keys; "" keeps each certificate's current key algorithm.
	Algorithm pki.Algorithm
	Keys      pki.KeySource // nil: fresh keys
	Rand      io.Reader     // serial numbers; nil: crypto/rand
	DryRun    bool
	// BackupRoot receives <UTC timestamp>/ with every replaced file; the newest KeepBackups are kept. A dry
	// run with it names the backups and the pruning the run would make.
	BackupRoot  string
	KeepBackups int
	// Session commits the renewed files with their audit lines and records the run's other lines; nil
	// commits without recording anything (tests).
	Session *Session
	Log     *slog.Logger
}

func (o *RenewOptions) validate() error {
	var errs []error
	if o.Cfg == nil || o.Cfg.CertDir == "" {
		return errors.New("internal error: renewal needs a certificate directory")
	}
	if o.Cfg.CertValidity <= 0 {
		errs = append(errs, fmt.Errorf("certificateValidityPeriod: invalid value %s: must be positive", o.Cfg.CertValidity))
	}
	if o.Threshold < 0 {
		errs = append(errs, fmt.Errorf("--threshold: invalid value %s: must not be negative", o.Threshold))
	} else if o.Threshold >= o.Cfg.CertValidity && o.Cfg.CertValidity > 0 {
		errs = append(errs, fmt.Errorf("--threshold: %s is not shorter than certificateValidityPeriod (%s): every run would renew every certificate", o.Threshold, o.Cfg.CertValidity))
	}
	if !o.DryRun {
		if o.BackupRoot == "" {
			errs = append(errs, errors.New("internal error: renewal needs a backup directory"))
		}
		if o.KeepBackups < 1 {
			errs = append(errs, fmt.Errorf("--keep-backups: invalid value %d: must be at least 1", o.KeepBackups))
		}
	}
	return errors.Join(errs...)
}

// renewCA is a signing CA as renewal sees it.
type renewCA struct {
	cert *x509.Certificate
	key  crypto.Signer // nil: external CA
	err  error         // a problem that prevents renewing anything it signs
}

// renewPlan is a certificate that will be re-issued.
type renewPlan struct {
	item *RenewItem
	t    certTarget
	lt   *loadedTarget
	ca   *renewCA
	req  pki.CertRequest
	alg  pki.Algorithm // of the new key; "" when the key is reused
}

// Renew re-issues the selected leaf certificates and kubeconfig client certificates that are due, with
// their current CA, in one crash-safe transaction: a run-level error (backup, write) leaves every file as
// it was. A certificate that cannot be renewed (external CA, broken key pair, expired CA) is reported in
// the result and does not stop the others: one bad certificate must not let the rest expire. CAs are
// never renewed.
func Renew(ctx context.Context, o RenewOptions) (RenewResult, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	res := RenewResult{
		APIVersion: ResultAPIVersion, Kind: RenewKind, Time: o.Now.UTC(), DryRun: o.DryRun,
		CertificatesDir: o.Cfg.CertDir, KubeconfigDir: o.KubeconfigDir, Certificates: []RenewItem{},
	}
	if err := o.validate(); err != nil {
		return res, err
	}
	if !o.DryRun && o.BackupRoot != "" {
		// A run killed while copying its backups left a partial copy; remove it even when nothing is due
		// now (the caller holds the lock, so no other run is copying).
		pki.SweepBackups(o.BackupRoot)
	}
	leaves, _ := certTargets(o.Cfg, o.KubeconfigDir)
	targets, explicit, err := selectTargets(leaves, o.Names, o.Cfg)
	if err != nil {
		return res, err
	}
	res.Certificates = make([]RenewItem, len(targets))
	cas := map[string]*renewCA{}
	var plans []*renewPlan
	for i, t := range targets {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Certificates[i] = RenewItem{Name: t.Name, Kind: t.Kind, Path: t.CertPath, CAName: t.CAName, Required: explicit || !t.Optional}
		item := &res.Certificates[i]
		ca, ok := cas[t.CAName]
		if !ok {
			ca = loadRenewCA(o.Cfg, t.CAName, o.Now)
			cas[t.CAName] = ca
		}
		if p := planRenewal(o, t, item, ca, explicit); p != nil {
			plans = append(plans, p)
		}
	}
	s := o.Session
	if s == nil {
		s = &Session{o: SessionOptions{CertDir: o.Cfg.CertDir, DryRun: o.DryRun}}
	}
	res.AuditLog = s.AuditLog
	if o.DryRun {
		// What the run below would do with the same plans, short of issuing: the copies it would take and
		// the old backup directories it would then prune.
		for _, p := range plans {
			p.item.Action = RenewWouldRenew
		}
		if len(plans) == 0 || o.BackupRoot == "" {
			return res, nil
		}
		backups, err := pki.NewBackupSet(o.BackupRoot, o.Now)
		if err != nil {
			return res, backupError(err)
		}
		if err := backUpRenewals(backups, plans, &res, true); err != nil {
			return res, err
		}
		if o.KeepBackups >= 1 {
			doomed, err := pki.BackupsToPrune(o.BackupRoot, o.KeepBackups, res.BackupDir)
			res.PrunedBackups = doomed
			if err != nil {
				res.PruneError = err.Error()
			}
		}
		return res, nil
	}
	if len(plans) == 0 {
		return res, renewedButNot(s.Commit(nil, renewAuditEvents(res)))
	}

	// Keys first, concurrently: RSA generation dominates a run.
	pools := map[pki.Algorithm]*pki.KeyPool{}
	for _, p := range plans {
		if p.alg != "" {
			if pools[p.alg] == nil {
				pools[p.alg] = pki.NewKeyPool(o.Keys, p.alg, 0)
			}
			pools[p.alg].Prefetch(keyName(p.t))
		}
	}
	var files []pki.File
	var issued []*renewPlan
	for _, p := range plans {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		out, err := issue(o, p, pools)
		if err != nil {
			p.item.Action, p.item.Reason = RenewFailed, err.Error()
			continue
		}
		files = append(files, out...)
		issued = append(issued, p)
	}
	if len(files) == 0 {
		return res, renewedButNot(s.Commit(nil, renewAuditEvents(res)))
	}

	// Back up every file about to be replaced, before touching any.
	backups, err := pki.NewBackupSet(o.BackupRoot, o.Now)
	if err != nil {
		return res, fmt.Errorf("%w; nothing was renewed", backupError(err))
	}
	if err := backUpRenewals(backups, issued, &res, false); err != nil {
		return res, err
	}
	for _, p := range issued {
		p.item.Action = RenewRenewed
	}
	unmark := func() {
		for _, p := range issued {
			p.item.Action = ""
		}
	}
	commitErr := s.Commit(files, renewAuditEvents(res))
	if ce := new(CommitError); !Committed(commitErr) && errors.As(commitErr, &ce) && ce.Step == CommitIntent {
		unmark()
		backups.Discard()
		return res, fmt.Errorf("%w; nothing was renewed", commitErr)
	} else if !Committed(commitErr) {
		unmark()
		return res, fmt.Errorf("writing the renewed certificates: %w", commitErr)
	}
	for _, p := range issued {
		o.Log.Debug("renewed", "certificate", p.item.Name, "notAfter", p.item.NotAfter.Format(time.RFC3339), "serial", p.item.Serial)
	}
	removed, err := pki.PruneBackups(o.BackupRoot, o.KeepBackups)
	res.PrunedBackups = removed
	if err != nil {
		// The certificates are renewed; a stale backup is not worth failing the run for.
		res.PruneError = err.Error()
		o.Log.Warn("could not remove old backups", "dir", o.BackupRoot, "error", err)
	}
	for _, d := range removed {
		o.Log.Debug("removed old backup", "dir", d)
	}
	if commitErr == nil {
		// The run's lines are recorded; the lines of what pruning removed follow.
		commitErr = s.Record(pruneAuditEvents(res)...)
		if commitErr != nil {
			commitErr = &CommitError{CommitRecord, commitErr}
		}
	}
	return res, renewedButNot(commitErr)
}

// replaces are the files a renewal replaces, as issue writes them: the new key (when one is made for a
// certificate; a kubeconfig holds its key), then the certificate or kubeconfig.
func (p *renewPlan) replaces() []string {
	if p.alg != "" && p.t.Kind != KindKubeconfig {
		return []string{p.t.KeyPath, p.t.CertPath}
	}
	return []string{p.t.CertPath}
}

// backUpRenewals copies the files each plan replaces into backups, recording the copies in the items and
// the directory in res; with dry, it copies nothing and records the copies it would take. On error the
// copies taken are removed again.
func backUpRenewals(backups *pki.BackupSet, plans []*renewPlan, res *RenewResult, dry bool) error {
	for _, p := range plans {
		for _, path := range p.replaces() {
			var saved string
			var err error
			if dry {
				saved, err = backups.Target(path)
			} else {
				saved, err = backups.Save(path)
			}
			if err != nil {
				if !dry {
					backups.Discard()
				}
				return fmt.Errorf("%w; nothing was renewed (give a writable --backup-dir)", backupError(err))
			}
			if saved != "" {
				p.item.Backups = append(p.item.Backups, saved)
				res.BackupDir = backups.Dir
			}
		}
	}
	return nil
}

// renewedButNot words a failure to record the audit lines once the renewed files are in place: the run
// itself succeeded (Committed reports true for the error).
func renewedButNot(err error) error {
	var ce *CommitError
	if errors.As(err, &ce) && ce.Step == CommitRecord {
		return &CommitError{CommitRecord, fmt.Errorf("the certificates were renewed, but %w (the next run records the lines)", ce.Err)}
	}
	return err
}

// InvalidNamesError is returned for names that do not select a renewable certificate: a usage error.
type InvalidNamesError struct{ Err error }

func (e *InvalidNamesError) Error() string { return e.Err.Error() }
func (e *InvalidNamesError) Unwrap() error { return e.Err }

// selectTargets applies the command line's names; explicit is true when names were given.
func selectTargets(all []certTarget, names []string, cfg *pki.Config) ([]certTarget, bool, error) {
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		return all, false, nil
	}
	var out []certTarget
	var errs []error
	for _, n := range names {
		if n == "all" {
			errs = append(errs, errors.New(`"all" cannot be combined with certificate names`))
			continue
		}
		if k, ok := pki.LookupKubeconfig(n); ok {
			n = k.FileName
		}
		i := slices.IndexFunc(all, func(t certTarget) bool { return t.Name == n })
		if i >= 0 {
			if !slices.ContainsFunc(out, func(t certTarget) bool { return t.Name == n }) {
				out = append(out, all[i])
			}
			continue
		}
		spec, ok := pki.LookupCert(n)
		switch {
		case ok && spec.IsCA():
			errs = append(errs, fmt.Errorf("%s is a certificate authority: k8scrypto never renews CAs (every certificate it signed would have to be re-issued and redistributed); renew the certificates it signs instead", n))
		case ok && spec.Etcd && !cfg.LocalEtcd:
			errs = append(errs, fmt.Errorf("%s: the configuration uses external etcd, whose certificates k8scrypto does not manage", n))
		default:
			valid := make([]string, len(all))
			for i, t := range all {
				valid[i] = t.Name
			}
			errs = append(errs, fmt.Errorf("unknown certificate %q; valid names are: all, %s", n, strings.Join(valid, ", ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, true, &InvalidNamesError{err}
	}
	slices.SortFunc(out, func(a, b certTarget) int { return strings.Compare(a.Name, b.Name) })
	return out, true, nil
}

// loadRenewCA reads the named CA; problems are kept in err so that they are reported per certificate.
func loadRenewCA(cfg *pki.Config, name string, now time.Time) *renewCA {
	spec, ok := pki.LookupCert(name)
	if !ok || !spec.IsCA() {
		return &renewCA{err: fmt.Errorf("internal error: unknown CA %q", name)}
	}
	c, err := readCA(spec.CertPath(cfg.CertDir), spec.KeyPath(cfg.CertDir), nil)
	if errors.Is(err, fs.ErrNotExist) {
		return &renewCA{err: fmt.Errorf("its CA certificate %s is missing: restore the %s CA", spec.CertPath(cfg.CertDir), name)}
	}
	if err != nil {
		return &renewCA{err: fmt.Errorf("its CA: %w", err)}
	}
	crtPath, keyPath, cert := c.crtPath, c.keyPath, c.certs[0]
	ca := &renewCA{cert: cert, key: c.key}
	switch {
	case c.notCA():
		ca.err = fmt.Errorf("%s is not a CA certificate (no CA basic constraint or no certSign key usage)", crtPath)
	case !now.Before(cert.NotAfter):
		ca.err = fmt.Errorf("its CA %s expired on %s, so nothing it signed is valid any more and nothing can be renewed with it: run \"k8scrypto ca renew %s\" (the same key and subject, so everything it signed verifies again), then this command again",
			crtPath, cert.NotAfter.UTC().Format(time.RFC3339), name)
	case now.Before(cert.NotBefore):
		ca.err = fmt.Errorf("its CA %s is not valid until %s: check the system clock", crtPath, cert.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(c.keyErr, fs.ErrNotExist):
		// External CA: the certificates it signs are renewed by whoever holds its key.
	case c.keyErr != nil:
		ca.err = fmt.Errorf("its CA key: %w", c.keyErr)
	case c.keyMismatch():
		ca.err = fmt.Errorf("CA key %s does not match %s: restore the key that belongs to the %s CA", keyPath, crtPath, name)
	}
	if ca.err != nil {
		ca.key = nil
	}
	return ca
}

func keyName(t certTarget) string {
	if t.KC != nil {
		return t.KC.KeyName()
	}
	return t.Spec.BaseName
}

func human(d time.Duration) string { return duration.HumanDuration(d) }

// planRenewal decides what happens to one certificate and fills item; it returns a plan when the
// certificate is to be re-issued.
func planRenewal(o RenewOptions, t certTarget, item *RenewItem, ca *renewCA, explicit bool) *renewPlan {
	fail := func(format string, args ...any) *renewPlan {
		item.Action, item.Reason = RenewFailed, fmt.Sprintf(format, args...)
		return nil
	}
	lt, err := loadTarget(t, true)
	if err != nil {
		return fail("%v", err)
	}
	if lt.Missing {
		item.Action, item.Reason = RenewMissing, missingReason(t)
		return nil
	}
	cert := lt.Cert
	item.Serial, item.SHA256, item.NotAfter = cert.SerialNumber.String(), pki.Fingerprint(cert.Raw), cert.NotAfter.UTC()
	if lt.Key != nil {
		item.KeySHA256, _ = pki.PublicKeyFingerprint(lt.Key.Public())
	}
	if lt.Managed {
		item.Path = lt.Path
		if explicit {
			return fail("%s references the kubelet's rotated client certificate %s, which the kubelet renews itself; k8scrypto renews only embedded client certificates", t.CertPath, lt.Path)
		}
		item.Action, item.Reason = RenewSkipped, fmt.Sprintf("the kubelet rotates its own client certificate (%s)", lt.Path)
		return nil
	}
	if ca.err != nil {
		return fail("%s: %v", t.Name, ca.err)
	}

	// Broken pairs are reported whether or not the certificate is due: whatever uses them is already failing.
	var keyProblem string
	switch {
	case lt.KeyErr != nil:
		keyProblem = lt.KeyErr.Error()
	case lt.Key == nil && t.Kind == KindKubeconfig:
		keyProblem = fmt.Sprintf("%s has no embedded client-key-data", t.CertPath)
	case lt.Key == nil:
		keyProblem = fmt.Sprintf("its key %s is missing", t.KeyPath)
	case !pki.KeyMatchesCert(lt.Key, cert):
		keyProblem = fmt.Sprintf("its key does not match the certificate %s", lt.Path)
	}
	if keyProblem != "" && !(o.Force && o.RotateKeys) {
		return fail("%s: %s; run \"k8scrypto renew certs %s --force\" to re-issue it with a new key (the old files are backed up)", t.Name, keyProblem, t.Name)
	}

	// Why it is due, if it is.
	var reasons []string
	timeDue := false
	remaining := cert.NotAfter.Sub(o.Now)
	threshold := o.Threshold
	if threshold == 0 {
		// A third of the lifetime, at most a third of certificateValidityPeriod: kubeadm backdates kubeconfig
		// client certificates to their CA's NotBefore, so on a node set up years after its CA the lifetime
		// would count those years and make a fresh certificate due at once.
		threshold = min(cert.NotAfter.Sub(cert.NotBefore), o.Cfg.CertValidity) / 3
	}
	switch {
	case remaining <= 0:
		timeDue = true
		reasons = append(reasons, fmt.Sprintf("expired %s ago", human(-remaining)))
	case remaining < threshold:
		timeDue = true
		reasons = append(reasons, fmt.Sprintf("expires in %s, under the %s threshold", human(remaining), human(threshold)))
	}
	if err := cert.CheckSignatureFrom(ca.cert); err != nil {
		reasons = append(reasons, fmt.Sprintf("not signed by the current %s CA", t.CAName))
	}
	if keyProblem != "" {
		reasons = append(reasons, keyProblem)
	}
	alt := pki.AltNames{DNSNames: slices.Clone(cert.DNSNames), IPs: slices.Clone(cert.IPAddresses)}
	if o.CheckSANs && t.Spec != nil {
		want, err := t.Spec.AltNames(o.Cfg)
		if err != nil {
			return fail("%v", err)
		}
		want = pki.NormalizeAltNames(want)
		for _, d := range want.DNSNames {
			if !slices.ContainsFunc(cert.DNSNames, func(have string) bool { return strings.EqualFold(have, d) }) {
				alt.DNSNames = append(alt.DNSNames, d)
				item.AddedSANs = append(item.AddedSANs, "DNS:"+d)
			}
		}
		for _, ip := range want.IPs {
			if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
				alt.IPs = append(alt.IPs, ip)
				item.AddedSANs = append(item.AddedSANs, "IP:"+ip.String())
			}
		}
		for _, d := range cert.DNSNames {
			if !slices.ContainsFunc(want.DNSNames, func(w string) bool { return strings.EqualFold(w, d) }) {
				item.UnrequestedSANs = append(item.UnrequestedSANs, "DNS:"+d)
			}
		}
		for _, ip := range cert.IPAddresses {
			if !slices.ContainsFunc(want.IPs, ip.Equal) {
				item.UnrequestedSANs = append(item.UnrequestedSANs, "IP:"+ip.String())
			}
		}
		if len(item.AddedSANs) > 0 {
			reasons = append(reasons, "the configuration asks for SANs it lacks: "+strings.Join(item.AddedSANs, ", "))
		}
	}
	if o.Force {
		reasons = append(reasons, "forced")
	}
	if len(reasons) == 0 {
		item.Action = RenewNotDue
		item.Reason = fmt.Sprintf("expires in %s; renewal is due under %s", human(remaining), human(threshold))
		if ca.key == nil {
			item.Reason += fmt.Sprintf(" (external %s CA: renew it with the CA's owner)", t.CAName)
		}
		if len(item.UnrequestedSANs) > 0 {
			item.Reason += "; has SANs the configuration no longer asks for (kept): " + strings.Join(item.UnrequestedSANs, ", ")
		}
		return nil
	}
	if ca.key == nil {
		caSpec, _ := pki.LookupCert(t.CAName)
		return fail("%s is due (%s) but its CA %s is external (%s is absent), so k8scrypto cannot sign it: renew it with the CA's owner",
			t.Name, strings.Join(reasons, "; "), t.CAName, caSpec.KeyPath(o.Cfg.CertDir))
	}

	// The new validity: from now (backdated) for certificateValidityPeriod, never past the CA. A leaf that
	// outlives its CA would not verify after the CA expires anyway; issuing it to the CA's end keeps the
	// cluster working until then, and the cron run fails loudly once renewing stops gaining time.
	notAfter := o.Now.Add(o.Cfg.CertValidity).UTC()
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter.UTC()
		item.ClampedToCA = true
		if timeDue && len(reasons) == 1 && !notAfter.After(cert.NotAfter) {
			return fail("%s is due (%s), but its CA %s expires on %s, so a renewed certificate could not outlive the current one: renew the %s CA first (\"k8scrypto ca renew %s\") and run this again",
				t.Name, reasons[0], t.CAName, ca.cert.NotAfter.UTC().Format(time.RFC3339), t.CAName, t.CAName)
		}
	}
	// Checked here, not only by the commit, so that one symlinked file fails its certificate, not the run.
	for _, path := range []string{t.CertPath, t.KeyPath} {
		if info, err := os.Lstat(path); err == nil && info.Mode()&fs.ModeSymlink != 0 && (path == t.CertPath || o.RotateKeys) {
			return fail("%s is a symbolic link; k8scrypto does not write through links: replace it with the file it points to", path)
		}
	}
	usages := cert.ExtKeyUsage
	if len(usages) == 0 && t.Spec != nil {
		usages = t.Spec.Usages
	}
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	p := &renewPlan{item: item, t: t, lt: lt, ca: ca, req: pki.CertRequest{
		// The whole subject as it is (every RDN, in order, with its encoding; CommonName only names the
		// request in errors) and the SAN kinds kubeadm never sets: a renewed certificate must identify its
		// holder exactly as the one it replaces.
		CommonName:     cert.Subject.CommonName,
		RawSubject:     slices.Clone(cert.RawSubject),
		URIs:           slices.Clone(cert.URIs),
		EmailAddresses: slices.Clone(cert.EmailAddresses),
		AltNames:       alt,
		Usages:         usages,
		NotBefore:      o.Now.Add(-pki.Backdate).UTC(),
		NotAfter:       notAfter,
	}}
	if o.RotateKeys {
		p.alg = o.Algorithm
		if p.alg == "" {
			p.alg = pki.AlgorithmOf(cert.PublicKey)
		}
		if p.alg == "" {
			return fail("%s: its key is of a type or size kubeadm does not make; set --encryption-algorithm for the new key", t.Name)
		}
	}
	item.Reason = strings.Join(reasons, "; ")
	if item.ClampedToCA {
		item.Reason += fmt.Sprintf("; validity cut to end with the %s CA on %s: renew the CA before then (\"k8scrypto ca renew %s\")", t.CAName, notAfter.Format(time.RFC3339), t.CAName)
		o.Log.Warn("certificate validity cut short by its CA's expiry", "certificate", t.Name, "ca", t.CAName, "caNotAfter", notAfter.Format(time.RFC3339))
	}
	if len(item.UnrequestedSANs) > 0 {
		item.Reason += "; keeps SANs the configuration no longer asks for: " + strings.Join(item.UnrequestedSANs, ", ")
	}
	return p
}

func missingReason(t certTarget) string {
	switch {
	case t.Name == "super-admin.conf":
		return fmt.Sprintf("%s does not exist (normal on control-plane nodes that joined: only the first node has it)", t.CertPath)
	case t.KC != nil:
		return fmt.Sprintf("%s does not exist", t.CertPath)
	case t.Spec != nil && t.Spec.Etcd:
		return fmt.Sprintf("%s does not exist (if this cluster uses external etcd, pass --config with etcd.external so etcd certificates are not expected)", t.CertPath)
	}
	return fmt.Sprintf("%s does not exist (create it with \"k8scrypto init phase certs %s\")", t.CertPath, t.Name)
}

// issue signs the new certificate and returns the files to write.
func issue(o RenewOptions, p *renewPlan, pools map[pki.Algorithm]*pki.KeyPool) ([]pki.File, error) {
	key := p.lt.Key
	if p.alg != "" {
		var err error
		if key, err = pools[p.alg].Get(keyName(p.t)); err != nil {
			return nil, fmt.Errorf("%s: generating a %s key: %w", p.t.Name, p.alg, err)
		}
	}
	cert, err := pki.NewSignedCert(p.req, key.Public(), p.ca.cert, p.ca.key, o.Rand)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.t.Name, err)
	}
	// Never write a certificate that would not work.
	if err := pki.VerifyChain(cert, nil, p.ca.cert, o.Now); err != nil {
		return nil, fmt.Errorf("%s: the renewed certificate does not verify against its CA: %w", p.t.Name, err)
	}
	it := p.item
	it.Previous = &CertRef{Serial: it.Serial, SHA256: it.SHA256, NotAfter: it.NotAfter, KeySHA256: it.KeySHA256}
	it.Serial, it.SHA256, it.NotAfter = cert.SerialNumber.String(), pki.Fingerprint(cert.Raw), cert.NotAfter.UTC()
	it.KeyRotated = p.alg != ""
	it.KeySHA256, _ = pki.PublicKeyFingerprint(key.Public())

	if p.t.Kind == KindKubeconfig {
		data, err := renderKubeconfig(p.lt.KC, cert, key, p.ca.cert)
		if err != nil {
			return nil, err
		}
		return []pki.File{{Path: p.t.CertPath, Data: data, Mode: pki.ModeKey}}, nil
	}
	var files []pki.File
	if it.KeyRotated {
		keyPEM, err := pki.EncodePrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("%s: encoding the new key: %w", p.t.Name, err)
		}
		files = append(files, pki.File{Path: p.t.KeyPath, Data: keyPEM, Mode: pki.ModeKey})
	}
	files = append(files, pki.File{Path: p.t.CertPath, Data: pki.EncodeCert(cert), Mode: certModeOf(p.t.CertPath, o.Cfg.StrictPermissions)})
	return files, nil
}

// certModeOf keeps a certificate's current mode (an operator may have tightened it for CIS), but never
// anything looser than 0644, and 0600 with strict permissions.
func certModeOf(path string, strict bool) os.FileMode {
	mode := pki.ModeCert
	if info, err := os.Stat(path); err == nil {
		mode = info.Mode().Perm() & pki.ModeCert
	}
	if strict {
		mode &= pki.ModeStrictCert
	}
	return mode
}

// renderKubeconfig replaces the current context's client certificate and key and refreshes its cluster's
// CA data from the CA, keeping everything else, as kubeadm's renewal does.
func renderKubeconfig(kc *Kubeconfig, cert *x509.Certificate, key crypto.Signer, ca *x509.Certificate) ([]byte, error) {
	cfg := kc.Config.DeepCopy()
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: encoding the key: %w", kc.Path, err)
	}
	cfg.Clusters[kc.Cluster].CertificateAuthorityData = pki.EncodeCert(ca)
	user := cfg.AuthInfos[kc.User]
	user.ClientCertificateData, user.ClientKeyData = pki.EncodeCert(cert), keyPEM
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kc.Path, err)
	}
	// Read back what will be written: never write a kubeconfig that does not hold the new pair.
	back, err := ParseKubeconfig(kc.Path, out)
	if err != nil || !pki.SameCert(back.ClientCert, cert) || !pki.KeyMatchesCert(back.ClientKey, cert) || !pki.SameCert(back.CAs[0], ca) {
		return nil, fmt.Errorf("internal error: %s would not hold the renewed certificate and key after writing (%v)", kc.Path, err)
	}
	return out, nil
}
