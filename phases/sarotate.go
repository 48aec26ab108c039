package phases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// SARotateResult is what "sa rotate <step>" prints with -o json|yaml.
type SARotateResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Step       string `json:"step"`
	DryRun     bool   `json:"dryRun"`
	// StepReport: the files the step writes (or would) and removes, its backups and audit log.
	StepReport
	Added   *sakeys.KeyInfo  `json:"added,omitempty"`
	Removed []sakeys.KeyInfo `json:"removed,omitempty"`
	State   *sakeys.State    `json:"state"`
}

// SARotateOptions are the inputs of "sa rotate <step>".
type SARotateOptions struct {
	// RotateOptions without CertDir, which comes from Config.
	RotateOptions
	// Config gives the certificate directory and the new key's algorithm, when it asks for one; otherwise
	// the current sa.key's is kept (and kubeadm's default used only when kubeadm could not make that).
	Config ConfigSource
	Keys   pki.KeySource // nil: fresh keys
	// Yes confirms prune.
	Yes bool
}

// SARotate is "k8scrypto sa rotate <step>": one step of the service-account key rotation, through
// RotateStep. The result holds the stage after the step.
func SARotate(ctx context.Context, step string, o SARotateOptions) (*SARotateResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	o.absolute()
	o.CertDir = cfg.PKI.CertDir
	r := &SAKeys{alg: cfg.PKI.Algorithm, explicit: cfg.ExplicitAlgorithm, o: o, res: &SARotateResult{APIVersion: ResultAPIVersion, Kind: "ServiceAccountKeyRotateResult", Step: step, DryRun: o.DryRun}}
	rep, err := RotateStep(ctx, r, step, o.RotateOptions)
	if err != nil {
		return nil, err
	}
	r.res.StepReport = *rep
	// The key set after the step: read from disk, or in a dry run from the planned files over it, the same way.
	read := pki.ReadPlanned(nil, nil)
	if o.DryRun {
		read = pki.ReadPlanned(r.plan.Files, r.plan.Obsolete)
	}
	if r.res.State, err = readSAKeysWith(o.CertDir, read); err != nil {
		return nil, err
	}
	return r.res, nil
}

// SAKeys is the rotation of the service-account signing key pair, sa.key and sa.pub (package sakeys).
type SAKeys struct {
	o        SARotateOptions
	alg      pki.Algorithm
	explicit bool
	st       *sakeys.State
	res      *SARotateResult
	plan     *RotationPlan
}

// Read reads the key files and their stage.
func (r *SAKeys) Read() (err error) {
	r.st, err = readSAKeys(r.o.CertDir)
	return err
}

// saRepair continues a key file's error (sakeys.FileError) with the command that repairs it.
var saRepair = map[sakeys.Problem]string{
	sakeys.KeyMissing:     `: create the pair with "k8scrypto init phase sa" first`,
	sakeys.PubMissing:     `, or run "k8scrypto init phase sa" to derive it from ` + sakeys.KeyName,
	sakeys.NextUnreadable: `: remove it and run "k8scrypto sa rotate prepare" again`,
	sakeys.NextNotInPub:   `: remove ` + sakeys.NextName + ` and run "k8scrypto sa rotate prepare" again`,
}

// readSAKeys reads the service-account key files, with the command their stage calls for next.
func readSAKeys(certDir string) (*sakeys.State, error) {
	return readSAKeysWith(certDir, pki.ReadPlanned(nil, nil))
}

// readSAKeysWith is readSAKeys with the files read by read (pki.ReadPlanned).
func readSAKeysWith(certDir string, read func(string) ([]byte, error)) (*sakeys.State, error) {
	st, err := sakeys.ReadWith(certDir, read)
	if fe := new(sakeys.FileError); errors.As(err, &fe) {
		return nil, fmt.Errorf("%w%s", err, saRepair[fe.Problem])
	}
	if err != nil {
		return nil, err
	}
	switch st.Stage {
	case sakeys.StagePrepared:
		st.Next = `restart every kube-apiserver, then "k8scrypto sa rotate promote"`
	case sakeys.StagePromoted:
		st.Next = `restart kube-apiserver and kube-controller-manager; once tokens signed by the old key have expired or been replaced, "k8scrypto sa rotate prune --yes"`
	default:
		st.Next = `"k8scrypto sa rotate prepare" when the key is due`
	}
	return st, nil
}

