// Package phasestest holds the checks of a node's files that the crash tests of phases (against Session)
// and of cmd/k8scrypto (the real binary killed with SIGKILL) share: every key pair consistent and chained,
// and no CA, service-account or encryption key lost or changed that a command does not exist to change.
package phasestest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// protectedFiles are the files whose loss or change loses a cluster's identity or data: CA certificates and
// keys, the service-account keys and the encryption config. Relative to the node's directory.
var ProtectedFiles = []string{
	"pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key", "pki/etcd/ca.crt", "pki/etcd/ca.key",
	"pki/sa.key", "pki/sa.pub", "pki/" + sakeys.NextName, "pki/" + encryption.FileName,
}

// CheckConsistent checks whatever key material exists in a node's directories: each certificate with its key, matching and chaining
// to its CA; each kubeconfig's client certificate with its key and chaining to ca.crt, its CA data ca.crt;
// sa.key's public key in sa.pub (sakeys.Read); the encryption config valid. With complete set, every file of
// a control-plane node must exist.
func CheckConsistent(t testing.TB, label string, n *pkitest.Node, now time.Time, complete bool) {
	t.Helper()
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	cfg := phases.DefaultPKIConfig(n.CertDir)
	cas := map[string]*pki.CertSpec{}
	for _, spec := range cfg.Certs() {
		if spec.IsCA() {
			cas[spec.Name] = &spec
		}
	}
	loadCA := func(name string) []byte {
		data, _ := os.ReadFile(cas[name].CertPath(n.CertDir))
		return data
	}
	for _, spec := range cfg.Certs() {
		crt, key := spec.CertPath(n.CertDir), spec.KeyPath(n.CertDir)
		hc, hk := exists(crt), exists(key)
		if !hc && !hk && !complete {
			continue
		}
		if !hc || !hk {
			t.Errorf("%s: %s: certificate present %v, key present %v", label, spec.Name, hc, hk)
			continue
		}
		cert, chain, err := phases.LoadCert(crt)
		if err != nil {
			t.Errorf("%s: %v", label, err)
			continue
		}
		k, err := phases.LoadKey(key)
		if err != nil {
			t.Errorf("%s: %v", label, err)
			continue
		}
		if !pki.KeyMatchesCert(k, cert) {
			t.Errorf("%s: %s does not match %s", label, key, crt)
		}
		if !spec.IsCA() {
			ca, _, err := pki.ParseCertChain(loadCA(spec.CAName))
			if err != nil {
				t.Errorf("%s: %s: CA %s: %v", label, spec.Name, spec.CAName, err)
			} else if err := pki.VerifyChain(cert, chain, ca, now); err != nil {
				t.Errorf("%s: %s does not chain to %s: %v", label, spec.Name, spec.CAName, err)
			}
		}
	}
	ca, _, caErr := pki.ParseCertChain(loadCA("ca"))
	for _, spec := range pki.Kubeconfigs() {
		p := spec.Path(n.KubeDir)
		if !exists(p) {
			if complete {
				t.Errorf("%s: %s missing", label, spec.FileName)
			}
			continue
		}
		kc, err := phases.LoadKubeconfig(p)
		if err != nil {
			t.Errorf("%s: %v", label, err)
			continue
		}
		if !pki.KeyMatchesCert(kc.ClientKey, kc.ClientCert) {
			t.Errorf("%s: %s: client key does not match its certificate", label, spec.FileName)
		}
		if caErr != nil || len(kc.CAs) == 0 || !pki.SameCert(kc.CAs[0], ca) {
			t.Errorf("%s: %s: CA data is not ca.crt", label, spec.FileName)
		} else if err := pki.VerifyChain(kc.ClientCert, kc.ClientChain, ca, now); err != nil {
			t.Errorf("%s: %s: client certificate does not chain to ca.crt: %v", label, spec.FileName, err)
		}
	}
	if exists(filepath.Join(n.CertDir, "sa.key")) || exists(filepath.Join(n.CertDir, "sa.pub")) || complete {
		if _, err := sakeys.Read(n.CertDir); err != nil {
			t.Errorf("%s: %v", label, err)
		}
	}
	if p := phases.EncryptionConfigPath(n.CertDir); exists(p) || complete {
		if _, _, err := encryption.Load(p); err != nil {
			t.Errorf("%s: %v", label, err)
		}
	}
	if complete && !exists(filepath.Join(n.KubeDir, phases.KubeadmConfigFileName)) {
		t.Errorf("%s: %s missing", label, phases.KubeadmConfigFileName)
	}
}

// CheckProtected fails when a protected file that existed in before is gone or changed, unless the command
// may change it.
func CheckProtected(t testing.TB, label string, n *pkitest.Node, before pkitest.Snapshot, mayChange []string) {
	t.Helper()
	after := n.Snap()
	for _, p := range ProtectedFiles {
		b, had := before[p]
		if !had || slices.Contains(mayChange, p) {
			continue
		}
		if a, ok := after[p]; !ok {
			t.Errorf("%s: %s was lost", label, p)
		} else if a.SHA256 != b.SHA256 {
			t.Errorf("%s: %s was changed", label, p)
		}
	}
}
