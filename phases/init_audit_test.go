package phases

import (
	"context"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// initNode is "k8scrypto init" on n: its configuration, its directories, its audit log.
func initNode(n *pkitest.Node) InitOptions {
	return InitOptions{
		Config:        ConfigSource{File: n.Config, Flags: config.Overrides{CertDir: n.CertDir}, Hostname: func() (string, error) { return "cp-1", nil }},
		KubeconfigDir: n.KubeDir, Now: pkitest.Now, Rand: pkitest.Rand(1), AuditLog: n.AuditLog,
	}
}

// runInit runs init on n, with the fault hook counting its file-system steps and, when abortAt is
// positive, stopping the run dead at that step (runtime.Goexit: deferred calls run, as the kernel closes
// files and releases the lock of a killed process, but nothing else). It returns the steps seen.
func runInit(t *testing.T, n *pkitest.Node, abortAt int) (steps int, err error) {
	t.Helper()
	restore := pki.SetFaultHook(func(pki.Op, string) error {
		if steps++; steps == abortAt {
			runtime.Goexit()
		}
		return nil
	})
	defer restore()
	done := make(chan error, 1)
	go func() {
		aborted := true
		defer func() {
			if aborted {
				done <- nil
			}
		}()
		_, err := Init(context.Background(), &Runner{Phases: InitPhases()}, Selection{}, initNode(n))
		aborted = false
		done <- err
	}()
	return steps, <-done
}

// TestInitKilledAfterCommitKeepsItsAuditLines: init records its audit lines in an intent before the commit,
// so a run that dies at any step after it (before appending to the audit log) loses none: the next run
// appends them, and every key and certificate in place then has an ok create line with its fingerprint.
func TestInitKilledAfterCommitKeepsItsAuditLines(t *testing.T) {
	n := pkitest.NewNode(t, pkitest.KubeadmConfig("encryptionAlgorithm: ECDSA-P256\n"))
	saved := n.Save()
	steps, err := runInit(t, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	stride := 1
	if testing.Short() {
		stride = 5
	}
	killedAfterCommit := 0
	for i := 1; i <= steps; i += stride {
		n.Reset(saved)
		runInit(t, n, i)
		caKey := filepath.Join(n.CertDir, "ca.key")
		if _, committed := FileIdentity(caKey); committed != "" {
			killedAfterCommit++
		}
		if _, err := runInit(t, n, 0); err != nil {
			t.Fatalf("killed at step %d/%d: the next run: %v", i, steps, err)
		}
		lines := pkitest.AuditLines(t, n.AuditLog)
		for _, p := range []string{caKey, filepath.Join(n.CertDir, "apiserver.crt"), filepath.Join(n.CertDir, "etcd", "ca.key"), filepath.Join(n.KubeDir, "admin.conf")} {
			serial, sha := FileIdentity(p)
			if !slices.ContainsFunc(lines, func(ev pki.AuditEvent) bool {
				return ev.Operation == pki.AuditCreate && ev.File == p && ev.Outcome == "ok" && ev.Serial == serial && ev.SHA256 == sha
			}) {
				t.Fatalf("killed at step %d/%d: no ok create line for %s in place (sha %s)", i, steps, p, sha)
			}
		}
	}
	if killedAfterCommit == 0 {
		t.Fatal("control: no kill landed after the commit")
	}
}
