package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// etcdArgs are the flags that let k8scrypto count stored values in this control plane's etcd.
func (cp *controlPlane) etcdArgs() []string {
	return []string{"--etcd-endpoints", strings.Join(cp.etcdEndpoints(), ","),
		"--etcd-cacert", cp.cert("etcd/ca.crt"), "--etcd-cert", cp.cert("etcd/healthcheck-client.crt"), "--etcd-key", cp.cert("etcd/healthcheck-client.key")}
}

// exitCode is the exit status of a finished k8scrypto run (0 for nil).
func exitCode(t testing.TB, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatalf("k8scrypto did not run: %v", err)
	return -1
}

// TestRotationAtAnOperatorsPace is the data-loss sequence of issue 12, run against a real kube-apiserver
// with --encryption-provider-config-automatic-reload and a real etcd, at the speed a person types: promote,
// then at once reencrypt and prune, both before the apiserver's reload poll has picked up the promoted
// file; a checkpoint left by such an early run; prune as the old documentation showed it (no etcd count);
// then the documented commands, with a reencrypt interrupted by SIGINT and by SIGKILL and resumed. Every
// unsafe step must be refused with the command to run instead, and at the end every Secret reads back and is
// stored under the new key, with the counts matching what etcd holds.
func TestRotationAtAnOperatorsPace(t *testing.T) {
	t.Parallel() // own control plane; mostly waits for the apiserver's reload poll
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	kubeconfig := cp.adminKubeconfig(t)
	checkpoint := filepath.Join(t.TempDir(), "checkpoint.json")
	ns := createNamespace(ctx, t, admin, "e2e-pace-")
	const secrets = 600
	written := map[string]string{}
	for i := range secrets {
		name := fmt.Sprintf("s-%04d", i)
		val := "plaintext-" + name
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"v": val}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		written[name] = val
	}
	k8s := func(args ...string) (string, string, int) {
		t.Helper()
		out, stderr, err := cp.run(t, append(args, "--cert-dir", cp.CertDir)...)
		return out, stderr, exitCode(t, err)
	}
	k0 := readEncryptionConfig(t, cp).Keys[0]
	if _, stderr, code := k8s("encryption", "rotate", "prepare"); code != 0 {
		t.Fatalf("prepare: exit %d: %s", code, stderr)
	}
	prepared := readEncryptionConfig(t, cp)
	k1 := prepared.Keys[1]
	waitEncryptionConfigLoaded(ctx, t, cp, admin, prepared)
	if _, stderr, code := k8s("encryption", "rotate", "promote", "--kubeconfig", kubeconfig); code != 0 {
		t.Fatalf("promote: exit %d: %s", code, stderr)
	}
	promoted := readEncryptionConfig(t, cp)

	// At once, before the reload: reencrypt and prune are refused (exit 3), naming the command that waits.
	out, stderr, code := k8s("encryption", "reencrypt", "--kubeconfig", kubeconfig, "--checkpoint", checkpoint)
	if code != 3 || !strings.Contains(stderr, "reencrypt refused") || !strings.Contains(stderr, "--wait") || out != "" {
		t.Fatalf("reencrypt before the reload: exit %d\nstdout %s\nstderr %s\nwant exit 3 naming --wait", code, out, stderr)
	}
	if _, err := os.Stat(checkpoint); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused reencrypt left a checkpoint: %v", err)
	}
	_, stderr, code = k8s(append([]string{"encryption", "rotate", "prune", "--yes", "--kubeconfig", kubeconfig}, cp.etcdArgs()...)...)
	if code != 3 || !strings.Contains(stderr, "prune refused") {
		t.Fatalf("prune before the reload: exit %d: %s", code, stderr)
	}
	// prune as docs/encryption.md showed it before (no etcd count) refuses too, naming the flag.
	_, stderr, code = k8s("encryption", "rotate", "prune", "--yes", "--kubeconfig", kubeconfig)
	if code != 3 || !strings.Contains(stderr, "--etcd-endpoints") {
		t.Fatalf("prune without --etcd-endpoints: exit %d: %s", code, stderr)
	}
	if got := readEncryptionConfig(t, cp); got.Hash != promoted.Hash {
		t.Fatal("a refused step changed the file")
	}
	if byPrefix := rawSecretPrefixes(ctx, t, cp); byPrefix[promoted.Prefix(k1)] != 0 {
		t.Fatalf("before the reload nothing can be under the new key, yet etcd holds %v", byPrefix)
	}

	// A checkpoint as an early run of an older k8scrypto left it: the new key "done", nothing moved. It
	// names the promoted file, so only its verification sample can find it out.
	lying, _ := json.Marshal(map[string]any{"apiVersion": "k8scrypto.dev/v1alpha1", "kind": "ReencryptCheckpoint",
		"server": cp.URL, "target": promoted.Provider + ":" + k1, "configHash": promoted.Hash,
		"updated": time.Now().UTC(), "resources": map[string]any{"secrets": map[string]any{"after": ns + "/s-0400"}}})
	if err := os.WriteFile(checkpoint, lying, 0o600); err != nil {
		t.Fatal(err)
	}

	// The documented reencrypt, with --wait, interrupted by SIGINT once it has saved progress, then by
	// SIGKILL, then resumed to the end. One worker and small pages keep it slow enough to interrupt.
	reencrypt := []string{"encryption", "reencrypt", "--cert-dir", cp.CertDir, "--kubeconfig", kubeconfig, "--wait", "--checkpoint", checkpoint}
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		cmd := suite.Command(ctx, k8scrypto(t), append(reencrypt, "--workers", "1", "--page-size", "5")...)
		cmd.Env = append(os.Environ(), cp.k8scryptoEnv()...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := suite.Start(cmd); err != nil {
			t.Fatal(err)
		}
		before := fileBytes(checkpoint)
		err := waitFor(ctx, "reencrypt to save progress", 50*time.Millisecond, nil, func(context.Context) error {
			if now := fileBytes(checkpoint); now != nil && !bytes.Equal(now, before) && bytes.Contains(now, []byte(`"after"`)) {
				return nil
			}
			return errors.New("no new checkpoint yet")
		})
		if err != nil {
			t.Fatalf("%v\nstderr: %s", err, e.String())
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		code := exitCode(t, cmd.Wait())
		t.Logf("reencrypt after %v: exit %d, stderr %q", sig, code, e.String())
		if sig == os.Interrupt {
			lines := strings.Split(strings.TrimSpace(e.String()), "\n")
			last := lines[len(lines)-1]
			if code != 130 || !strings.Contains(last, "interrupted; progress is saved in "+checkpoint) || o.Len() != 0 || strings.Contains(e.String(), "context canceled") {
				t.Fatalf("SIGINT: exit %d, stdout %q, stderr %q: want 130 and one line saying where progress is", code, o.String(), e.String())
			}
		}
		saved := fileBytes(checkpoint)
		var cpFile struct {
			ConfigHash string `json:"configHash"`
			Target     string `json:"target"`
		}
		if err := json.Unmarshal(saved, &cpFile); err != nil || cpFile.ConfigHash != promoted.Hash || cpFile.Target != promoted.Provider+":"+k1 {
			t.Fatalf("checkpoint after %v: %s (%v): want the promoted file's hash and key", sig, saved, err)
		}
	}

	// What etcd holds now under the old key is exactly what the final run must rewrite.
	left := rawSecretPrefixes(ctx, t, cp)[promoted.Prefix(k0)]
	out, stderr, code = k8s(append([]string{"encryption", "reencrypt", "--kubeconfig", kubeconfig, "--checkpoint", checkpoint, "-o", "json"}, cp.etcdArgs()...)...)
	if code != 0 {
		t.Fatalf("resumed reencrypt: exit %d: %s\n%s", code, stderr, out)
	}
	var res struct {
		Rewritten, Unchanged, Skipped, Listed int
		Resumed                               bool
		Etcd                                  struct{ NotUnderWriteKey, Unreadable int }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Rewritten != left || !res.Resumed || res.Etcd.NotUnderWriteKey != 0 || res.Etcd.Unreadable != 0 {
		t.Errorf("resumed run: %+v; etcd held %d Secrets under the old key before it, want that many rewritten", res, left)
	}
	if byPrefix := rawSecretPrefixes(ctx, t, cp); byPrefix[promoted.Prefix(k1)] != sum(byPrefix) {
		t.Fatalf("after reencrypt etcd holds Secrets by prefix %v; want all under %s", byPrefix, promoted.Prefix(k1))
	}

	// prune as documented: the proofs hold now.
	if _, stderr, code := k8s(append([]string{"encryption", "rotate", "prune", "--yes", "--kubeconfig", kubeconfig, "--wait"}, cp.etcdArgs()...)...); code != 0 {
		t.Fatalf("documented prune: exit %d: %s", code, stderr)
	}
	pruned := readEncryptionConfig(t, cp)
	waitEncryptionConfigLoaded(ctx, t, cp, admin, pruned)
	for name, val := range written {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(s.Data["v"]) != val {
			t.Fatalf("Secret %s after prune: %v %q, want %q", name, err, s.Data["v"], val)
		}
	}
	// status agrees: nothing unreadable, nothing left to rewrite, exit 0.
	out, stderr, code = k8s(append([]string{"encryption", "status", "--kubeconfig", kubeconfig}, cp.etcdArgs()...)...)
	if code != 0 || !strings.Contains(out, "0 value(s) unreadable") {
		t.Errorf("status after the rotation: exit %d\n%s\n%s", code, out, stderr)
	}
}

// fileBytes reads a file, nil when it cannot be read.
func fileBytes(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return data
}
