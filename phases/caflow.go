package phases

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
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
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	CA         string   `json:"ca"`
	Step       string   `json:"step"`
	DryRun     bool     `json:"dryRun"`
	Files      []string `json:"files"`
	// Removes lists the files the step deletes (the staged key at promote, ca-signer.crt at prune).
	Removes []string `json:"removes,omitempty"`
	Backups []string `json:"backups,omitempty"`
	Stage   CAStage  `json:"stage"`
	Next    string   `json:"next"`
	// Restart names what must restart or reload before the next step.
	Restart string `json:"restart"`
}

// caRestart says which components read a CA's files, for a step's advice. For the cluster CA it also
// says where kube-controller-manager's --cluster-signing-cert-file must point: at CASignerFile while ca.crt
// is a bundle (after prepare and promote), at ca.crt again after prune.
func caRestart(name, step, certDir string) string {
	switch name {
	case "etcd-ca":
		return "every etcd member (one at a time, so etcd keeps quorum), then kube-apiserver"
	case "front-proxy-ca":
		return "kube-apiserver (it reads front-proxy-ca.crt as --requestheader-client-ca-file and signs with front-proxy-client)"
	}
	signing := filepath.Join(certDir, CASignerFile) + " (it signs only with a file of one certificate, and ca.crt is a bundle until prune)"
	if step == "prune" {
		signing = filepath.Join(certDir, "ca.crt") + " again (" + CASignerFile + " is removed)"
	}
	return "kube-apiserver, then kube-controller-manager with --cluster-signing-cert-file=" + signing +
		", and kube-scheduler (static pods), then every kubelet and client that uses a kubeconfig"
}

// CARotate is "k8scrypto ca rotate <step> --ca NAME": one step of a CA rotation, through RotateStep (the
// session, backups, commit and audit every rotation shares). A dry run lists the files the step would
// write and changes nothing.
func CARotate(ctx context.Context, step string, o CARotateOptions) (*CARotateResult, error) {
	cfg, err := o.Config.resolve(forMaintenance)
	if err != nil {
		return nil, err
	}
	o.absolute()
	o.CertDir = cfg.PKI.CertDir
	r := &CARotation{Cfg: cfg.PKI, KubeconfigDir: o.KubeconfigDir, Name: o.Name, Now: o.Now, Keys: o.Keys, Rand: o.Rand, Yes: o.Yes}
	res := &CARotateResult{APIVersion: ResultAPIVersion, Kind: "CARotateResult", CA: o.Name, Step: step, DryRun: o.DryRun, Restart: caRestart(o.Name, step, cfg.PKI.CertDir)}
	if o.DryRun {
		if err := r.Read(); err != nil {
			return nil, err
		}
		if err := r.Check(ctx, step); err != nil {
			return nil, err
		}
		plan, err := r.Plan(ctx, step)
		if err != nil {
			return nil, err
		}
		for _, f := range plan.Files {
			res.Files = append(res.Files, f.Path)
		}
		res.Removes = plan.Obsolete
		res.Stage, res.Next = r.Stage(), caNext(r.Stage(), o.Name)
		return res, nil
	}
	rec := &recordingRotation{CARotation: r}
	if res.Backups, err = RotateStep(ctx, rec, step, o.RotateOptions); err != nil {
		return nil, err
	}
	res.Files, res.Removes = rec.files, rec.removes
	after := &CARotation{Cfg: cfg.PKI, KubeconfigDir: o.KubeconfigDir, Name: o.Name}
	if err := after.Read(); err != nil {
		return nil, err
	}
	res.Stage, res.Next = after.Stage(), caNext(after.Stage(), o.Name)
	return res, nil
}

// recordingRotation keeps the paths of the plan RotateStep commits, for the result.
type recordingRotation struct {
	*CARotation
	files, removes []string
}

func (r *recordingRotation) Plan(ctx context.Context, step string) (*RotationPlan, error) {
	p, err := r.CARotation.Plan(ctx, step)
	if err == nil {
		for _, f := range p.Files {
			r.files = append(r.files, f.Path)
		}
		r.removes = append(r.removes, p.Obsolete...)
	}
	return p, err
}

// CARenewResult lists the renewed CAs and every file written.
type CARenewResult struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	DryRun     bool        `json:"dryRun"`
	CAs        []RenewedCA `json:"cas"`
	Backups    []string    `json:"backups,omitempty"`
	Next       string      `json:"next"`
}

// CARenew is "k8scrypto ca renew": each named CA re-issued with its own key (PlanCARenewal), the files it
// replaces backed up, everything written in one transaction with its audit lines.
func CARenew(ctx context.Context, names []string, o RotateOptions, src ConfigSource, rnd io.Reader) (*CARenewResult, error) {
	cfg, err := src.resolve(forMaintenance)
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
	res := &CARenewResult{APIVersion: ResultAPIVersion, Kind: "CARenewResult", DryRun: o.DryRun,
		Next: "copy the renewed files to every control-plane node; restart kube-apiserver, kube-controller-manager, kube-scheduler and etcd so that they serve the new CA certificate; certificates the CA signed stay valid (\"k8scrypto renew certs\" renews those its old end date had cut short)"}
	if o.DryRun {
		if err := NothingPending(cfg.PKI.CertDir, o.KubeconfigDir); err != nil {
			return nil, err
		}
		plan, err := PlanCARenewal(cfg.PKI, o.KubeconfigDir, names, o.Now, rnd)
		if err != nil {
			return nil, err
		}
		res.CAs = plan.Renewed
		return res, nil
	}
	s, err := OpenSession(ctx, SessionOptions{CertDir: cfg.PKI.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout,
		AuditLog: o.AuditLog, BackupDir: o.BackupDir, Backups: true, KeyRotations: true, RequireCertDir: true, Now: o.Now, Log: o.Log})
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
	backups, events, err := backUp(s, paths)
	if err != nil {
		return nil, err
	}
	res.Backups, res.CAs = backups, plan.Renewed
	if err := s.Commit(plan.Files, append(events, plan.Events...)); !Committed(err) {
		return nil, s.Fail(err)
	} else if err != nil {
		return res, err
	}
	return res, nil
}
