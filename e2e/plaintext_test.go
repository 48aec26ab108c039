package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPlaintextConfigRepairedLive (issue 15): an encryption config turned to identity by hand makes the
// apiserver store Secrets in plaintext. "encryption status" says so first and exits 1, naming "encryption
// rotate prepare"; following its commands (prepare, promote, reencrypt) on the running apiserver leaves every
// Secret encrypted under the new key and readable, and status with nothing left to report (exit 0).
func TestPlaintextConfigRepairedLive(t *testing.T) {
	t.Parallel() // own control plane; mostly waits for the apiserver's reload poll
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	kubeconfig := cp.adminKubeconfig(t)
	if n := sum(rawSecretPrefixes(ctx, t, cp)); n != 0 {
		t.Fatalf("a fresh control plane stores %d Secrets; this test turns encryption off, which would make them unreadable", n)
	}
	waitLoaded := func() {
		t.Helper()
		data := readFile(t, cp.EncryptionConfig())
		waitEncryptionConfigLoaded(ctx, t, cp, admin, encryptionState{Hash: fmt.Sprintf("sha256:%x", sha256.Sum256(data))})
	}
	plain := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n"
	if err := os.WriteFile(cp.EncryptionConfig(), []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLoaded()

	ns := createNamespace(ctx, t, admin, "e2e-plaintext-")
	written := map[string]string{}
	write := func(stage string) {
		t.Helper()
		for i := range 3 {
			name := fmt.Sprintf("%s-%d", stage, i)
			val := "secret-" + ns + "-" + name
			if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": val}}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("writing Secret %s: %v", name, err)
			}
			written[name] = val
		}
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	write("plain")
	expectStoredUnder(ctx, t, cp, ns, "plain-0", "k8s\x00") // protobuf, unencrypted

	stdout, _, err := cp.run(t, "encryption", "status", "--cert-dir", cp.CertDir)
	if code := exitCode(err); code != 1 || !strings.HasPrefix(stdout, "PROBLEM: PLAINTEXT: secrets are written unencrypted") || !strings.Contains(stdout, "k8scrypto encryption rotate prepare") {
		t.Fatalf("status of a plaintext config: exit %d\n%s", code, stdout)
	}

	if _, _, err := cp.run(t, "encryption", "rotate", "prepare", "--cert-dir", cp.CertDir); err != nil {
		t.Fatalf("rotate prepare: %v", err)
	}
	waitLoaded()
	write("prepared")
	expectStoredUnder(ctx, t, cp, ns, "prepared-0", "k8s\x00") // identity still writes: nothing encrypted before every apiserver can read it

	if _, _, err := cp.run(t, "encryption", "rotate", "promote", "--cert-dir", cp.CertDir, "--kubeconfig", kubeconfig, "--wait"); err != nil {
		t.Fatalf("rotate promote: %v", err)
	}
	st := readEncryptionConfig(t, cp) // fails unless a local-key provider is first now
	if st.Provider != "secretbox" || len(st.Keys) != 1 {
		t.Fatalf("after promote: %+v, want one secretbox key first", st)
	}
	waitLoaded()
	write("promoted")
	expectStoredUnder(ctx, t, cp, ns, "promoted-0", st.Prefix(st.Keys[0]))

	if _, _, err := cp.run(t, "encryption", "reencrypt", "--kubeconfig", kubeconfig, "--cert-dir", cp.CertDir); err != nil {
		t.Fatalf("encryption reencrypt: %v", err)
	}
	if byPrefix := rawSecretPrefixes(ctx, t, cp); byPrefix[st.Prefix(st.Keys[0])] != sum(byPrefix) {
		t.Fatalf("after reencrypt etcd holds Secrets by prefix %v; want all under %s", byPrefix, st.Prefix(st.Keys[0]))
	}
	stdout, _, err = cp.run(t, append([]string{"encryption", "status", "--cert-dir", cp.CertDir, "--kubeconfig", kubeconfig}, cp.etcdArgs()...)...)
	if code := exitCode(err); code != 0 || strings.Contains(stdout, "PROBLEM") {
		t.Errorf("status after the repair: exit %d\n%s", code, stdout)
	}
	for name, val := range written {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(s.Data["v"]) != val {
			t.Errorf("Secret %s after the repair: %v", name, err)
		}
	}
}
