package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	NextCommand string `json:"nextCommand,omitempty"`
}

// CA is a certificate authority as a phase sees it; Key is nil for an external CA.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
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

	phase   string
	staged  []pki.File
	dirs    map[string]os.FileMode
	results []FileResult
	cas     map[string]*CA
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
	d.Log.Info(map[bool]string{true: "would write", false: "generated"}[d.DryRun], "file", f.Path)
}

// Reuse records that an existing file stays as it is.
func (d *Data) Reuse(r FileResult) {
	r.Phase, r.Action = d.phase, ActionReused
	d.results = append(d.results, r)
	d.Log.Info("using existing file", "file", r.Path)
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
	return os.ReadFile(path) // #nosec G304 -- a file of the operator's certificate or kubeconfig directory
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
	if len(d.staged) == 0 {
		return nil
	}
	var created []string
	dirs := make([]string, 0, len(d.dirs))
	for dir := range d.dirs {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs) // parents before children
	for _, dir := range dirs {
		missing, err := missingDirs(dir)
		if err != nil {
			return err
		}
		if err := pki.EnsureDir(dir, d.dirs[dir], d.Cfg.StrictPermissions); err != nil {
			removeDirs(created)
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		created = append(created, missing...)
	}
	if err := pki.Commit(d.Cfg.CertDir, d.staged); err != nil {
		removeDirs(created)
		return err
	}
	return nil
}

// missingDirs lists dir and its ancestors that do not exist yet, deepest last.
func missingDirs(dir string) ([]string, error) {
	var out []string
	for {
		_, err := os.Lstat(dir)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		out = append([]string{dir}, out...)
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return out, nil
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
