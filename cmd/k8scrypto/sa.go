package main

import (
	"context"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

func newSACommand(e *env, g *globals) *cobra.Command {
	cmd := groupCommand("sa", "Inspect and rotate the service-account signing key pair (sa.key, sa.pub)", newSAStatusCommand(e, g), newSARotateCommand(e, g))
	cmd.Long = `Inspect and rotate the service-account signing key pair in three stages:
  1. k8scrypto sa rotate prepare      stage a new key (sa.key.next) and append its public key to sa.pub
                                      restart every kube-apiserver: tokens of both keys are accepted
  2. k8scrypto sa rotate promote      the new key becomes sa.key (signing); sa.pub keeps both
                                      restart kube-apiserver and kube-controller-manager
  3. k8scrypto sa rotate prune --yes  once old tokens have expired or been replaced: sa.pub keeps the new key only
Tokens signed by the old key stay valid until prune.`
	return cmd
}

func newSAStatusCommand(e *env, g *globals) *cobra.Command {
	var f clusterFlags
	var api apiserverFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the rotation stage of sa.key/sa.pub, the fingerprint and key ID of every key, and with --kubeconfig which ones the apiserver serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := api.apiServer()
			if err != nil {
				return err
			}
			res, err := phases.SAStatus(cmd.Context(), f.read(e, g), a)
			return g.show(e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	f.addSession(cmd.Flags())
	api.add(cmd.Flags(), "also report which service-account keys that kube-apiserver serves (its /openid/v1/jwks)")
	return cmd
}

func newSARotateCommand(e *env, g *globals) *cobra.Command {
	f := &rotateFlags{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the service-account signing key in three stages: prepare, promote, prune",
		Long: `Rotate sa.key/sa.pub one stage per command. Each stage refuses to run out of order and says which stage the
files are in; the files are backed up under --backup-dir before every change and replaced in one crash-safe
transaction under the certificate directory's lock.

The new key (prepare) has the algorithm of --encryption-algorithm or the configuration's encryptionAlgorithm when
either is given, else that of the current sa.key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	markGroup(cmd)
	steps := f.addSteps(cmd, [3]string{
		"Stage a new key as sa.key.next and append its public key to sa.pub",
		"Make sa.key.next the signing key sa.key; sa.pub keeps every public key",
		"Leave only the signing key's public key in sa.pub; tokens of older keys stop working (needs --yes)",
	}, "confirm that tokens signed by the older keys are no longer needed",
		[3]string{"replaced files are copied", "", "write nothing; list the files the step would write and remove, the copies it would take, the audit log it would append to and the stage it would reach"}, func(ctx context.Context, step string) error {
			res, err := phases.SARotate(ctx, step, phases.SARotateOptions{RotateOptions: f.options(e, g), Config: f.source(e), Keys: e.keys, Yes: f.yes})
			return g.show(e.stdout, res, err)
		})
	// Only prepare makes a key.
	steps["prepare"].Flags().StringVar(&f.overrides.EncryptionAlgorithm, "encryption-algorithm", "", "algorithm of the new key: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384 (default: the configuration's encryptionAlgorithm when given, else that of the current sa.key)")
	return cmd
}
