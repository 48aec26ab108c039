package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

type renewFlags struct {
	rotateFlags
	threshold   time.Duration
	force       bool
	rotateKeys  bool
	keepBackups int
	onRenew     string
}

func newRenewCommand(e *env, g *globals) *cobra.Command {
	return groupCommand("renew", "Renew certificates that are due", newRenewCertsCommand(e, g))
}

func newRenewCertsCommand(e *env, g *globals) *cobra.Command {
	f := &renewFlags{}
	names := phases.RenewableNames()
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
marker, ` + phases.HookPendingName + `, stays in the backup directory.

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
		Example: `  # Daily from cron: renew what is due and, only then, restart the control-plane static pods
  # (kube-apiserver, kube-controller-manager, kube-scheduler, etcd) with examples/restart-control-plane.sh.
  k8scrypto renew certs --on-renew /usr/local/sbin/k8scrypto-restart-control-plane

  # The same without the script: stop those four containers; the kubelet starts them again at once.
  k8scrypto renew certs --on-renew 'for c in kube-apiserver kube-controller-manager kube-scheduler etcd; do crictl ps --name "^$c\$" -q | xargs -r crictl stop; done'

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
	fl.IntVar(&f.keepBackups, "keep-backups", 10, "number of backup directories to keep")
	fl.StringVar(&f.onRenew, "on-renew", "", "shell command (sh -c) to run when something was renewed, e.g. to restart the static pods; $K8SCRYPTO_RENEWED lists the renewed names (comma-separated), $K8SCRYPTO_RENEWED_BACKUP the backup directory")
	f.addWriteFlags(fl, "replaced files are copied", "", "write nothing; report what is due, the copies the run would take and where, the old backups --keep-backups would prune, the --on-renew command it would run and the audit log it would append to")
	return cmd
}

func runRenew(ctx context.Context, e *env, g *globals, f *renewFlags, names []string) error {
	_, err := phases.RenewCerts(ctx, phases.RenewCertsOptions{
		RenewOptions: phases.RenewOptions{
			KubeconfigDir: f.kubeconfigDir, Names: names, Now: e.now().UTC(), Threshold: f.threshold, Force: f.force,
			RotateKeys: f.rotateKeys, Keys: e.keys, Rand: e.rand, DryRun: f.dryRun, KeepBackups: f.keepBackups, Log: g.log,
		},
		Config: f.source(e), AuditLog: f.auditLog, BackupDir: f.backupDir, LockTimeout: f.lockTimeout,
		OnRenew: f.onRenew, HookOutput: e.stderr,
		Report: func(res phases.RenewResult) error { return g.print(e.stdout, res) },
	})
	return err
}
