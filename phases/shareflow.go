package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
)

// layoutOf is what a configuration shares: without a local etcd there is no etcd CA.
func layoutOf(cfg *pki.Config) certshare.Layout {
	local := slices.ContainsFunc(cfg.Certs(), func(s pki.CertSpec) bool { return s.Name == "etcd-ca" })
	return certshare.Layout{CertDir: cfg.CertDir, ExternalEtcd: !local}
}

// dynamicFor is a dynamic client for a kubeconfig.
func dynamicFor(kubeconfig string) (dynamic.Interface, error) {
	if kubeconfig == "" {
		return nil, &UsageError{fmt.Errorf("--kubeconfig is required (a cluster administrator's, for example /etc/kubernetes/admin.conf)")}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	rc.UserAgent = "k8scrypto"
	return dynamic.NewForConfig(rc)
}

// UploadCertsOptions are the inputs of "init phase upload-certs".
type UploadCertsOptions struct {
	Config     ConfigSource
	Kubeconfig string
	Key        string
	RotateOptions
	Rand io.Reader
}

// RunUploadCerts is "k8scrypto init phase upload-certs": the node's shared files into kube-system/kubeadm-certs.
func RunUploadCerts(ctx context.Context, o UploadCertsOptions) (UploadResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return UploadResult{}, err
	}
	if err := sharedFilesSettled(cfg.PKI.CertDir); err != nil {
		return UploadResult{}, err
	}
	client, err := dynamicFor(o.Kubeconfig)
	if err != nil {
		return UploadResult{}, err
	}
	return UploadCerts(ctx, UploadRequest{Layout: layoutOf(cfg.PKI), Key: o.Key, Client: client, Now: o.Now, Rand: o.Rand, DryRun: o.DryRun})
}

// InstallSharedOptions are the inputs of "join phase download-certs" and "certs import".
type InstallSharedOptions struct {
	Config ConfigSource
	RotateOptions
	// From the cluster: Kubeconfig and Key. From a bundle: Bundle and Secret.
	Kubeconfig string
	Key        string
	Bundle     string
	Secret     certshare.BundleSecret
	// Pins are the accepted sha256: hashes of the cluster CA's public key (required from the cluster).
	Pins []string
}

// InstallSharedResult lists what was written.
type InstallSharedResult struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Source     string   `json:"source"`
	DryRun     bool     `json:"dryRun"`
	Written    []string `json:"written"`
	// AuditLog is the file the run's audit lines go to (or would, in a dry run); absent when nothing was to write.
	AuditLog string `json:"auditLog,omitempty"`
	// Kept are files already on the node with the same content.
	Kept []string `json:"kept,omitempty"`
	Next string   `json:"next"`
}

