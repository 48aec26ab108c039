package main

import (
	"path/filepath"
	"slices"
	"testing"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
)

// TestInitKilledAfterCommitKeepsItsAuditLines: init records its audit lines in an intent before the commit,
// so a run that dies at any step after it (before appending to the audit log) loses none: the next run
// appends them, and every key and certificate in place then has an ok create line with its fingerprint.
func TestInitKilledAfterCommitKeepsItsAuditLines(t *testing.T) {
	n := newNode(t)
	saved := n.Save()
	steps := n.countSteps(setupTime, "init")
	stride := 1
	if testing.Short() {
		stride = 5
	}
	killedAfterCommit := 0
	for i := 1; i <= steps; i += stride {
		n.Reset(saved)
		n.runFault(setupTime, i, nil, true, "init")
		caKey := filepath.Join(n.CertDir, "ca.key")
		_, committed := phases.FileIdentity(caKey)
		if committed != "" {
			killedAfterCommit++
		}
		n.mustRun(setupTime, "init")
		lines := auditLines(t, n.AuditLog)
		for _, p := range []string{caKey, filepath.Join(n.CertDir, "apiserver.crt"), filepath.Join(n.CertDir, "etcd", "ca.key"), filepath.Join(n.KubeDir, "admin.conf")} {
			serial, sha := phases.FileIdentity(p)
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
