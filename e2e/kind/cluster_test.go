package kind

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/log"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
)

// The tests that boot kind need a Docker engine and the offline node image (e2e/hack/build-node-image.sh,
// which `make kind` runs after e2e/hack/docker.sh start). Without them they skip with the reason, unless
// CI=true, where make has just provided both and their absence is a failure.

// unavailable skips the test, or fails it under CI=true.
func unavailable(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: `make kind` starts Docker and builds the node image before the kind tests, so this is a failure)", reason)
	}
	t.Skip(reason)
}

// nodeImage is the node image the tests boot: $K8SCRYPTO_E2E_KIND_IMAGE, else the one build-node-image.sh
// last built (its name is in the cache). It must be present locally: no registry is reachable.
func nodeImage(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: creates a kind cluster")
	}
	if reason := dockerUnavailable(); reason != "" {
		unavailable(t, "no Docker engine, so no kind cluster: "+reason+" (e2e/hack/docker.sh start)")
	}
	image := os.Getenv("K8SCRYPTO_E2E_KIND_IMAGE")
	if image == "" {
		cache := os.Getenv("K8SCRYPTO_E2E_KIND_CACHE")
		if cache == "" {
			base, err := os.UserCacheDir()
			if err != nil {
				unavailable(t, "no node image: "+err.Error())
			}
			cache = filepath.Join(base, "k8scrypto-e2e", "kind")
		}
		b, err := os.ReadFile(filepath.Join(cache, "node-image"))
		if err != nil {
			unavailable(t, "no node image built (e2e/hack/build-node-image.sh): "+err.Error())
		}
		image = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", image).CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("node image %s is not in the local Docker engine (e2e/hack/build-node-image.sh builds it): %v: %s", image, err, bytes.TrimSpace(out)))
	}
	return image
}

// kindCluster is a kind cluster of one test. newKindCluster registers its removal (pass, fail, panic in a
// subtest, SIGINT, SIGTERM, the suite's deadline): logs are collected first when the test failed.
type kindCluster struct {
	Name     string
	Provider *cluster.Provider
	// LogDir is where the cluster's logs go if the test fails; it is named in the failure message.
	LogDir string
}

// logRoot is where failed clusters' logs are kept: $K8SCRYPTO_E2E_KIND_LOGS, else the directory the suite's
// own run directory is in (the run directory itself is removed at the end).
func logRoot() string {
	if d := os.Getenv("K8SCRYPTO_E2E_KIND_LOGS"); d != "" {
		return d
	}
	return filepath.Dir(suite.Dir())
}

// newKindCluster creates the cluster with kind's Go API, stopping before kind sets up Kubernetes: the nodes
// run systemd, containerd and a kubelet waiting for its configuration, and kind has written its load
// balancer's configuration and /kind/kubeadm.conf, but no kubeadm has run. The cluster gets a Docker network
// of its own, which goes with it.
func newKindCluster(t *testing.T, cfg *v1alpha4.Cluster) *kindCluster {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := "k8scrypto-" + hex.EncodeToString(suffix)
	cfg.Name = name
	c := &kindCluster{
		Name:     name,
		Provider: cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(testLogger{t})),
		LogDir:   filepath.Join(logRoot(), "k8scrypto-kind-logs-"+name),
	}
	network := "k8scrypto-e2e-" + name
	// kind creates the network it is pointed at when it does not exist; the cleanup removes it.
	t.Setenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", network)

	var interrupted atomic.Bool
	teardown := sync.OnceFunc(func() {
		if interrupted.Load() {
			// SIGINT, SIGTERM or the suite's deadline: the test is still running and its messages may never
			// be printed, so the logs are collected and named on stderr.
			if err := os.MkdirAll(c.LogDir, 0o700); err == nil {
				err = c.Provider.CollectLogs(name, c.LogDir)
				fmt.Fprintf(os.Stderr, "e2e: interrupted: the logs of kind cluster %s are in %s (errors: %v)\n", name, c.LogDir, err)
			}
		} else if t.Failed() {
			c.collectLogs(t)
		}
		if err := c.Provider.Delete(name, filepath.Join(os.TempDir(), name+".kubeconfig")); err != nil {
			t.Errorf("deleting kind cluster %s: %v", name, err)
		}
		if out, err := exec.Command("docker", "network", "rm", network).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("not found")) {
			t.Errorf("docker network rm %s: %v: %s", network, err, out)
		}
		// Nothing of the cluster may be left: no container, network or volume (kind removes its nodes
		// with their anonymous /var volumes).
		for _, args := range [][]string{
			{"ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster=" + name},
			{"network", "ls", "-q", "--filter", "name=^" + network + "$"},
			{"volume", "ls", "-q", "--filter", "dangling=true"},
		} {
			out, err := exec.Command("docker", args...).Output()
			if err != nil {
				t.Errorf("docker %s: %v", strings.Join(args, " "), err)
			} else if left := strings.TrimSpace(string(out)); left != "" {
				t.Errorf("kind cluster %s left behind (docker %s): %s", name, strings.Join(args, " "), left)
			}
		}
	})
	t.Cleanup(teardown)
	suite.OnExit(func() {
		interrupted.Store(true)
		teardown()
	})

	start := time.Now()
	err := c.Provider.Create(name,
		cluster.CreateWithV1Alpha4Config(cfg),
		cluster.CreateWithStopBeforeSettingUpKubernetes(true),
		cluster.CreateWithRetain(true), // a failed creation keeps its nodes for the logs; teardown removes them
		cluster.CreateWithKubeconfigPath(filepath.Join(t.TempDir(), "kind.kubeconfig")),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		t.Fatalf("kind create cluster %s: %v", name, err)
	}
	t.Logf("kind cluster %s: %d node(s) up in %v", name, len(cfg.Nodes), time.Since(start).Round(100*time.Millisecond))
	return c
}

