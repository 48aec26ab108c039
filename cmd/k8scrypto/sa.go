package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

func newSACommand(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sa",
		Short: "Inspect and rotate the service-account signing key pair (sa.key, sa.pub)",
		Long: `Inspect and rotate the service-account signing key pair in three stages:
  1. k8scrypto sa rotate prepare      stage a new key (sa.key.next) and append its public key to sa.pub
                                      restart every kube-apiserver: tokens of both keys are accepted
  2. k8scrypto sa rotate promote      the new key becomes sa.key (signing); sa.pub keeps both
                                      restart kube-apiserver and kube-controller-manager
  3. k8scrypto sa rotate prune --yes  once old tokens have expired or been replaced: sa.pub keeps the new key only
Tokens signed by the old key stay valid until prune.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSAStatusCommand(e, g), newSARotateCommand(e, g))
	return cmd
}

type saStatusFlags struct {
	clusterFlags
	apiserver apiserverFlags
}

func newSAStatusCommand(e *env, g *globals) *cobra.Command {
	sf := &saStatusFlags{}
	f := &sf.clusterFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the rotation stage of sa.key/sa.pub, the fingerprint and key ID of every key, and with --kubeconfig which ones the apiserver serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := sf.apiserver.apiServer()
			if err != nil {
				return err
			}
			res, err := phases.SAStatus(cmd.Context(), f.read(e, g), api)
			if err != nil {
				return err
			}
			if g.output != "text" {
				return printStructured(e.stdout, g.output, res)
			}
			return printSAState(e.stdout, *res)
		},
	}
	f.add(cmd.Flags())
	sf.apiserver.add(cmd.Flags(), "also report which service-account keys that kube-apiserver serves (its /openid/v1/jwks)")
	return cmd
}

func printSAState(w io.Writer, r phases.SAStatusResult) error {
	st := r.State
	fmt.Fprintf(w, "Directory: %s\nStage:     %s\nNext:      %s\n", st.Dir, st.Stage, st.Next)
	if a := r.APIServer; a != nil {
		fmt.Fprintf(w, "Apiserver: %s serves key IDs %s", a.Server, strings.Join(a.KeyIDs, ", "))
		if len(a.Missing) > 0 {
			fmt.Fprintf(w, "; not %s from sa.pub (restart it to load sa.pub)", strings.Join(a.Missing, ", "))
		}
		if len(a.Extra) > 0 {
			fmt.Fprintf(w, "; %s not in sa.pub", strings.Join(a.Extra, ", "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "FILE\tROLE\tALGORITHM\tKEY ID\tSHA256")
	fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", phases.SAKeyFile, st.Key.Role, st.Key.Algorithm, st.Key.KeyID, st.Key.SHA256)
	if st.New != nil {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", phases.SANextFile, st.New.Role, st.New.Algorithm, st.New.KeyID, st.New.SHA256)
	}
	for _, k := range st.Pub {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", phases.SAPubFile, k.Role, k.Algorithm, k.KeyID, k.SHA256)
	}
	return t.Flush()
}

// rotateFlags are the flags of every rotate command (sa, encryption).
type rotateFlags struct {
	clusterFlags
	backupDir string
	dryRun    bool
	yes       bool
}

// options are where a rotation step runs.
func (f *rotateFlags) options(e *env, g *globals) phases.RotateOptions {
	return phases.RotateOptions{KubeconfigDir: f.kubeconfigDir, AuditLog: f.auditLog, BackupDir: f.backupDir,
		LockTimeout: f.lockTimeout, DryRun: f.dryRun, Now: e.now().UTC(), Log: g.log}
}

func newSARotateCommand(e *env, g *globals) *cobra.Command {
	f := &rotateFlags{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the service-account signing key in three stages: prepare, promote, prune",
		Long: `Rotate sa.key/sa.pub one stage per command. Each stage refuses to run out of order and says which stage the
files are in; the files are backed up under --backup-dir before every change and replaced in one crash-safe
transaction under the certificate directory's lock.

The new key has the algorithm of --encryption-algorithm or the configuration's encryptionAlgorithm when either is
given, else that of the current sa.key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	f.add(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&f.backupDir, "backup-dir", "", "where replaced files are copied, in a <UTC time>/ subdirectory (default "+phases.DefaultBackupDir+", or the per-user state directory without root)")
	cmd.PersistentFlags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; say whether the step would run")
	for _, s := range []struct{ use, short string }{
		{"prepare", "Stage a new key as sa.key.next and append its public key to sa.pub"},
		{"promote", "Make sa.key.next the signing key sa.key; sa.pub keeps every public key"},
		{"prune", "Leave only the signing key's public key in sa.pub; tokens of older keys stop working (needs --yes)"},
	} {
		step := s.use
		sub := &cobra.Command{
			Use:   step,
			Short: s.short,
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return runSARotate(cmd.Context(), e, g, f, step) },
		}
		if step == "prune" {
			sub.Flags().BoolVar(&f.yes, "yes", false, "confirm that tokens signed by the older keys are no longer needed")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runSARotate(ctx context.Context, e *env, g *globals, f *rotateFlags, step string) error {
	res, err := phases.SARotate(ctx, step, phases.SARotateOptions{
		RotateOptions: f.options(e, g), Config: f.source(e), Keys: e.keys, Yes: f.yes,
	})
	if err != nil {
		return err
	}
	return printSARotate(e.stdout, g.output, *res)
}

func printSARotate(w io.Writer, format string, r phases.SARotateResult) error {
	if format != "text" {
		return printStructured(w, format, r)
	}
	switch {
	case r.DryRun:
		fmt.Fprintf(w, "dry run: %s can run; nothing was changed\n", r.Step)
	case r.Added != nil:
		fmt.Fprintf(w, "staged a new %s key (sha256 %s) as %s and appended its public key to %s\n", r.Added.Algorithm, r.Added.SHA256, phases.SANextFile, phases.SAPubFile)
	case r.Step == "promote":
		fmt.Fprintf(w, "%s is now the signing key %s (sha256 %s)\n", phases.SANextFile, phases.SAKeyFile, r.State.Key.SHA256)
	case r.Step == "prune":
		for _, k := range r.Removed {
			fmt.Fprintf(w, "removed public key sha256 %s from %s\n", k.SHA256, phases.SAPubFile)
		}
	}
	if len(r.Backups) > 0 {
		fmt.Fprintf(w, "backed up to %s\n", strings.Join(r.Backups, ", "))
	}
	_, err := fmt.Fprintf(w, "stage: %s\nnext: copy the files to every control-plane node; then %s\n", r.State.Stage, r.State.Next)
	return err
}
