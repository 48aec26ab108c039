package phases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// RenewCertsOptions are the inputs of "k8scrypto renew certs": a renewal run and its session.
type RenewCertsOptions struct {
	// RenewOptions without Cfg, CheckSANs and Algorithm, which come from Config.
	RenewOptions
	Config      ConfigSource
	AuditLog    string
	BackupDir   string
	LockTimeout time.Duration
	// OnRenew is the operator's --on-renew command, run with sh -c once something was renewed; its output
	// goes to HookOutput.
	OnRenew    string
	HookOutput io.Writer
	// Report, when set, prints the result once the files are written and the lock released, before the
	// hook runs, so that the result is out before the hook's output; an error from it ends the run.
	Report func(RenewResult) error
}

// RenewCerts is "k8scrypto renew certs": in a session (a dry run only checks that nothing is pending), it
// renews what is due, records the run, and runs --on-renew after the lock is released, for this run's
// renewals and for those of earlier runs whose hook did not succeed. The result is nil when the run failed
// as a whole; otherwise it comes even with an error: a run that renewed some certificates but not others,
// or whose hook failed, reports both.
func RenewCerts(ctx context.Context, o RenewCertsOptions) (*RenewResult, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	resolved, err := o.Config.resolve(forRenewal, o.Log)
	if err != nil {
		return nil, err
	}
	absolute(&o.KubeconfigDir, &o.AuditLog, &o.BackupDir)
	cfg := resolved.PKI
	o.Cfg, o.CheckSANs, o.Algorithm = cfg, resolved.SANsLoaded, cfg.Algorithm
	switch {
	case o.Threshold < 0:
		return nil, &UsageError{fmt.Errorf("--threshold: invalid value %s: must not be negative", o.Threshold)}
	case o.Threshold >= cfg.CertValidity:
		return nil, &UsageError{fmt.Errorf("--threshold: %s is not shorter than certificateValidityPeriod (%s): every run would renew every certificate", o.Threshold, cfg.CertValidity)}
	case o.KeepBackups < 1:
		return nil, &UsageError{fmt.Errorf("--keep-backups: invalid value %d: must be at least 1", o.KeepBackups)}
	}
	if info, err := os.Stat(cfg.CertDir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("certificate directory %s does not exist or is not a directory: nothing to renew (set --cert-dir, or create the PKI with \"k8scrypto init\")", cfg.CertDir)
	}
	// A dry run's session writes nothing, so it cannot recover: it says so instead of advice about
	// half-replaced files. It resolves the same audit log and backup root, for the result.
	s, err := BeginSession(ctx, SessionOptions{
		CertDir: cfg.CertDir, KubeconfigDir: o.KubeconfigDir, LockTimeout: o.LockTimeout,
		AuditLog: o.AuditLog, BackupDir: o.BackupDir, Backups: true, DryRun: o.DryRun, Now: o.Now, Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	defer s.Release()
	o.BackupRoot, o.Session = s.BackupRoot, s
	res, err := Renew(ctx, o.RenewOptions)
	if !Committed(err) {
		if ine := new(InvalidNamesError); errors.As(err, &ine) {
			return nil, &UsageError{err}
		}
		if aerr := s.Record(pki.AuditEvent{Time: o.Now, Operation: pki.AuditRenew, File: cfg.CertDir, Outcome: err.Error()}); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return nil, s.Fail(err)
	}
	// Even when the audit log failed, the certificates are in place: the hook below must still restart what
	// uses them. The intent stays for the next run to record.
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	// The hook this run runs, or a dry run would: the same marker read, nothing written in a dry run.
	hook := pendingHook(o.BackupRoot, res, o.OnRenew != "", o.DryRun, o.Log)
	if hook != nil && o.OnRenew != "" {
		res.OnRenew = o.OnRenew
	}
	// The files are safely written: let the next cron run in while the hook restarts the control plane.
	s.Release()
	if o.Report != nil {
		if err := o.Report(res); err != nil {
			return &res, errors.Join(append(errs, err)...)
		}
	}

	if problems := res.Problems(); len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Name + ": " + p.Reason
		}
		errs = append(errs, fmt.Errorf("%d certificate(s) need attention:\n  %s", len(problems), strings.Join(msgs, "\n  ")))
	}
	switch {
	case hook != nil && o.OnRenew != "" && !o.DryRun:
		if err := runHook(ctx, o.HookOutput, o.OnRenew, hook.Renewed, hook.BackupDir); err != nil {
			errs = append(errs, fmt.Errorf("the certificates were renewed, but --on-renew failed (the next run runs it again): %w", err))
		} else if err := hook.done(); err != nil {
			errs = append(errs, err)
		}
	case len(res.Renewed()) > 0:
		o.Log.Info("restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd so that they use the new certificates (or automate it with --on-renew)",
			"renewed", strings.Join(res.Renewed(), ","))
	}
	return &res, errors.Join(errs...)
}

// HookPendingName is the marker, in the backup root, of an --on-renew command that has not yet succeeded
// for certificates already renewed. It is written before the hook runs and removed once it succeeds, so a
// hook that failed (or a run killed before it) is run again by the next run, even when nothing is due then.
const HookPendingName = "on-renew-pending.json"

type hookPending struct {
	Renewed   []string `json:"renewed"`
	BackupDir string   `json:"backupDir,omitempty"`
	path      string
}

