package phases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/phases/reencrypt"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// ReencryptRequest is one "encryption reencrypt" run.
type ReencryptRequest struct {
	CertDir string
	// API reaches the apiserver the objects are rewritten through (its Kubeconfig is required); its Wait
	// lets the run wait for the apiserver to load the file.
	API APIServer
	// Resources are the names the operator asked for (strict: each must be served); empty means those
	// of the encryption config.
	Resources  []string
	Workers    int
	PageSize   int64
	Checkpoint string
	Restart    bool
	// Etcd, when it has endpoints, counts what is stored after the run: the proof that nothing is left
	// under an older key.
	Etcd Etcd
	// Args are the run's own flags, for the command lines its messages suggest.
	Args     StepArgs
	Progress func(reencrypt.Progress)
	Log      *slog.Logger
}

// ReencryptResult is the outcome of a run.
type ReencryptResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Server     string `json:"server"`
	// Target is the write key the apiserver was verified to use, ConfigHash the file it ran.
	Target     string `json:"target"`
	ConfigHash string `json:"configHash"`
	reencrypt.Summary
	// Etcd is the count after the run, with Etcd endpoints.
	Etcd *EtcdCounts `json:"etcd,omitempty"`
}

// InterruptedError is a run stopped by a signal (exit status 130); its progress is in the checkpoint.
type InterruptedError struct{ Checkpoint string }

func (e *InterruptedError) Error() string {
	if e.Checkpoint == "" {
		return "interrupted by a signal; a change it was making is completed or undone by the next k8scrypto run"
	}
	return fmt.Sprintf("interrupted; progress is saved in %s and the next run resumes there", e.Checkpoint)
}

// ExitCode is the conventional status of a process ended by SIGINT.
func (e *InterruptedError) ExitCode() int { return 130 }

// ReloadedDuringRunError: the apiserver loaded another encryption config while objects were being
// rewritten, so what was rewritten before is under a key the run cannot vouch for (exit 3).
type ReloadedDuringRunError struct {
	Before, After string
	Retry         string
}

func (e *ReloadedDuringRunError) Error() string {
	return fmt.Sprintf("the apiserver loaded another encryption config during the run (%s, then %s): the checkpoint was discarded; once every apiserver runs the file on disk, run %q", shortHash(e.Before), shortHash(e.After), e.Retry)
}

// ExitCode is the process exit status for a run the current state refuses.
func (e *ReloadedDuringRunError) ExitCode() int { return 3 }

// LeftUnderOldKeysError: after a run without errors, etcd still stores values the run should have moved.
type LeftUnderOldKeysError struct {
	NotUnderWriteKey, Unreadable int
}

func (e *LeftUnderOldKeysError) Error() string {
	return fmt.Sprintf("etcd still stores %d value(s) under older keys and %d that this file cannot read after the run: it did not finish the job; run it again, and check with \"k8scrypto encryption status --etcd-endpoints ...\"", e.NotUnderWriteKey, e.Unreadable)
}

