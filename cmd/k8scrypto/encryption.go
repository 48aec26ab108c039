package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/phases"
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

func newEncryptionCommand(e *env, g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "encryption",
		Short: "Inspect, rotate and re-encrypt with the encryption-at-rest configuration",
		Long: `Inspect and rotate the kube-apiserver's encryption-at-rest configuration, <cert-dir>/` + phases.EncryptionFileName + `,
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
