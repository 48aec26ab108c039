package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// scenario is one operation timed on both tools.
type scenario struct {
	name string
	// algorithm is the configuration's encryptionAlgorithm ("" is kubeadm's default, RSA-2048).
	algorithm string
	// needsPKI runs the operation on a copy of the kubeadm-made fixture instead of an empty directory.
	needsPKI bool
	// kubeadm is kubeadm's command line, run chrooted into root; nil when kubeadm has no counterpart.
	kubeadm func(root string) []string
	// k8scrypto is one or more command lines run one after the other; their times add up.
	k8scrypto func(root string) [][]string
	// verify checks, untimed, that a run did the work, and returns the files it wrote (relative to root),
	// which must be the same for both tools.
	verify func(root, fixture string) ([]string, error)
	target target
}

// target is what issue 6 asks of k8scrypto for an operation; every operation must also peak under maxRSS.
type target struct {
	maxWall  time.Duration // 0: none
	maxRatio float64       // k8scrypto/kubeadm median; 0: none
}

// maxRSSKiB is the memory target of every command: under 40 MiB.
const maxRSSKiB = 40 * 1024

// Paths inside a run's root: kubeadm sees them from its chroot, k8scrypto gets them by flag.
const (
	pkiDir        = "etc/kubernetes/pki"
	kubeconfigDir = "etc/kubernetes"
)

// pkiKeys is how many keys a full PKI has: ten certificates and the service-account key.
const pkiKeys = 11

func scenarios() []scenario {
	var out []scenario
	for _, alg := range []struct {
		name   string
		config string
		pem    string
		target target
	}{
		{"RSA-2048", "", "RSA PRIVATE KEY", target{maxRatio: 0.5}},
		{"ECDSA-P256", "ECDSA-P256", "EC PRIVATE KEY", target{maxWall: 30 * time.Millisecond}},
	} {
		verify := generated(alg.pem)
		out = append(out,
			scenario{
				name: "full PKI " + alg.name + ": certs all + sa (2 runs)", algorithm: alg.config,
				kubeadm: kubeadmArgs("init", "phase", "certs", "all"),
				k8scrypto: func(root string) [][]string {
					return [][]string{
						k8sArgs(root, "init", "phase", "certs", "all", "--audit-log", filepath.Join(root, "audit.log")),
						k8sArgs(root, "init", "phase", "sa", "--audit-log", filepath.Join(root, "audit.log")),
					}
				},
				verify: verify, target: alg.target,
			},
			scenario{
				name: "full PKI " + alg.name + ": init certs+sa (1 run)", algorithm: alg.config,
				kubeadm: kubeadmArgs("init", "phase", "certs", "all"),
				k8scrypto: func(root string) [][]string {
					return [][]string{k8sArgs(root, "init", "--skip-phases", "encryption-config,kubeconfig,kubeadm-config",
						"--kubeconfig-dir", filepath.Join(root, kubeconfigDir), "--audit-log", filepath.Join(root, "audit.log"))}
				},
				verify: verify, target: alg.target,
			},
		)
	}
	out = append(out,
		scenario{
			// No kubeadm counterpart: it splits the ECDSA run into start-up and planning (this row) and keys,
			// signing and the crash-safe write (the difference to the row above).
			name: "full PKI ECDSA-P256: init --dry-run (no keys, no writes)", algorithm: "ECDSA-P256",
			k8scrypto: func(root string) [][]string {
				return [][]string{k8sArgs(root, "init", "--dry-run", "--skip-phases", "encryption-config,kubeconfig,kubeadm-config",
					"--kubeconfig-dir", filepath.Join(root, kubeconfigDir))}
			},
			verify: changed,
		},
		scenario{
			name: "certs check-expiration", needsPKI: true,
			kubeadm: kubeadmArgs("certs", "check-expiration"),
			k8scrypto: func(root string) [][]string {
				return [][]string{k8sArgs(root, "certs", "check-expiration", "--kubeconfig-dir", filepath.Join(root, kubeconfigDir))}
			},
			verify: changed,
			target: target{maxWall: 20 * time.Millisecond, maxRatio: 0.3},
		},
		scenario{
			// kubeadm has no conditional renewal; what it needs to learn that nothing is due is check-expiration.
			name: "renew, nothing due (vs kubeadm check-expiration)", needsPKI: true,
			kubeadm:   kubeadmArgs("certs", "check-expiration"),
			k8scrypto: renewArgs(),
			verify:    changed,
			target:    target{maxWall: 20 * time.Millisecond, maxRatio: 0.3},
		},
		scenario{
			name: "renew all, forced, new keys (renew certs --force)", needsPKI: true,
			kubeadm:   kubeadmArgs("certs", "renew", "all"),
			k8scrypto: renewArgs("--force"),
			verify:    changed,
		},
		scenario{
			name:      "version",
			kubeadm:   func(string) []string { return []string{"version", "-o", "short"} },
			k8scrypto: func(string) [][]string { return [][]string{{"version"}} },
			target:    target{maxWall: 10 * time.Millisecond},
		},
	)
	return out
}

func kubeadmArgs(args ...string) func(string) []string {
	return func(string) []string { return append(slices.Clone(args), "--config", "/kubeadm.yaml") }
}

// k8sArgs is a k8scrypto command line on the run's configuration and certificate directory.
func k8sArgs(root string, args ...string) []string {
	return append(slices.Clone(args), "--config", filepath.Join(root, "kubeadm.yaml"), "--cert-dir", filepath.Join(root, pkiDir))
}

func renewArgs(extra ...string) func(string) [][]string {
	return func(root string) [][]string {
		args := append([]string{"renew", "certs"}, extra...)
		args = append(args, "--kubeconfig-dir", filepath.Join(root, kubeconfigDir),
			"--backup-dir", filepath.Join(root, "backups"), "--audit-log", filepath.Join(root, "audit.log"))
		return [][]string{k8sArgs(root, args...)}
	}
}

// generated checks a full PKI was written with keys of the expected PEM type and lists its files.
func generated(keyPEM string) func(root, _ string) ([]string, error) {
	return func(root, _ string) ([]string, error) {
		files, err := listFiles(root, pkiDir)
		if err != nil {
			return nil, err
		}
		if len(files) != 2*pkiKeys {
			return nil, fmt.Errorf("%d files under %s, want %d: %s", len(files), pkiDir, 2*pkiKeys, strings.Join(files, " "))
		}
		key, err := os.ReadFile(filepath.Join(root, pkiDir, "apiserver.key")) // #nosec G304 -- the run's own temporary tree
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(key, []byte("BEGIN "+keyPEM)) {
			return nil, fmt.Errorf("%s/apiserver.key is not a %s", pkiDir, keyPEM)
		}
		return files, nil
	}
}

// changed lists the files under etc/kubernetes that differ from the fixture (all of them when the run
// started empty).
func changed(root, fixture string) ([]string, error) {
	files, err := listFiles(root, kubeconfigDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		now, err := os.ReadFile(filepath.Join(root, f)) // #nosec G304 -- the run's own temporary tree
		if err != nil {
			return nil, err
		}
		before, err := os.ReadFile(filepath.Join(fixture, f)) // #nosec G304 -- the benchmark's fixture
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err != nil || !bytes.Equal(now, before) {
			out = append(out, f)
		}
	}
	return out, nil
}

// listFiles lists the regular files under root/dir, relative to root, leaving out dot files (k8scrypto's
// lock); a missing dir has none.
func listFiles(root, dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll
		}
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		out = append(out, rel)
		return err
	})
	slices.Sort(out)
	return out, err
}