// pendingHook returns what --on-renew must be run for: this run's renewals (a dry run's: those it would
// make) and those of earlier runs whose hook did not succeed; nil when there are none. With an --on-renew
// command the marker is written first, except in a dry run.
func pendingHook(root string, res RenewResult, haveHook, dryRun bool, log *slog.Logger) *hookPending {
	h := &hookPending{path: filepath.Join(root, HookPendingName)}
	earlier := false
	if data, err := pki.ReadFileNoFollow(h.path, pki.MaxConfigSize); err == nil {
		earlier = json.Unmarshal(data, h) == nil
		if !earlier {
			log.Warn("ignoring an unreadable --on-renew marker", "file", h.path)
		}
	}
	for _, n := range res.renewedOrWould() {
		if !slices.Contains(h.Renewed, n) {
			h.Renewed = append(h.Renewed, n)
		}
	}
	if res.BackupDir != "" {
		h.BackupDir = res.BackupDir
	}
	if len(h.Renewed) == 0 {
		return nil
	}
	if !haveHook {
		if earlier {
			log.Warn("an earlier run's --on-renew command did not succeed; run with --on-renew to run it again, or remove the marker once the control plane was restarted",
				"renewed", strings.Join(h.Renewed, ","), "marker", h.path)
		}
		return h
	}
	if dryRun {
		return h
	}
	data, _ := json.Marshal(h)
	err := pki.EnsureDir(root, pki.ModeStrictDir, false)
	if err == nil {
		err = pki.WriteFileAtomic(h.path, data, pki.ModeKey)
	}
	if err != nil {
		log.Warn("could not record that --on-renew is pending; a failed hook will not be retried", "file", h.path, "error", err)
	}
	return h
}

// done removes the marker after the hook succeeded.
func (h *hookPending) done() error {
	if err := os.Remove(h.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--on-renew succeeded, but removing %s failed (the next run runs it again): %w", h.path, err)
	}
	return nil
}

// runHook runs --on-renew with sh -c. Its output goes to out (stderr: stdout carries k8scrypto's result).
func runHook(ctx context.Context, out io.Writer, command string, renewed []string, backupDir string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command) // #nosec G204 -- the operator's --on-renew command, run as documented
	cmd.Stdout, cmd.Stderr = out, out
	// Not named like a flag: every K8SCRYPTO_<FLAG> variable sets that flag of a k8scrypto the hook runs.
	cmd.Env = append(os.Environ(),
		"K8SCRYPTO_RENEWED="+strings.Join(renewed, ","),
		"K8SCRYPTO_RENEWED_BACKUP="+backupDir,
	)
	if err := cmd.Run(); err != nil {
		// %v, not %w: the hook's exit status must not become k8scrypto's (the command layer honours ExitCode()).
		return fmt.Errorf("%q: %v", command, err)
	}
	return nil
}

// renewAuditEvents records every renewal, key rotation or reuse, backup, and refusal. Certificates that
// were not due are not recorded: nothing happened to them.
func renewAuditEvents(res RenewResult) []pki.AuditEvent {
	var out []pki.AuditEvent
	ev := func(op, file, serial, sha, outcome, detail string) {
		out = append(out, pki.AuditEvent{Time: res.Time, Operation: op, File: file, Serial: serial, SHA256: sha, Outcome: outcome, Detail: detail})
	}
	for _, it := range res.Certificates {
		switch it.Action {
		case RenewRenewed:
			for _, b := range it.Backups {
				ev(pki.AuditBackup, b, "", "", "ok", "copy of a file replaced by renewing "+it.Name)
			}
			prev := ""
			if it.Previous != nil {
				prev = fmt.Sprintf("replaces serial %s (sha256 %s); ", it.Previous.Serial, it.Previous.SHA256)
			}
			ev(pki.AuditRenew, it.Path, it.Serial, it.SHA256, "ok", prev+it.Reason)
			keyFile := it.Path
			if it.Kind == KindCertificate {
				keyFile = strings.TrimSuffix(it.Path, ".crt") + ".key"
			}
			if it.KeyRotated {
				detail := "new key for " + it.Name
				if it.Previous != nil && it.Previous.KeySHA256 != "" {
					detail += "; replaces key sha256 " + it.Previous.KeySHA256
				}
				ev(pki.AuditRotate, keyFile, "", it.KeySHA256, "ok", detail)
			} else {
				ev(pki.AuditReuse, keyFile, "", it.KeySHA256, "ok", "key kept for "+it.Name)
			}
		case RenewFailed:
			ev(pki.AuditRenew, it.Path, it.Serial, it.SHA256, it.Reason, "")
		}
	}
	return out
}

// pruneAuditEvents records each old backup directory removed by --keep-backups: they held private keys.
func pruneAuditEvents(res RenewResult) []pki.AuditEvent {
	var out []pki.AuditEvent
	for _, d := range res.PrunedBackups {
		out = append(out, pki.AuditEvent{Time: res.Time, Operation: pki.AuditRemove, File: d, Outcome: "ok",
			Detail: "old backup directory (copies of replaced certificates and keys) removed to keep --keep-backups"})
	}
	if res.PruneError != "" {
		out = append(out, pki.AuditEvent{Time: res.Time, Operation: pki.AuditRemove, File: filepath.Dir(res.BackupDir), Outcome: res.PruneError,
			Detail: "removing old backup directories to keep --keep-backups"})
	}
	return out
}
