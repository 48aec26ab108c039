package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

type encRotateFlags struct {
	rotateFlags
	unsafe    bool
	etcd      etcdFlags
	apiserver apiserverFlags
}

func newEncryptionRotateCommand(e *env, g *globals) *cobra.Command {
	f := &encRotateFlags{}
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
	f.add(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&f.backupDir, "backup-dir", "", "where the replaced file is copied, in a <UTC time>/ subdirectory (default "+phases.DefaultBackupDir+", or the per-user state directory without root); the copies hold keys")
	cmd.PersistentFlags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; print what the step would change")
	steps := []struct{ use, short string }{
		{"prepare", "Add a new key second: every apiserver can decrypt with it, none encrypts with it yet"},
		{"promote", "Move the newest key first: new writes use it, older keys still decrypt"},
		{"prune", "Remove every key but the first; values still stored under them become unreadable (needs --yes)"},
	}
	for _, s := range steps {
		step := s.use
		sub := &cobra.Command{
			Use:   step,
			Short: s.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return runEncryptionRotate(cmd.Context(), e, g, f, step)
			},
		}
		switch step {
		case "promote":
			sub.Long = `Move the newest key first: new writes use it. Every apiserver must have loaded the prepared file before
(or it cannot read what the others write with the new key). With --kubeconfig, promote asks that apiserver which
file it runs and refuses (exit 3) unless it is this one; with --wait it waits for the reload instead. When
the kubernetes Service lists more than one apiserver, every one of them must run it (--apiserver-endpoint
maps an address this machine cannot dial).`
			f.apiserver.add(sub.Flags(), "refuse unless that kube-apiserver, and every apiserver of the kubernetes Service, runs the prepared file (from their /metrics)")
			f.apiserver.addWait(sub.Flags())
			f.apiserver.addEndpoints(sub.Flags())
		case "prune":
			f.apiserver.add(sub.Flags(), "required: the kube-apiserver, and every apiserver of the kubernetes Service, must run the promoted file (from their /metrics)")
			f.apiserver.addWait(sub.Flags())
			f.apiserver.addEndpoints(sub.Flags())
			sub.Long = `Remove every key but the first from the first provider. Values still stored under a removed key become
unreadable, so prune needs proof that nothing uses those keys any more, and refuses (exit 3) without it:
  --kubeconfig      the apiserver runs the promoted file, so it writes with the new key only (--wait waits
                    for its reload); so does every apiserver the kubernetes Service lists;
  --etcd-endpoints  counted after that, no stored value is under a removed key.
Run "k8scrypto encryption reencrypt" first. ` + phases.UnsafePruneFlag + ` skips both proofs, for a cluster whose
etcd cannot be reached: every value not yet rewritten is then lost.`
			sub.Flags().BoolVar(&f.yes, "yes", false, "confirm that reencrypt has rewritten every object under the first key")
			sub.Flags().BoolVar(&f.unsafe, strings.TrimPrefix(phases.UnsafePruneFlag, "--"), false, "DANGEROUS: prune without proof that no stored value and no apiserver still uses the old keys")
			f.etcd.add(sub.Flags())
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runEncryptionRotate(ctx context.Context, e *env, g *globals, f *encRotateFlags, step string) error {
	api, err := f.apiserver.apiServer()
	if err != nil {
		return err
	}
	res, err := phases.EncryptionRotate(ctx, step, phases.EncryptionRotateOptions{
		RotateOptions: f.options(e, g), Config: f.source(e), Rand: e.rand, Yes: f.yes, Unsafe: f.unsafe, API: api, Etcd: f.etcd.etcd(),
	})
	if err != nil {
		return err
	}
	if g.output != "text" {
		return printStructured(e.stdout, g.output, res)
	}
	return printRotateResult(e.stdout, *res)
}

func printRotateResult(w io.Writer, r phases.EncryptionRotateResult) error {
	verb := map[string]string{"prepare": "added second", "promote": "moved first", "prune": "removed"}[r.Step]
	for _, c := range r.Changes {
		fmt.Fprintf(w, "%s %s key %s (fingerprint %s) in resources[%d]\n", verb, c.Provider, c.Key.Name, c.Key.Fingerprint, c.Entry)
	}
	switch {
	case r.DryRun:
		fmt.Fprintf(w, "dry run: %s was not changed\n", r.File)
	case r.Backup != "":
		fmt.Fprintf(w, "wrote %s (previous file backed up to %s)\n", r.File, r.Backup)
	default:
		fmt.Fprintf(w, "wrote %s\n", r.File)
	}
	_, err := fmt.Fprintf(w, "stage: %s\nnext: copy the file to every control-plane node; then %s\n", r.Stage, r.Next)
	return err
}
