package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
)

// The flag sets commands share, each bound in one place.

// clusterFlags are the inputs of a command that works on a node's files. A command binds only the parts it
// reads, so that its --help, its flags, its settings keys are exactly what it uses and a flag it would ignore
// is refused as unknown (exit 2, issue 15):
//   - addSource: --config and --cert-dir, where the files are (every command here);
//   - addSession: --kubeconfig-dir, --audit-log, --lock-timeout, for a command that takes the certificate
//     directory's lock (to write, or to complete an interrupted run before reading);
//   - addAlgorithm: --encryption-algorithm, for a command that makes a key;
//   - addNode: the node's identity and addresses, the SANs and --strict-permissions, for the commands that
//     resolve the configuration in full (init and its phases) or re-issue certificates from it (renew).
type clusterFlags struct {
	configFile    string
	overrides     config.Overrides
	kubeconfigDir string
	lockTimeout   time.Duration
	auditLog      string
}

// add binds every part: init, its phases and renew read them all.
func (f *clusterFlags) add(fs *pflag.FlagSet) {
	f.addSource(fs)
	f.addSession(fs)
	f.addNode(fs)
	f.addAlgorithm(fs)
}

func (f *clusterFlags) addSource(fs *pflag.FlagSet) {
	fs.StringVar(&f.configFile, "config", "", "kubeadm configuration file (kubeadm.k8s.io/v1beta4 InitConfiguration and/or ClusterConfiguration)")
	fs.StringVar(&f.overrides.CertDir, "cert-dir", "", "directory of certificates and keys (default from the config, else "+phases.DefaultCertificateDir+")")
}

func (f *clusterFlags) addSession(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfigDir, "kubeconfig-dir", phases.DefaultKubeconfigDir, "directory of kubeconfig files")
	fs.StringVar(&f.auditLog, "audit-log", "", "append a JSON line per key or certificate created, reused, renewed or removed (default "+phases.DefaultAuditLog+", or the per-user state directory without root)")
	fs.DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another k8scrypto run holding the lock")
}

func (f *clusterFlags) addNode(fs *pflag.FlagSet) {
	o := &f.overrides
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: the host name, lower-cased)")
	fs.StringVar(&o.AdvertiseAddress, "advertise-address", "", "IP address the API server advertises (default: the default route's interface address)")
	fs.StringVar(&o.ControlPlaneEndpoint, "control-plane-endpoint", "", "stable DNS name or IP (with optional port) of the control plane")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", "", "service IP range(s), comma-separated for dual-stack (default 10.96.0.0/12)")
	fs.StringVar(&o.ServiceDNSDomain, "service-dns-domain", "", "cluster DNS domain (default cluster.local)")
	fs.StringSliceVar(&o.APIServerCertSANs, "apiserver-cert-extra-sans", nil, "extra SANs (IPs or DNS names) for the API server certificate")
	fs.BoolVar(&o.StrictPermissions, "strict-permissions", false, "CIS-style modes: certificates 0600 and directories 0700")
}

func (f *clusterFlags) addAlgorithm(fs *pflag.FlagSet) {
	fs.StringVar(&f.overrides.EncryptionAlgorithm, "encryption-algorithm", "", "key algorithm: RSA-2048 (default), RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384")
}

// source is where the command's configuration comes from: --config and the flags over it.
func (f *clusterFlags) source(e *env) phases.ConfigSource {
	return phases.ConfigSource{File: f.configFile, Flags: f.overrides, Hostname: e.hostname}
}

// read is what a command that only reads needs: its configuration, and what recovering first takes.
func (f *clusterFlags) read(e *env, g *globals) phases.ReadOptions {
	return phases.ReadOptions{Config: f.source(e), KubeconfigDir: f.kubeconfigDir, AuditLog: f.auditLog, LockTimeout: f.lockTimeout, Now: e.now(), Log: g.log}
}

// rotateFlags are the flags of every command that replaces files on the envelope (rotate, renew, install).
type rotateFlags struct {
	clusterFlags
	backupDir string
	dryRun    bool
	yes       bool
}

// addWriteFlags adds --backup-dir (copied: what is copied there; note: what the help adds) and --dry-run.
func (f *rotateFlags) addWriteFlags(fs *pflag.FlagSet, copied, note, dryRun string) {
	fs.StringVar(&f.backupDir, "backup-dir", "", "where "+copied+", in a <UTC time>/ subdirectory (default "+phases.DefaultBackupDir+", or the per-user state directory without root)"+note)
	fs.BoolVar(&f.dryRun, "dry-run", false, dryRun)
}

// options are where a rotation step runs.
func (f *rotateFlags) options(e *env, g *globals) phases.RotateOptions {
	return phases.RotateOptions{KubeconfigDir: f.kubeconfigDir, AuditLog: f.auditLog, BackupDir: f.backupDir,
		LockTimeout: f.lockTimeout, DryRun: f.dryRun, Now: e.now().UTC(), Log: g.log}
}

