package phases

import (
	"context"
	"io"
	"log/slog"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
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
	Config        *config.Config
	KubeconfigDir string
	Now           time.Time // read once by the caller
	Keys          pki.KeySource
	Rand          io.Reader
	DryRun        bool
	Encryption    EncryptionOptions
	// KubeadmConfigOut is where the kubeadm-config phase writes ("" means <kubeconfig-dir>/kubeadm-config.yaml).
	KubeadmConfigOut string
	// RenewArgs: see Data.RenewArgs.
	RenewArgs   []string
	AuditLog    string
	LockTimeout time.Duration
	Log         *slog.Logger
}

// Init runs the selected phases in a session: the certificate directory is created if missing (and removed
// again if the run fails), the lock taken and any interrupted run recovered, then every staged file is
// committed with its audit lines. A dry run opens no session and writes nothing.
func Init(ctx context.Context, runner *Runner, sel Selection, o InitOptions) (Result, error) {
	d := NewData(o.Config.PKI, o.Now, o.Keys, o.Log)
	d.Kubeadm = o.Config
	d.Rand = o.Rand
	d.DryRun = o.DryRun
	d.KubeconfigDir = o.KubeconfigDir
	d.Encryption = o.Encryption
	d.KubeadmConfigOut = o.KubeadmConfigOut
	d.RenewArgs = o.RenewArgs
	if !o.DryRun {
		s, err := OpenSession(SessionOptions{
			CertDir: d.Cfg.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout, AuditLog: o.AuditLog,
			CreateCertDir: true, Strict: d.Cfg.StrictPermissions, Now: d.Now, Log: d.Log,
		})
		if err != nil {
			return Result{}, err
		}
		defer s.Release()
		d.Session = s
	}
	err := runner.Run(ctx, d, sel)
	if !Committed(err) {
		err = d.Session.Fail(err)
	}
	return d.Result(), err
}
