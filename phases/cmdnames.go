package phases

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
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

// backupError adds to a backup root's error (pki.BackupRootError, pki.OpenBackupRootError) the flag that
// chooses another.
func backupError(err error) error {
	if e := new(pki.BackupRootError); errors.As(err, &e) {
		return fmt.Errorf("%w (give a --backup-dir this user can create and write)", err)
	}
	if e := new(pki.OpenBackupRootError); errors.As(err, &e) {
		return fmt.Errorf("%w or give another --backup-dir", err)
	}
	return err
}

// bundleError completes a bundle that cannot be opened (certshare.BundleError) with the command and flags
// that concern it.
func bundleError(err error) error {
	be := new(certshare.BundleError)
	if !errors.As(err, &be) {
		return err
	}
	switch be.Problem {
	case certshare.NotABundle:
		return fmt.Errorf(`%w (not a bundle written by "k8scrypto certs export")`, err)
	case certshare.SealedWithKey:
		return fmt.Errorf("%w: open it with --key-file, not --passphrase-file", err)
	case certshare.SealedWithPassphrase:
		return fmt.Errorf("%w: open it with --passphrase-file, not --key-file", err)
	}
	return err
}

// wrongKeyError names the flag that gave a key the kubeadm-certs Secret does not open with.
func wrongKeyError(err error) error {
	if errors.Is(err, certshare.ErrWrongKey) {
		return fmt.Errorf("%w (a wrong --certificate-key, or data altered or uploaded with another key)", err)
	}
	return err
}
