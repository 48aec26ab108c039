package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
)

func newCertsCommand(e *env, g *globals) *cobra.Command {
	// kubeadm's spelling, "certs renew", for the same command.
	renew := newRenewCertsCommand(e, g)
	renew.Use = "renew [all|NAME...]"
	renew.Short = `Renew the certificates that are due (the same as "k8scrypto renew certs")`
	return groupCommand("certs", "Certificate commands", newCheckExpirationCommand(e, g), renew, newCertsExportCommand(e, g), newCertsImportCommand(e, g))
}

type expirationFlags struct {
	configFile    string
	certDir       string
	kubeconfigDir string
	failWithin    time.Duration
	metricsFile   string
	auditLog      string
	lockTimeout   time.Duration
}

func newCheckExpirationCommand(e *env, g *globals) *cobra.Command {
	f := &expirationFlags{}
	cmd := &cobra.Command{
		Use:   "check-expiration",
		Short: "Show when every certificate, kubeconfig client certificate and CA expires",
		Long: `Show the expiry of every leaf certificate, kubeconfig client certificate and CA, with kubeadm's names,
kubeadm's table and its residual time. EXTERNALLY MANAGED means the signing CA's key is absent, so
k8scrypto cannot renew the certificate. kubelet.conf is listed too; when it references the kubelet's
rotated client certificate, that certificate is shown.

It only reads: no configuration unless --config is given (kubeadm's defaults decide the names; with
external etcd pass --config so the etcd certificates are not expected), and no lock, except after an
interrupted k8scrypto run: like every command it first completes or undoes that run's replacement, under
the lock, recorded in the audit log. A user who cannot (a monitoring user without write access to the
certificate directory) gets the report, a message naming the command that finishes the replacement
("k8scrypto renew certs" as root), and exit status 1: until then the files may be a mix of old and new.

--fail-within makes it a monitoring check: the exit status is 1 when a certificate or CA expires within
the duration (or has expired), a file a control-plane node must have is missing, or a file is unreadable.
--metrics-file writes the same facts in the Prometheus text format, atomically, for node-exporter's
textfile collector.`,
		Example: `  k8scrypto certs check-expiration
  k8scrypto certs check-expiration -o json
  k8scrypto certs check-expiration --fail-within 720h --metrics-file /var/lib/node_exporter/textfile/k8scrypto.prom`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runCheckExpiration(e, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configFile, "config", "", "kubeadm configuration file (for the certificate directory and external etcd)")
	fl.StringVar(&f.certDir, "cert-dir", "", "directory of certificates and keys (default from the config, else "+phases.DefaultCertificateDir+")")
	fl.StringVar(&f.kubeconfigDir, "kubeconfig-dir", phases.DefaultKubeconfigDir, "directory of kubeconfig files")
	fl.DurationVar(&f.failWithin, "fail-within", 0, "exit 1 when anything expires within this duration, is missing or unreadable (e.g. 720h)")
	fl.StringVar(&f.metricsFile, "metrics-file", "", "also write Prometheus text exposition to this file (atomically)")
	fl.StringVar(&f.auditLog, "audit-log", "", "where recovering from an interrupted run is recorded (default "+phases.DefaultAuditLog+", or the per-user state directory without root)")
	fl.DurationVar(&f.lockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another k8scrypto run holding the lock (only after an interrupted run)")
	return cmd
}

func runCheckExpiration(e *env, g *globals, f *expirationFlags) error {
	if f.failWithin < 0 {
		return usageError{fmt.Errorf("--fail-within: invalid value %s: must not be negative", f.failWithin)}
	}
	info, err := phases.ExpirationReport(phases.ExpirationOptions{
		ReadOptions: phases.ReadOptions{
			Config:        phases.ConfigSource{File: f.configFile, Flags: config.Overrides{CertDir: f.certDir}, Hostname: e.hostname},
			KubeconfigDir: f.kubeconfigDir, AuditLog: f.auditLog, LockTimeout: f.lockTimeout, Now: e.now(), Log: g.log,
		},
		FailWithin: f.failWithin, MetricsFile: f.metricsFile,
	})
	perr := report(g, e.stdout, info, err)
	if info != nil {
		for _, w := range info.Warnings {
			g.log.Warn(w)
		}
	}
	return perr
}
