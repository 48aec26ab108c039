package main

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

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
)

type renewFlags struct {
	clusterFlags
	threshold   time.Duration
	force       bool
	rotateKeys  bool
	backupDir   string
	keepBackups int
	onRenew     string
	dryRun      bool
}

func newRenewCommand(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew certificates that are due",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRenewCertsCommand(e, g))
	return cmd
}

func newRenewCertsCommand(e *env, g *globals) *cobra.Command {
	f := &renewFlags{}
	var names []string
	for _, s := range pki.Catalog() {
		if !s.IsCA() {
			names = append(names, s.Name)
		}
	}
	for _, k := range pki.Kubeconfigs() {
		names = append(names, k.FileName)
	}
	cmd := &cobra.Command{
		Use:   "certs [all|NAME...]",
		Short: "Renew the leaf and kubeconfig client certificates that are due; safe to run from cron",
		Long: `Renew the leaf certificates and the kubeconfig client certificates whose remaining lifetime is under
--threshold (default: a third of each certificate's own lifetime, at most a third of
certificateValidityPeriod), with the CA that signs them. Run it daily
from cron or a systemd timer: a run with nothing due changes nothing. CAs are never renewed.

A renewed certificate keeps the subject and SANs of the one it replaces. With --config (or flags such as
--apiserver-cert-extra-sans) the SANs the configuration asks for are added, which makes the certificate due,
and SANs it no longer asks for are reported but kept. Without a configuration each key keeps its algorithm.
The new certificate is valid from now (backdated 5 minutes) for certificateValidityPeriod (365 days unless
the configuration says otherwise), but never past its CA's expiry: it is cut to end with the CA, and once
renewing would no longer gain time the run fails and asks for the CA to be rotated.

Every file replaced is first copied to --backup-dir/<UTC time>/, and all the renewed files are written in
one crash-safe transaction under the certificate directory's lock: a failed or killed run leaves the old
files, or the next run completes the replacement. Every k8scrypto command completes it before anything else;
a --dry-run, which writes nothing, says it is pending instead.

An explicit --backup-dir or --audit-log that cannot be written is an error at once, whether or not anything is
due. Backup directories beyond --keep-backups are removed, each with a "remove" line in the audit log. A
failed --on-renew command is run again by the next run, even when nothing is due then; until it succeeds a
marker, ` + hookPendingName + `, stays in the backup directory.

Certificates: ` + strings.Join(names, ", ") + `.
kubelet.conf is renewed only when it embeds its client certificate; once the kubelet rotates its own, it is
left to the kubelet.

With -q, the text output lists only what was renewed or needs attention, and is empty otherwise, so
that cron mails only then.

Exit status: 0 when every certificate was renewed or is not due; 1 when something needs a person: a
certificate that could not be renewed (external CA, broken key pair, CA expired or about to), a missing file
a control-plane node must have (super-admin.conf and kubelet.conf may be absent), an unreadable file, or a
failed --on-renew command (the certificates are renewed by then); 2 for a command-line error. The other
certificates are renewed even when one cannot be.`,
		Example: `  # Daily from cron: renew what is due and restart the static pods only then.
  k8scrypto renew certs --on-renew 'crictl pods --namespace kube-system -q | xargs -r crictl stopp'

  # See what is due without writing anything.
  k8scrypto renew certs --dry-run

  # Re-issue the API server certificate now, with the SANs of the current configuration.
  k8scrypto renew certs apiserver --force --config kubeadm.yaml`,
		ValidArgs: append([]string{"all"}, names...),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRenew(cmd.Context(), e, g, f, args)
		},
	}
	fl := cmd.Flags()
	f.add(fl)
	fl.DurationVar(&f.threshold, "threshold", 0, "renew a certificate when its remaining lifetime is under this (0: a third of its lifetime)")
	fl.BoolVar(&f.force, "force", false, "renew the selected certificates whether or not they are due")
	fl.BoolVar(&f.rotateKeys, "rotate-keys", true, "make a new key for each renewed certificate (false: keep the current key)")
	fl.StringVar(&f.backupDir, "backup-dir", "", "where replaced files are copied, in a <UTC time>/ subdirectory (default "+pki.DefaultBackupDir+", or the per-user state directory without root)")
	fl.IntVar(&f.keepBackups, "keep-backups", 10, "number of backup directories to keep")
	fl.StringVar(&f.onRenew, "on-renew", "", "shell command (sh -c) to run when something was renewed, e.g. to restart the static pods; $K8SCRYPTO_RENEWED lists the renewed names (comma-separated), $K8SCRYPTO_RENEWED_BACKUP the backup directory")
	fl.BoolVar(&f.dryRun, "dry-run", false, "write nothing; report what is due")
	return cmd
}

