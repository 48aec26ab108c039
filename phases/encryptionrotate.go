package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// EncryptionRotateResult is what "encryption rotate <step>" prints with -o json|yaml.
type EncryptionRotateResult struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Step       string   `json:"step"`
	File       string   `json:"file"`
	DryRun     bool     `json:"dryRun"`
	Backups    []string `json:"backups,omitempty"`
	// BackupDir is the directory of Backups; AuditLog the file the step's audit lines go to.
	BackupDir string              `json:"backupDir,omitempty"`
	AuditLog  string              `json:"auditLog,omitempty"`
	Changes   []encryption.Change `json:"changes"`
	Stage     encryption.Stage    `json:"stage"`
	Next      string              `json:"next"`
}

// EncryptionRotateOptions are the inputs of "encryption rotate <step>".
type EncryptionRotateOptions struct {
	// RotateOptions without CertDir, which comes from Config.
	RotateOptions
	Config ConfigSource
	Rand   io.Reader // the new key of prepare; nil: crypto/rand
	// Yes confirms prune; Unsafe skips its proofs (UnsafePruneFlag).
	Yes, Unsafe bool
	// API is the apiserver promote and prune wait for; Etcd where prune counts what is stored.
	API  APIServer
	Etcd Etcd
}

// EncryptionRotate is "k8scrypto encryption rotate <step>": one step of the encryption-key rotation,
// through RotateStep.
func EncryptionRotate(ctx context.Context, step string, o EncryptionRotateOptions) (*EncryptionRotateResult, error) {
	if err := o.Etcd.Check(); err != nil {
		return nil, err
	}
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	o.absolute()
	o.CertDir = cfg.PKI.CertDir
	r := &EncryptionKeys{o: o, args: NewStepArgs(o.Config, o.API, o.Etcd)}
	rep, err := RotateStep(ctx, r, step, o.RotateOptions)
	if err != nil {
		return nil, err
	}
	r.res.Backups, r.res.BackupDir, r.res.AuditLog = rep.Backups, rep.BackupDir, rep.AuditLog
	return r.res, nil
}

// EncryptionKeys is the rotation of the encryption-at-rest configuration's keys (package encryption).
type EncryptionKeys struct {
	o        EncryptionRotateOptions
	path     string
	cur      *encryption.Config
	fileHash string
	data     []byte
	args     StepArgs
	res      *EncryptionRotateResult
}

// LoadEncryptionConfig reads the encryption configuration of a certificate directory, with the hash
// kube-apiserver reports for the same bytes.
func LoadEncryptionConfig(certDir string) (path string, cfg *encryption.Config, fileHash string, err error) {
	path = EncryptionConfigPath(certDir)
	cfg, fileHash, err = encryption.Load(path)
	if encryption.IsNotExist(err) {
		return path, nil, "", fmt.Errorf("no encryption config at %s: create it with \"k8scrypto init phase encryption-config\" (or set --cert-dir): %w", path, err)
	}
	return path, cfg, fileHash, err
}

// Read reads the encryption configuration.
func (r *EncryptionKeys) Read() (err error) {
	r.path, r.cur, r.fileHash, err = LoadEncryptionConfig(r.o.CertDir)
	return err
}

// Files is the encryption configuration.
func (r *EncryptionKeys) Files() []string { return []string{r.path} }

// Check computes the step's configuration, which refuses a step out of order (a *RefusedError of an
// *encryption.StageError),
// then what the step needs: promote an apiserver that runs the prepared file (with API), prune --yes and
// its proofs (PruneProof). The result, dry run or not, is what the step changes.
func (r *EncryptionKeys) Check(ctx context.Context, step string) error {
	var next *encryption.Config
	var changes []encryption.Change
	var err error
	switch step {
	case "prepare":
		next, changes, err = encryption.Prepare(r.cur, r.o.Now, r.o.Rand)
	case "promote":
		next, changes, err = encryption.Promote(r.cur)
	case "prune":
		next, changes, err = encryption.Prune(r.cur)
	default:
		err = fmt.Errorf("internal error: unknown step %q", step)
	}
	if se := new(encryption.StageError); errors.As(err, &se) {
		se.Status.Next = encryptionNext(se.Status.Stage)
		return &RefusedError{err}
	}
	if we := new(encryption.WriteKeyError); errors.As(err, &we) {
		return writeKeyError(we)
	}
	if err != nil {
		return err
	}
	a := r.args
	switch step {
	case "promote":
		retry := "k8scrypto encryption rotate promote" + a.Cluster + a.Kubeconfig + " --wait"
		if _, err := r.o.API.WaitRuns(ctx, step, r.path, r.fileHash, retry); err != nil {
			return err
		}
	case "prune":
		names := make([]string, len(changes))
		for i, c := range changes {
			names[i] = c.Key.Name
		}
		if !r.o.Yes {
			return &UsageError{fmt.Errorf("prune removes key(s) %s: values still stored under them become unreadable for good. Run \"k8scrypto encryption reencrypt\" first (verify with \"k8scrypto encryption status --etcd-endpoints ...\"), then add --yes", strings.Join(names, ", "))}
		}
		proof := PruneProof{API: r.o.API, Etcd: r.o.Etcd, Unsafe: r.o.Unsafe}
		if err := proof.Check(ctx, r.o.CertDir, r.path, r.fileHash, next, names, a, r.o.logger()); err != nil {
			return err
		}
	}
	if r.data, err = encryption.Marshal(next); err != nil {
		return fmt.Errorf("%s: the rotated configuration does not validate: %w", r.path, err)
	}
	st := describeEncryption(next)
	r.res = &EncryptionRotateResult{APIVersion: ResultAPIVersion, Kind: "EncryptionRotateResult", Step: step, File: r.path, DryRun: r.o.DryRun,
		Changes: changes, Stage: st.Stage, Next: st.Next}
	return nil
}

// Plan writes the rotated configuration (0600), with an audit line per key the step adds, moves or removes.
func (r *EncryptionKeys) Plan(_ context.Context, step string) (*RotationPlan, error) {
	op := pki.AuditRotate
	if step == "prune" {
		op = pki.AuditRemove
	}
	var events []pki.AuditEvent
	for _, c := range r.res.Changes {
		events = append(events, pki.AuditEvent{Time: r.o.Now, Operation: op, File: r.path, SHA256: c.Key.Fingerprint, Outcome: "ok",
			Detail: fmt.Sprintf("encryption rotate %s: %s key %s in resources[%d]", step, c.Provider, c.Key.Name, c.Entry)})
	}
	return &RotationPlan{Files: []pki.File{{Path: r.path, Data: r.data, Mode: pki.ModeKey}}, Events: events}, nil
}
