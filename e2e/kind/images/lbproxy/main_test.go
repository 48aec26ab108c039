package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The files as kind v0.33.0 writes them (pkg/cluster/internal/loadbalancer/config.go: the bootstrap
// template, ProxyLDSConfigTemplate and ProxyCDSConfigTemplate rendered for two control planes).
const bootstrapFile = `
node:
  cluster: kind
  id: kind-external-load-balancer

dynamic_resources:
  cds_config:
    resource_api_version: V3
    path_config_source:
      path: %s
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: %s

admin:
  access_log_path: /dev/stdout
  address:
    socket_address:
      address: 0.0.0.0
      port_value: 10000
`

const ldsFile = `
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_apiserver
  address:
    socket_address:
      address: "127.0.0.1"
      port_value: %d
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: ingress_tcp
        cluster: kube_apiservers
`

const cdsFile = `
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: kube_apiservers
  connect_timeout: 0.25s
  type: STRICT_DNS
  lb_policy: ROUND_ROBIN
  dns_lookup_family: V4_PREFERRED
  health_checks:
  - timeout: 3s
    interval: 2s
    http_health_check:
      path: /healthz
  load_assignment:
    cluster_name: kube_apiservers
    endpoints:
    - lb_endpoints:%s
`

func endpoint(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`
      - endpoint:
          address:
            socket_address:
              address: %s
              port_value: %s`, host, port)
}

// backend answers every connection with its name.
func backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s), err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestKindFiles: the proxy reads kind's files, round-robins over the backends, skips one that refuses
// connections, and follows a replaced cds file.
func TestKindFiles(t *testing.T) {
	dir := t.TempDir()
	cds, lds := filepath.Join(dir, "cds.yaml"), filepath.Join(dir, "lds.yaml")
	boot := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(boot, fmt.Appendf(nil, bootstrapFile, cds, lds), 0o600); err != nil {
		t.Fatal(err)
	}
	gotCDS, gotLDS, err := dynamicPaths(boot)
	if err != nil || gotCDS != cds || gotLDS != lds {
		t.Fatalf("dynamicPaths: %q %q %v", gotCDS, gotLDS, err)
	}

	a, b := backend(t, "a"), backend(t, "b")
	dead := net.JoinHostPort("127.0.0.1", fmt.Sprint(freePort(t)))
	port := freePort(t)
	listen := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	cfg, err := parse(fmt.Appendf(nil, cdsFile, endpoint(a)+endpoint(dead)+endpoint(b)), fmt.Appendf(nil, ldsFile, port))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != listen || len(cfg.backends) != 3 || cfg.connectTimeout != 250*time.Millisecond {
		t.Fatalf("parsed %+v, want listen %s, 3 backends, 250ms", cfg, listen)
	}
	p := &proxy{}
	if err := p.apply(cfg); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 6 {
		s, err := ask(listen)
		if err != nil {
			t.Fatal(err)
		}
		seen[s]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || seen["a"]+seen["b"] != 6 {
		t.Errorf("answers %v: want both live backends, every connection answered", seen)
	}

	// kind replaces cds.yaml when the control planes change: only b now.
	cfg, err = parse(fmt.Appendf(nil, cdsFile, endpoint(b)), fmt.Appendf(nil, ldsFile, port))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.apply(cfg); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s, err := ask(listen); err != nil || s != "b" {
			t.Errorf("after the replacement: %q %v, want b", s, err)
		}
	}

	// The empty files kind's bootstrap command starts with are not a configuration.
	if _, err := parse([]byte("resources: []"), []byte("resources: []")); err == nil {
		t.Error("empty resources parsed as a configuration")
	}
}
