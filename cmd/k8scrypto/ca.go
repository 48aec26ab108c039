package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

func newCACommand(e *env, g *globals) *cobra.Command {
	cmd := groupCommand("ca", "Renew a CA with its own key, or rotate it to a new key with overlap", newCARenewCommand(e, g), newCARotateCommand(e, g))
	cmd.Long = `The CAs' whole life, for ca, front-proxy-ca and etcd-ca:

  k8scrypto ca renew [ca|front-proxy-ca|etcd-ca|all]   a new certificate for the same key, subject and
                                                       SubjectKeyId: everything it signed stays valid; also
                                                       the recovery for a CA that already expired
  k8scrypto ca rotate prepare --ca NAME                a new CA key, trusted beside the old one (which still signs)
  k8scrypto ca rotate promote --ca NAME                the new key signs; every certificate it signs is re-issued
  k8scrypto ca rotate prune --ca NAME --yes            the old CA is no longer trusted

Copy the files to every control-plane node and restart what reads them between steps (each step says what).`
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
			return report(g, e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	f.addSession(cmd.Flags())
	f.addWriteFlags(cmd.Flags(), "replaced files are copied", "", "write nothing; print what would be renewed, the copies it would take and the audit log it would append to")
	return cmd
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
	markGroup(cmd)
	steps := f.addSteps(cmd, [3]string{
		"Make a new CA key and trust its certificate beside the old one, which still signs",
		"Make the new CA the signer and re-issue every certificate it signs",
		"Stop trusting the old CA (needs --yes)",
	}, "confirm that every component runs with certificates of the new CA",
		[3]string{"replaced files are copied", "; the copies hold keys", "write nothing; list the files the step would write and remove, the copies it would take, the audit log it would append to and the stage it would reach"}, func(ctx context.Context, step string) error {
			if name == "" {
				return usageError{fmt.Errorf("--ca is required: one of %s", strings.Join(phases.CANames, ", "))}
			}
			res, err := phases.CARotate(ctx, step, phases.CARotateOptions{RotateOptions: f.options(e, g), Config: f.source(e), Name: name, Keys: e.keys, Rand: e.rand, Yes: f.yes})
			return g.show(e.stdout, res, err)
		})
	for _, step := range steps {
		step.Flags().StringVar(&name, "ca", "", "the CA to rotate: ca, front-proxy-ca or etcd-ca (required)")
	}
	return cmd
}
