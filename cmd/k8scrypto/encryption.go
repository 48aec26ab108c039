package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/reencrypt"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// encryptionFlags are the inputs of the encryption-config init phase.
type encryptionFlags struct {
	provider            string
	resources           []string
	allowPlaintextReads bool
	kmsName             string
	kmsEndpoint         string
	kmsTimeout          time.Duration
}

func addEncryptionFlags(fs *pflag.FlagSet, f *encryptionFlags) {
	fs.StringVar(&f.provider, "encryption-provider", encryption.Secretbox, "encryption-at-rest provider: "+strings.Join(encryption.Providers, ", ")+" (kms means KMS v2)")
	fs.StringSliceVar(&f.resources, "encrypt-resources", nil, "resources to encrypt besides secrets, as the apiserver names them (configmaps, *.apps, *.*, ...)")
	fs.BoolVar(&f.allowPlaintextReads, "allow-plaintext-reads", false, "keep identity last so values stored before encryption was turned on stay readable until \"k8scrypto encryption reencrypt\"")
	fs.StringVar(&f.kmsName, "kms-name", "", "KMS v2 provider name (with --encryption-provider kms)")
	fs.StringVar(&f.kmsEndpoint, "kms-endpoint", "", "KMS v2 plugin socket, unix:///path (with --encryption-provider kms)")
	fs.DurationVar(&f.kmsTimeout, "kms-timeout", 0, "KMS v2 call timeout (0: the apiserver's default, 3s)")
}

func (f *encryptionFlags) options() phases.EncryptionOptions {
	return phases.EncryptionOptions{
		Provider: f.provider, Resources: f.resources, AllowPlaintextReads: f.allowPlaintextReads,
		KMSName: f.kmsName, KMSEndpoint: f.kmsEndpoint, KMSTimeout: f.kmsTimeout,
	}
}

// maintenanceConfig resolves the configuration of a command that maintains existing files: the kubeadm
// configuration with --config, else kubeadm's defaults and the flags (nothing guessed from the host).
// explicitAlg says whether a key algorithm was asked for.
func maintenanceConfig(e *env, f *clusterFlags) (cfg *pki.Config, explicitAlg bool, err error) {
	if f.configFile != "" {
		c, err := f.load(e)
		if err != nil {
			return nil, false, err
		}
		return c.PKI, true, nil
	}
	cfg = defaultPKIConfig(f.overrides.CertDir)
	cfg.StrictPermissions = f.overrides.StrictPermissions
	if f.overrides.EncryptionAlgorithm != "" {
		if cfg.Algorithm, err = pki.ParseAlgorithm(f.overrides.EncryptionAlgorithm); err != nil {
			return nil, false, usageError{fmt.Errorf("--encryption-algorithm: %w", err)}
		}
		explicitAlg = true
	}
	return cfg, explicitAlg, nil
}

// loadEncryptionConfig reads the encryption configuration of a certificate directory, with the hash
// kube-apiserver reports for the same bytes.
func loadEncryptionConfig(certDir string) (path string, cfg *encryption.Config, fileHash string, err error) {
	path = phases.EncryptionConfigPath(certDir)
	cfg, fileHash, err = encryption.Load(path)
	if encryption.IsNotExist(err) {
		return path, nil, "", fmt.Errorf("no encryption config at %s: create it with \"k8scrypto init phase encryption-config\" (or set --cert-dir): %w", path, err)
	}
	return path, cfg, fileHash, err
}

