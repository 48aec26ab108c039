package phases

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// encData prepares a run of the encryption-config phase in a fresh certificate directory.
func encData(t *testing.T, certDir string, o EncryptionOptions, seed uint64) (*Data, *bytes.Buffer) {
	t.Helper()
	cfg, err := config.Load("", config.Overrides{CertDir: certDir, NodeName: "node-a", AdvertiseAddress: "10.0.0.5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := NewData(cfg.PKI, pkitest.Now, pkitest.Keys(), slog.New(slog.NewTextHandler(&logs, nil)))
	d.Rand = pkitest.Rand(seed)
	d.Encryption = o
	return d, &logs
}

func runEncPhase(t *testing.T, d *Data) error {
	t.Helper()
	r := &Runner{Phases: InitPhases()}
	return r.Run(context.Background(), d, Selection{Only: []string{"encryption-config"}})
}

func TestEncryptionConfigPhaseWritesALoadableFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	d, _ := encData(t, dir, EncryptionOptions{Provider: encryption.AESGCM, Resources: []string{"configmaps"}}, 1)
	if err := runEncPhase(t, d); err != nil {
		t.Fatal(err)
	}
	path := EncryptionConfigPath(dir)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", info.Mode().Perm())
	}
	res := d.Result().Files
	if len(res) != 1 || res[0].Action != ActionCreated || res[0].Type != "encryption-config" || !strings.HasPrefix(res[0].Subject, "aesgcm key-") {
		t.Fatalf("results = %+v", res)
	}
	data, _ := os.ReadFile(path)
	cfg, err := encryption.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	secret := cfg.Resources[0].Providers[0].AESGCM.Keys[0].Secret
	if strings.Contains(res[0].Subject, secret) {
		t.Fatal("the result shows the key")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loaded, err := encryptionconfig.LoadEncryptionConfig(ctx, path, false, "test")
	if err != nil {
		t.Fatalf("the apiserver's loader rejects the file: %v", err)
	}
	for _, gr := range []schema.GroupResource{{Resource: "secrets"}, {Resource: "configmaps"}} {
		tr := loaded.Transformers[gr]
		dc := value.DefaultContext("/registry/" + gr.Resource + "/default/x")
		stored, err := tr.TransformToStorage(ctx, []byte("hello"), dc)
		if err != nil || !bytes.HasPrefix(stored, []byte("k8s:enc:aesgcm:v1:key-")) {
			t.Fatalf("%s: stored %q, err %v", gr, stored, err)
		}
		back, _, err := tr.TransformFromStorage(ctx, stored, dc)
		if err != nil || string(back) != "hello" {
			t.Fatalf("%s: decrypted %q, err %v", gr, back, err)
		}
	}
}

func TestEncryptionConfigPhaseNeverRegenerates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	d, _ := encData(t, dir, EncryptionOptions{}, 1)
	if err := runEncPhase(t, d); err != nil {
		t.Fatal(err)
	}
	path := EncryptionConfigPath(dir)
	first, _ := os.ReadFile(path)

	t.Run("same inputs change nothing", func(t *testing.T) {
		d, logs := encData(t, dir, EncryptionOptions{}, 2)
		if err := runEncPhase(t, d); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
			t.Fatal("a re-run rewrote the file")
		}
		if r := d.Result().Files; r[0].Action != ActionReused {
			t.Fatalf("results = %+v", r)
		}
		if strings.Contains(logs.String(), "differs") {
			t.Errorf("warned about a difference that is not there: %s", logs)
		}
	})
	t.Run("different inputs keep the file and warn", func(t *testing.T) {
		d, logs := encData(t, dir, EncryptionOptions{Provider: encryption.AESCBC, AllowPlaintextReads: true, Resources: []string{"configmaps"}}, 3)
		if err := runEncPhase(t, d); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
			t.Fatal("different inputs rewrote the file")
		}
		for _, want := range []string{"provider is secretbox, not aescbc", "resources are secrets, not secrets,configmaps", "plaintext reads"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("warning lacks %q: %s", want, logs)
			}
		}
	})
	t.Run("a hand-broken file is an error and is not overwritten", func(t *testing.T) {
		broken := bytes.Replace(first, []byte("secretbox:"), []byte("secretbx:"), 1)
		os.WriteFile(path, broken, 0o600)
		d, _ := encData(t, dir, EncryptionOptions{}, 4)
		err := runEncPhase(t, d)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "secretbx") {
			t.Fatalf("err = %v", err)
		}
		if again, _ := os.ReadFile(path); !bytes.Equal(broken, again) {
			t.Fatal("a broken file was overwritten")
		}
	})
}

