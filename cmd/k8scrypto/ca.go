package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

func newCACommand(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Renew a CA with its own key, or rotate it to a new key with overlap",
		Long: `The CAs' whole life, for ca, front-proxy-ca and etcd-ca:

  k8scrypto ca renew [ca|front-proxy-ca|etcd-ca|all]   a new certificate for the same key, subject and
                                                       SubjectKeyId: everything it signed stays valid; also
                                                       the recovery for a CA that already expired
  k8scrypto ca rotate prepare --ca NAME                a new CA key, trusted beside the old one (which still signs)
  k8scrypto ca rotate promote --ca NAME                the new key signs; every certificate it signs is re-issued
  k8scrypto ca rotate prune --ca NAME --yes            the old CA is no longer trusted

Copy the files to every control-plane node and restart what reads them between steps (each step says what).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCARenewCommand(e, g), newCARotateCommand(e, g))
	return cmd
}

func newCARenewCommand(e *env, g *globals) *cobra.Command {
	f := &rotateFlags{}
	cmd := &cobra.Command{
		Use:   "renew [ca|front-proxy-ca|etcd-ca|all]",
		Short: "Re-issue CA certificates with their own keys (same subject, key and SubjectKeyId, new validity)",
		Long: `Re-issue each named CA's certificate (default all) with its own key: the same subject, key and
SubjectKeyId, a new serial and caCertificateValidityPeriod from now, so every certificate the CA signed
still verifies. Every kubeconfig that embeds the cluster CA gets the new certificate in the same
transaction; the replaced files are backed up first. It works on a CA that has already expired: that is how
an expired CA is recovered (then "k8scrypto renew certs" renews what its old end date had cut short).`,
		ValidArgs: append(phases.CANames, "all"),
		Args:      cobra.MatchAll(cobra.MaximumNArgs(3), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := phases.CARenew(cmd.Context(), args, f.options(e, g), f.source(e), e.rand)
			if res != nil {
				if perr := printCARenew(e.stdout, g.output, *res); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&f.backupDir, "backup-dir", "", "where replaced files are copied, in a <UTC time>/ subdirectory (default "+phases.DefaultBackupDir+", or the per-user state directory without root)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; print what would be renewed")
	return cmd
}

func printCARenew(w io.Writer, format string, r phases.CARenewResult) error {
	if format != "text" {
		return printStructured(w, format, r)
	}
	verb := "renewed"
	if r.DryRun {
		verb = "would renew"
	}
	for _, c := range r.CAs {
		fmt.Fprintf(w, "%s %s (%s): serial %s, valid until %s, same key and SubjectKeyId %s\n", verb, c.Name, c.Path, c.Serial, c.NotAfter.Format("2006-01-02"), c.SubjectKeyID)
		for _, p := range c.Embedding {
			fmt.Fprintf(w, "  %s %s (it carries the CA certificate)\n", map[bool]string{true: "would update", false: "updated"}[r.DryRun], p)
		}
	}
	if len(r.Backups) > 0 {
		fmt.Fprintf(w, "backed up to %s\n", strings.Join(r.Backups, ", "))
	}
	_, err := fmt.Fprintf(w, "next: %s\n", r.Next)
	return err
}

func newCARotateCommand(e *env, g *globals) *cobra.Command {
	f := &rotateFlags{}
	var name string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate a CA to a new key in three stages: prepare, promote, prune",
		Long: `Rotate one CA (--ca ca|front-proxy-ca|etcd-ca) to a new key with overlap, as the Kubernetes documentation's
manual CA rotation does: prepare trusts the new CA beside the old one, promote makes it the signer and
re-issues every certificate and kubeconfig client certificate it signs, prune stops trusting the old one.
Each step refuses to run out of order (exit 3) and says what must restart before the next; --dry-run lists
every file it would write.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.add(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&name, "ca", "", "the CA to rotate: ca, front-proxy-ca or etcd-ca (required)")
	cmd.PersistentFlags().StringVar(&f.backupDir, "backup-dir", "", "where replaced files are copied, in a <UTC time>/ subdirectory (default "+phases.DefaultBackupDir+", or the per-user state directory without root); the copies hold keys")
	cmd.PersistentFlags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; list the files the step would write")
	for _, s := range []struct{ use, short string }{
		{"prepare", "Make a new CA key and trust its certificate beside the old one, which still signs"},
		{"promote", "Make the new CA the signer and re-issue every certificate it signs"},
		{"prune", "Stop trusting the old CA (needs --yes)"},
	} {
		step := s.use
		sub := &cobra.Command{
			Use:   step,
			Short: s.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runCARotate(cmd.Context(), e, g, f, name, step)
			},
		}
		if step == "prune" {
			sub.Flags().BoolVar(&f.yes, "yes", false, "confirm that every component runs with certificates of the new CA")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runCARotate(ctx context.Context, e *env, g *globals, f *rotateFlags, name, step string) error {
	if name == "" {
		return usageError{fmt.Errorf("--ca is required: one of %s", strings.Join(phases.CANames, ", "))}
	}
	res, err := phases.CARotate(ctx, step, phases.CARotateOptions{RotateOptions: f.options(e, g), Config: f.source(e), Name: name, Keys: e.keys, Rand: e.rand, Yes: f.yes})
	if err != nil {
		return err
	}
	if g.output != "text" {
		return printStructured(e.stdout, g.output, res)
	}
	verb := map[bool]string{true: "would write", false: "wrote"}[res.DryRun]
	for _, p := range res.Files {
		fmt.Fprintf(e.stdout, "%s %s\n", verb, p)
	}
	for _, p := range res.Removes {
		fmt.Fprintf(e.stdout, "%s %s\n", map[bool]string{true: "would remove", false: "removed"}[res.DryRun], p)
	}
	if len(res.Backups) > 0 {
		fmt.Fprintf(e.stdout, "backed up to %s\n", strings.Join(res.Backups, ", "))
	}
	_, err = fmt.Fprintf(e.stdout, "stage: %s\nrestart: %s\nnext: %s\n", res.Stage, res.Restart, res.Next)
	return err
}