func newEncryptionCommand(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "encryption",
		Short: "Inspect, rotate and re-encrypt with the encryption-at-rest configuration",
		Long: `Inspect and rotate the kube-apiserver's encryption-at-rest configuration, <cert-dir>/` + encryption.FileName + `,
and rewrite stored objects with its current key.

A key rotation is four steps, each safe with --encryption-provider-config-automatic-reload=true:
  1. k8scrypto encryption rotate prepare   add a new key second: every apiserver can decrypt with it
  2. k8scrypto encryption rotate promote   move it first: new writes use it
  3. k8scrypto encryption reencrypt        rewrite every object under the new key
  4. k8scrypto encryption rotate prune --yes   remove the old keys
Copy the file to every control-plane node and wait until every apiserver has loaded it (the metric
apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds, or a restart) between steps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEncryptionStatusCommand(e, g), newEncryptionRotateCommand(e, g), newReencryptCommand(e, g))
	return cmd
}

// etcdFlags locate etcd for counting stored values.
type etcdFlags struct {
	endpoints []string
	cacert    string
	cert      string
	key       string
	prefix    string
	pageSize  int64
}

func (f *etcdFlags) add(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "etcd client URLs; when set, count stored values per key straight from etcd")
	fs.StringVar(&f.cacert, "etcd-cacert", "", "etcd CA certificate (default <cert-dir>/etcd/ca.crt)")
	fs.StringVar(&f.cert, "etcd-cert", "", "etcd client certificate (default <cert-dir>/apiserver-etcd-client.crt)")
	fs.StringVar(&f.key, "etcd-key", "", "etcd client key (default <cert-dir>/apiserver-etcd-client.key)")
	fs.StringVar(&f.prefix, "etcd-prefix", "/registry", "kube-apiserver --etcd-prefix")
	fs.Int64Var(&f.pageSize, "etcd-page-size", 500, "keys read per etcd request")
}

// count counts the stored values of the configured resources, by key; nil when no endpoint is given.
func (f *etcdFlags) count(ctx context.Context, certDir string, cfg *encryption.Config) (*etcdCounts, error) {
	if len(f.endpoints) == 0 {
		return nil, nil
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return filepath.Join(certDir, def)
	}
	rng, closeFn, err := encryption.DialEtcd(encryption.EtcdOptions{
		Endpoints: f.endpoints,
		CACert:    or(f.cacert, "etcd/ca.crt"),
		Cert:      or(f.cert, "apiserver-etcd-client.crt"),
		Key:       or(f.key, "apiserver-etcd-client.key"),
	})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	known := encryption.LabelsOf(cfg)
	out := &etcdCounts{Endpoints: f.endpoints}
	for _, rp := range encryption.EtcdPrefixes(f.prefix, encryption.AllResources(cfg)) {
		c, err := encryption.CountPrefix(ctx, rng, rp[0], rp[1], f.pageSize, known)
		if err != nil {
			return nil, err
		}
		out.Counts = append(out.Counts, c)
		out.Unreadable += c.Unreadable
	}
	return out, nil
}

type etcdCounts struct {
	Endpoints []string           `json:"endpoints"`
	Counts    []encryption.Count `json:"counts"`
	// Unreadable counts values no apiserver with this file can read.
	Unreadable int `json:"unreadable"`
}

type encryptionStatusResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	File       string `json:"file"`
	encryption.Status
	APIServer *apiserverEncryption `json:"apiserver,omitempty"`
	Etcd      *etcdCounts          `json:"etcd,omitempty"`
}

type encStatusFlags struct {
	clusterFlags
	etcd      etcdFlags
	apiserver apiserverFlags
}

func newEncryptionStatusCommand(e *env, g *globals) *cobra.Command {
	f := &encStatusFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the providers, keys (by fingerprint), rotation stage and, with --etcd-endpoints, what stored values use",
		Long: `Print the encryption config's providers, its key names in order with a short fingerprint of each (the first
16 hex digits of the SHA-256 of the key; never the key), the rotation stage and the next step.

With --etcd-endpoints it also reads every stored value of the configured resources straight from etcd (at one
revision, page by page; only each value's prefix is looked at) and counts them by the key that encrypted them
(k8s:enc:<provider>:v1:<key>:) and as plaintext. Values under a key the file no longer has are unreadable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := maintenanceConfig(e, &f.clusterFlags)
			if err != nil {
				return err
			}
			// An interrupted rotation is completed first, or reported: the file may be half replaced.
			if err := recoverBeforeReading(cfg, f.kubeconfigDir, f.auditLog, f.lockTimeout, e.now(), g.log); err != nil {
				return err
			}
			path, ec, fileHash, err := loadEncryptionConfig(cfg.CertDir)
			if err != nil {
				return err
			}
			res := encryptionStatusResult{APIVersion: phases.ResultAPIVersion, Kind: "EncryptionStatus", File: path, Status: encryption.Describe(ec)}
			for _, w := range res.Warnings {
				g.log.Warn(w)
			}
			if res.APIServer, err = f.apiserver.view(cmd.Context(), fileHash); err != nil {
				return err
			}
			if res.Etcd, err = f.etcd.count(cmd.Context(), cfg.CertDir, ec); err != nil {
				return err
			}
			if res.Etcd != nil && res.Etcd.Unreadable > 0 {
				g.log.Warn("values in etcd are stored under keys this file does not have: no apiserver using it can read them", "count", res.Etcd.Unreadable)
			}
			if g.output != "text" {
				return printStructured(e.stdout, g.output, res)
			}
			return printEncryptionStatus(e.stdout, res)
		},
	}
	f.add(cmd.Flags())
	f.etcd.add(cmd.Flags())
	f.apiserver.add(cmd.Flags(), "also report whether that kube-apiserver runs this file (from its /metrics)")
	return cmd
}