// sanFlagsSet reports whether a flag that decides certificate SANs was given, which needs the full
// configuration (host name, addresses) resolved.
func (f *clusterFlags) sanFlagsSet() bool {
	o := f.overrides
	return o.NodeName != "" || o.AdvertiseAddress != "" || o.ControlPlaneEndpoint != "" || o.ServiceCIDR != "" ||
		o.ServiceDNSDomain != "" || len(o.APIServerCertSANs) > 0
}

// defaultPKIConfig is the configuration renewal and expiry checks use without --config: kubeadm's defaults
// for what names and validity depend on, and nothing guessed from the host.
func defaultPKIConfig(certDir string) *pki.Config {
	if certDir == "" {
		certDir = pki.DefaultCertificateDir
	}
	return &pki.Config{
		CertDir:      certDir,
		LocalEtcd:    true,
		CertValidity: pki.DefaultCertValidity,
		CAValidity:   pki.DefaultCAValidity,
	}
}

// renewConfig resolves the configuration: loaded in full when --config or a SAN flag is given (loaded is
// then true), else defaults.
func (f *renewFlags) renewConfig(e *env) (cfg *pki.Config, loaded bool, err error) {
	if f.sanFlagsSet() {
		c, err := f.load(e)
		if err != nil {
			return nil, false, err
		}
		return c.PKI, true, nil
	}
	cfg, _, err = maintenanceConfig(e, &f.clusterFlags)
	return cfg, f.configFile != "", err
}

