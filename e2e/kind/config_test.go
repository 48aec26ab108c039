package kind

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/log"
	"sigs.k8s.io/yaml"
)

// renderKubeadmConfig runs the real `k8scrypto init` into dir and returns its rendered kubeadm config.
func renderKubeadmConfig(t *testing.T, certDir, kubeconfigDir, configPath string) []byte {
	t.Helper()
	args := []string{"init", "--cert-dir", certDir, "--kubeconfig-dir", kubeconfigDir,
		"--audit-log", filepath.Join(t.TempDir(), "audit.log"), "-q"}
	if configPath != "" {
		args = append(args, "--config", configPath)
	} else {
		args = append(args, "--node-name", "render", "--advertise-address", "10.0.0.5")
	}
	cmd := exec.Command(k8scrypto(t), args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("k8scrypto %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	b, err := os.ReadFile(filepath.Join(kubeconfigDir, "kubeadm-config.yaml"))
	if err != nil {
		t.Fatalf("k8scrypto init wrote no rendered kubeadm config (kubeadm-config phase): %v", err)
	}
	return b
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "k8scrypto-e2e-kind-")
	if err != nil {
		panic(err)
	}
	buildDir = d
	code := m.Run()
	os.RemoveAll(buildDir)
	os.Exit(code)
}

// k8scrypto builds the root module's command once per test process.
func k8scrypto(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(buildDir, "k8scrypto")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/k8scrypto")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			buildPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/k8scrypto: %v\n%s", buildErr, buildPath)
	}
	return buildPath
}

// loadWithKind hands the file to kind's own loader (sigs.k8s.io/kind/pkg/internal/apis/config/encoding,
// reachable only through the cluster package's CreateWithConfigFile option). Creation itself is made to
// stop right after: PATH holds no docker, so the provider check that follows the config load fails.
// It returns the error Create gave.
func loadWithKind(t *testing.T, path string) error {
	t.Helper()
	t.Setenv("PATH", t.TempDir())
	p := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(log.NoopLogger{}))
	err := p.Create("k8scrypto-config-check", cluster.CreateWithConfigFile(path))
	if err == nil {
		t.Fatal("kind created a cluster with no docker on PATH")
	}
	return err
}

// isConfigError tells kind's config-loading errors from the provider errors that follow a good load.
func isConfigError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "decode config") || strings.Contains(s, "error reading file") ||
		strings.Contains(s, "apiVersion") || strings.Contains(s, "kind / apiVersion")
}

func TestClusterConfigLoadsWithKind(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	rendered := renderKubeadmConfig(t, certDir, filepath.Join(dir, "kubernetes"), "")
	c, err := Cluster(Options{Name: "k8scrypto", CertDir: certDir, RenderedKubeadmConfig: rendered})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kind.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	// Control: kind's loader rejects an unknown field, so a clean pass below means it read and accepted
	// every field.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, bytes.Replace(raw, []byte("extraMounts:"), []byte("extraMountz:"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadWithKind(t, bad); !isConfigError(err) {
		t.Fatalf("control: kind accepted a config with an unknown field (err %v); the loader check proves nothing", err)
	}
	err = loadWithKind(t, path)
	if isConfigError(err) || !strings.Contains(err.Error(), "docker info") {
		t.Fatalf("kind did not get past loading the generated config to the provider check: %v\n%s", err, raw)
	}
	t.Logf("kind loaded the config and stopped at the provider check, as intended: %v", err)

	// The same file, strictly decoded with kind's public v1alpha4 types and defaulted as kind defaults it.
	var got v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(raw, &got); err != nil {
		t.Fatalf("strict v1alpha4 decode: %v", err)
	}
	v1alpha4.SetDefaultsCluster(&got)
	if len(got.Nodes) != 1 || got.Nodes[0].Role != v1alpha4.ControlPlaneRole {
		t.Fatalf("nodes %+v, want one control-plane node", got.Nodes)
	}
	m := got.Nodes[0].ExtraMounts
	if len(m) != 1 || m[0].HostPath != certDir || m[0].ContainerPath != "/etc/kubernetes/pki" || m[0].Readonly {
		t.Errorf("extraMounts %+v, want %s mounted read-write at /etc/kubernetes/pki", m, certDir)
	}

	// The patch is a kubeadm v1beta4 ClusterConfiguration (strict, kubeadm's own types) carrying the
	// rendered apiserver wiring with node paths, and no host path.
	if len(got.KubeadmConfigPatches) != 1 {
		t.Fatalf("kubeadmConfigPatches: %d, want 1", len(got.KubeadmConfigPatches))
	}
	patch := got.KubeadmConfigPatches[0]
	var cc kubeadmv1beta4.ClusterConfiguration
	if err := yaml.UnmarshalStrict([]byte(patch), &cc); err != nil {
		t.Fatalf("the patch is not a valid v1beta4 ClusterConfiguration: %v\n%s", err, patch)
	}
	if cc.Kind != "ClusterConfiguration" || cc.APIVersion != "kubeadm.k8s.io/v1beta4" {
		t.Errorf("patch targets %s %s, want kubeadm.k8s.io/v1beta4 ClusterConfiguration", cc.APIVersion, cc.Kind)
	}
	args := map[string]string{}
	for _, a := range cc.APIServer.ExtraArgs {
		args[a.Name] = a.Value
	}
	if args["encryption-provider-config"] != "/etc/kubernetes/pki/encryption-config.yaml" || args["encryption-provider-config-automatic-reload"] != "true" {
		t.Errorf("patch apiServer.extraArgs %v, want the encryption config at /etc/kubernetes/pki with automatic reload", args)
	}
	if strings.Contains(patch, certDir) {
		t.Errorf("the patch still names the host directory %s:\n%s", certDir, patch)
	}
	for _, owned := range []string{"kubernetesVersion", "certificatesDir", "controlPlaneEndpoint", "networking"} {
		if strings.Contains(patch, owned+":") {
			t.Errorf("the patch sets %s, which kind derives from the node", owned)
		}
	}
}

func TestClusterRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no name":       {CertDir: "/x"},
		"relative path": {Name: "a", CertDir: "pki"},
	} {
		if _, err := Cluster(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ClusterConfigurationPatch([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n")); err == nil {
		t.Error("a rendered config without ClusterConfiguration: no error")
	}
}

func TestRemapPaths(t *testing.T) {
	in := map[string]any{"a": "/host/pki/x.yaml", "b": []any{"/host/pki", "/host/pkix/y", "rel"}}
	got := remapPaths(in, "/host/pki", "/etc/kubernetes/pki").(map[string]any)
	if got["a"] != "/etc/kubernetes/pki/x.yaml" {
		t.Errorf("a = %v", got["a"])
	}
	b := got["b"].([]any)
	if b[0] != "/etc/kubernetes/pki" || b[1] != "/host/pkix/y" || b[2] != "rel" {
		t.Errorf("b = %v (a sibling directory sharing the prefix must not be remapped)", b)
	}
}
