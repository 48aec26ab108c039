package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"k8scrypto.dev/k8scrypto/phases"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	// exitUsage is for a command line that cannot be run as given.
	exitUsage = 2
)

// globals are the flags every command has.
type globals struct {
	verbose  bool
	quiet    bool
	output   string
	settings string
	log      *slog.Logger
}

// usageError marks errors in how the command was called.
type usageError struct{ error }

func run(args []string, e *env) int {
	cobra.EnableCommandSorting = false // phases and sub-phases list in run order
	g := &globals{}
	root := newRootCommand(e, g)
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitOK
	}
	// The one place that prints an error.
	fmt.Fprintf(e.stderr, "error: %s\n", err)
	var ue usageError
	if pu := new(phases.UsageError); errors.As(err, &ue) || errors.As(err, &pu) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		return exitUsage
	}
	var ce interface{ ExitCode() int }
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return exitError
}

func newRootCommand(e *env, g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "k8scrypto",
		Short: "Bootstrap and maintain the cryptography of a Kubernetes control plane",
		Long: `k8scrypto writes and maintains the certificates, keys, encryption-at-rest configuration and kubeconfigs
of a Kubernetes control plane, exactly as kubeadm would, and safely re-runs, renews and rotates them.

Results go to stdout (-o text|json|yaml); progress and warnings go to stderr (-v for more, -q for less).
Every flag can also be set in the environment as K8SCRYPTO_<FLAG> (for example K8SCRYPTO_CERT_DIR).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.settings == "" {
				g.settings = os.Getenv("K8SCRYPTO_SETTINGS")
			}
			if err := bindSettings(cmd, g.settings); err != nil {
				return err
			}
			switch g.output {
			case "text", "json", "yaml":
			default:
				return usageError{fmt.Errorf("--output: unknown format %q (use text, json or yaml)", g.output)}
			}
			if g.verbose && g.quiet {
				return usageError{errors.New("-v and -q cannot be used together")}
			}
			g.log = newLogger(e.stderr, g.verbose, g.quiet)
			return nil
		},
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "print more progress on stderr")
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "print only errors on stderr")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "result format: text, json or yaml")
	root.PersistentFlags().StringVar(&g.settings, "settings", "", "YAML file of flag values (keys named like the flags); flags and K8SCRYPTO_* variables take precedence")
	root.AddCommand(
		newVersionCommand(e, g),
		newInitCommand(e, g),
		newRenewCommand(e, g), newCertsCommand(e, g),
		newEncryptionCommand(e, g), newSACommand(e, g),
	)
	return root
}

// bindSettings fills every flag the command line did not set from K8SCRYPTO_<FLAG> in the environment, else
// from the --settings file (YAML keys named like the flags). Precedence: flag > environment > file > default.
func bindSettings(cmd *cobra.Command, settingsFile string) error {
	v := viper.New()
	v.SetEnvPrefix("K8SCRYPTO")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if settingsFile != "" {
		v.SetConfigFile(settingsFile)
		if err := v.ReadInConfig(); err != nil {
			return usageError{fmt.Errorf("--settings %s: %w", settingsFile, err)}
		}
	}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || !v.IsSet(f.Name) {
			return
		}
		var err error
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if s, isString := v.Get(f.Name).(string); isString {
				// An environment variable: comma-separated like the flag (viper would split on spaces).
				err = f.Value.Set(s)
			} else {
				err = sv.Replace(v.GetStringSlice(f.Name))
			}
		} else {
			err = f.Value.Set(v.GetString(f.Name))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("K8SCRYPTO_%s (or settings key %q): %w", strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), f.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}
