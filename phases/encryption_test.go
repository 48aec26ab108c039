package phases

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
