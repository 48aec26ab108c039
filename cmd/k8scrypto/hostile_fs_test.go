package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// runWithin runs a command and fails the test if it has not returned within a generous bound: the
// property is "never blocks forever" (the command used to hang on a FIFO), not speed.
func (n *node) runWithin(now time.Time, args ...string) (int, string) {
	n.t.Helper()
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := n.run(now, args...)
		done <- result{code, stderr}
	}()
	select {
	case r := <-done:
		return r.code, r.stderr
	case <-time.After(time.Minute):
		n.t.Fatalf("%s is still running: it blocks on a FIFO", strings.Join(args, " "))
		return 0, ""
	}
}

// TestLinkedSubdirectoryNeverWritten: with pki/etcd a symbolic link to a directory outside the tree, init
// (fresh, so the etcd keys would be generated) and renew certs --force (which would rewrite them) fail
// naming the link and the fix, and write nothing into the link's target.
func TestLinkedSubdirectoryNeverWritten(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup bool
		args  []string
	}{
		{"init", false, []string{"init"}},
		{"renew certs --force", true, []string{"renew", "certs", "--force"}},
		// Everything is reused, so nothing is committed: only the mode tightening could follow the link.
		{"init --strict-permissions", true, []string{"init", "--strict-permissions"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			outside := filepath.Join(n.Dir, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			etcd := filepath.Join(n.CertDir, "etcd")
			if c.setup {
				initNode(n)
				// Move the real etcd files out and link to them: renew would rewrite them there.
				if err := os.Rename(etcd, filepath.Join(outside, "etcd")); err != nil {
					t.Fatal(err)
				}
				outside = filepath.Join(outside, "etcd")
			} else if err := os.MkdirAll(n.CertDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, etcd); err != nil {
				t.Fatal(err)
			}
			before := pkitest.MustSnapshot(t, outside)
			code, stderr := n.runWithin(setupTime.Add(time.Hour), c.args...)
			if code == 0 {
				t.Fatalf("exit 0 with a linked etcd/ directory: %s", stderr)
			}
			for _, w := range []string{etcd, "symbolic link", "real directory"} {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if d := pkitest.Diff(before, pkitest.MustSnapshot(t, outside)); len(d) > 0 {
				t.Errorf("the link's target changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// TestFIFOInputsDoNotHang: a FIFO in place of an input init reads (the kubeadm config it compares, a
// certificate a kubeconfig refers to, a certificate, the --config file) makes init fail at once naming the
// file, instead of blocking forever.
func TestFIFOInputsDoNotHang(t *testing.T) {
	for _, c := range []struct {
		name string
		// fifo returns the path to replace with a FIFO, after editing whatever refers to it.
		fifo func(n *node) string
	}{
		{"kubeadm-config.yaml", func(n *node) string { return filepath.Join(n.KubeDir, "kubeadm-config.yaml") }},
		{"certificate", func(n *node) string { return filepath.Join(n.CertDir, "apiserver.crt") }},
		{"--config", func(n *node) string { return n.Config }},
		{"kubeconfig client-certificate", func(n *node) string {
			conf := filepath.Join(n.KubeDir, "kubelet.conf")
			data, err := os.ReadFile(conf)
			if err != nil {
				n.t.Fatal(err)
			}
			// Point the user at a file, as a bootstrapped kubelet.conf does.
			fifo := filepath.Join(n.Dir, "kubelet-client-current.pem")
			var out []string
			for _, line := range strings.Split(string(data), "\n") {
				trimmed := strings.TrimSpace(line)
				switch {
				case strings.HasPrefix(trimmed, "client-certificate-data:"):
					out = append(out, strings.Replace(line, trimmed, "client-certificate: "+fifo, 1))
				case strings.HasPrefix(trimmed, "client-key-data:"):
					out = append(out, strings.Replace(line, trimmed, "client-key: "+fifo, 1))
				default:
					out = append(out, line)
				}
			}
			if err := os.WriteFile(conf, []byte(strings.Join(out, "\n")), 0o600); err != nil {
				n.t.Fatal(err)
			}
			return fifo
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			initNode(n)
			path := c.fifo(n)
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			code, stderr := n.runWithin(setupTime.Add(time.Hour), "init")
			if code == 0 {
				t.Fatalf("init exit 0 with a FIFO at %s", path)
			}
			for _, w := range []string{path, "named pipe"} {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
}
