package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
)

// ResultAPIVersion versions the structured output of every command.
const ResultAPIVersion = "k8scrypto.dev/v1alpha1"

// Actions a file can get.
const (
	ActionCreated = "created"
	ActionReused  = "reused"
	ActionSkipped = "skipped"
)

// FileResult is one line of a run's outcome. It never holds key material.
type FileResult struct {
	Phase    string    `json:"phase"`
	Path     string    `json:"path,omitempty"`
	Type     string    `json:"type,omitempty"` // certificate, key, public-key, kubeconfig, encryption-config, kubeadm-config
	Action   string    `json:"action"`
	Subject  string    `json:"subject,omitempty"`
	SANs     []string  `json:"sans,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// SHA256 is the fingerprint of the certificate's or public key's DER, never of a private key.
	SHA256 string `json:"sha256,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Result is what "init" prints with -o json|yaml.
type Result struct {
	APIVersion      string       `json:"apiVersion"`
	Kind            string       `json:"kind"`
	DryRun          bool         `json:"dryRun"`
	CertificatesDir string       `json:"certificatesDir"`
	Files           []FileResult `json:"files"`
	// NextCommand continues the bootstrap with kubeadm, when the kubeadm-config phase ran.
	NextCommand string `json:"next,omitempty"`
	// AuditLog is the file the run's audit lines are appended to.
	AuditLog string `json:"auditLog,omitempty"`
}

// CA is a certificate authority as a phase sees it; Key is nil for an external CA.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// external reports whether the CA is an external one: a certificate on disk without its key (a dry run's
// planned CA has neither a key nor a certificate's bytes).
func (ca *CA) external() bool {
	return ca.Key == nil && ca.Cert.Raw != nil
}

// Data is the state shared by the phases of one run. The clock is read once, by the caller.
type Data struct {
	Cfg *pki.Config
	// Kubeadm is the loaded kubeadm configuration the PKI config was resolved from.
	Kubeadm       *config.Config
	KubeconfigDir string
	Now           time.Time
	Rand          io.Reader // serial numbers; nil means crypto/rand
	Keys          *pki.KeyPool
	DryRun        bool
	Log           *slog.Logger
	// Encryption are the inputs of the encryption-config phase.
	Encryption EncryptionOptions
	// KubeadmConfigOut is where the kubeadm-config phase writes; "" means <KubeconfigDir>/kubeadm-config.yaml.
	KubeadmConfigOut string
	// RenewArgs are the flags of this run that decide certificate SANs (--config and the SAN and algorithm
	// flags), as "renew certs" takes them; the fix suggested for a leaf that lacks SANs repeats them. Empty
	// means the resolved values are rendered instead.
	RenewArgs []string
	// Session commits the staged files with the run's audit lines; nil commits them without (tests).
	Session *Session
	// AuditLog is the session's audit log, for the result.
	AuditLog string

	phase   string
	staged  []pki.File
	dirs    map[string]os.FileMode
	results []FileResult
	cas     map[string]*CA
	// tighten lists the reused files whose mode --strict-permissions tightens at commit.
	tighten []string
	// nextStep is set by the kubeadm-config phase.
	nextStep string
}

// NewData prepares a run. keys nil means fresh keys from crypto/rand.
func NewData(cfg *pki.Config, now time.Time, keys pki.KeySource, log *slog.Logger) *Data {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Data{
		Cfg:  cfg,
		Now:  now,
		Keys: pki.NewKeyPool(keys, cfg.Algorithm, 0),
		Log:  log,
		dirs: map[string]os.FileMode{},
		cas:  map[string]*CA{},
	}
}

// Result returns the outcome of the run so far.
func (d *Data) Result() Result {
	return Result{
		APIVersion:      ResultAPIVersion,
		Kind:            "InitResult",
		DryRun:          d.DryRun,
		CertificatesDir: d.Cfg.CertDir,
		Files:           slices.Clone(d.results),
		NextCommand:     d.nextStep,
		AuditLog:        d.AuditLog,
	}
}

// CertMode and DirMode are the modes for certificates and directories (CIS-strict on request).
func (d *Data) CertMode() os.FileMode {
	if d.Cfg.StrictPermissions {
		return pki.ModeStrictCert
	}
	return pki.ModeCert
}

func (d *Data) DirMode() os.FileMode {
	if d.Cfg.StrictPermissions {
		return pki.ModeStrictDir
	}
	return pki.ModeDir
}

// Stage queues a file for the final commit and records its result.
func (d *Data) Stage(f pki.File, r FileResult) {
	d.staged = append(d.staged, f)
	d.dirs[filepath.Dir(f.Path)] = d.DirMode()
	r.Phase, r.Path, r.Action = d.phase, f.Path, ActionCreated
	d.results = append(d.results, r)
	// One line per file only with -v: the result table lists them; the runner says one line per phase.
	d.Log.Debug(map[bool]string{true: "would write", false: "generated"}[d.DryRun], "file", f.Path)
}

// Reuse records that an existing file stays as it is. Under --strict-permissions a file of the certificate
// directory whose mode is looser than the strict one is noted, and tightened by the commit (its bytes are
// never touched).
func (d *Data) Reuse(r FileResult) {
	r.Phase, r.Action = d.phase, ActionReused
	if from, to, ok := d.needsTightening(r.Path); ok {
		verb := "tightened"
		if d.DryRun {
			verb = "would be tightened"
		}
		note := fmt.Sprintf("mode %04o %s to %04o (--strict-permissions)", from, verb, to)
		if r.Reason != "" {
			note = r.Reason + "; " + note
		}
		r.Reason = note
		d.tighten = append(d.tighten, r.Path)
	} else if mode, loose := pki.LooseSecretMode(r.Path); loose && (r.Type == "key" || r.Type == "encryption-config") {
		d.Log.Warn("a secret file others can read: keep it 0600", "file", r.Path, "mode", fmt.Sprintf("%04o", mode), "fix", "chmod 600 "+r.Path+" (or re-run with --strict-permissions)")
	}
	d.results = append(d.results, r)
	d.Log.Debug("using existing file", "file", r.Path)
}

// strictFileMode is the most a file of the certificate directory may allow under --strict-permissions:
// certificates, keys and public keys alike are owner read-write only.
const strictFileMode os.FileMode = 0o600

// inCertDir reports whether path lies in the certificate directory tree, the only files --strict-permissions
// tightens after the fact.
func (d *Data) inCertDir(path string) bool {
	if path == "" || d.Cfg.CertDir == "" {
		return false
	}
	rel, err := filepath.Rel(d.Cfg.CertDir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// needsTightening reports the current and strict modes of an existing regular file of the certificate
// directory that allows more than the strict mode. Only bits are removed: a stricter file stays as it is.
func (d *Data) needsTightening(path string) (from, to os.FileMode, ok bool) {
	if !d.Cfg.StrictPermissions || !d.inCertDir(path) {
		return 0, 0, false
	}
	info, err := os.Lstat(path)
	if err != nil || !info.Mode().IsRegular() {
		return 0, 0, false
	}
	from = info.Mode().Perm()
	to = from & strictFileMode
	return from, to, to != from
}

// tightenModes applies --strict-permissions to what this run reused: each noted file loses the bits outside
// 0600 (chmod is atomic, the content is not rewritten), and the certificate directory and every directory of
// it holding a file of this run lose the bits outside 0700.
func (d *Data) tightenModes() error {
	if !d.Cfg.StrictPermissions {
		return nil
	}
	for _, path := range d.tighten {
		if from, to, ok := d.needsTightening(path); ok {
			// chmod follows links: a linked directory inside the tree would tighten files outside it.
			if err := pki.CheckNoLinksBelow(d.Cfg.CertDir, path); err != nil {
				return err
			}
			if err := os.Chmod(path, to); err != nil {
				return fmt.Errorf("--strict-permissions: tightening %s from %04o to %04o: %w", path, from, to, err)
			}
			d.Log.Debug("tightened mode", "file", path, "from", fmt.Sprintf("%04o", from), "to", fmt.Sprintf("%04o", to))
		}
	}
	dirs := map[string]bool{}
	for _, r := range d.results {
		if (r.Action == ActionReused || r.Action == ActionCreated) && d.inCertDir(r.Path) {
			for dir := filepath.Dir(r.Path); d.inCertDir(dir); dir = filepath.Dir(dir) {
				dirs[dir] = true
				if dir == filepath.Clean(d.Cfg.CertDir) {
					break
				}
			}
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		info, err := os.Lstat(dir)
		if err != nil || !info.IsDir() {
			continue // not ours to create here: the commit made what it needed
		}
		if from := info.Mode().Perm(); from&^pki.ModeStrictDir != 0 {
			if err := os.Chmod(dir, from&pki.ModeStrictDir); err != nil {
				return fmt.Errorf("--strict-permissions: tightening directory %s from %04o to %04o: %w", dir, from, from&pki.ModeStrictDir, err)
			}
			d.Log.Info("tightened mode", "directory", dir, "from", fmt.Sprintf("%04o", from), "to", fmt.Sprintf("%04o", from&pki.ModeStrictDir))
		}
	}
	return nil
}

func (d *Data) skip(phase string, p *Phase, reason string) {
	var paths []string
	if p.Outputs != nil {
		paths = p.Outputs(d)
	}
	if len(paths) == 0 {
		paths = []string{""}
	}
	for _, path := range paths {
		d.results = append(d.results, FileResult{Phase: phase, Path: path, Action: ActionSkipped, Reason: reason})
	}
}

// StagedFile returns the content staged for path in this run, if any.
func (d *Data) StagedFile(path string) ([]byte, bool) {
	for i := len(d.staged) - 1; i >= 0; i-- {
		if d.staged[i].Path == path {
			return d.staged[i].Data, true
		}
	}
	return nil, false
}

// ReadFile returns what path will hold after this run: the staged content, else the file on disk.
func (d *Data) ReadFile(path string) ([]byte, error) {
	if data, ok := d.StagedFile(path); ok {
		return data, nil
	}
	return readRegular(path)
}

// Exists reports whether path exists on disk or is staged; a symlink counts as existing.
func (d *Data) Exists(path string) (bool, error) {
	if _, ok := d.StagedFile(path); ok {
		return true, nil
	}
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// commit writes every staged file in one transaction, creating missing directories first and removing the
// ones it created if the commit fails.
func (d *Data) commit() error {
	s := d.Session
	if s == nil {
		s = &Session{o: SessionOptions{CertDir: d.Cfg.CertDir}}
	}
	if len(d.staged) == 0 {
		if err := d.tightenModes(); err != nil {
			return err
		}
		return recordedErr(s.Commit(nil, d.auditEvents()))
	}
	var created []string
	dirs := make([]string, 0, len(d.dirs))
	for dir := range d.dirs {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs) // parents before children
	for _, dir := range dirs {
		// EnsureDir may chmod an existing directory: refuse a linked one before, not only at Commit.
		if err := pki.CheckNoLinksBelow(d.Cfg.CertDir, filepath.Join(dir, "_")); err != nil {
			return err
		}
	}
	for _, dir := range dirs {
		made, err := pki.EnsureDirCreated(dir, d.dirs[dir], d.Cfg.StrictPermissions)
		if err != nil {
			removeDirs(created) // EnsureDirCreated removed its own
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		created = append(created, made...)
	}
	// After the directories exist (the commit's checks look at them).
	err := s.Commit(d.staged, d.auditEvents())
	if !Committed(err) {
		removeDirs(created)
		return err
	}
	if terr := d.tightenModes(); terr != nil {
		return terr
	}
	return recordedErr(err)
}

// recordedErr words a commit's failure to record its audit lines once the files are in place.
func recordedErr(err error) error {
	var ce *CommitError
	if errors.As(err, &ce) && ce.Step == CommitRecord {
		return fmt.Errorf("the files are written, but %w (the next run records the lines)", err)
	}
	return err
}

// auditEvents are the run's audit lines: every created or reused key, certificate and other
// secret-bearing file.
func (d *Data) auditEvents() []pki.AuditEvent {
	var out []pki.AuditEvent
	for _, f := range d.results {
		var op string
		switch f.Action {
		case ActionCreated:
			op = pki.AuditCreate
		case ActionReused:
			op = pki.AuditReuse
		default:
			continue
		}
		out = append(out, pki.AuditEvent{Time: d.Now, Operation: op, File: f.Path, Serial: f.Serial, SHA256: f.SHA256, Outcome: "ok", Detail: f.Phase})
	}
	return out
}

func removeDirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // only if empty; best effort after a failed commit
	}
}

// certResult describes a certificate for the output.
func certResult(cert *x509.Certificate) FileResult {
	return FileResult{
		Type:     "certificate",
		Subject:  cert.Subject.String(),
		SANs:     pki.FormatAltNames(cert.DNSNames, cert.IPAddresses),
		Serial:   cert.SerialNumber.String(),
		NotAfter: cert.NotAfter.UTC(),
		SHA256:   pki.Fingerprint(cert.Raw),
	}
}

// caRequestResult describes a CA a dry run would create, with the SANs NewSelfSignedCA gives it.
func caRequestResult(req pki.CertRequest) FileResult {
	req.AltNames = pki.CAAltNames(req)
	return requestResult(req)
}

// requestResult describes a certificate a dry run would issue.
func requestResult(req pki.CertRequest) FileResult {
	names := pki.NormalizeAltNames(req.AltNames)
	subject := "CN=" + req.CommonName
	if len(req.Organization) > 0 {
		subject = fmt.Sprintf("CN=%s,O=%v", req.CommonName, req.Organization)
	}
	return FileResult{
		Type:     "certificate",
		Subject:  subject,
		SANs:     pki.FormatAltNames(names.DNSNames, names.IPs),
		NotAfter: req.NotAfter,
	}
}
