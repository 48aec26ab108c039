package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

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

A key rotation is four steps, each safe with --encryption-provider-config-automatic-reload=true
(K=/etc/kubernetes/admin.conf, E=https://127.0.0.1:2379):
  1. k8scrypto encryption rotate prepare                       add a new key second: every apiserver can decrypt with it
  2. k8scrypto encryption rotate promote --kubeconfig $K --wait   move it first: new writes use it
  3. k8scrypto encryption reencrypt --kubeconfig $K --wait --etcd-endpoints $E   rewrite every object under the new key
  4. k8scrypto encryption rotate prune --yes --kubeconfig $K --etcd-endpoints $E   remove the old keys
Copy the file to every control-plane node between steps. Each step refuses (exit 3) until the apiserver runs
the file the previous step wrote (--wait waits for its reload), and prune until etcd holds nothing under the
keys it removes.`,
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

func (f *etcdFlags) etcd() phases.Etcd {
	return phases.Etcd{Endpoints: f.endpoints, CACert: f.cacert, Cert: f.cert, Key: f.key, Prefix: f.prefix, PageSize: f.pageSize}
}

// args renders the etcd flags that were given, for the command lines messages suggest.
func (f *etcdFlags) args() string {
	if len(f.endpoints) == 0 {
		return ""
	}
	out := " --etcd-endpoints " + shellQuote(strings.Join(f.endpoints, ","))
	for _, fl := range []struct{ name, v string }{{"etcd-cacert", f.cacert}, {"etcd-cert", f.cert}, {"etcd-key", f.key}} {
		if fl.v != "" {
			out += " --" + fl.name + " " + shellQuote(pki.AbsPath(fl.v))
		}
	}
	if f.prefix != "/registry" {
		out += " --etcd-prefix " + shellQuote(f.prefix)
	}
	return out
}

// clusterArgs renders --cert-dir when it is not the default, for the command lines messages suggest.
func clusterArgs(certDir string) string {
	if certDir == "" || pki.AbsPath(certDir) == pki.DefaultCertificateDir {
		return ""
	}
	return " --cert-dir " + shellQuote(pki.AbsPath(certDir))
}

type encryptionStatusResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	File       string `json:"file"`
	encryption.Status
	Problems  []string                    `json:"problems,omitempty"`
	APIServer *phases.APIServerEncryption `json:"apiserver,omitempty"`
	Etcd      *phases.EtcdCounts          `json:"etcd,omitempty"`
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
		Short: "Print the providers, keys (by fingerprint), rotation stage, what the apiserver runs and what etcd stores, and the next safe step",
		Long: `Print the encryption config's providers, its key names in order with a short fingerprint of each (the first
16 hex digits of the SHA-256 of the key; never the key), the rotation stage and the next step that is safe.

