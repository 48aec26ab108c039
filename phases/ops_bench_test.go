package phases_test

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// Benchmarks of the operations after init (issue 6): renewal of every certificate with and without key
// rotation and a renewal run with nothing due (check-expiration has its own in expiry_test.go). Each runs on a complete
// control-plane PKI (certs, sa and the five kubeconfigs) made once with fixture keys. Run with
//
//	go test -run x -bench 'Renew|EncryptionConfig' ./phases/

// opsBenchRenewable is what "renew certs" renews in such a PKI: seven leaves and the five kubeconfigs
// (kubelet.conf embeds its client certificate when k8scrypto wrote it).
const opsBenchRenewable = 12

// opsBenchPKI writes a full PKI with kubeconfigs under a new directory and returns its configuration and
// kubeconfig directory.
func opsBenchPKI(b *testing.B, alg pki.Algorithm) (*pki.Config, string) {
	b.Helper()
	root := b.TempDir()
	cfg := &pki.Config{
		CertDir:          filepath.Join(root, "pki"),
		NodeName:         "cp-1",
		AdvertiseAddress: net.ParseIP("10.0.0.5"),
		BindPort:         6443,
		ServiceSubnet:    pki.DefaultServiceSubnet,
		DNSDomain:        pki.DefaultDNSDomain,
		LocalEtcd:        true,
		Algorithm:        alg,
		CertValidity:     pki.DefaultCertValidity,
		CAValidity:       pki.DefaultCAValidity,
	}
	d := phases.NewData(cfg, pkitest.Now, pkitest.Keys(), nil)
	d.Rand = pkitest.Rand(1)
	d.KubeconfigDir = root
	runner := &phases.Runner{Phases: []phases.Phase{phases.CertsPhase(), phases.SAPhase(), phases.KubeconfigPhase()}}
	if err := runner.Run(context.Background(), d, phases.Selection{}); err != nil {
		b.Fatal(err)
	}
	return cfg, root
}

// opsBenchCopy copies the PKI at from (certificates under pki/, kubeconfigs at the top) to a fresh
// directory and returns the configuration pointing there.
func opsBenchCopy(b *testing.B, cfg *pki.Config, from, to string) *pki.Config {
	b.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), info.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, info.Mode().Perm())
	})
	if err != nil {
		b.Fatal(err)
	}
	c := *cfg
	c.CertDir = filepath.Join(to, "pki")
	return &c
}

// BenchmarkRenewAll renews every certificate (--force), with new keys from the production key source
// (rotate-keys, the default and what kubeadm does) or keeping the keys: one crash-safe commit each, with
// backups.
func BenchmarkRenewAll(b *testing.B) {
	for _, alg := range pkitest.Algorithms {
		for _, rotate := range []bool{true, false} {
			name := string(alg) + "/keep-keys"
			if rotate {
				name = string(alg) + "/rotate-keys"
			}
			b.Run(name, func(b *testing.B) {
				tmpl, tmplKC := opsBenchPKI(b, alg)
				work := b.TempDir()
				now := pkitest.Now.Add(24 * time.Hour)
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					dir := filepath.Join(work, strconv.Itoa(i))
					cfg := opsBenchCopy(b, tmpl, tmplKC, dir)
					b.StartTimer()
					res, err := phases.Renew(context.Background(), phases.RenewOptions{
						Cfg: cfg, KubeconfigDir: dir, Now: now, Force: true, RotateKeys: rotate,
						Rand: pkitest.Rand(uint64(i)), BackupRoot: filepath.Join(dir, "backups"), KeepBackups: 10,
					})
					if err != nil {
						b.Fatal(err)
					}
					if n := len(res.Renewed()); n != opsBenchRenewable || len(res.Problems()) > 0 {
						b.Fatalf("renewed %d certificates, want %d; problems: %v", n, opsBenchRenewable, res.Problems())
					}
				}
			})
		}
	}
}

// BenchmarkRenewNothingDue is the daily cron run: every certificate is read, checked against its key and
// CA, found not due, and nothing is written.
func BenchmarkRenewNothingDue(b *testing.B) {
	cfg, kcDir := opsBenchPKI(b, pki.RSA2048)
	now := pkitest.Now.Add(24 * time.Hour)
	backups := filepath.Join(b.TempDir(), "backups")
	for b.Loop() {
		res, err := phases.Renew(context.Background(), phases.RenewOptions{
			Cfg: cfg, KubeconfigDir: kcDir, Now: now, CheckSANs: true, RotateKeys: true,
			BackupRoot: backups, KeepBackups: 10,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range res.Certificates {
			if it.Action != phases.RenewNotDue {
				b.Fatalf("%s: %s (%s), want %s", it.Name, it.Action, it.Reason, phases.RenewNotDue)
			}
		}
	}
}

// BenchmarkEncryptionConfigPhase generates encryption-config.yaml through the phase: a new key, the
// apiserver's validation and the atomic 0600 write.
func BenchmarkEncryptionConfigPhase(b *testing.B) {
	root := b.TempDir()
	runner := &phases.Runner{Phases: []phases.Phase{phases.EncryptionConfigPhase()}}
	for i := 0; b.Loop(); i++ {
		cfg := &pki.Config{CertDir: filepath.Join(root, strconv.Itoa(i))}
		d := phases.NewData(cfg, pkitest.Now, nil, nil)
		if err := runner.Run(context.Background(), d, phases.Selection{}); err != nil {
			b.Fatal(err)
		}
		if res := d.Result(); len(res.Files) != 1 || res.Files[0].Action != phases.ActionCreated {
			b.Fatalf("result %+v, want one created file", res.Files)
		}
	}
}