func runRenew(ctx context.Context, e *env, g *globals, f *renewFlags, names []string) error {
	cfg, loaded, err := f.renewConfig(e)
	if err != nil {
		return err
	}
	switch {
	case f.threshold < 0:
		return usageError{fmt.Errorf("--threshold: invalid value %s: must not be negative", f.threshold)}
	case f.threshold >= cfg.CertValidity:
		return usageError{fmt.Errorf("--threshold: %s is not shorter than certificateValidityPeriod (%s): every run would renew every certificate", f.threshold, cfg.CertValidity)}
	case f.keepBackups < 1:
		return usageError{fmt.Errorf("--keep-backups: invalid value %d: must be at least 1", f.keepBackups)}
	}
	if info, err := os.Stat(cfg.CertDir); err != nil || !info.IsDir() {
		return fmt.Errorf("certificate directory %s does not exist or is not a directory: nothing to renew (set --cert-dir, or create the PKI with \"k8scrypto init\")", cfg.CertDir)
	}
	o := phases.RenewOptions{
		Cfg:           cfg,
		KubeconfigDir: f.kubeconfigDir,
		CheckSANs:     loaded,
		Names:         names,
		Now:           e.now().UTC(),
		Threshold:     f.threshold,
		Force:         f.force,
		RotateKeys:    f.rotateKeys,
		Algorithm:     cfg.Algorithm,
		Keys:          e.keys,
		Rand:          e.rand,
		DryRun:        f.dryRun,
		KeepBackups:   f.keepBackups,
		Log:           g.log,
	}
	var audit *pki.AuditLog
	var lock *pki.Lock
	if f.dryRun {
		// A dry run writes nothing, so it cannot recover: it says so instead of advice about half-replaced files.
		if err := pendingBeforeDryRun(cfg, f.kubeconfigDir); err != nil {
			return err
		}
	} else {
		if audit, o.BackupRoot, err = openState(f.auditLog, f.backupDir, true, g.log); err != nil {
			return err
		}
		if lock, err = lockAndRecover(cfg, f.kubeconfigDir, f.lockTimeout, audit, o.Now, g.log); err != nil {
			return err
		}
		defer lock.Release()
		// The audit lines go to disk before the commit, so that a run killed after it still has them recorded
		// (by the next run's recovery).
		o.BeforeCommit = func(res phases.RenewResult, files []pki.File) error {
			return writeAuditIntent(cfg.CertDir, renewAuditEvents(res), files)
		}
	}
	res, err := phases.Renew(ctx, o)
	if err != nil {
		if ine := new(phases.InvalidNamesError); errors.As(err, &ine) {
			return usageError{err}
		}
		if aerr := audit.Record(pki.AuditEvent{Time: o.Now, Operation: pki.AuditRenew, File: cfg.CertDir, Outcome: err.Error()}); aerr != nil {
			err = errors.Join(err, aerr)
		}
		if !f.dryRun {
			err = flushAfterFailedCommit(err, cfg, f.kubeconfigDir, audit, o.Now, g.log)
		}
		return err
	}
	var errs []error
	if !f.dryRun {
		// Even when the audit log fails now, the certificates are in place: the hook below must still
		// restart what uses them. The intent stays for the next run to record.
		if err := audit.Record(append(renewAuditEvents(res), pruneAuditEvents(res)...)...); err != nil {
			errs = append(errs, fmt.Errorf("the certificates were renewed, but %w (the next run records the lines)", err))
		} else if err := clearAuditIntent(cfg.CertDir); err != nil {
			errs = append(errs, err)
		}
	}
	var hook *hookPending
	if !f.dryRun {
		hook = pendingHook(o.BackupRoot, res, f.onRenew != "", g.log)
	}
	// The files are safely written: let the next cron run in while the hook restarts the control plane.
	_ = lock.Release() // nothing to do about a failed close of the lock; the kernel drops it with the process

	if err := printRenewResult(e.stdout, g.output, g.quiet, res); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if problems := res.Problems(); len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Name + ": " + p.Reason
		}
		errs = append(errs, fmt.Errorf("%d certificate(s) need attention:\n  %s", len(problems), strings.Join(msgs, "\n  ")))
	}
	switch {
	case hook != nil && f.onRenew != "":
		if err := runHook(ctx, e, f.onRenew, hook.Renewed, hook.BackupDir); err != nil {
			errs = append(errs, fmt.Errorf("the certificates were renewed, but --on-renew failed (the next run runs it again): %w", err))
		} else if err := hook.done(); err != nil {
			errs = append(errs, err)
		}
	case len(res.Renewed()) > 0:
		g.log.Info("restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd so that they use the new certificates (or automate it with --on-renew)",
			"renewed", strings.Join(res.Renewed(), ","))
	}
	return errors.Join(errs...)
}

// hookPendingName is the marker, in the backup root, of an --on-renew command that has not yet succeeded
// for certificates already renewed. It is written before the hook runs and removed once it succeeds, so a
// hook that failed (or a run killed before it) is run again by the next run, even when nothing is due then.
const hookPendingName = "on-renew-pending.json"

type hookPending struct {
	Renewed   []string `json:"renewed"`
	BackupDir string   `json:"backupDir,omitempty"`
	path      string
}

