package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCARotationSignerCopy: "ca rotate --ca ca" keeps the signer alone in ca-signer.crt from prepare to
// prune (kube-controller-manager refuses a --cluster-signing-cert-file of two certificates), says where the
// flag must point at each step, and lists the file's removal at prune, in the dry run too. prepare again
// on a prepared node writes nothing and says so (exit 0); after promote it is refused (exit 3).
func TestCARotationSignerCopy(t *testing.T) {
	c := newEncCase(t)
	kube := filepath.Join(c.dir, "kube")
	c.mustExec("init", "--cert-dir", c.certDir, "--kubeconfig-dir", kube, "--audit-log", c.audit,
		"--node-name", "node-a", "--advertise-address", "10.0.0.5")
	signer := filepath.Join(c.certDir, "ca-signer.crt")
	step := func(s string, extra ...string) string {
		t.Helper()
		code, out, stderr := c.rotate("ca", s, append([]string{"--ca", "ca", "--kubeconfig-dir", kube}, extra...)...)
		if code != 0 {
			t.Fatalf("ca rotate %s: exit %d\n%s", s, code, stderr)
		}
		return out
	}
	for _, s := range []string{"prepare", "promote"} {
		out := step(s)
		if !strings.Contains(out, "wrote "+signer+"\n") || !strings.Contains(out, "--cluster-signing-cert-file="+signer+" ") {
			t.Errorf("ca rotate %s: the output does not write %s or point kube-controller-manager at it:\n%s", s, signer, out)
		}
		if n := strings.Count(string(c.read(signer)), "BEGIN CERTIFICATE"); n != 1 {
			t.Errorf("after %s %s holds %d certificates, want 1", s, signer, n)
		}
		if s == "prepare" { // again: the node is prepared, nothing to write, exit 0
			if out := step(s); strings.Contains(out, "wrote ") || !strings.Contains(out, "unchanged: every file is at stage prepared already; nothing written\n") {
				t.Errorf("ca rotate prepare on a prepared node:\n%s", out)
			}
		}
	}
	// Out of order: prepare on a promoted node is refused, exit 3.
	if code, _, stderr := c.rotate("ca", "prepare", "--ca", "ca", "--kubeconfig-dir", kube); code != 3 || !strings.Contains(stderr, "ca rotate prepare refused") {
		t.Errorf("prepare after promote: exit %d\n%s", code, stderr)
	}
	out := step("prune", "--yes", "--dry-run")
	if !strings.Contains(out, "would remove "+signer+"\n") {
		t.Errorf("prune --dry-run does not list the removal of %s:\n%s", signer, out)
	}
	if _, err := os.Stat(signer); err != nil {
		t.Fatalf("the dry run removed %s: %v", signer, err)
	}
	out = step("prune", "--yes")
	if !strings.Contains(out, "removed "+signer+"\n") || !strings.Contains(out, "--cluster-signing-cert-file="+filepath.Join(c.certDir, "ca.crt")+" again") {
		t.Errorf("prune: the output does not say %s is removed and the flag goes back to ca.crt:\n%s", signer, out)
	}
	if _, err := os.Stat(signer); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after prune: %v, want it removed", signer, err)
	}
}
