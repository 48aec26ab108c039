package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// The "bring your own PKI" workflow with the real kubeadm v1.37.2 binary: "k8scrypto init --config" on a
// fresh directory, then kubeadm, given the rendered configuration, accepts it ("kubeadm config validate"),
// finds every certificate, key and kubeconfig in place ("kubeadm init phase certs all" and "kubeadm init phase
// kubeconfig all"), generates nothing and changes no byte.
func TestKubeadmReusesK8scryptoOutput(t *testing.T) {
	kubeadm := binary(t, "kubeadm")
	root, err := rootDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, example := range []string{"kubeadm-config.yaml", "kubeadm-config-single.yaml"} {
		t.Run(example, func(t *testing.T) {
			dir := t.TempDir()
			certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
			if _, _, err := runK8scrypto(t, "init", "--config", filepath.Join(root, "examples", example),
				"--cert-dir", certDir, "--kubeconfig-dir", kubeDir); err != nil {
				t.Fatalf("k8scrypto init: %v", err)
			}
			rendered := filepath.Join(kubeDir, "kubeadm-config.yaml")

			if out, err := runKubeadm(t, kubeadm, "config", "validate", "--config", rendered); err != nil || !strings.Contains(out, "ok") {
				t.Fatalf("kubeadm config validate: %v\n%s", err, out)
			}

			before := treeState(t, certDir, kubeDir)
			certsOut, err := runKubeadm(t, kubeadm, "init", "phase", "certs", "all", "--config", rendered)
			if err != nil {
				t.Fatalf("kubeadm init phase certs all: %v\n%s", err, certsOut)
			}
			kubeconfigOut, err := runKubeadm(t, kubeadm, "init", "phase", "kubeconfig", "all", "--config", rendered, "--kubeconfig-dir", kubeDir)
			if err != nil {
				t.Fatalf("kubeadm init phase kubeconfig all: %v\n%s", err, kubeconfigOut)
			}
			out := certsOut + kubeconfigOut
			for _, bad := range []string{"Generating", "Writing", "WARNING", "unexpected"} {
				if strings.Contains(out, bad) {
					t.Errorf("kubeadm output has %q: it did not reuse everything:\n%s", bad, out)
				}
			}
			// 3 CAs + 7 leaves (local etcd in both examples), sa, and the 5 kubeconfigs.
			if n := strings.Count(certsOut, "Using existing"); n != 10 {
				t.Errorf("kubeadm reused %d certificates, want 10:\n%s", n, certsOut)
			}
			if !strings.Contains(certsOut, `Using the existing "sa" key`) {
				t.Errorf("kubeadm did not reuse sa.key:\n%s", certsOut)
			}
			if n := strings.Count(kubeconfigOut, "Using existing kubeconfig file"); n != 5 {
				t.Errorf("kubeadm reused %d kubeconfigs, want 5:\n%s", n, kubeconfigOut)
			}
			if after := treeState(t, certDir, kubeDir); !reflect.DeepEqual(before, after) {
				t.Errorf("kubeadm changed files:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func runKubeadm(t *testing.T, kubeadm string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := suite.Command(ctx, kubeadm, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := suite.Run(cmd)
	t.Logf("kubeadm %s\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

// treeState records content, mode and modification time of every entry under the roots.
func treeState(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	state := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			if de.IsDir() {
				state[p] = info.Mode().String()
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			state[p] = fmt.Sprintf("%s %s %s", hex.EncodeToString(sum[:]), info.Mode(), info.ModTime().Format(time.RFC3339Nano))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return state
}
