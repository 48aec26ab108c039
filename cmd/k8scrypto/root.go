package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"k8scrypto.dev/k8scrypto/internal/suggest"
	"k8scrypto.dev/k8scrypto/phases"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	// exitUsage is for a command line that cannot be run as given.
	exitUsage = 2
	// exitInterrupted is the shell's status for a process ended by SIGINT (128+2), for SIGTERM as well.
	exitInterrupted = 130
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
	// SIGINT and SIGTERM cancel the command's context, so it stops where it is safe to; a second signal
	// kills at once (what it leaves is recovered by the next run, as after a crash).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ie *phases.InterruptedError
	if ctx.Err() != nil && !errors.As(err, &ie) {
		err = &phases.InterruptedError{}
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
Every flag can also be set in the environment as K8SCRYPTO_<FLAG> (for example K8SCRYPTO_CERT_DIR).

Exit status, the same for every command: 0 success; 1 failure (for check-expiration: something expiring,
expired or not verifying); 2 usage error (unknown flag, settings key or K8SCRYPTO_ variable, or a malformed
value from any source); 3 refused by the current state (a rotation step out of order, a replacement pending);
130 interrupted by SIGINT or SIGTERM.`,
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
	// A malformed flag value is a usage error (exit 2) worded as the same value from K8SCRYPTO_* or the
	// settings file is: one message and one exit code whatever the source (issue 15).
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if ive := new(pflag.InvalidValueError); errors.As(err, &ive) {
			return flagValueError(ive.GetFlag().Name, ive.GetValue(), ive.Unwrap())
		}
		// A group has no flags; "init phase certz --config F" is first a misspelt phase: say that, with the
		// phases there are, rather than that the group has no --config.
		if c.Annotations[groupAnnotation] != "" && c.Args != nil {
			if aerr := c.Args(c, c.Flags().Args()); aerr != nil {
				return usageError{aerr}
			}
		}
		return usageError{err}
	})
	root.AddCommand(
		newVersionCommand(e, g),
		newInitCommand(e, g),
		newRenewCommand(e, g), newCertsCommand(e, g),
		newEncryptionCommand(e, g), newSACommand(e, g), newCACommand(e, g), newJoinCommand(e, g),
	)
	// -v, -q, -o and --settings belong to every command that runs, and to no group (a group only prints its
	// help): bound per command rather than as the root's persistent flags, so a group's --help lists none.
	var bind func(c *cobra.Command)
	bind = func(c *cobra.Command) {
		if c.Annotations[groupAnnotation] == "" {
			g.add(c.Flags())
		}
		for _, sub := range c.Commands() {
			bind(sub)
		}
	}
	for _, c := range root.Commands() {
		bind(c)
	}
	// On the root they are hidden: only so that "k8scrypto -q renew certs" still finds its command (cobra
	// skips the root's flags by their own kind to find the sub-command; the sub-command parses them).
	g.add(root.Flags())
	root.Flags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })
	return root
}

// add binds the flags every command that runs has.
func (g *globals) add(fs *pflag.FlagSet) {
	fs.BoolVarP(&g.verbose, "verbose", "v", false, "print more progress on stderr")
	fs.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors on stderr")
	fs.StringVarP(&g.output, "output", "o", "text", "result format: text, json or yaml")
	fs.StringVar(&g.settings, "settings", "", "YAML file of flag values (keys named like the flags); flags and K8SCRYPTO_* variables take precedence")
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
	if err := unknownSettings(cmd, v, settingsFile); err != nil {
		return usageError{err}
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
			errs = append(errs, flagValueError(f.Name, fmt.Sprint(v.Get(f.Name)), err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	return nil
}

// unknownSettings refuses a --settings key that is not a flag of the command, and a K8SCRYPTO_* variable
// that names no flag of any command: ignored, a misspelt backup location or dry-run switch would silently do
// the real thing. Each is named, with the nearest valid name.
func unknownSettings(cmd *cobra.Command, v *viper.Viper, settingsFile string) error {
	var own []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) { own = append(own, f.Name) })
	var errs []error
	if settingsFile != "" {
		for _, key := range v.AllKeys() {
			if !slices.Contains(own, key) {
				errs = append(errs, fmt.Errorf("--settings %s: %q is not a flag of %q%s", settingsFile, key, cmd.CommandPath(), didYouMean(suggest.Nearest(key, own))))
			}
		}
	}
	all := map[string]bool{"settings": true}
	var every []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { all[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { all[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd.Root())
	for name := range all {
		every = append(every, envName(name))
	}
	slices.Sort(every)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "K8SCRYPTO_") || slices.Contains(every, name) || notAFlag(name) {
			continue
		}
		errs = append(errs, fmt.Errorf("environment variable %s names no k8scrypto flag%s", name, didYouMean(suggest.Nearest(name, every))))
	}
	return errors.Join(errs...)
}

// flagValueError is a malformed value of a flag, whether from the command line, K8SCRYPTO_* or the settings
// file: the message names all three.
func flagValueError(name, value string, cause error) error {
	return usageError{fmt.Errorf("--%s (%s, settings key %q): invalid value %q: %w", name, envName(name), name, value, cause)}
}

// envName is the K8SCRYPTO_* variable of a flag.
func envName(flag string) string {
	return "K8SCRYPTO_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func didYouMean(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (did you mean " + strings.Join(names, " or ") + "?)"
}

// notAFlag says whether a K8SCRYPTO_* variable is one k8scrypto sets or the test suite uses, not a flag: a
// --on-renew hook that runs k8scrypto inherits K8SCRYPTO_RENEWED, and the e2e suite's K8SCRYPTO_E2E_* and
// K8SCRYPTO_SUITE_* reach the commands it runs.
func notAFlag(name string) bool {
	return name == "K8SCRYPTO_RENEWED" || name == "K8SCRYPTO_RENEWED_BACKUP" ||
		strings.HasPrefix(name, "K8SCRYPTO_E2E_") || strings.HasPrefix(name, "K8SCRYPTO_SUITE_")
}