// pendingHook returns what --on-renew must be run for: this run's renewals and those of earlier runs whose
// hook did not succeed; nil when there are none. With an --on-renew command the marker is written first.
func pendingHook(root string, res phases.RenewResult, haveHook bool, log *slog.Logger) *hookPending {
	h := &hookPending{path: filepath.Join(root, hookPendingName)}
	earlier := false
	if data, err := pki.ReadFileNoFollow(h.path, pki.MaxConfigSize); err == nil {
		earlier = json.Unmarshal(data, h) == nil
		if !earlier {
			log.Warn("ignoring an unreadable --on-renew marker", "file", h.path)
		}
	}
	for _, n := range res.Renewed() {
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

// runHook runs --on-renew with sh -c. Its output goes to stderr: stdout carries k8scrypto's result.
func runHook(ctx context.Context, e *env, command string, renewed []string, backupDir string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command) // #nosec G204 -- the operator's --on-renew command, run as documented
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	// Not named like a flag: every K8SCRYPTO_<FLAG> variable sets that flag of a k8scrypto the hook runs.
	cmd.Env = append(os.Environ(),
		"K8SCRYPTO_RENEWED="+strings.Join(renewed, ","),
		"K8SCRYPTO_RENEWED_BACKUP="+backupDir,
	)
	if err := cmd.Run(); err != nil {
		// %v, not %w: the hook's exit status must not become k8scrypto's (run honours ExitCode()).
		return fmt.Errorf("%q: %v", command, err)
	}
	return nil
}

// renewAuditEvents records every renewal, key rotation or reuse, backup, and refusal. Certificates that
// were not due are not recorded: nothing happened to them.
func renewAuditEvents(res phases.RenewResult) []pki.AuditEvent {
	var out []pki.AuditEvent
	ev := func(op, file, serial, sha, outcome, detail string) {
		out = append(out, pki.AuditEvent{Time: res.Time, Operation: op, File: file, Serial: serial, SHA256: sha, Outcome: outcome, Detail: detail})
	}
	for _, it := range res.Certificates {
		switch it.Action {
		case phases.RenewRenewed:
			for _, b := range it.Backups {
				ev(pki.AuditBackup, b, "", "", "ok", "copy of a file replaced by renewing "+it.Name)
			}
			prev := ""
			if it.Previous != nil {
				prev = fmt.Sprintf("replaces serial %s (sha256 %s); ", it.Previous.Serial, it.Previous.SHA256)
			}
			ev(pki.AuditRenew, it.Path, it.Serial, it.SHA256, "ok", prev+it.Reason)
			keyFile := it.Path
			if it.Kind == phases.KindCertificate {
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
		case phases.RenewFailed:
			ev(pki.AuditRenew, it.Path, it.Serial, it.SHA256, it.Reason, "")
		}
	}
	return out
}

// pruneAuditEvents records each old backup directory removed by --keep-backups: they held private keys.
func pruneAuditEvents(res phases.RenewResult) []pki.AuditEvent {
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

// printRenewResult prints the result. With -q the text lists only what was renewed or needs attention, and
// nothing when nothing did, so that cron mails only then.
func printRenewResult(w io.Writer, format string, quiet bool, r phases.RenewResult) error {
	if format != "text" {
		return printStructured(w, format, r)
	}
	quietRow := func(it phases.RenewItem) bool {
		return quiet && (it.Action == phases.RenewNotDue || it.Action == phases.RenewSkipped || (it.Action == phases.RenewMissing && !it.Required))
	}
	if !slices.ContainsFunc(r.Certificates, func(it phases.RenewItem) bool { return !quietRow(it) }) {
		return nil
	}
	if r.DryRun {
		fmt.Fprintln(w, "Dry run: nothing was written.")
	}
	t := newTable(w)
	fmt.Fprintln(t, "CERTIFICATE\tACTION\tEXPIRES\tRESIDUAL TIME\tDETAIL")
	counts := map[string]int{}
	for _, it := range r.Certificates {
		counts[it.Action]++
		if quietRow(it) {
			continue
		}
		expires, residual := "", ""
		if !it.NotAfter.IsZero() {
			expires = it.NotAfter.Format("Jan 02, 2006 15:04 MST")
			residual = duration.HumanDuration(it.NotAfter.Sub(r.Time))
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", it.Name, it.Action, expires, residual, it.Reason)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, a := range []string{phases.RenewRenewed, phases.RenewWouldRenew, phases.RenewNotDue, phases.RenewSkipped, phases.RenewMissing, phases.RenewFailed} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	line := strings.Join(parts, ", ")
	if r.BackupDir != "" {
		line += "; replaced files backed up in " + r.BackupDir
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
