package pki

import (
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

func TestKubeconfigCatalogueMatchesKubeadm(t *testing.T) {
	c := &Config{NodeName: "cp-1"}
	type row struct {
		name, file, cn string
		org            []string
		server         ServerKind
	}
	want := []row{
		{"admin", "admin.conf", "kubernetes-admin", []string{"kubeadm:cluster-admins"}, ServerControlPlane},
		{"super-admin", "super-admin.conf", "kubernetes-super-admin", []string{"system:masters"}, ServerControlPlane},
		{"kubelet", "kubelet.conf", "system:node:cp-1", []string{"system:nodes"}, ServerLocal},
		{"controller-manager", "controller-manager.conf", "system:kube-controller-manager", nil, ServerLocal},
		{"scheduler", "scheduler.conf", "system:kube-scheduler", nil, ServerLocal},
	}
	got := Kubeconfigs()
	if len(got) != len(want) {
		t.Fatalf("got %d kubeconfigs, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.FileName != w.file || g.CN(c) != w.cn || !slices.Equal(g.Organization, w.org) || g.Server != w.server {
			t.Errorf("entry %d = {%s %s %s %v %v}, want %+v", i, g.Name, g.FileName, g.CN(c), g.Organization, g.Server, w)
		}
		if g.Renewable == (w.name == "kubelet") {
			t.Errorf("%s: Renewable = %v", g.Name, g.Renewable)
		}
		for _, key := range []string{w.name, w.file} {
			if l, ok := LookupKubeconfig(key); !ok || l.FileName != w.file {
				t.Errorf("LookupKubeconfig(%q) = %v, %v", key, l.FileName, ok)
			}
		}
	}
	// The catalogue is not shared mutable state.
	got[0].Organization[0] = "mutated"
	if Kubeconfigs()[0].Organization[0] != "kubeadm:cluster-admins" {
		t.Error("Kubeconfigs returned a slice aliasing the catalogue")
	}
}

func TestKubeconfigServerURL(t *testing.T) {
	admin, _ := LookupKubeconfig("admin")
	kubelet, _ := LookupKubeconfig("kubelet")
	tests := []struct {
		name, endpoint string
		ip             string
		port           int32
		admin, kubelet string
	}{
		{"no endpoint", "", "10.0.0.5", 6443, "https://10.0.0.5:6443", "https://10.0.0.5:6443"},
		{"dns endpoint without port takes bindPort", "lb.example.com", "10.0.0.5", 6443, "https://lb.example.com:6443", "https://10.0.0.5:6443"},
		{"endpoint port wins", "lb.example.com:443", "10.0.0.5", 6444, "https://lb.example.com:443", "https://10.0.0.5:6444"},
		{"ipv6 advertise address", "", "fd00::5", 6443, "https://[fd00::5]:6443", "https://[fd00::5]:6443"},
		{"ipv6 endpoint", "[fd00::1]:8443", "fd00::5", 6443, "https://[fd00::1]:8443", "https://[fd00::5]:6443"},
		{"ip endpoint", "192.168.0.10", "10.0.0.5", 6443, "https://192.168.0.10:6443", "https://10.0.0.5:6443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{ControlPlaneEndpoint: tt.endpoint, AdvertiseAddress: net.ParseIP(tt.ip), BindPort: tt.port}
			if got, err := admin.ServerURL(c); err != nil || got != tt.admin {
				t.Errorf("admin: %q, %v; want %q", got, err, tt.admin)
			}
			if got, err := kubelet.ServerURL(c); err != nil || got != tt.kubelet {
				t.Errorf("kubelet: %q, %v; want %q", got, err, tt.kubelet)
			}
		})
	}
	if _, err := admin.ServerURL(&Config{ControlPlaneEndpoint: "bad_host", AdvertiseAddress: net.ParseIP("10.0.0.5"), BindPort: 6443}); err == nil {
		t.Error("invalid controlPlaneEndpoint accepted")
	}
	if _, err := kubelet.ServerURL(&Config{BindPort: 6443}); err == nil {
		t.Error("missing advertise address accepted")
	}
}

func TestKubeconfigRequest(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := &x509.Certificate{NotBefore: now.Add(-30 * 24 * time.Hour)}
	spec, _ := LookupKubeconfig("kubelet.conf")
	req := spec.Request(&Config{NodeName: "n1", CertValidity: 48 * time.Hour}, ca, now)
	if req.CommonName != "system:node:n1" || !slices.Equal(req.Organization, []string{"system:nodes"}) {
		t.Errorf("subject = %s %v", req.CommonName, req.Organization)
	}
	if !req.NotBefore.Equal(ca.NotBefore) || !req.NotAfter.Equal(now.Add(48*time.Hour)) {
		t.Errorf("validity = %s .. %s", req.NotBefore, req.NotAfter)
	}
	if !slices.Equal(req.Usages, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("usages = %v", req.Usages)
	}
}
