package phases

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestPlanInstallShared: on an empty node every shared file is staged with its mode; identical files are
// kept; a different CA on the node refuses the whole install (exit 3), naming the file and the way out.
func TestPlanInstallShared(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	files, err := certshare.Collect(certshare.Layout{CertDir: e.certDir})
	if err != nil {
		t.Fatal(err)
	}
	node := certshare.Layout{CertDir: filepath.Join(t.TempDir(), "pki")}
	staged, events, err := PlanInstallShared(files, node, pkitest.Now, "kube-system/kubeadm-certs")
	if err != nil {
		t.Fatal(err)
	}
	if len(staged) != 8 || len(events) != 8 { // no encryption config in this node: init ran certs, sa, kubeconfig
		t.Fatalf("staged %d files, %d events", len(staged), len(events))
	}
	modes := map[string]os.FileMode{}
	for _, f := range staged {
		rel, _ := filepath.Rel(node.CertDir, f.Path)
		modes[rel] = f.Mode
	}
	if modes["ca.key"] != 0o600 || modes["etcd/ca.key"] != 0o600 || modes["sa.key"] != 0o600 || modes["ca.crt"] != 0o644 || modes["sa.pub"] != 0o644 {
		t.Errorf("modes %v", modes)
	}
	if err := os.MkdirAll(filepath.Join(node.CertDir, "etcd"), 0o755); err != nil { // the session creates them
		t.Fatal(err)
	}
	if err := pki.Commit(node.CertDir, staged); err != nil {
		t.Fatal(err)
	}
	if again, _, err := PlanInstallShared(files, node, pkitest.Now, "x"); err != nil || len(again) != 0 {
		t.Errorf("a second install: %d files, %v; want nothing to do", len(again), err)
	}
	other := certshare.Files{"ca.crt": []byte("another cluster's CA"), "sa.key": files["sa.key"]}
	_, _, err = PlanInstallShared(other, node, pkitest.Now, "x")
	var conflict *SharedConflictError
	if !errors.As(err, &conflict) || conflict.ExitCode() != 3 || !strings.Contains(err.Error(), filepath.Join(node.CertDir, "ca.crt")) || !strings.Contains(err.Error(), "move its certificate directory away") {
		t.Errorf("a different CA on the node: %v", err)
	}
}

// An interrupted run may have left the shared files half-replaced (a new CA beside its old key): export and
// upload-certs take no lock to complete it, so they refuse (exit 3) and share nothing.
func TestShareRefusesAPendingReplacement(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	journal := filepath.Join(e.certDir, ".k8scrypto-journal.json")
	if err := os.WriteFile(journal, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := ConfigSource{File: e.cfgFile, Flags: config.Overrides{CertDir: e.certDir}, Hostname: func() (string, error) { return "cp-1", nil }}
	out := filepath.Join(e.dir, "shared.bundle")
	_, err := RunExport(ExportOptions{Config: src, Out: out, Secret: certshare.BundleSecret{Key: make([]byte, 32)}})
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.ExitCode() != 3 || !strings.Contains(err.Error(), journal) || !strings.Contains(err.Error(), "k8scrypto renew certs") {
		t.Errorf("export with a pending replacement: %v", err)
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("export wrote %s: %v", out, statErr)
	}
	_, err = RunUploadCerts(context.Background(), UploadCertsOptions{Config: src, Kubeconfig: filepath.Join(e.kubeDir, "admin.conf"), Key: strings.Repeat("ab", 32)})
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), journal) {
		t.Errorf("upload-certs with a pending replacement: %v", err)
	}
}
