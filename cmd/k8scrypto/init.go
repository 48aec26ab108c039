package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
)

// clusterFlags are the inputs shared by init, renew and check-expiration.
type clusterFlags struct {
	configFile    string
	overrides     config.Overrides
	kubeconfigDir string
	lockTimeout   time.Duration
	auditLog      string
}

func (f *clusterFlags) add(fs *pflag.FlagSet) {
	o := &f.overrides
	fs.StringVar(&f.configFile, "config", "", "kubeadm configuration file (kubeadm.k8s.io/v1beta4 InitConfiguration and/or ClusterConfiguration)")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory of certificates and keys (default from the config, else "+phases.DefaultCertificateDir+")")
	fs.StringVar(&f.kubeconfigDir, "kubeconfig-dir", phases.DefaultKubeconfigDir, "directory of kubeconfig files")
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: the host name, lower-cased)")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "IP address the API server advertises (default: the default route's interface address)")
	fs.StringVar(&o.ControlPlaneEndpoint, "control-plane-endpoint", "", "stable DNS name or IP (with optional port) of the control plane")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", "", "service IP range(s), comma-separated for dual-stack (default 10.96.0.0/12)")
	fs.StringVar(&o.ServiceDNSDomain, "service-dns-domain", "", "cluster DNS domain (default cluster.local)")
	fs.StringSliceVar(&o.APIServerCertSANs, "apiserver-cert-extra-sans", nil, "extra SANs (IPs or DNS names) for the API server certificate")
	fs.StringVar(&o.EncryptionAlgorithm, "encryption-algorithm", "", "key algorithm: RSA-2048 (default), RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384")
	fs.BoolVar(&o.StrictPermissions, "strict-permissions", false, "CIS-style modes: certificates 0600 and directories 0700")
	fs.StringVar(&f.auditLog, "audit-log", "", "append a JSON line per key or certificate created, reused, renewed or removed (default "+phases.DefaultAuditLog+", or the per-user state directory without root)")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another k8scrypto run holding the lock")
}

// source is where the command's configuration comes from: --config and the flags over it.
func (f *clusterFlags) source(e *env) phases.ConfigSource {
	return phases.ConfigSource{File: f.configFile, Flags: f.overrides, Hostname: e.hostname}
}

// read is what a command that only reads needs: its configuration, and what recovering first takes.
func (f *clusterFlags) read(e *env, g *globals) phases.ReadOptions {
	return phases.ReadOptions{Config: f.source(e), KubeconfigDir: f.kubeconfigDir, AuditLog: f.auditLog, LockTimeout: f.lockTimeout, Now: e.now(), Log: g.log}
}

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
	f.add(cmd.PersistentFlags())
	addEncryptionFlags(cmd.PersistentFlags(), &f.encryption)
	cmd.PersistentFlags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; print what would be written")
	cmd.PersistentFlags().StringVar(&f.kubeadmConfigOut, "kubeadm-config-out", "", "where to write the kubeadm configuration for \"kubeadm init --config\" (default <kubeconfig-dir>/"+phases.KubeadmConfigFileName+")")
	cmd.Flags().StringSliceVar(&f.skipPhases, "skip-phases", nil, "phases to skip, comma-separated (e.g. certs/etcd-ca,sa)")

	phaseCmd := &cobra.Command{
		Use:   "phase",
		Short: "Run one phase of init",
		Args:  knownSubcommand("phase"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
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
		return cmd
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.Args = knownSubcommand("sub-phase of " + name)
	cmd.AddCommand(&cobra.Command{
		Use:   "all",
		Short: "Run every " + p.Name + " sub-phase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd.Context(), e, g, f, runner, phases.Selection{Only: []string{name}})
		},
	})
	for _, sub := range p.Phases {
		cmd.AddCommand(newPhaseCommand(e, g, f, runner, sub, name+"/"+sub.Name))
	}
	return cmd
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
	if err != nil {
		return err
	}
	return printInitResult(e.stdout, g.output, res)
}

func printInitResult(w io.Writer, format string, r phases.Result) error {
	if format != "text" {
		return printStructured(w, format, r)
	}
	if r.DryRun {
		fmt.Fprintln(w, "Dry run: nothing was written. These files would be:")
	}
	t := newTable(w)
	fmt.Fprintln(t, "ACTION\tFILE\tSUBJECT\tSANS")
	counts := map[string]int{}
	for _, fr := range r.Files {
		counts[fr.Action]++
		path := fr.Path
		if path == "" {
			path = "(" + fr.Phase + ")"
		}
		detail := strings.Join(fr.SANs, ",")
		if fr.Action == phases.ActionSkipped || detail == "" {
			detail = fr.Reason
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", fr.Action, path, fr.Subject, detail)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	// No directory here: the files span the certificate and kubeconfig directories, and each row names its own.
	_, err := fmt.Fprintf(w, "%d created, %d reused, %d skipped\n",
		counts[phases.ActionCreated], counts[phases.ActionReused], counts[phases.ActionSkipped])
	if err != nil || r.NextCommand == "" {
		return err
	}
	next := "Next step: "
	if r.DryRun {
		next = "Next step after a real run: "
	}
	_, err = fmt.Fprintln(w, next+r.NextCommand)
	return err
}
