package phases

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEncryptionConfigPhaseRefusesShortAESKey: init does not adopt an existing file whose aescbc key is 16
// bytes (the apiserver accepts it, k8scrypto manages AES-256 only): the error names the file, the provider,
// the key and the fix, never the secret, and the file is left as it was.
func TestEncryptionConfigPhaseRefusesShortAESKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	data := []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: legacy\n        secret: " + secret + "\n  - identity: {}\n")
	path := EncryptionConfigPath(dir)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, _ := encData(t, dir, EncryptionOptions{}, 1)
	err := runEncPhase(t, d)
	if err == nil {
		t.Fatal("init adopted a 16-byte aescbc key")
	}
	for _, w := range []string{path, "aescbc", `"legacy"`, "16 bytes", "AES-256", "encryption rotate prepare"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error quotes the secret: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Error("the file changed")
	}
}
