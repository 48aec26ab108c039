package main

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// TestInterruptExits130: SIGINT or SIGTERM while a writing command waits for the certificate directory's
// lock (held here, as by a slow cron run) stops it at once with exit 130 and one line on stderr, and it
// changes nothing.
func TestInterruptExits130(t *testing.T) {
	// The test's own registration keeps a signal that arrives before the command's from ending the test
	// binary; the command still gets every signal sent after it registered.
	caught := make(chan os.Signal, 64)
	signal.Notify(caught, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(caught)

	c := newEncCase(t)
	kube := filepath.Join(c.dir, "kube")
	c.mustExec("init", "--cert-dir", c.certDir, "--kubeconfig-dir", kube, "--audit-log", c.audit,
		"--node-name", "node-a", "--advertise-address", "10.0.0.5")
	before := digestTree(t, c.dir)
	lock, err := pki.AcquireLock(context.Background(), c.certDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Release() }()

	common := []string{"--cert-dir", c.certDir, "--kubeconfig-dir", kube, "--audit-log", c.audit, "--lock-timeout", "10m"}
	backups := []string{"--backup-dir", c.backups}
	for _, tc := range []struct {
		name string
		args []string
		sig  syscall.Signal
	}{
		{"init", []string{"init", "--node-name", "node-a", "--advertise-address", "10.0.0.5"}, syscall.SIGINT},
		{"renew certs", append([]string{"renew", "certs", "--force"}, backups...), syscall.SIGTERM},
		{"sa rotate prepare", append([]string{"sa", "rotate", "prepare"}, backups...), syscall.SIGINT},
		{"encryption rotate prepare", append([]string{"encryption", "rotate", "prepare"}, backups...), syscall.SIGINT},
		{"ca renew", append([]string{"ca", "renew"}, backups...), syscall.SIGTERM},
		{"ca rotate prepare", append([]string{"ca", "rotate", "prepare", "--ca", "etcd-ca"}, backups...), syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				code           int
				stdout, stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, stdout, stderr := c.exec(append(tc.args, common...)...)
				done <- result{code, stdout, stderr}
			}()
			// Signal until the command returns: the ones before it listens are the test's.
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case r := <-done:
					if r.code != exitInterrupted {
						t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, exitInterrupted, r.stdout, r.stderr)
					}
					if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "error: interrupted") {
						t.Errorf("stderr is not one line saying it was interrupted:\n%s", r.stderr)
					}
					if after := digestTree(t, c.dir); after != before {
						t.Errorf("the interrupted run changed the files")
					}
					return
				case <-tick.C:
					if err := syscall.Kill(os.Getpid(), tc.sig); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// digestTree hashes every path, mode and content under dir.
func digestTree(t *testing.T, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Write([]byte(path + "\x00" + info.Mode().String() + "\x00"))
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
