package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

func newEncryptionCommand(e *env, g *globals) *cobra.Command {
	cmd := groupCommand("encryption", "Inspect, rotate and re-encrypt with the encryption-at-rest configuration",
		newEncryptionStatusCommand(e, g), newEncryptionRotateCommand(e, g), newReencryptCommand(e, g))
	cmd.Long = `Inspect and rotate the kube-apiserver's encryption-at-rest configuration, <cert-dir>/` + phases.EncryptionFileName + `,
and rewrite stored objects with its current key.

A key rotation is four steps, each safe with --encryption-provider-config-automatic-reload=true
(K=/etc/kubernetes/admin.conf, E=https://127.0.0.1:2379):
  1. k8scrypto encryption rotate prepare                       add a new key second: every apiserver can decrypt with it
  2. k8scrypto encryption rotate promote --kubeconfig $K --wait   move it first: new writes use it
  3. k8scrypto encryption reencrypt --kubeconfig $K --wait --etcd-endpoints $E   rewrite every object under the new key
  4. k8scrypto encryption rotate prune --yes --kubeconfig $K --etcd-endpoints $E   remove the old keys
Copy the file to every control-plane node between steps. Each step refuses (exit 3) until the apiserver runs
the file the previous step wrote (--wait waits for its reload), and prune until etcd holds nothing under the
keys it removes.`
	return cmd
}

func newEncryptionStatusCommand(e *env, g *globals) *cobra.Command {
	var f clusterFlags
	var etcd etcdFlags
	var api apiserverFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the providers, keys (by fingerprint), rotation stage, what the apiserver runs and what etcd stores, and the next safe step",
		Long: `Print the encryption config's providers, its key names in order with a short fingerprint of each (the first
16 hex digits of the SHA-256 of the key; never the key), the rotation stage and the next step that is safe.

With --kubeconfig it asks that kube-apiserver (its /metrics) which version of the file it runs; when the
kubernetes Service (its EndpointSlices in default) lists more than one apiserver, it asks each of them at
that address (--apiserver-endpoint maps an address this machine cannot dial to one it can), with the
kubeconfig's credentials, verifying each certificate for the listed address. With
--etcd-endpoints it also reads every stored value of the configured resources straight from etcd (at one
revision, page by page; only each value's prefix is looked at) and counts them by the key that encrypted them
(k8s:enc:<provider>:v1:<key>:) and as plaintext. The "Next:" line follows from what was measured.

Exit status 1 when something needs the operator: values no apiserver using this file can read, an apiserver
whose latest reload failed, one that runs another version of the file (wait for the reload), or apiservers
that run different files (copy the same file to every control-plane node).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := api.apiServer()
			if err != nil {
				return err
			}
			res, err := phases.EncryptionStatus(cmd.Context(), f.read(e, g), a, etcd.etcd())
			return report(g, e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	f.addSession(cmd.Flags())
	etcd.add(cmd.Flags())
	api.add(cmd.Flags(), "also report whether that kube-apiserver, and every apiserver of the kubernetes Service, runs this file (from their /metrics)")
	api.addEndpoints(cmd.Flags())
	return cmd
}

func newEncryptionRotateCommand(e *env, g *globals) *cobra.Command {
	var f rotateFlags
	var unsafe bool
	var etcd etcdFlags
	var api apiserverFlags
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the encryption key in three stages: prepare, promote, prune",
		Long: `Rotate the encryption key of the first provider of every resources entry that encrypts with a local key
(secretbox, aescbc, aesgcm), one stage per command. Each stage refuses to run out of order and says which stage
the file is in; the file is backed up under --backup-dir before every change and written atomically (0600)
under the certificate directory's lock. The stage is read from the file alone: see "k8scrypto encryption status".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	markGroup(cmd)
	steps := f.addSteps(cmd, [3]string{
		"Add a new key second: every apiserver can decrypt with it, none encrypts with it yet",
		"Move the newest key first: new writes use it, older keys still decrypt",
		"Remove every key but the first; values still stored under them become unreadable (needs --yes)",
	}, "confirm that reencrypt has rewritten every object under the first key",
		[3]string{"the replaced file is copied", "; the copies hold keys", "write nothing; print what the step would change, the copy it would take, the audit log it would append to and the stage it would reach"}, func(ctx context.Context, step string) error {
			a, err := api.apiServer()
			if err != nil {
				return err
			}
			res, err := phases.EncryptionRotate(ctx, step, phases.EncryptionRotateOptions{
				RotateOptions: f.options(e, g), Config: f.source(e), Rand: e.rand, Yes: f.yes, Unsafe: unsafe, API: a, Etcd: etcd.etcd(),
			})
			return g.show(e.stdout, res, err)
		})
	promote, prune := steps["promote"], steps["prune"]
	promote.Long = `Move the newest key first: new writes use it. Every apiserver must have loaded the prepared file before
(or it cannot read what the others write with the new key). With --kubeconfig, promote asks that apiserver which
file it runs and refuses (exit 3) unless it is this one; with --wait it waits for the reload instead. When
the kubernetes Service lists more than one apiserver, every one of them must run it (--apiserver-endpoint
maps an address this machine cannot dial).`
	api.add(promote.Flags(), "refuse unless that kube-apiserver, and every apiserver of the kubernetes Service, runs the prepared file (from their /metrics)")
	api.addWait(promote.Flags())
	api.addEndpoints(promote.Flags())
	prune.Long = `Remove every key but the first from the first provider. Values still stored under a removed key become
unreadable, so prune needs proof that nothing uses those keys any more, and refuses (exit 3) without it:
  --kubeconfig      the apiserver runs the promoted file, so it writes with the new key only (--wait waits
                    for its reload); so does every apiserver the kubernetes Service lists;
  --etcd-endpoints  counted after that, no stored value is under a removed key.
Run "k8scrypto encryption reencrypt" first. ` + phases.UnsafePruneFlag + ` skips both proofs, for a cluster whose
etcd cannot be reached: every value not yet rewritten is then lost.`
	api.add(prune.Flags(), "required: the kube-apiserver, and every apiserver of the kubernetes Service, must run the promoted file (from their /metrics)")
	api.addWait(prune.Flags())
	api.addEndpoints(prune.Flags())
	prune.Flags().BoolVar(&unsafe, strings.TrimPrefix(phases.UnsafePruneFlag, "--"), false, "DANGEROUS: prune without proof that no stored value and no apiserver still uses the old keys")
	etcd.add(prune.Flags())
	return cmd
}