// InstallShared is "join phase download-certs" (from kube-system/kubeadm-certs) and "certs import" (from a
// bundle): the shared files, checked as a set and against the CA pin, written in one transaction of the
// session with their audit lines; a different CA or key already on the node refuses the whole install.
func InstallShared(ctx context.Context, o InstallSharedOptions) (*InstallSharedResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	o.absolute()
	l := layoutOf(cfg.PKI)
	res := &InstallSharedResult{APIVersion: ResultAPIVersion, Kind: "InstallSharedResult", DryRun: o.DryRun,
		Next: `"k8scrypto init" on this node: it reuses the shared CAs and keys and issues this node's own certificates and kubeconfigs`}
	var files certshare.Files
	if o.Bundle != "" {
		res.Source = pki.AbsPath(o.Bundle)
		data, err := pki.ReadFile(o.Bundle, pki.MaxConfigSize)
		if err != nil {
			return nil, err
		}
		if files, err = certshare.OpenBundle(data, o.Secret); err != nil {
			return nil, bundleError(err)
		}
		if len(o.Pins) > 0 {
			if err := CheckCAPin(files, o.Pins); err != nil {
				return nil, &RefusedError{Err: err}
			}
		}
	} else {
		res.Source = "kube-system/" + KubeadmCertsSecret
		if err := CheckCAPin(certshare.Files{"ca.crt": nil}, o.Pins); len(o.Pins) == 0 {
			return nil, &UsageError{err}
		}
		client, err := dynamicFor(o.Kubeconfig)
		if err != nil {
			return nil, err
		}
		if files, err = FetchCerts(ctx, client, o.Key); err != nil {
			return nil, err
		}
		if err := CheckCAPin(files, o.Pins); err != nil {
			return nil, &RefusedError{Err: err}
		}
	}
	if err := certshare.Check(files, l); err != nil {
		return nil, err
	}
	session := SessionOptions{CertDir: cfg.PKI.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout,
		AuditLog: o.AuditLog, BackupDir: o.BackupDir, CreateCertDir: true, DryRun: o.DryRun, Now: o.Now, Log: o.Log}
	if o.DryRun {
		// The state a real run would use (and the refusal of a pending interrupted run), nothing created.
		dry, err := DrySession(session)
		if err != nil {
			return nil, err
		}
		res.AuditLog = dry.AuditLog
	}
	staged, _, err := PlanInstallShared(files, l, o.Now, res.Source)
	if err != nil {
		return nil, err
	}
	for _, f := range staged {
		res.Written = append(res.Written, f.Path)
	}
	for name, p := range l.Paths() {
		if len(files[name]) > 0 && !slices.Contains(res.Written, p) {
			res.Kept = append(res.Kept, p)
		}
	}
	slices.Sort(res.Kept)
	if len(staged) == 0 {
		res.AuditLog = ""
	}
	if o.DryRun || len(staged) == 0 {
		return res, nil
	}
	s, err := OpenSession(ctx, session)
	if err != nil {
		return nil, err
	}
	defer s.Release()
	res.AuditLog = s.AuditLog
	// Re-plan under the lock: another run may have written meanwhile.
	staged, events, err := PlanInstallShared(files, l, o.Now, res.Source)
	if err != nil {
		return nil, s.Fail(err)
	}
	for _, f := range staged {
		if err := pki.EnsureDir(filepath.Dir(f.Path), pki.ModeDir, false); err != nil {
			return nil, s.Fail(err)
		}
	}
	if err := s.Commit(staged, events); !Committed(err) {
		return nil, s.Fail(err)
	} else if err != nil {
		return res, err
	}
	return res, nil
}

// ExportOptions are the inputs of "certs export".
type ExportOptions struct {
	Config ConfigSource
	Out    string
	Secret certshare.BundleSecret
	Rand   io.Reader
	Log    *slog.Logger
}

func (o ExportOptions) logger() *slog.Logger { return RotateOptions{Log: o.Log}.logger() }

// RunExport is "k8scrypto certs export".
func RunExport(o ExportOptions) (ExportResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return ExportResult{}, err
	}
	if err := sharedFilesSettled(cfg.PKI.CertDir); err != nil {
		return ExportResult{}, err
	}
	absolute(&o.Out)
	return ExportBundle(ExportRequest{Layout: layoutOf(cfg.PKI), Out: o.Out, Secret: o.Secret, Rand: o.Rand})
}

// BundleSecret is what opens or seals a bundle (re-exported for the command layer).
type BundleSecret = certshare.BundleSecret

// ReadBundleSecret reads --passphrase-file (its first line) or --key-file (64 hex digits). Neither value is
// ever repeated in an error.
func ReadBundleSecret(passphraseFile, keyFile string) (BundleSecret, error) {
	if passphraseFile != "" {
		data, err := pki.ReadFile(passphraseFile, pki.MaxPEMSize)
		if err != nil {
			return BundleSecret{}, fmt.Errorf("--passphrase-file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		line = strings.TrimRight(line, "\r")
		if line == "" {
			return BundleSecret{}, &UsageError{fmt.Errorf("--passphrase-file %s: the first line is empty", passphraseFile)}
		}
		return BundleSecret{Passphrase: []byte(line)}, nil
	}
	data, err := pki.ReadFile(keyFile, pki.MaxPEMSize)
	if err != nil {
		return BundleSecret{}, fmt.Errorf("--key-file: %w", err)
	}
	key, err := certshare.ParseKey(string(data))
	if err != nil {
		return BundleSecret{}, &UsageError{fmt.Errorf("--key-file %s: %w", keyFile, err)}
	}
	return BundleSecret{Key: key}, nil
}

// sharedFilesSettled refuses to share what an interrupted run may have left half-replaced (a new CA with an
// old key, say): export and upload-certs take no lock, so they cannot complete that run themselves. Exit 3.
func sharedFilesSettled(certDir string) error {
	if found := PendingRecovery(certDir, ""); len(found) > 0 {
		return &RefusedError{&PendingError{CertDir: certDir, Found: found, Cause: errors.New("it shares the files as they are and takes no lock")}}
	}
	return nil
}