// Files are sa.key, sa.pub and sa.key.next.
func (r *SAKeys) Files() []string { return sakeys.Files(r.o.CertDir) }

// Check refuses a step out of order (a *RefusedError of a *sakeys.StageError), and prune without Yes.
func (r *SAKeys) Check(_ context.Context, step string) error {
	st := r.st
	want := map[string]sakeys.Stage{"prepare": sakeys.StageSteady, "promote": sakeys.StagePrepared, "prune": sakeys.StagePromoted}[step]
	if st.Stage != want && !(step == "promote" && st.LeftoverNext) {
		return &RefusedError{&sakeys.StageError{Op: step, State: st}}
	}
	if step == "prune" && !r.o.Yes {
		var old []string
		for _, k := range st.Pub {
			if k.Role == sakeys.RoleOld {
				old = append(old, k.SHA256[:16])
			}
		}
		return &UsageError{fmt.Errorf("prune removes %d public key(s) (sha256 %s) from sa.pub: tokens they signed will be rejected once the apiservers restart. Add --yes when those tokens have expired or been replaced", len(old), strings.Join(old, ", "))}
	}
	return nil
}

// Plan computes the step's files; prepare makes the new key.
func (r *SAKeys) Plan(_ context.Context, step string) (*RotationPlan, error) {
	st, now := r.st, r.o.Now
	var change *sakeys.Step
	var events []pki.AuditEvent
	var err error
	switch step {
	case "prepare":
		// Keep the current key's algorithm unless one was asked for, or kubeadm could not make it.
		alg, perr := pki.ParseAlgorithm(st.Key.Algorithm)
		if r.explicit || perr != nil {
			alg = r.alg
		}
		if alg == "" {
			alg = pki.RSA2048 // kubeadm's default
		}
		keys := r.o.Keys
		if keys == nil {
			keys = pki.GenerateKey
		}
		key, err := keys("sa", alg)
		if err != nil {
			return nil, fmt.Errorf("generating the new service-account key (%s): %w", alg, err)
		}
		if change, err = st.Prepare(key); err != nil {
			return nil, err
		}
		added := sakeys.Describe(key.Public(), sakeys.RoleNext) // with its kid, as status shows it
		r.res.Added = &added
		fp := added.SHA256
		events = append(events, pki.AuditEvent{Time: now, Operation: pki.AuditRotate, File: filepath.Join(st.Dir, sakeys.NextName), SHA256: fp,
			Detail: "sa rotate prepare: new signing key staged, its public key appended to " + sakeys.PubName})
	case "promote":
		if change, err = st.Promote(); err != nil {
			return nil, err
		}
		if next := st.New; next != nil {
			events = append(events, pki.AuditEvent{Time: now, Operation: pki.AuditRotate, File: filepath.Join(st.Dir, sakeys.KeyName), SHA256: next.SHA256,
				Detail: fmt.Sprintf("sa rotate promote: %s is now the signing key; the previous one (sha256 %s) stays in %s", sakeys.NextName, st.Key.SHA256, sakeys.PubName)})
		}
	case "prune":
		if change, err = st.Prune(); err != nil {
			return nil, err
		}
		r.res.Removed = change.Removed
		for _, k := range change.Removed {
			events = append(events, pki.AuditEvent{Time: now, Operation: pki.AuditRemove, File: filepath.Join(st.Dir, sakeys.PubName), SHA256: k.SHA256,
				Detail: "sa rotate prune: public key removed; tokens it signed are no longer accepted"})
		}
	default:
		return nil, fmt.Errorf("internal error: unknown step %q", step)
	}
	for i := range events {
		events[i].Outcome = "ok"
	}
	r.plan = &RotationPlan{Files: change.Files, Obsolete: change.Obsolete, Events: events}
	return r.plan, nil
}
