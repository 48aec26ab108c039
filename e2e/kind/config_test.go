package kind

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/log"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/e2e/internal/suite"
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
	cmd := suite.Command(context.Background(), k8scrypto(t), args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	if out, err := suite.CombinedOutput(cmd); err != nil {
		t.Fatalf("k8scrypto %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	b, err := os.ReadFile(filepath.Join(kubeconfigDir, "kubeadm-config.yaml"))
	if err != nil {
		t.Fatalf("k8scrypto init wrote no rendered kubeadm config (kubeadm-config phase): %v", err)
	}
	return b
}

// TestMain runs the tests under the e2e suite's teardown (package suite): its directory holds the build and
// every t.TempDir, and goes on SIGINT, SIGTERM and just before -timeout too.
func TestMain(m *testing.M) {
	os.Exit(suite.Main(m, "kind"))
}

// k8scrypto builds the root module's command once per test process.
func k8scrypto(t *testing.T) string {
	t.Helper()
	p, err := suite.K8scrypto(func() (string, error) { return filepath.Abs(filepath.Join("..", "..")) })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeDocker answers kind's provider just enough to get it past the steps before node creation: `docker
// info` (a rootful cgroup v2 engine), `docker ps` (no cluster of that name yet) and `docker inspect` (the
// node image is present); anything else, the first of which is the network check at the start of node
// creation, fails. Every call is logged to the returned file.
func fakeDocker(t *testing.T) (dir, calls string) {
	t.Helper()
	dir = t.TempDir()
	calls = filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
echo "$*" >> ` + calls + `
case "$1" in
info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":[]}' ;;
ps) ;;
inspect) ;;
*) echo "fake docker: stop before $1" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, calls
}

// createWithKind hands the file to kind's own cluster creation with the fake docker: kind loads it with
// its strict loader (sigs.k8s.io/kind/pkg/internal/apis/config/encoding, reachable only through
// CreateWithConfigFile), defaults it, checks the provider, then runs its own Config.Validate
// (pkg/internal/apis/config/validate.go: not importable, so this is the only way to call it), and only
// then starts creating nodes, where the fake docker stops it. It returns Create's error and the docker
// subcommands kind ran.
func createWithKind(t *testing.T, path string) ([]string, error) {
	t.Helper()
	dir, calls := fakeDocker(t)
	t.Setenv("PATH", dir)
	p := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(log.NoopLogger{}))
	err := p.Create("k8scrypto-config-check", cluster.CreateWithConfigFile(path))
	if err == nil {
		t.Fatal("kind created a cluster with a fake docker")
	}
	log, _ := os.ReadFile(calls)
	var subcommands []string
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			subcommands = append(subcommands, f[0])
		}
	}
	return subcommands, err
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

	// Controls: kind's loader rejects an unknown field, and kind's Validate an invalid node role, each
	// before any node is created; so the generated file getting past both proves it loads and validates.
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown field", "extraMounts:", "extraMountz:", "field extraMountz not found"},
		{"invalid role", "role: control-plane", "role: controlplane", "is not a valid node role"},
	} {
		bad := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml")
		if !bytes.Contains(raw, []byte(c.from)) {
			t.Fatalf("control %s: the generated config has no %q:\n%s", c.name, c.from, raw)
		}
		if err := os.WriteFile(bad, bytes.Replace(raw, []byte(c.from), []byte(c.to), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		calls, err := createWithKind(t, bad)
		if !strings.Contains(err.Error(), c.want) || slices.Contains(calls, "network") {
			t.Fatalf("control %s: kind said %v after docker %v; want %q before node creation, or the check below proves nothing", c.name, err, calls, c.want)
		}
	}
	calls, err := createWithKind(t, path)
	// After the failure kind cleans up (another `docker ps`); what matters is that node creation began.
	if !strings.Contains(err.Error(), "failed to ensure docker network") || len(calls) < 4 || !slices.Equal(calls[:4], []string{"info", "ps", "inspect", "network"}) {
		t.Fatalf("kind did not get past loading and validating the generated config to node creation: %v (docker %v)\n%s", err, calls, raw)
	}
	t.Logf("kind loaded and validated the config and stopped at node creation, as intended: %v", err)

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

	// The patches are the rendered InitConfiguration and ClusterConfiguration, strict v1beta4 (kubeadm's own
	// types): the node's identity as the certificates name it, the apiserver wiring with node paths, and no
	// host path.
	if len(got.KubeadmConfigPatches) != 2 {
		t.Fatalf("kubeadmConfigPatches: %d, want 2", len(got.KubeadmConfigPatches))
	}
	var ic kubeadmv1beta4.InitConfiguration
	if err := yaml.UnmarshalStrict([]byte(got.KubeadmConfigPatches[0]), &ic); err != nil {
		t.Fatalf("the first patch is not a valid v1beta4 InitConfiguration: %v\n%s", err, got.KubeadmConfigPatches[0])
	}
	if ic.Kind != "InitConfiguration" || ic.NodeRegistration.Name != "render" || ic.LocalAPIEndpoint.AdvertiseAddress != "10.0.0.5" {
		t.Errorf("InitConfiguration patch %s name %q address %q; want the render's node render at 10.0.0.5", ic.Kind, ic.NodeRegistration.Name, ic.LocalAPIEndpoint.AdvertiseAddress)
	}
	if strings.Contains(got.KubeadmConfigPatches[0], certDir) {
		t.Errorf("the InitConfiguration patch names the host directory %s:\n%s", certDir, got.KubeadmConfigPatches[0])
	}
	patch := got.KubeadmConfigPatches[1]
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

func TestNodeNetwork(t *testing.T) {
	for index, want := range map[int]NodeNetwork{
		0:    {Name: "n", Subnet: "172.31.0.0/29", Gateway: "172.31.0.1", NodeIP: "172.31.0.2"},
		33:   {Name: "n", Subnet: "172.31.1.8/29", Gateway: "172.31.1.9", NodeIP: "172.31.1.10"},
		8191: {Name: "n", Subnet: "172.31.255.248/29", Gateway: "172.31.255.249", NodeIP: "172.31.255.250"},
	} {
		if got, err := NewNodeNetwork("n", index); err != nil || got != want {
			t.Errorf("NewNodeNetwork(%d) = %+v, %v; want %+v", index, got, err, want)
		}
	}
	if _, err := NewNodeNetwork("n", 8192); err == nil {
		t.Error("index 8192: no error")
	}
}