func TestEncryptionConfigPhaseDryRunAndBadOptions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	d, _ := encData(t, dir, EncryptionOptions{}, 1)
	d.DryRun = true
	if err := runEncPhase(t, d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(EncryptionConfigPath(dir)); err == nil {
		t.Fatal("a dry run wrote the file")
	}
	if r := d.Result().Files; len(r) != 1 || r[0].Action != ActionCreated {
		t.Fatalf("dry-run results = %+v", r)
	}

	d, _ = encData(t, dir, EncryptionOptions{Provider: encryption.KMS}, 1)
	if err := runEncPhase(t, d); err == nil || !strings.Contains(err.Error(), "--kms-endpoint") {
		t.Fatalf("kms without endpoint: err = %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a failed run created the certificate directory")
	}
}

func TestEncryptionConfigPhaseRunsAfterSA(t *testing.T) {
	names := (&Runner{Phases: InitPhases()}).Names()
	sa, enc := slices.Index(names, "sa"), slices.Index(names, "encryption-config")
	if sa < 0 || enc != sa+1 {
		t.Fatalf("phases = %v: encryption-config must follow sa", names)
	}
}

// TestRotateRepairsPlaintextConfig: on the disk, through the envelope: a config whose Secrets entry has
// identity first is a problem for status naming "encryption rotate prepare"; prepare then promote leave a
// secretbox provider with a new key first and identity behind it, and status has no problem left.
func TestRotateRepairsPlaintextConfig(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := EncryptionConfigPath(certDir)
	if err := os.WriteFile(path, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ro := RotateOptions{CertDir: certDir, KubeconfigDir: filepath.Join(dir, "kube"), AuditLog: filepath.Join(dir, "audit.log"), BackupDir: filepath.Join(dir, "backups"), Now: pkitest.Now}
	read := ReadOptions{Config: certDirOnly(certDir), KubeconfigDir: ro.KubeconfigDir, AuditLog: ro.AuditLog, Now: pkitest.Now}
	status := func() *EncryptionStatusResult {
		t.Helper()
		res, err := EncryptionStatus(t.Context(), read, APIServer{}, Etcd{})
		if res == nil {
			t.Fatal(err)
		}
		return res
	}
	if st := status(); len(st.Problems) != 1 || !strings.Contains(st.Problems[0], `"k8scrypto encryption rotate prepare --cert-dir `) {
		t.Fatalf("status of a plaintext config: problems %q", st.Problems)
	}
	if _, err := EncryptionRotate(t.Context(), "promote", EncryptionRotateOptions{RotateOptions: ro, Config: certDirOnly(certDir)}); err == nil {
		t.Fatal("promote before prepare was accepted")
	} else if re := new(RefusedError); !errors.As(err, &re) {
		t.Fatalf("promote before prepare: %v, want a refusal (exit 3)", err)
	}
	res, err := EncryptionRotate(t.Context(), "prepare", EncryptionRotateOptions{RotateOptions: ro, Config: certDirOnly(certDir), Rand: pkitest.Rand(3)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stage != encryption.StagePrepared || len(res.Changes) != 1 {
		t.Fatalf("prepare: stage %s, changes %+v", res.Stage, res.Changes)
	}
	if st := status(); len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "rotate promote") || strings.Contains(st.Problems[0], "rotate prepare") {
		t.Fatalf("status after prepare: problems %q (still plaintext until promote, which it names)", st.Problems)
	}
	ro.Now = ro.Now.Add(time.Minute) // a new backup directory
	if _, err := EncryptionRotate(t.Context(), "promote", EncryptionRotateOptions{RotateOptions: ro, Config: certDirOnly(certDir)}); err != nil {
		t.Fatal(err)
	}
	_, cfg, _, err := LoadEncryptionConfig(certDir)
	if err != nil {
		t.Fatal(err)
	}
	ps := cfg.Resources[0].Providers
	if len(ps) != 2 || ps[0].Secretbox == nil || ps[0].Secretbox.Keys[0].Name != res.Changes[0].Key.Name || ps[1].Identity == nil {
		t.Fatalf("after promote: %+v; want the new secretbox key first, identity second", ps)
	}
	if st := status(); len(st.Problems) != 0 {
		t.Errorf("status after the repair: problems %q", st.Problems)
	}
}
