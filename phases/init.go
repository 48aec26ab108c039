package phases

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// InitPhases are the phases of "k8scrypto init", in run order.
func InitPhases() []Phase {
	return []Phase{
		CertsPhase(),
		SAPhase(),
		EncryptionConfigPhase(),
		KubeconfigPhase(),
		KubeadmConfigPhase(),
	}
}

// InitOptions are the inputs of "k8scrypto init" and of its phase commands.
type InitOptions struct {
	// Config is resolved in full: the file, the flags, and what is guessed from the host.
	Config        ConfigSource
	KubeconfigDir string
	Now           time.Time // read once by the caller
	Keys          pki.KeySource
	Rand          io.Reader
	DryRun        bool
	Encryption    EncryptionOptions
	// KubeadmConfigOut is where the kubeadm-config phase writes ("" means <kubeconfig-dir>/kubeadm-config.yaml).
	KubeadmConfigOut string
	AuditLog         string
	LockTimeout      time.Duration
	Log              *slog.Logger
}

// Init runs the selected phases in a session: the certificate directory is created if missing (and removed
// again if the run fails), the lock taken and any interrupted run recovered, then every staged file is
// committed with its audit lines. A dry run opens no session and writes nothing.
func Init(ctx context.Context, runner *Runner, sel Selection, o InitOptions) (Result, error) {
	if err := runner.Validate(sel); err != nil {
		return Result{}, &UsageError{fmt.Errorf("--skip-phases: %w", err)}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	cfg, err := o.Config.resolve(forInit, o.Log)
	if err != nil {
		return Result{}, err
	}
	if err := checkPathFlags(pathFlag{"--kubeconfig-dir", o.KubeconfigDir}, pathFlag{"--kubeadm-config-out", o.KubeadmConfigOut}, pathFlag{"--audit-log", o.AuditLog},
		pathFlag{"--kms-name", o.Encryption.KMSName}, pathFlag{"--kms-endpoint", o.Encryption.KMSEndpoint}); err != nil {
		return Result{}, err
	}
	if err := checkList("--encrypt-resources", o.Encryption.Resources); err != nil {
		return Result{}, err
	}
	absolute(&o.KubeconfigDir, &o.KubeadmConfigOut, &o.AuditLog)
	d := NewData(cfg.PKI, o.Now, o.Keys, o.Log)
	d.Kubeadm = cfg.Kubeadm
	d.Rand = o.Rand
	d.DryRun = o.DryRun
	d.KubeconfigDir = o.KubeconfigDir
	d.Encryption = o.Encryption
	d.KubeadmConfigOut = o.KubeadmConfigOut
	d.RenewArgs = o.Config.RenewArgs()
	// A dry run's session resolves the same audit log, creates and locks nothing; the phases see no session.
	s, err := BeginSession(ctx, SessionOptions{
		CertDir: d.Cfg.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout, AuditLog: o.AuditLog,
		CreateCertDir: true, Strict: d.Cfg.StrictPermissions, DryRun: o.DryRun, Now: d.Now, Log: d.Log,
	})
	if err != nil {
		return Result{}, err
	}
	defer s.Release()
	d.AuditLog = s.AuditLog
	if !o.DryRun {
		d.Session = s
	}
	err = runner.Run(ctx, d, sel)
	if !Committed(err) {
		err = d.Session.Fail(err)
	}
	return d.Result(), err
}
