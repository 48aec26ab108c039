package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// ReadOptions are the inputs every read-only command shares: its configuration, and what it needs to
// recover an interrupted run first (RecoverBeforeReading).
type ReadOptions struct {
	Config        ConfigSource
	KubeconfigDir string
	AuditLog      string
	LockTimeout   time.Duration
	Now           time.Time
	Log           *slog.Logger
}

func (o ReadOptions) logger() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

func (o ReadOptions) session(certDir string) SessionOptions {
	return SessionOptions{CertDir: certDir, KubeconfigDir: o.KubeconfigDir, AuditLog: o.AuditLog, LockTimeout: o.LockTimeout, Now: o.Now, Log: o.Log}
}

// SAStatusResult is what "sa status" prints.
type SAStatusResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	*sakeys.State
	// APIServer is what the apiserver serves at /openid/v1/jwks, with API.
	APIServer *ServedKeys `json:"apiserver,omitempty"`
}

// SAStatus is "k8scrypto sa status": the stage of the service-account keys and, with api, which keys the
// apiserver serves. An interrupted rotation is completed first, or reported: the files may be half replaced.
func SAStatus(ctx context.Context, o ReadOptions, api APIServer) (*SAStatusResult, error) {
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	if err := RecoverBeforeReading(o.session(cfg.PKI.CertDir)); err != nil {
		return nil, err
	}
	st, err := readSAKeys(cfg.PKI.CertDir)
	if err != nil {
		return nil, err
	}
	res := &SAStatusResult{APIVersion: ResultAPIVersion, Kind: "ServiceAccountKeyStatus", State: st}
	var local []string
	for _, k := range st.Pub {
		local = append(local, k.KeyID)
	}
	if res.APIServer, err = api.ServiceAccountKeys(ctx, local); err != nil {
		return nil, err
	}
	return res, nil
}

// EncryptionStatusResult is what "encryption status" prints.
type EncryptionStatusResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	File       string `json:"file"`
	encryption.Status
	Problems  []string             `json:"problems,omitempty"`
	APIServer *APIServerEncryption `json:"apiserver,omitempty"`
	Etcd      *EtcdCounts          `json:"etcd,omitempty"`
}

// EncryptionStatus is "k8scrypto encryption status": the file's providers, keys and stage, with api which
// file the apiserver runs, with etcd what is stored under which key, and the next step that is safe. When
// something needs the operator the result comes with a *StatusProblemsError.
func EncryptionStatus(ctx context.Context, o ReadOptions, api APIServer, etcd Etcd) (*EncryptionStatusResult, error) {
	if err := etcd.Check(); err != nil {
		return nil, err
	}
	cfg, err := o.Config.resolve(forMaintenance, o.logger())
	if err != nil {
		return nil, err
	}
	certDir := cfg.PKI.CertDir
	// An interrupted rotation is completed first, or reported: the file may be half replaced.
	if err := RecoverBeforeReading(o.session(certDir)); err != nil {
		return nil, err
	}
	path, ec, fileHash, err := LoadEncryptionConfig(certDir)
	if err != nil {
		return nil, err
	}
	res := &EncryptionStatusResult{APIVersion: ResultAPIVersion, Kind: "EncryptionStatus", File: path, Status: describeEncryption(ec)}
	if mode, loose := pki.LooseSecretMode(path); loose {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s holds the encryption keys and is mode %04o: others can read it; chmod 600 %s", path, mode, path))
	}
	for _, w := range res.Warnings {
		o.logger().Warn(w)
	}
	if res.APIServer, err = api.View(ctx, fileHash); err != nil {
		return nil, err
	}
	if res.Etcd, err = etcd.Count(ctx, certDir, ec, nil); err != nil {
		return nil, err
	}
	adv := AdviseEncryption(res.Status, res.APIServer, res.Etcd, NewStepArgs(o.Config, api, etcd))
	res.Next, res.Problems = adv.Next, adv.Problems
	if len(res.Problems) > 0 {
		return res, &StatusProblemsError{Problems: res.Problems}
	}
	return res, nil
}

// ExpirationOptions are the inputs of "certs check-expiration".
type ExpirationOptions struct {
	ReadOptions
	// FailWithin makes expiry within it a problem; MetricsFile receives the Prometheus text exposition.
	FailWithin  time.Duration
	MetricsFile string
}

// ExpirationReport is "k8scrypto certs check-expiration": after recovering an interrupted run (or
// reporting that it could not: the report still comes, with a *PendingError), the expiry of every
// certificate, written to MetricsFile too. Problems (expiring within FailWithin, or unreadable) come as an
// error with the report.
func ExpirationReport(o ExpirationOptions) (*ExpirationInfo, error) {
	cfg, err := o.Config.resolve(forReport, o.logger())
	if err != nil {
		return nil, err
	}
	absolute(&o.KubeconfigDir)
	// Before anything else: a replacement an interrupted run left half done is completed, or reported.
	pending := RecoverBeforeReading(o.session(cfg.PKI.CertDir))
	if pe := new(PendingError); pending != nil && !errors.As(pending, &pe) {
		return nil, pending
	}
	info := CheckExpiration(cfg.PKI, o.KubeconfigDir, o.Now)
	if o.MetricsFile != "" {
		var buf bytes.Buffer
		if err := info.WritePrometheus(&buf); err != nil {
			return nil, err
		}
		// Readable by node-exporter's user; it holds no secret.
		if err := pki.WriteFileAtomic(o.MetricsFile, buf.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("--metrics-file: %w", err)
		}
	}
	var problems []string
	if o.FailWithin > 0 {
		problems = info.ExpiringWithin(o.FailWithin)
	} else {
		for _, r := range append(info.Certificates, info.CertificateAuthorities...) {
			if r.Error != "" {
				problems = append(problems, r.Name+": "+r.Error)
			} else if r.Problem != "" {
				problems = append(problems, r.Name+": "+r.Problem)
			}
		}
	}
	if len(problems) > 0 {
		return &info, errors.Join(pending, &ExpirationProblemsError{Problems: problems, FailWithin: o.FailWithin})
	}
	return &info, pending
}

// ExpirationProblemsError lists what check-expiration found wrong.
type ExpirationProblemsError struct {
	Problems   []string
	FailWithin time.Duration
}

func (e *ExpirationProblemsError) Error() string {
	head := fmt.Sprintf("%d problem(s)", len(e.Problems))
	if e.FailWithin > 0 {
		head = fmt.Sprintf("%d certificate(s) expire within %s or cannot be checked", len(e.Problems), e.FailWithin)
	}
	return fmt.Sprintf("%s:\n  %s", head, strings.Join(e.Problems, "\n  "))
}
