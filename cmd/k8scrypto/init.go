package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/phases"
)

type initFlags struct {
	clusterFlags
	dryRun     bool
	skipPhases []string
	encryption encryptionFlags
	// kubeadmConfigOut is where the kubeadm-config phase writes ("" means <kubeconfig-dir>/kubeadm-config.yaml).
	kubeadmConfigOut string
}

func newInitCommand(e *env, g *globals) *cobra.Command {
	f := &initFlags{}
	runner := &phases.Runner{Phases: phases.InitPhases()}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Run every phase: certificates, service-account keys, encryption config, kubeconfigs, kubeadm config",
		Long: `Run every phase of a control-plane node's cryptography in order. Existing files are checked and reused;
nothing is overwritten. Files are written at the end in one crash-safe transaction: a run that fails writes nothing.

Phases (skip with --skip-phases, run one with "k8scrypto init phase NAME"):
  ` + strings.Join(runner.Names(), "\n  "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), e, g, f, runner, phases.Selection{Skip: f.skipPhases})
		},
	}
	f.bind(cmd.Flags(), "")
	cmd.Flags().StringSliceVar(&f.skipPhases, "skip-phases", nil, "phases to skip, comma-separated (e.g. certs/etcd-ca,sa)")

	phaseCmd := markGroup(&cobra.Command{
		Use:   "phase",
		Short: "Run one phase of init",
		Args:  knownSubcommand("phase"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	})
	for _, p := range runner.Phases {
		phaseCmd.AddCommand(newPhaseCommand(e, g, f, runner, p, p.Name))
	}
	phaseCmd.AddCommand(newUploadCertsCommand(e, g))
	cmd.AddCommand(phaseCmd)
	return cmd
}

// newPhaseCommand makes "init phase NAME": a leaf runs its phase; a parent gets an "all" sub-command and one
// per sub-phase, and alone prints its help, as kubeadm's phase commands do.
func newPhaseCommand(e *env, g *globals, f *initFlags, runner *phases.Runner, p phases.Phase, name string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   p.Name,
		Short: p.Short,
		Long:  p.Long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), e, g, f, runner, phases.Selection{Only: []string{name}})
		},
	}
	if len(p.Phases) == 0 {
		f.bind(cmd.Flags(), name)
		return cmd
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.Args = knownSubcommand("sub-phase of " + name)
	markGroup(cmd)
	all := &cobra.Command{
		Use:   "all",
		Short: "Run every " + p.Name + " sub-phase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), e, g, f, runner, phases.Selection{Only: []string{name}})
		},
	}
	f.bind(all.Flags(), name)
	cmd.AddCommand(all)
	for _, sub := range p.Phases {
		cmd.AddCommand(newPhaseCommand(e, g, f, runner, sub, name+"/"+sub.Name))
	}
	return cmd
}

// bind adds the flags of init (phase "") or of the phase command running phase (a "/"-joined name): every
// phase resolves the whole configuration (node identity, addresses, SANs, key algorithm), validates it and
// takes the lock, so every one reads the cluster flags and --dry-run; the encryption flags are read only by
// the encryption-config phase, --kubeadm-config-out only by the kubeadm-config phase.
func (f *initFlags) bind(fs *pflag.FlagSet, phase string) {
	f.add(fs)
	fs.BoolVar(&f.dryRun, "dry-run", false, "write nothing; print what would be written and the audit log the run would append to")
	top, _, _ := strings.Cut(phase, "/")
	if phase == "" || top == "encryption-config" {
		f.encryption.add(fs)
	}
	if phase == "" || top == "kubeadm-config" {
		fs.StringVar(&f.kubeadmConfigOut, "kubeadm-config-out", "", "where to write the kubeadm configuration for \"kubeadm init --config\" (default <kubeconfig-dir>/"+phases.KubeadmConfigFileName+")")
	}
}

// knownSubcommand rejects a word that names no sub-command with the list of those that exist (cobra's own
// "unknown command" lists nothing below the root).
func knownSubcommand(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		var valid []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				valid = append(valid, c.Name())
			}
		}
		hint := ""
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only for the root's own check
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = " (did you mean " + strings.Join(s, " or ") + "?)"
		}
		return usageError{fmt.Errorf("unknown %s %q%s; valid ones are: %s", what, args[0], hint, strings.Join(valid, ", "))}
	}
}

func runInit(ctx context.Context, e *env, g *globals, f *initFlags, runner *phases.Runner, sel phases.Selection) error {
	res, err := phases.Init(ctx, runner, sel, phases.InitOptions{
		Config: f.source(e), KubeconfigDir: f.kubeconfigDir, Now: e.now().UTC(), Keys: e.keys, Rand: e.rand, DryRun: f.dryRun,
		Encryption: f.encryption.options(), KubeadmConfigOut: f.kubeadmConfigOut,
		AuditLog: f.auditLog, LockTimeout: f.lockTimeout, Log: g.log,
	})
	return g.show(e.stdout, res, err)
}