// Reencrypt rewrites every object of the configured resources so that it is stored under the write key of
// the encryption config the apiserver runs. It refuses (exit 3) until the apiserver runs the file on disk:
// a rewrite through an apiserver still on the previous file stores everything under the previous key, and
// a checkpoint recorded then would vouch for a key nothing was written with. The checkpoint records the
// configuration the apiserver ran; a run during which the apiserver loaded another one fails and discards
// it.
func Reencrypt(ctx context.Context, req ReencryptRequest) (ReencryptResult, error) {
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := ReencryptResult{APIVersion: ResultAPIVersion, Kind: "ReencryptResult"}
	path := EncryptionConfigPath(req.CertDir)
	cfg, fileHash, err := encryption.Load(path)
	if encryption.IsNotExist(err) {
		return res, fmt.Errorf("no encryption config at %s: reencrypt reads it to know which key the apiserver writes with (set --cert-dir to the directory that holds the file the apiserver runs): %w", path, err)
	}
	if err != nil {
		return res, err
	}
	resources := req.Resources
	if len(resources) == 0 {
		resources = encryptedResources(cfg)
	}
	if len(resources) == 0 {
		resources = []string{encryption.DefaultResource}
	}
	if st := describeEncryption(cfg); st.Stage == encryption.StagePrepared {
		log.Warn("the encryption config is prepared, not promoted: objects are rewritten under the old key; run \"k8scrypto encryption rotate promote\" first", "file", path)
	}
	retry := "k8scrypto encryption reencrypt" + req.Args.Cluster + req.Args.Kubeconfig + " --wait"
	view, err := req.API.WaitRuns(ctx, "reencrypt", path, fileHash, retry)
	if err != nil {
		return res, interrupted(ctx, err, "")
	}
	res.Target, res.ConfigHash = encryption.WriteKey(cfg), view.ConfigHash

	checkpoint := req.Checkpoint
	if checkpoint == "" {
		dir, fellBack, err := pki.StateDir("", filepath.Dir(pki.DefaultBackupDir), "")
		if err != nil {
			return res, err
		}
		if fellBack {
			log.Debug("using the per-user state directory for the checkpoint", "dir", dir)
		}
		checkpoint = filepath.Join(dir, reencrypt.CheckpointFile)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", req.API.Kubeconfig)
	if err != nil {
		return res, fmt.Errorf("--kubeconfig %s: %w", req.API.Kubeconfig, err)
	}
	// No client-side rate limit (the apiserver's priority and fairness applies). NewClient speaks
	// protobuf for Secrets: the apiserver decodes it faster than JSON.
	rc.QPS, rc.Burst = -1, 0
	rc.UserAgent = "k8scrypto-reencrypt"
	client, err := reencrypt.NewClient(rc)
	if err != nil {
		return res, err
	}
	res.Server = rc.Host
	log.Info("rewriting", "resources", strings.Join(resources, ","), "server", rc.Host, "target", res.Target)
	sum, runErr := reencrypt.Run(ctx, client, reencrypt.Options{
		Resources: resources, RequireServed: len(req.Resources) > 0, Workers: req.Workers, PageSize: req.PageSize,
		Checkpoint: checkpoint, Server: rc.Host, Target: res.Target, ConfigHash: res.ConfigHash, Restart: req.Restart,
		Progress: req.Progress, Log: log,
	})
	res.Summary = sum
	if runErr != nil {
		return res, interrupted(ctx, runErr, checkpoint)
	}
	// The apiserver may have reloaded meanwhile: then some objects went under another key than the one
	// the checkpoint and the counts name.
	after, err := req.API.View(ctx, fileHash)
	if err != nil {
		return res, interrupted(ctx, err, checkpoint)
	}
	if after.ConfigHash != view.ConfigHash {
		if err := removeCheckpoint(checkpoint); err != nil {
			return res, err
		}
		return res, &ReloadedDuringRunError{Before: view.ConfigHash, After: after.ConfigHash, Retry: retry}
	}
	if res.Etcd, err = req.Etcd.Count(ctx, req.CertDir, cfg, resources); err != nil {
		return res, interrupted(ctx, err, checkpoint)
	}
	if res.Etcd != nil && (res.Etcd.NotUnderWriteKey > 0 || res.Etcd.Unreadable > 0) {
		return res, &LeftUnderOldKeysError{NotUnderWriteKey: res.Etcd.NotUnderWriteKey, Unreadable: res.Etcd.Unreadable}
	}
	return res, nil
}

// interrupted turns the error of a run whose context was cancelled (SIGINT, SIGTERM) into one line.
func interrupted(ctx context.Context, err error, checkpoint string) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err()) || strings.Contains(err.Error(), context.Canceled.Error())) {
		return &InterruptedError{Checkpoint: checkpoint}
	}
	return err
}

func removeCheckpoint(path string) error {
	if err := pki.RemoveFile(path); err != nil {
		return fmt.Errorf("removing checkpoint: %w", err)
	}
	return nil
}

// encryptedResources lists the resources of the entries that store anything but plaintext.
func encryptedResources(cfg *encryption.Config) []string {
	var out []string
	for _, rc := range cfg.Resources {
		if slices.ContainsFunc(rc.Providers, func(p encryption.ProviderConfig) bool { return p.Identity == nil }) {
			out = append(out, rc.Resources...)
		}
	}
	return out
}
