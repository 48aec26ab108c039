package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIServerEndpointFlag: --apiserver-endpoint takes ENDPOINT=HOST:PORT strictly (exit 2 otherwise, and
// only with --kubeconfig); a mapping for an endpoint the kubernetes Service does not list is an error that
// names what it lists.
func TestAPIServerEndpointFlag(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("encryption-config")
	srv := httptest.NewServer(&metricsAPIServer{runs: c.read(c.encPath())}) // serves no EndpointSlices
	defer srv.Close()
	kubeconfig := filepath.Join(c.dir, "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n", srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{
		{"--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5:6443"},
		{"--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5=127.0.0.1:6443"},
		{"--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5:6443=127.0.0.1:0"},
		{"--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5:6443=127.0.0.1:06443"},
		{"--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5:6443=127.0.0.1:1", "--apiserver-endpoint", "10.0.0.5:6443=127.0.0.2:1"},
		{"--apiserver-endpoint", "10.0.0.5:6443=127.0.0.1:6443"},
	} {
		code, _, stderr := c.exec(append([]string{"encryption", "status", "--cert-dir", c.certDir}, bad...)...)
		if code != 2 || !strings.Contains(stderr, "--apiserver-endpoint") {
			t.Errorf("%v: exit %d, %s; want a usage error (2) naming the flag", bad, code, stderr)
		}
	}
	code, _, stderr := c.exec("encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig, "--apiserver-endpoint", "10.0.0.5:6443=127.0.0.1:1")
	if code != 1 || !strings.Contains(stderr, "the kubernetes Service has no endpoint 10.0.0.5:6443 (its EndpointSlices list none)") {
		t.Errorf("mapping an endpoint the Service does not list: exit %d, %s", code, stderr)
	}
	if code, _, stderr := c.exec("encryption", "status", "--cert-dir", c.certDir, "--kubeconfig", kubeconfig); code != 0 {
		t.Errorf("one apiserver, no mapping: exit %d, %s", code, stderr)
	}
}