func printEncryptionStatus(w io.Writer, r encryptionStatusResult) error {
	fmt.Fprintf(w, "File:  %s\nStage: %s\nNext:  %s\n", r.File, r.Stage, r.Next)
	if r.APIServer != nil {
		fmt.Fprintf(w, "Apiserver: %s\n", r.APIServer.describe())
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "RESOURCES\tPROVIDER\tKEY\tFINGERPRINT\tROLE")
	for _, e := range r.Entries {
		res := strings.Join(e.Resources, ",")
		for i, p := range e.Providers {
			role := "read"
			if i == 0 {
				role = "write"
			}
			switch {
			case len(p.Keys) > 0:
				for _, k := range p.Keys {
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", res, p.Type, k.Name, k.Fingerprint, k.Role)
				}
			case p.Type == encryption.KMS:
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", res, p.Type, p.Name, p.Endpoint, role)
			default:
				if p.Type == encryption.Identity && i > 0 {
					role = "read (plaintext)"
				}
				fmt.Fprintf(t, "%s\t%s\t-\t-\t%s\n", res, p.Type, role)
			}
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if r.Etcd == nil {
		return nil
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "RESOURCE\tETCD PREFIX\tSTORED AS\tCOUNT")
	for _, c := range r.Etcd.Counts {
		labels := make([]string, 0, len(c.ByLabel))
		for l := range c.ByLabel {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		if len(labels) == 0 {
			fmt.Fprintf(t, "%s\t%s\t-\t0\n", c.Resource, c.Prefix)
		}
		for _, l := range labels {
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\n", c.Resource, c.Prefix, l, c.ByLabel[l])
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d value(s) unreadable with this file\n", r.Etcd.Unreadable)
	return err
}

type encRotateFlags struct {
	clusterFlags
	backupDir string
	dryRun    bool
	yes       bool
	etcd      etcdFlags
	apiserver apiserverFlags
}

type encryptionRotateResult struct {
	APIVersion string              `json:"apiVersion"`
	Kind       string              `json:"kind"`
	Step       string              `json:"step"`
	File       string              `json:"file"`
	DryRun     bool                `json:"dryRun"`
	Backup     string              `json:"backup,omitempty"`
	Changes    []encryption.Change `json:"changes"`
	Stage      encryption.Stage    `json:"stage"`
	Next       string              `json:"next"`
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
	cmd.PersistentFlags().StringVar(&f.backupDir, "backup-dir", "", "where the replaced file is copied, in a <UTC time>/ subdirectory (default "+pki.DefaultBackupDir+", or the per-user state directory without root); the copies hold keys")
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
file it runs and refuses unless it is this one.`
			f.apiserver.add(sub.Flags(), "refuse unless that kube-apiserver runs the prepared file (from its /metrics)")
		case "prune":
			f.apiserver.add(sub.Flags(), "refuse unless that kube-apiserver runs the promoted file (from its /metrics)")
			sub.Long = `Remove every key but the first from the first provider. Values still stored under a removed key become
unreadable, so this must follow a complete "k8scrypto encryption reencrypt" (verify with
"k8scrypto encryption status --etcd-endpoints ..."). With --etcd-endpoints, prune counts the stored values itself
and refuses while any would become unreadable. With --kubeconfig, it also refuses unless that apiserver runs the
promoted file (one that still writes with an old key would keep writing values prune makes unreadable).`
			sub.Flags().BoolVar(&f.yes, "yes", false, "confirm that reencrypt has rewritten every object under the first key")
			f.etcd.add(sub.Flags())
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func runEncryptionRotate(ctx context.Context, e *env, g *globals, f *encRotateFlags, step string) error {
	cfg, _, err := maintenanceConfig(e, &f.clusterFlags)
	if err != nil {
		return err
	}
	now := e.now().UTC()
	audit, root, release, err := beginRotation(cfg, &f.clusterFlags, f.backupDir, f.dryRun, now, g.log)
	if err != nil {
		return err
	}
	defer release()
	path, cur, fileHash, err := loadEncryptionConfig(cfg.CertDir)
	if err != nil {
		return err
	}
	var next *encryption.Config
	var changes []encryption.Change
	switch step {
	case "prepare":
		next, changes, err = encryption.Prepare(cur, now, e.rand)
	case "promote":
		next, changes, err = encryption.Promote(cur)
	case "prune":
		next, changes, err = encryption.Prune(cur)
	}
	if err != nil {
		return err
	}
	if step == "promote" || step == "prune" {
		if err := checkAPIServerRuns(ctx, &f.apiserver, path, fileHash, step); err != nil {
			return err
		}
	}
	if step == "prune" {
		if err := checkPrune(ctx, f, cfg.CertDir, next, changes, g); err != nil {
			return err
		}
	}
	data, err := encryption.Marshal(next)
	if err != nil {
		return fmt.Errorf("%s: the rotated configuration does not validate: %w", path, err)
	}
	st := encryption.Describe(next)
	res := encryptionRotateResult{APIVersion: phases.ResultAPIVersion, Kind: "EncryptionRotateResult", Step: step, File: path, DryRun: f.dryRun, Changes: changes, Stage: st.Stage, Next: st.Next}
	if !f.dryRun {
		backups, err := pki.NewBackupSet(root, now)
		if err != nil {
			return err
		}
		if res.Backup, err = backups.Save(path); err != nil {
			backups.Discard()
			return err
		}
		events := []pki.AuditEvent{{Time: now, Operation: pki.AuditBackup, File: path, Detail: "copied to " + res.Backup}}
		op := pki.AuditRotate
		if step == "prune" {
			op = pki.AuditRemove
		}
		writeErr := pki.WriteFileAtomic(path, data, pki.ModeKey)
		outcome := "ok"
		if writeErr != nil {
			outcome = writeErr.Error()
		}
		for _, c := range changes {
			events = append(events, pki.AuditEvent{Time: now, Operation: op, File: path, SHA256: c.Key.Fingerprint, Outcome: outcome,
				Detail: fmt.Sprintf("encryption rotate %s: %s key %s in resources[%d]", step, c.Provider, c.Key.Name, c.Entry)})
		}
		if err := errors.Join(writeErr, audit.Record(events...)); err != nil {
			return err
		}
	}
	if g.output != "text" {
		return printStructured(e.stdout, g.output, res)
	}
	return printRotateResult(e.stdout, res)
}

// checkAPIServerRuns refuses the step, when --kubeconfig names an apiserver, unless that apiserver runs the
// file as it is now: the previous stage must have reached it before the next one is safe.
func checkAPIServerRuns(ctx context.Context, f *apiserverFlags, path, fileHash, step string) error {
	v, err := f.view(ctx, fileHash)
	if err != nil || v == nil {
		return err
	}
	if !v.RunsThisFile {
		return fmt.Errorf("%s refused: %s; run it again once the apiserver runs %s (check with \"k8scrypto encryption status --kubeconfig ...\")", step, v.describe(), path)
	}
	return nil
}

// checkPrune refuses a prune without --yes, and with --etcd-endpoints while stored values would become
// unreadable.
func checkPrune(ctx context.Context, f *encRotateFlags, certDir string, next *encryption.Config, changes []encryption.Change, g *globals) error {
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.Key.Name
	}
	counts, err := f.etcd.count(ctx, certDir, next)
	if err != nil {
		return err
	}
	if counts != nil && counts.Unreadable > 0 {
		return fmt.Errorf("prune refused: %d stored value(s) would be unreadable without key(s) %s; run \"k8scrypto encryption reencrypt\" (after every apiserver has loaded the promoted file) and check with \"k8scrypto encryption status --etcd-endpoints ...\"", counts.Unreadable, strings.Join(names, ", "))
	}
	if !f.yes {
		return usageError{fmt.Errorf("prune removes key(s) %s: values still stored under them become unreadable for good. Run \"k8scrypto encryption reencrypt\" first (verify with \"k8scrypto encryption status --etcd-endpoints ...\"), then add --yes", strings.Join(names, ", "))}
	}
	if counts == nil {
		g.log.Warn("pruning without checking etcd: values not yet rewritten by \"k8scrypto encryption reencrypt\" become unreadable", "keys", strings.Join(names, ","))
	}
	return nil
}

func printRotateResult(w io.Writer, r encryptionRotateResult) error {
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

type reencryptFlags struct {
	clusterFlags
	kubeconfig string
	resources  []string
	workers    int
	pageSize   int64
	checkpoint string
	restart    bool
}

type reencryptResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Server     string `json:"server"`
	Target     string `json:"target"`
	reencrypt.Summary
}

func newReencryptCommand(e *env, g *globals) *cobra.Command {
	f := &reencryptFlags{}
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Rewrite every Secret (and every other configured resource) so it is stored under the current key",
		Long: `Rewrite every object of the resources the encryption config names (secrets by default) through the API,
with an unchanged PUT, so that the apiserver stores it again with its current write key: the step between
"rotate promote" and "rotate prune", and after turning encryption on. Objects already under the write key are
not written again by the apiserver, so a repeated run is cheap.

Objects are listed in pages (--page-size) and updated by --workers concurrent requests; a conflict is retried
with a fresh read, an object deleted meanwhile is skipped. Progress is saved in --checkpoint: an interrupted or
failed run resumes after the last object up to which everything was rewritten. A progress bar is drawn on
stderr when it is a terminal; a summary (count, errors, objects per second) is printed at the end.

Run it once every apiserver has loaded the promoted encryption config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReencrypt(cmd.Context(), e, g, f) },
	}
	fl := cmd.Flags()
	f.add(fl)
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster administrator (required), e.g. /etc/kubernetes/admin.conf")
	fl.StringSliceVar(&f.resources, "resources", nil, "resources to rewrite, as the encryption config names them (default: those of <cert-dir>/"+encryption.FileName+", else secrets)")
	fl.IntVar(&f.workers, "workers", reencrypt.DefaultWorkers, "concurrent updates")
	fl.Int64Var(&f.pageSize, "page-size", reencrypt.DefaultPageSize, "objects per list request")
	fl.StringVar(&f.checkpoint, "checkpoint", "", "progress file for resuming (default <state dir>/"+reencrypt.CheckpointFile+": /var/lib/k8scrypto, or the per-user state directory without root)")
	fl.BoolVar(&f.restart, "restart", false, "ignore an existing checkpoint and rewrite everything")
	return cmd
}

func runReencrypt(ctx context.Context, e *env, g *globals, f *reencryptFlags) error {
	if f.kubeconfig == "" {
		return usageError{errors.New("--kubeconfig is required (for example /etc/kubernetes/admin.conf)")}
	}
	if f.workers < 1 || f.pageSize < 1 {
		return usageError{errors.New("--workers and --page-size must be at least 1")}
	}
	cfg, _, err := maintenanceConfig(e, &f.clusterFlags)
	if err != nil {
		return err
	}
	resources, target := f.resources, "unknown"
	if path, ec, _, err := loadEncryptionConfig(cfg.CertDir); err == nil {
		target = encryption.WriteKey(ec)
		if len(resources) == 0 {
			resources = encryptedResources(ec)
		}
		if st := encryption.Describe(ec); st.Stage == encryption.StagePrepared {
			g.log.Warn("the encryption config is prepared, not promoted: objects are rewritten under the old key; run \"k8scrypto encryption rotate promote\" first", "file", path)
		}
	} else if !encryption.IsNotExist(err) {
		return err
	} else {
		g.log.Warn("no encryption config in the certificate directory; rewriting the given resources without checking the write key", "resources", strings.Join(resources, ","))
	}
	if len(resources) == 0 {
		resources = []string{encryption.DefaultResource}
	}
	checkpoint := f.checkpoint
	if checkpoint == "" {
		dir, fellBack, err := pki.StateDir("", filepath.Dir(pki.DefaultBackupDir), "")
		if err != nil {
			return err
		}
		if fellBack {
			g.log.Debug("using the per-user state directory for the checkpoint", "dir", dir)
		}
		checkpoint = filepath.Join(dir, reencrypt.CheckpointFile)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig %s: %w", f.kubeconfig, err)
	}
	// No client-side rate limit (the apiserver's priority and fairness applies). NewClient speaks
	// protobuf for Secrets: the apiserver decodes it faster than JSON.
	rc.QPS, rc.Burst = -1, 0
	rc.UserAgent = "k8scrypto-reencrypt"
	client, err := reencrypt.NewClient(rc)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := reencrypt.Options{
		Resources: resources, Workers: f.workers, PageSize: f.pageSize,
		Checkpoint: checkpoint, Server: rc.Host, Target: target, Restart: f.restart, Log: g.log,
	}
	bar := newProgressBar(e.stderr, g.quiet)
	if bar != nil {
		opts.Progress = bar.draw
	}
	g.log.Info("rewriting", "resources", strings.Join(resources, ","), "server", rc.Host, "target", target)
	sum, runErr := reencrypt.Run(ctx, client, opts)
	if bar != nil {
		bar.finish()
	}
	res := reencryptResult{APIVersion: phases.ResultAPIVersion, Kind: "ReencryptResult", Server: rc.Host, Target: target, Summary: sum}
	var perr error
	if g.output != "text" {
		perr = printStructured(e.stdout, g.output, res)
	} else {
		perr = printReencryptSummary(e.stdout, res)
	}
	if runErr != nil && errors.Is(runErr, context.Canceled) {
		runErr = fmt.Errorf("interrupted; progress is saved in %s and the next run resumes there", checkpoint)
	}
	return errors.Join(runErr, perr)
}

// encryptedResources lists the resources of the entries that store anything but plaintext.
func encryptedResources(cfg *encryption.Config) []string {
	var out []string
	for _, rc := range cfg.Resources {
		if slices.ContainsFunc(rc.Providers, func(p encryption.ProviderConfig) bool { return p.Identity == nil }) {
			out = append(out, rc.Resources...)
		}
	}
	return out
}

func printReencryptSummary(w io.Writer, r reencryptResult) error {
	t := newTable(w)
	fmt.Fprintln(t, "RESOURCE\tLISTED\tUPDATED\tSKIPPED\tGONE\tCONFLICTS\tERRORS")
	for _, rs := range r.Resources {
		fmt.Fprintf(t, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", rs.Resource, rs.Listed, rs.Updated, rs.Skipped, rs.Gone, rs.Conflicts, rs.Errors)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "error: %s\n", s)
	}
	_, err := fmt.Fprintf(w, "%d object(s) rewritten, %d skipped (checkpoint), %d errors in %s (%.0f objects/s)\n",
		r.Updated, r.Skipped, r.Errors, r.Duration.Round(time.Millisecond), r.PerSecond)
	return err
}

// progressBar draws one line on a terminal, redrawn in place.
type progressBar struct {
	w     io.Writer
	width int
}

// newProgressBar returns nil unless w is a terminal (and not -q): piped or logged stderr gets no bar.
func newProgressBar(w io.Writer, quiet bool) *progressBar {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width < 40 {
		width = 80
	}
	return &progressBar{w: w, width: width}
}

func (b *progressBar) draw(p reencrypt.Progress) {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Updated) / s
	}
	text := fmt.Sprintf(" %d", p.Done)
	frac := -1.0
	if p.Total > 0 {
		text += fmt.Sprintf("/%d", p.Total)
		frac = min(float64(p.Done)/float64(p.Total), 1)
	}
	text += fmt.Sprintf(" %s %.0f/s", p.Resource, rate)
	if p.Errors > 0 {
		text += fmt.Sprintf(" %d errors", p.Errors)
	}
	barWidth := b.width - len(text) - 4
	bar := ""
	if barWidth > 10 && frac >= 0 {
		filled := int(frac * float64(barWidth))
		bar = "[" + strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled) + "]"
	}
	fmt.Fprintf(b.w, "\r%s%s\x1b[K", bar, text)
}

func (b *progressBar) finish() { fmt.Fprint(b.w, "\n") }