// addSteps adds the prepare, promote and prune commands of a staged rotation (shorts in that order), each
// running run with its step and binding the flags every step reads (addSource, addSession, the write flags);
// prune gets --yes. It returns them by step, for their own flags.
func (f *rotateFlags) addSteps(cmd *cobra.Command, shorts [3]string, yesHelp string, write [3]string, run func(ctx context.Context, step string) error) map[string]*cobra.Command {
	subs := map[string]*cobra.Command{}
	for i, step := range []string{"prepare", "promote", "prune"} {
		subs[step] = &cobra.Command{Use: step, Short: shorts[i], Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), step) }}
		f.addSource(subs[step].Flags())
		f.addSession(subs[step].Flags())
		f.addWriteFlags(subs[step].Flags(), write[0], write[1], write[2])
		cmd.AddCommand(subs[step])
	}
	subs["prune"].Flags().BoolVar(&f.yes, "yes", false, yesHelp)
	return subs
}

// groupAnnotation marks a command that only holds others: it has no flags of its own (groupCommand).
const groupAnnotation = "k8scrypto.dev/group"

// groupCommand is a command that only holds others: alone it prints its help.
func groupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	markGroup(cmd)
	cmd.AddCommand(subs...)
	return cmd
}

// markGroup marks cmd as a group: it gets none of the flags every command that runs has (-v, -q, -o, --settings).
func markGroup(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[groupAnnotation] = "true"
	return cmd
}

// apiserverFlags name a running kube-apiserver to ask which encryption config it has loaded.
type apiserverFlags struct {
	kubeconfig string
	timeout    time.Duration
	wait       bool
	waitFor    time.Duration
	endpoints  []string
}

func (f *apiserverFlags) add(fs *pflag.FlagSet, purpose string) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (admin.conf): "+purpose)
	fs.DurationVar(&f.timeout, "apiserver-timeout", 10*time.Second, "timeout for each request to kube-apiserver")
}

// addWait adds --wait for a step that needs the apiserver to have loaded the file first.
func (f *apiserverFlags) addWait(fs *pflag.FlagSet) {
	fs.BoolVar(&f.wait, "wait", false, "wait until the apiserver runs the file on disk (it reloads a changed file about once a minute), up to --wait-timeout")
	fs.DurationVar(&f.waitFor, "wait-timeout", 5*time.Minute, "how long --wait waits")
}

// addEndpoints adds --apiserver-endpoint for a command that asks every apiserver of the kubernetes
// Service which encryption config it runs.
func (f *apiserverFlags) addEndpoints(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.endpoints, "apiserver-endpoint", nil, `ENDPOINT=HOST:PORT (repeatable): reach the apiserver that the kubernetes Service lists as ENDPOINT (ADDRESS:PORT, as in "kubectl get endpointslices -l kubernetes.io/service-name=kubernetes") at HOST:PORT instead, still verifying its certificate for ADDRESS; for endpoints this machine cannot dial directly`)
}

func (f *apiserverFlags) apiServer() (phases.APIServer, error) {
	a := phases.APIServer{Kubeconfig: f.kubeconfig, Timeout: f.timeout}
	if f.wait {
		a.Wait = f.waitFor
	}
	var err error
	a.Connect, err = phases.ParseEndpointMappings(f.endpoints, f.kubeconfig)
	return a, err
}

// etcdFlags locate etcd for counting stored values.
type etcdFlags struct {
	endpoints         []string
	cacert, cert, key string
	prefix            string
	pageSize          int64
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

// encryptionFlags are the inputs of the encryption-config init phase.
type encryptionFlags struct {
	provider            string
	resources           []string
	allowPlaintextReads bool
	kmsName             string
	kmsEndpoint         string
	kmsTimeout          time.Duration
}

func (f *encryptionFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.provider, "encryption-provider", phases.DefaultEncryptionProvider, "encryption-at-rest provider: "+strings.Join(phases.EncryptionProviders(), ", ")+" (kms means KMS v2)")
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

// bundleFlags name the secret of an offline bundle: exactly one of a passphrase file and a key file.
type bundleFlags struct {
	passphraseFile, keyFile string
}

func (b *bundleFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&b.passphraseFile, "passphrase-file", "", "file whose first line is the passphrase (Argon2id: 3 passes, 64 MiB, 4 lanes)")
	fs.StringVar(&b.keyFile, "key-file", "", "file holding a raw 32-byte key as 64 hex digits")
}

func (b *bundleFlags) secret() (phases.BundleSecret, error) {
	if (b.passphraseFile == "") == (b.keyFile == "") {
		return phases.BundleSecret{}, usageError{fmt.Errorf("give exactly one of --passphrase-file and --key-file")}
	}
	return phases.ReadBundleSecret(b.passphraseFile, b.keyFile)
}