// collectLogs is kind's `export logs` (journal, containerd and kubelet logs, pod logs, inspect output of each
// node) into LogDir, and says where.
func (c *kindCluster) collectLogs(t *testing.T) {
	if err := os.MkdirAll(c.LogDir, 0o700); err != nil {
		t.Errorf("kind cluster %s: %v", c.Name, err)
		return
	}
	if err := c.Provider.CollectLogs(c.Name, c.LogDir); err != nil {
		// A node that never booted answers no docker exec; its docker logs and inspect output are kept.
		t.Errorf("the test failed: what could be collected of kind cluster %s's logs is in %s (the rest failed: %v)", c.Name, c.LogDir, err)
		return
	}
	t.Errorf("the test failed: the logs of kind cluster %s are in %s", c.Name, c.LogDir)
}

// saveLog keeps a command's output with the cluster's logs (written only if the test fails).
func (c *kindCluster) saveLog(t *testing.T, name string, out []byte) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if err := os.MkdirAll(c.LogDir, 0o700); err == nil {
			_ = os.WriteFile(filepath.Join(c.LogDir, name), redact(out), 0o600)
		}
	})
}

// Node returns the cluster's node of that name.
func (c *kindCluster) Node(t *testing.T, name string) nodes.Node {
	t.Helper()
	all, err := c.Provider.ListNodes(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.String() == name {
			return n
		}
	}
	t.Fatalf("kind cluster %s has no node %s", c.Name, name)
	return nil
}

// run runs a command in the node and returns its combined output; a failure is fatal with the output.
func run(ctx context.Context, t *testing.T, n nodes.Node, stdin io.Reader, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(ctx, n, stdin, name, args...)
	if err != nil {
		t.Fatalf("in node %s: %s %s: %v\n%s", n, name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(ctx context.Context, n nodes.Node, stdin io.Reader, name string, args ...string) ([]byte, error) {
	var buf bytes.Buffer
	cmd := n.CommandContext(ctx, name, args...).SetStdout(&buf).SetStderr(&buf)
	if stdin != nil {
		cmd.SetStdin(stdin)
	}
	err := cmd.Run()
	return buf.Bytes(), err
}

// readNodeFile returns a file of the node.
func readNodeFile(ctx context.Context, t *testing.T, n nodes.Node, path string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if err := n.CommandContext(ctx, "cat", path).SetStdout(&out).SetStderr(&errb).Run(); err != nil {
		t.Fatalf("reading %s in node %s: %v: %s", path, n, err, errb.Bytes())
	}
	return out.Bytes()
}

// writeNodeFile writes a file into the node with the given mode, atomically.
func writeNodeFile(ctx context.Context, t *testing.T, n nodes.Node, path string, mode os.FileMode, data []byte) {
	t.Helper()
	run(ctx, t, n, nil, "mkdir", "-p", filepath.Dir(path))
	// Through a temporary file and a rename: an apiserver polling the file never reads half of it.
	run(ctx, t, n, bytes.NewReader(data), "sh", "-c", `cat > "$1.tmp" && chmod "$2" "$1.tmp" && mv "$1.tmp" "$1"`, "sh", path, fmt.Sprintf("%o", mode))
}

// testLogger sends kind's progress to the test log.
type testLogger struct{ t *testing.T }

func (l testLogger) Warn(message string)               { l.t.Log("kind: " + message) }
func (l testLogger) Warnf(format string, args ...any)  { l.t.Logf("kind: "+format, args...) }
func (l testLogger) Error(message string)              { l.t.Log("kind: " + message) }
func (l testLogger) Errorf(format string, args ...any) { l.t.Logf("kind: "+format, args...) }
func (l testLogger) V(level log.Level) log.InfoLogger  { return quietInfo{} }
func (quietInfo) Info(string)                          {}
func (quietInfo) Infof(string, ...any)                 {}
func (quietInfo) Enabled() bool                        { return false }

type quietInfo struct{}