With --kubeconfig it asks that kube-apiserver (its /metrics) which version of the file it runs. With
--etcd-endpoints it also reads every stored value of the configured resources straight from etcd (at one
revision, page by page; only each value's prefix is looked at) and counts them by the key that encrypted them
(k8s:enc:<provider>:v1:<key>:) and as plaintext. The "Next:" line follows from what was measured.

Exit status 1 when something needs the operator: values no apiserver using this file can read, an apiserver
whose latest reload failed, or one that runs another version of the file (wait for the reload).`,
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
			if mode, loose := pki.LooseSecretMode(path); loose {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s holds the encryption keys and is mode %04o: others can read it; chmod 600 %s", path, mode, path))
			}
			for _, w := range res.Warnings {
				g.log.Warn(w)
			}
			if res.APIServer, err = f.apiserver.apiServer().View(cmd.Context(), fileHash); err != nil {
				return err
			}
			if res.Etcd, err = f.etcd.etcd().Count(cmd.Context(), cfg.CertDir, ec, nil); err != nil {
				return err
			}
			adv := phases.AdviseEncryption(res.Status, res.APIServer, res.Etcd, phases.StepArgs{Cluster: clusterArgs(f.overrides.CertDir), Kubeconfig: f.apiserver.args(), Etcd: f.etcd.args()})
			res.Next, res.Problems = adv.Next, adv.Problems
			if g.output != "text" {
				err = printStructured(e.stdout, g.output, res)
			} else {
				err = printEncryptionStatus(e.stdout, res)
			}
			if err == nil && len(res.Problems) > 0 {
				err = &phases.StatusProblemsError{Problems: res.Problems}
			}
			return err
		},
	}
	f.add(cmd.Flags())
	f.etcd.add(cmd.Flags())
	f.apiserver.add(cmd.Flags(), "also report whether that kube-apiserver runs this file (from its /metrics)")
	return cmd
}

func printEncryptionStatus(w io.Writer, r encryptionStatusResult) error {
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
	fmt.Fprintf(w, "File:  %s\nStage: %s\nNext:  %s\n", r.File, r.Stage, r.Next)
	if r.APIServer != nil {
		fmt.Fprintf(w, "Apiserver: %s\n", r.APIServer.Describe())
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
	_, err := fmt.Fprintf(w, "%d value(s) unreadable with this file (%d of them plaintext without an identity provider), %d readable but not under the write key\n", r.Etcd.Unreadable, r.Etcd.UnreadablePlaintext, r.Etcd.NotUnderWriteKey)
	return err
}

type encRotateFlags struct {
	clusterFlags
	backupDir string
	dryRun    bool
	yes       bool
	unsafe    bool
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
file it runs and refuses (exit 3) unless it is this one; with --wait it waits for the reload instead.`
			f.apiserver.add(sub.Flags(), "refuse unless that kube-apiserver runs the prepared file (from its /metrics)")
			f.apiserver.addWait(sub.Flags())
		case "prune":
			f.apiserver.add(sub.Flags(), "required: the kube-apiserver must run the promoted file (from its /metrics)")
			f.apiserver.addWait(sub.Flags())
			sub.Long = `Remove every key but the first from the first provider. Values still stored under a removed key become
unreadable, so prune needs proof that nothing uses those keys any more, and refuses (exit 3) without it:
  --kubeconfig      the apiserver runs the promoted file, so it writes with the new key only (--wait waits
                    for its reload);
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
	stepArgs := phases.StepArgs{Cluster: clusterArgs(f.overrides.CertDir), Kubeconfig: f.apiserver.args(), Etcd: f.etcd.args()}
	switch step {
	case "promote":
		retry := "k8scrypto encryption rotate promote" + stepArgs.Cluster + stepArgs.Kubeconfig + " --wait"
		if _, err := f.apiserver.apiServer().WaitRuns(ctx, step, path, fileHash, retry); err != nil {
			return err
		}
	case "prune":
		names := make([]string, len(changes))
		for i, c := range changes {
			names[i] = c.Key.Name
		}
		if !f.yes {
			return usageError{fmt.Errorf("prune removes key(s) %s: values still stored under them become unreadable for good. Run \"k8scrypto encryption reencrypt\" first (verify with \"k8scrypto encryption status --etcd-endpoints ...\"), then add --yes", strings.Join(names, ", "))}
		}
		proof := phases.PruneProof{API: f.apiserver.apiServer(), Etcd: f.etcd.etcd(), Unsafe: f.unsafe}
		if err := proof.Check(ctx, cfg.CertDir, path, fileHash, next, names, stepArgs, g.log); err != nil {
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
	apiserver  apiserverFlags
	etcd       etcdFlags
	resources  []string
	workers    int
	pageSize   int64
	checkpoint string
	restart    bool
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

It first asks the apiserver (its /metrics) which encryption config it runs, and refuses (exit 3) unless it
is the file on disk: an apiserver that has not reloaded the promoted file would store everything under the old
key again. --wait waits for the reload instead. If the apiserver loads another file during the run, the run
fails and its checkpoint is discarded.

"rewritten" counts objects the apiserver stored again (a new resourceVersion); "unchanged" those it found
already under its write key. With --etcd-endpoints the run ends by counting what etcd stores, and fails if
anything is left under an older key.

Objects are listed in pages (--page-size) and updated by --workers concurrent requests; a conflict is retried
with a fresh read, an object deleted meanwhile is skipped. Progress is saved in --checkpoint: an interrupted or
failed run resumes after the last object up to which everything was rewritten, once a sample of the objects
it skips is confirmed under the write key. A progress bar is drawn on stderr when it is a terminal; a summary
is printed at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReencrypt(cmd.Context(), e, g, f) },
	}
	fl := cmd.Flags()
	f.add(fl)
	f.apiserver.add(fl, "required: the cluster whose objects are rewritten; its apiserver must run the file on disk")
	f.apiserver.addWait(fl)
	f.etcd.add(fl)
	fl.StringSliceVar(&f.resources, "resources", nil, "resources to rewrite, as the encryption config names them (default: those of <cert-dir>/"+encryption.FileName+")")
	fl.IntVar(&f.workers, "workers", reencrypt.DefaultWorkers, "concurrent updates")
	fl.Int64Var(&f.pageSize, "page-size", reencrypt.DefaultPageSize, "objects per list request")
	fl.StringVar(&f.checkpoint, "checkpoint", "", "progress file for resuming (default <state dir>/"+reencrypt.CheckpointFile+": /var/lib/k8scrypto, or the per-user state directory without root)")
	fl.BoolVar(&f.restart, "restart", false, "ignore an existing checkpoint and rewrite everything")
	return cmd
}

func runReencrypt(ctx context.Context, e *env, g *globals, f *reencryptFlags) error {
	if f.apiserver.kubeconfig == "" {
		return usageError{errors.New("--kubeconfig is required (for example /etc/kubernetes/admin.conf)")}
	}
	if f.workers < 1 || f.pageSize < 1 {
		return usageError{errors.New("--workers and --page-size must be at least 1")}
	}
	cfg, _, err := maintenanceConfig(e, &f.clusterFlags)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	req := phases.ReencryptRequest{
		CertDir: cfg.CertDir, API: f.apiserver.apiServer(), Resources: f.resources, Workers: f.workers, PageSize: f.pageSize,
		Checkpoint: f.checkpoint, Restart: f.restart, Etcd: f.etcd.etcd(), Log: g.log,
		Args: phases.StepArgs{Cluster: clusterArgs(f.overrides.CertDir), Kubeconfig: f.apiserver.args(), Etcd: f.etcd.args()},
	}
	bar := newProgressBar(e.stderr, g.quiet)
	if bar != nil {
		req.Progress = bar.draw
	}
	res, runErr := phases.Reencrypt(ctx, req)
	if bar != nil {
		bar.finish()
	}
	var interrupted *phases.InterruptedError
	if errors.As(runErr, &interrupted) {
		return runErr // one line, no partial report
	}
	var notServed *reencrypt.NotServedError
	if errors.As(runErr, &notServed) {
		return usageError{fmt.Errorf("--resources: %w", runErr)}
	}
	if res.Server == "" { // refused before anything was sent
		return runErr
	}
	var perr error
	if g.output != "text" {
		perr = printStructured(e.stdout, g.output, res)
	} else {
		perr = printReencryptSummary(e.stdout, res)
	}
	return errors.Join(runErr, perr)
}

func printReencryptSummary(w io.Writer, r phases.ReencryptResult) error {
	t := newTable(w)
	fmt.Fprintln(t, "RESOURCE\tLISTED\tREWRITTEN\tUNCHANGED\tSKIPPED\tGONE\tCONFLICTS\tERRORS")
	for _, rs := range r.Resources {
		fmt.Fprintf(t, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", rs.Resource, rs.Listed, rs.Rewritten, rs.Unchanged, rs.Skipped, rs.Gone, rs.Conflicts, rs.Errors)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "error: %s\n", s)
	}
	if r.CheckpointDiscarded != "" {
		fmt.Fprintf(w, "checkpoint discarded: %s\n", r.CheckpointDiscarded)
	}
	fmt.Fprintf(w, "%d object(s) rewritten under %s, %d unchanged (already under it), %d skipped (checkpoint), %d errors in %s (%.0f objects/s)\n",
		r.Rewritten, r.Target, r.Unchanged, r.Skipped, r.Errors, r.Duration.Round(time.Millisecond), r.PerSecond)
	if r.Etcd != nil {
		fmt.Fprintf(w, "etcd: %d value(s) left under older keys, %d unreadable\n", r.Etcd.NotUnderWriteKey, r.Etcd.Unreadable)
	}
	return nil
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
		rate = float64(p.Done) / s
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
