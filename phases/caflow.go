package phases

import (
	"context"
	"fmt"
	"io"
	"slices"

	"k8scrypto.dev/k8scrypto/pki"
)

// CARotateOptions are the inputs of "ca rotate <step> --ca NAME".
type CARotateOptions struct {
	RotateOptions
	Config ConfigSource
	Name   string
	Keys   pki.KeySource
	Rand   io.Reader
	Yes    bool
}

// CARotateResult is what a step did and the stage after it.
type CARotateResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	CA         string `json:"ca"`
	Step       string `json:"step"`
	DryRun     bool   `json:"dryRun"`
	// StepReport: the files the step writes and removes (the staged key at promote, ca-signer.crt at
	// prune), its backups and audit log.
	StepReport
	Stage CAStage `json:"stage"`
	Next  string  `json:"next"`
	// Restart says what must restart before the next step, what reloads by itself and what may wait.
	Restart string `json:"restart"`
	// Restarts are the components (CompEtcd...) that must restart before the next step, in order.
	Restarts []string `json:"restarts"`
	// RestartLater are the components that still trust the old CA until they restart; no request fails
	// meanwhile.
	RestartLater []string `json:"restartLater,omitempty"`
	// Adopted: prepare found this node prepared already (the bundle and staged key copied from the node
	// where prepare ran, verified to match, or an earlier prepare here) and made no new key; it brought
	// this node's own files (kubeconfigs, ca-signer.crt) to the stage, if they were not.
	Adopted bool `json:"adopted,omitempty"`
	// Unchanged: every file was at the step's stage already; nothing was (or would be) written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// CARotate is "k8scrypto ca rotate <step> --ca NAME": one step of a CA rotation, through RotateStep (the
// session, backups, commit and audit every rotation shares). A dry run takes the same path and reports the
// files the step would write, back up and remove, and the stage it would reach; it changes nothing.
func CARotate(ctx context.Context, step string, o CARotateOptions) (*CARotateResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	o.absolute()
	o.CertDir = cfg.PKI.CertDir
	r := &CARotation{Cfg: cfg.PKI, KubeconfigDir: o.KubeconfigDir, Name: o.Name, Now: o.Now, Keys: o.Keys, Rand: o.Rand, Yes: o.Yes}
	res := &CARotateResult{APIVersion: ResultAPIVersion, Kind: "CARotateResult", CA: o.Name, Step: step, DryRun: o.DryRun, Restart: caRestart(o.Name, step, cfg.PKI.CertDir)}
	res.Restarts, res.RestartLater = caStepRestarts(o.Name, step)
	rep, err := RotateStep(ctx, r, step, o.RotateOptions)
	if err != nil {
		return nil, err
	}
	res.StepReport = *rep
	if o.DryRun {
		// The stage the step leads to: each step has one (Check refused any other stage).
		res.Stage = caStageAfter[step]
	} else {
		after := &CARotation{Cfg: cfg.PKI, KubeconfigDir: o.KubeconfigDir, Name: o.Name}
		if err := after.Read(); err != nil {
			return nil, err
		}
		res.Stage = after.Stage()
	}
	res.Adopted, res.Unchanged = r.Adopted(), len(res.Files)+len(res.Removes) == 0
	res.Next = caNext(res.Stage, o.Name)
	if step == "prune" && res.Stage == CASteady {
		res.Next = fmt.Sprintf(`run "k8scrypto ca rotate prune --ca %s --yes" on every control-plane node where it has not run, and restart, node by node, what it names; then %s`, o.Name, res.Next)
	}
	return res, nil
}

// caStageAfter is the stage each step leaves a CA in.
var caStageAfter = map[string]CAStage{"prepare": CAPrepared, "promote": CAPromoted, "prune": CASteady}

// CARenewResult lists the renewed CAs and every file written.
type CARenewResult struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	DryRun     bool        `json:"dryRun"`
	CAs        []RenewedCA `json:"cas"`
	Backups    []string    `json:"backups,omitempty"`
	// BackupDir is the directory of Backups; AuditLog the file the run's audit lines go to.
	BackupDir string `json:"backupDir,omitempty"`
	AuditLog  string `json:"auditLog,omitempty"`
	Next      string `json:"next"`
	// Restarts are the components (CompEtcd...) that must restart now; the others the CAs' advice in Next
	// names pick the renewed certificate up by themselves or may restart before the old one ends.
	Restarts []string `json:"restarts"`
}

// CARenew is "k8scrypto ca renew": each named CA re-issued with its own key (PlanCARenewal), the files it
// replaces backed up, everything written in one transaction with its audit lines. A dry run takes the same
// path in a DrySession: the same plan, backups and audit log reported, nothing written.
func CARenew(ctx context.Context, names []string, o RotateOptions, src ConfigSource, rnd io.Reader) (*CARenewResult, error) {
	cfg, err := src.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	o.absolute()
	if len(names) == 0 || slices.Contains(names, "all") {
		names = CANames
	}
	for _, n := range names {
		if !slices.Contains(CANames, n) {
			return nil, &UsageError{fmt.Errorf("unknown CA %q: the CAs are %v, or all", n, CANames)}
		}
	}
	res := &CARenewResult{APIVersion: ResultAPIVersion, Kind: "CARenewResult", DryRun: o.DryRun}
	s, err := BeginSession(ctx, SessionOptions{CertDir: cfg.PKI.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout,
		AuditLog: o.AuditLog, BackupDir: o.BackupDir, Backups: true, KeyRotations: true, RequireCertDir: true, DryRun: o.DryRun, Now: o.Now, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer s.Release()
	plan, err := PlanCARenewal(cfg.PKI, o.KubeconfigDir, names, o.Now, rnd)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range plan.Files {
		paths = append(paths, f.Path)
	}
	backups, dir, events, err := backUp(s, paths)
	if err != nil {
		return nil, err
	}
	res.Backups, res.BackupDir, res.AuditLog, res.CAs = backups, dir, s.AuditLog, plan.Renewed
	res.Next, res.Restarts = caRenewNext(plan.Renewed, o.Now)
	if err := s.Commit(plan.Files, append(events, plan.Events...)); !Committed(err) {
		return nil, s.Fail(err)
	} else if err != nil {
		return res, err
	}
	return res, nil
}
