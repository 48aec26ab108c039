package phases

import (
	"maps"
	"slices"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// What the command layer names in flags, help and output, from the packages that define it: the command
// layer imports phases only.

// KeySource makes the keys of a run (pki.KeySource); nil means fresh keys.
type KeySource = pki.KeySource

// Default locations, as kubeadm's and k8scrypto's documentation give them.
const (
	DefaultCertificateDir = pki.DefaultCertificateDir
	DefaultKubeconfigDir  = "/etc/kubernetes"
)

// The service-account key files (package sakeys names them).
const (
	SAKeyFile  = sakeys.KeyName
	SAPubFile  = sakeys.PubName
	SANextFile = sakeys.NextName
)

// The encryption configuration's file name and providers (package encryption names them).
const (
	EncryptionFileName        = encryption.FileName
	DefaultEncryptionProvider = encryption.Secretbox
	ProviderKMS               = encryption.KMS
	ProviderIdentity          = encryption.Identity
)

// EncryptionProviders lists the providers the encryption-config phase can write, the default first.
func EncryptionProviders() []string { return encryption.Providers }

// RenewableNames lists what "renew certs" takes: every leaf certificate and kubeconfig, in catalogue order.
func RenewableNames() []string {
	var names []string
	for _, s := range pki.Catalog() {
		if !s.IsCA() {
			names = append(names, s.Name)
		}
	}
	for _, k := range pki.Kubeconfigs() {
		names = append(names, k.FileName)
	}
	return names
}

// NewStepArgs renders the flags a suggested command line repeats: --cert-dir when it is not the default,
// --kubeconfig, and the etcd flags that were given.
func NewStepArgs(src ConfigSource, api APIServer, etcd Etcd) StepArgs {
	a := StepArgs{}
	if certDir := src.Flags.CertDir; certDir != "" && pki.AbsPath(certDir) != pki.DefaultCertificateDir {
		a.Cluster = " --cert-dir " + shellQuote(pki.AbsPath(certDir))
	}
	if api.Kubeconfig != "" {
		a.Kubeconfig = " --kubeconfig " + shellQuote(pki.AbsPath(api.Kubeconfig))
		eps := slices.Sorted(maps.Keys(api.Connect))
		for _, ep := range eps {
			a.Kubeconfig += " --apiserver-endpoint " + shellQuote(ep+"="+api.Connect[ep])
		}
	}
	if len(etcd.Endpoints) > 0 {
		a.Etcd = " --etcd-endpoints " + shellQuote(strings.Join(etcd.Endpoints, ","))
		for _, fl := range []struct{ name, v string }{{"etcd-cacert", etcd.CACert}, {"etcd-cert", etcd.Cert}, {"etcd-key", etcd.Key}} {
			if fl.v != "" {
				a.Etcd += " --" + fl.name + " " + shellQuote(pki.AbsPath(fl.v))
			}
		}
		if etcd.Prefix != "/registry" {
			a.Etcd += " --etcd-prefix " + shellQuote(etcd.Prefix)
		}
	}
	return a
}
