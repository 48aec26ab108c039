package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
)

// newUploadCertsCommand is "init phase upload-certs": not one of init's phases (it needs a running cluster),
// as kubeadm's runs only with --upload-certs.
func newUploadCertsCommand(e *env, g *globals) *cobra.Command {
	f := &clusterFlags{}
	var kubeconfig, key string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "upload-certs",
		Short: "Store the cluster's shared keys in kube-system/kubeadm-certs, as kubeadm does, for joining control planes",
		Long: `Store the files every control-plane node shares (the three CAs, sa.key/sa.pub, and the encryption config)
in the kube-system/kubeadm-certs Secret exactly as "kubeadm init phase upload-certs --upload-certs" does: each
entry sealed with AES-256-GCM under the certificate key, the Secret owned by a bootstrap token that expires in
2 hours, readable by bootstrapping nodes. An unmodified "kubeadm join --control-plane --certificate-key KEY"
downloads it; "k8scrypto join phase download-certs" also installs the encryption config, which kubeadm leaves
out. Without --certificate-key a key is made and printed once, on stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := phases.RunUploadCerts(cmd.Context(), phases.UploadCertsOptions{Config: f.source(e), Kubeconfig: kubeconfig, Key: key, RotateOptions: phases.RotateOptions{Now: e.now().UTC(), Log: g.log, DryRun: dryRun}, Rand: e.rand})
			return g.show(e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of a cluster administrator (required), e.g. /etc/kubernetes/admin.conf")
	cmd.Flags().StringVar(&key, "certificate-key", "", "64 hex digits to seal the Secret with (kubeadm's --certificate-key); default: a new one, printed once")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "send nothing and print no key; check and seal the files the Secret would hold")
	return cmd
}

func newJoinCommand(e *env, g *globals) *cobra.Command {
	join := markGroup(&cobra.Command{Use: "join", Short: "Phases of a node joining the control plane", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }})
	phase := markGroup(&cobra.Command{Use: "phase", Short: "Run one phase of join", Args: knownSubcommand("phase"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }})
	f := &installFlags{}
	dl := &cobra.Command{
		Use:   "download-certs",
		Short: "Install the cluster's shared keys from kube-system/kubeadm-certs (kubeadm's upload or k8scrypto's)",
		Long: `Read kube-system/kubeadm-certs, open it with --certificate-key, check that its cluster CA is the one
--ca-cert-hash pins (kubeadm's --discovery-token-ca-cert-hash form, sha256:HEX), and write every shared file
(the CAs, sa.key/sa.pub, the encryption config when the upload carried it) in one crash-safe transaction with
audit lines. Files already on the node with the same content are kept; a different CA or key refuses the
whole install (exit 3). Then run "k8scrypto init" on this node for its own certificates and kubeconfigs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.kubeconfig == "" {
				return usageError{fmt.Errorf("--kubeconfig is required: a kubeconfig that can read kube-system/kubeadm-certs")}
			}
			res, err := phases.InstallShared(cmd.Context(), phases.InstallSharedOptions{Config: f.source(e), RotateOptions: f.options(e, g),
				Kubeconfig: f.kubeconfig, Key: f.key, Pins: f.pins})
			return g.show(e.stdout, res, err)
		},
	}
	f.addSource(dl.Flags())
	f.addSession(dl.Flags())
	dl.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig that can read kube-system/kubeadm-certs (required)")
	dl.Flags().StringVar(&f.key, "certificate-key", "", "the key the Secret was sealed with, 64 hex digits (required)")
	dl.Flags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; download, open and check the files, and list those it would write and keep and the audit log it would append to")
	dl.Flags().StringSliceVar(&f.pins, "ca-cert-hash", nil, "sha256:HEX pin of the cluster CA's public key (required), as kubeadm's --discovery-token-ca-cert-hash")
	phase.AddCommand(dl)
	join.AddCommand(phase)
	return join
}

type installFlags struct {
	rotateFlags
	kubeconfig, key string
	pins            []string
	bundle          bundleFlags
}

func newCertsExportCommand(e *env, g *globals) *cobra.Command {
	f := &clusterFlags{}
	var out string
	var b bundleFlags
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Seal the cluster's shared keys into an offline bundle file for a joining control plane",
		Long: `Write the files every control-plane node shares (the three CAs, sa.key/sa.pub, the encryption config) into a
new file (0600), sealed with XChaCha20-Poly1305 under a raw key (--key-file) or a passphrase (--passphrase-file,
through Argon2id). The file is versioned and authenticated as a whole: "k8scrypto certs import" refuses a
tampered, truncated or wrongly keyed bundle and writes nothing. An existing --out is never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{fmt.Errorf("--out is required")}
			}
			secret, err := b.secret()
			if err != nil {
				return err
			}
			res, err := phases.RunExport(phases.ExportOptions{Config: f.source(e), Out: out, Secret: secret, Rand: e.rand, Log: g.log})
			return g.show(e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	cmd.Flags().StringVar(&out, "out", "", "the bundle file to create (required; never overwritten)")
	b.add(cmd.Flags())
	return cmd
}

func newCertsImportCommand(e *env, g *globals) *cobra.Command {
	f := &installFlags{}
	var in string
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Install the cluster's shared keys from an offline bundle made by \"k8scrypto certs export\"",
		Long: `Open a bundle made by "k8scrypto certs export" with --key-file or --passphrase-file and install its files as
"join phase download-certs" does: checked as a set (and against --ca-cert-hash when given), written in one
crash-safe transaction with audit lines, refusing (exit 3) to replace a different CA or key on the node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usageError{fmt.Errorf("--in is required")}
			}
			secret, err := f.bundle.secret()
			if err != nil {
				return err
			}
			res, err := phases.InstallShared(cmd.Context(), phases.InstallSharedOptions{Config: f.source(e), RotateOptions: f.options(e, g),
				Bundle: in, Secret: secret, Pins: f.pins})
			return g.show(e.stdout, res, err)
		},
	}
	f.addSource(cmd.Flags())
	f.addSession(cmd.Flags())
	cmd.Flags().StringVar(&in, "in", "", "the bundle file (required)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "write nothing; open and check the bundle, and list the files it would write and keep and the audit log it would append to")
	cmd.Flags().StringSliceVar(&f.pins, "ca-cert-hash", nil, "sha256:HEX pin of the cluster CA's public key; when given, a bundle of another cluster is refused")
	f.bundle.add(cmd.Flags())
	return cmd
}
