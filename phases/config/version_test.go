package config_test

import (
	"os/exec"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
)

// TestKubernetesVersionIsTheOneBuiltAgainst: the default kubernetesVersion (also what "k8scrypto version"
// reports) is the k8s.io/kubernetes module the binary is built with, so a dependency bump cannot leave it
// stale. A test binary's debug.ReadBuildInfo lists no dependencies, so ask the go command, which resolves
// go.mod's require and replace directives as the build does.
func TestKubernetesVersionIsTheOneBuiltAgainst(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to resolve the module version")
	}
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}", "k8s.io/kubernetes").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/kubernetes: %v", err)
	}
	if v := strings.TrimSpace(string(out)); v != config.KubernetesVersion {
		t.Errorf("config.KubernetesVersion is %s but the build uses k8s.io/kubernetes %s: update the constant", config.KubernetesVersion, v)
	}
}
