package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// controlPlanePods are the static pods a restart after renewal or rotation must restart, and nothing else.
var controlPlanePods = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}

// checkRestartLine fails for a line that restarts pods by namespace (everything in kube-system: CoreDNS,
// kube-proxy, CNI...) or that stops containers without naming exactly the control-plane components.
func checkRestartLine(t *testing.T, where, line string) {
	t.Helper()
	if !strings.Contains(line, "crictl") && !strings.Contains(line, "kubectl delete") {
		return
	}
	if strings.Contains(line, "kube-system") || strings.Contains(line, "stopp") || strings.Contains(line, "rmp") ||
		strings.Contains(line, "kubectl delete") {
		t.Errorf("%s: a restart example must restart only the control-plane static pods, not a namespace's pods: %s", where, line)
	}
	if strings.Contains(line, "crictl stop") || strings.Contains(line, "crictl rm") {
		for _, pod := range controlPlanePods {
			if !strings.Contains(line, pod) {
				t.Errorf("%s: a restart example stops containers without naming %s: %s", where, pod, line)
			}
		}
	}
}

// TestHelpRestartExamples: every help text (Long and Example of every command) and the README restart only
// kube-apiserver, kube-controller-manager, kube-scheduler and etcd, as examples/restart-control-plane.sh does;
// an --on-renew example names that script or those four.
func TestHelpRestartExamples(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root := newRootCommand(&env{stdout: &stdout, stderr: &stderr}, &globals{})
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Long+"\n"+c.Example, "\n") {
			checkRestartLine(t, c.CommandPath(), line)
			if strings.Contains(line, "--on-renew") && strings.HasPrefix(strings.TrimSpace(line), "k8scrypto") {
				seen++
				if !strings.Contains(line, "restart-control-plane") && !strings.Contains(line, strings.Join(controlPlanePods, " ")) {
					t.Errorf("%s: an --on-renew example restarts neither with examples/restart-control-plane.sh nor the four components: %s", c.CommandPath(), line)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if seen == 0 {
		t.Error("no --on-renew example found in any help text")
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "examples", "restart-control-plane.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "for name in "+strings.Join(controlPlanePods, " ")+"; do") {
		t.Errorf("examples/restart-control-plane.sh no longer restarts exactly %v", controlPlanePods)
	}
	for _, doc := range []string{"README.md", "docs/output.md", "docs/bad-input.md", "docs/encryption.md"} {
		data, err := os.ReadFile(filepath.Join("..", "..", doc))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			checkRestartLine(t, fmt.Sprintf("%s:%d", doc, i+1), line)
		}
	}
}
