package phases

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// haCluster is a fake HA control plane: apiservers on loopback, each with a serving certificate for the
// addresses given, under one CA; every one serves the same EndpointSlice list of default/kubernetes and its
// own encryption metrics.
type haCluster struct {
	caPEM     []byte
	mu        sync.Mutex
	endpoints []string // ADDRESS:PORT listed by the kubernetes Service
	servers   []*fakeAPIServer
}

type fakeAPIServer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	hash  string
	asked atomic.Int32 // /metrics requests
}

// addr is the loopback HOST:PORT the fake listens on.
func (f *fakeAPIServer) addr() string { return strings.TrimPrefix(f.srv.URL, "https://") }

func (f *fakeAPIServer) runs(hash string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hash = hash
}

// newHACluster starts one fake apiserver per entry of sans (the IP addresses its certificate names).
func newHACluster(t *testing.T, sans ...[]string) *haCluster {
	t.Helper()
	keys := pkitest.Keys()
	caKey, err := keys("ca", pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	// Validity around any plausible wall clock: the TLS client checks it against time.Now.
	notBefore, notAfter := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(pkitest.Rand(1), caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c := &haCluster{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	for i, ips := range sans {
		key, err := keys(fmt.Sprintf("apiserver-%d", i), pki.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(10 + i)), Subject: pkix.Name{CommonName: "kube-apiserver"}, NotBefore: notBefore, NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		der, err := x509.CreateCertificate(pkitest.Rand(uint64(2+i)), tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeAPIServer{hash: "sha256:one"}
		f.srv = httptest.NewUnstartedServer(c.handler(t, f))
		f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
		f.srv.StartTLS()
		t.Cleanup(f.srv.Close)
		c.servers = append(c.servers, f)
	}
	return c
}

func (c *haCluster) list(eps ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endpoints = eps
}

func (c *haCluster) handler(t *testing.T, f *fakeAPIServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "unauthorized", http.StatusUnauthorized) // the kubeconfig's credentials go to every endpoint
			return
		}
		switch r.URL.Path {
		case "/metrics":
			f.asked.Add(1)
			f.mu.Lock()
			h := f.hash
			f.mu.Unlock()
			fmt.Fprintf(w, "# TYPE apiserver_encryption_config_controller_last_config_info gauge\napiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:%s\",hash=%q} 1\n", f.addr(), h)
		case "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices":
			if r.URL.Query().Get("labelSelector") != "kubernetes.io/service-name=kubernetes" {
				t.Errorf("EndpointSlices listed with selector %q", r.URL.Query().Get("labelSelector"))
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			// As kube-apiserver writes it: the addresses of the apiservers, the port named https (one
			// slice per port here, as the loopback fakes differ in port); a not-ready endpoint and a slice
			// of FQDNs are left out.
			type ep struct {
				Addresses  []string        `json:"addresses"`
				Conditions map[string]bool `json:"conditions"`
			}
			items := []any{map[string]any{"metadata": map[string]any{"name": "kubernetes-fqdn"}, "addressType": "FQDN",
				"endpoints": []any{map[string]any{"addresses": []string{"apiserver.example"}}}, "ports": []any{map[string]any{"name": "https", "port": 6443}}}}
			for i, hp := range c.endpoints {
				h, p, _ := net.SplitHostPort(hp)
				port, _ := strconv.Atoi(p)
				eps := []ep{{Addresses: []string{h}, Conditions: map[string]bool{"ready": true}}, {Addresses: []string{"127.0.0.9"}, Conditions: map[string]bool{"ready": false}}}
				items = append(items, map[string]any{"metadata": map[string]any{"name": fmt.Sprintf("kubernetes-%d", i)}, "addressType": "IPv4", "endpoints": eps,
					"ports": []any{map[string]any{"name": "metrics", "port": 1}, map[string]any{"name": "https", "port": port, "protocol": "TCP"}}})
			}
			list := map[string]any{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "items": items}
			_ = json.NewEncoder(w).Encode(list)
		default:
			http.NotFound(w, r)
		}
	})
}

// kubeconfig names server i of the cluster (through its loopback address) with the cluster CA and a token.
func (c *haCluster) kubeconfig(t *testing.T, i int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.conf")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q, certificate-authority-data: %q}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
		c.servers[i].srv.URL, base64.StdEncoding.EncodeToString(c.caPEM))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestViewAsksEveryEndpoint: with two apiservers behind the kubernetes Service, each is asked at the address
// its EndpointSlice lists, or where --apiserver-endpoint maps it (its certificate still verified for the
// listed address), with the kubeconfig's credentials; the file counts as loaded only when both run it;
// apiservers running different files are a problem and make promote wait (exit 3), as a stale one does.
func TestViewAsksEveryEndpoint(t *testing.T) {
	ctx := context.Background()
	// The endpoints are "advertised" 10.0.0.x addresses, which the test never dials: Connect maps them.
	c := newHACluster(t, []string{"127.0.0.1", "10.0.0.5"}, []string{"127.0.0.1", "10.0.0.6"})
	p1, p2 := c.servers[0].addr(), c.servers[1].addr()
	c.list("10.0.0.5:6443", "10.0.0.6:6443")
	a := APIServer{Kubeconfig: c.kubeconfig(t, 0), Timeout: 5 * time.Second, PollInterval: time.Millisecond,
		Connect: map[string]string{"10.0.0.5:6443": p1, "10.0.0.6:6443": p2}}

	v, err := a.View(ctx, "sha256:one")
	if err != nil {
		t.Fatal(err)
	}
	if !v.RunsThisFile || v.Disagree() || len(v.Endpoints) != 2 || v.Endpoints[0].Endpoint != "10.0.0.5:6443" || v.Endpoints[1].Dialed != p2 ||
		v.Endpoints[0].IDHash != "sha256:"+p1 || v.Endpoints[1].IDHash != "sha256:"+p2 {
		t.Fatalf("both run the file: %+v", v)
	}
	if adv := AdviseEncryption(encryption.Status{}, v, nil, StepArgs{}); len(adv.Problems) != 0 {
		t.Errorf("agreeing apiservers: problems %v", adv.Problems)
	}

	c.servers[1].runs("sha256:two")
	v, err = a.View(ctx, "sha256:one")
	if err != nil {
		t.Fatal(err)
	}
	if v.RunsThisFile || !v.Disagree() || !v.Endpoints[0].RunsThisFile || v.Endpoints[1].RunsThisFile {
		t.Fatalf("the second runs another file: %+v", v)
	}
	adv := AdviseEncryption(encryption.Status{}, v, nil, StepArgs{})
	if problems := strings.Join(adv.Problems, "\n"); !strings.Contains(problems, "the apiservers run different encryption configs (10.0.0.5:6443 runs sha256:one, 10.0.0.6:6443 runs sha256:two)") ||
		!strings.Contains(problems, "1 of the 2 apiservers run another version of this file") {
		t.Errorf("disagreeing apiservers: problems %q", problems)
	}
	if d := v.Describe(); !strings.Contains(d, "10.0.0.6:6443 (dialled at "+p2+") runs sha256:two, not this file") || !strings.Contains(d, "10.0.0.5:6443 (dialled at "+p1+") runs this file") {
		t.Errorf("Describe: %s", d)
	}
	var nl *NotLoadedError
	if _, err := a.WaitRuns(ctx, "promote", "f", "sha256:one", "retry"); !errors.As(err, &nl) || nl.ExitCode() != 3 {
		t.Errorf("promote with a stale second apiserver: %v, want a refusal (exit 3)", err)
	}
	// --wait goes on once the second one reloads.
	a.Wait = time.Minute
	go func() {
		for c.servers[1].asked.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		c.servers[1].runs("sha256:one")
	}()
	if v, err := a.WaitRuns(ctx, "promote", "f", "sha256:one", "retry"); err != nil || !v.RunsThisFile {
		t.Errorf("waiting for the second apiserver: %+v, %v", v, err)
	}

	// The certificate is verified for the listed address: an endpoint mapped to an apiserver whose
	// certificate lacks it is an error, not a silent answer.
	a.Connect = map[string]string{"10.0.0.5:6443": p2, "10.0.0.6:6443": p2}
	if _, err := a.View(ctx, "sha256:one"); err == nil || !strings.Contains(err.Error(), "10.0.0.5") {
		t.Errorf("endpoint mapped to a server without its address in the certificate: %v", err)
	}
	// A mapping for an endpoint the Service does not list is a mistake, said as such.
	a.Connect = map[string]string{"10.0.0.5:6443": p1, "10.0.0.6:6443": p2, "10.0.0.7:6443": p2}
	if _, err := a.View(ctx, "sha256:one"); err == nil || !strings.Contains(err.Error(), "the kubernetes Service has no endpoint 10.0.0.7:6443 (its EndpointSlices list 10.0.0.5:6443, 10.0.0.6:6443)") {
		t.Errorf("mapping an unknown endpoint: %v", err)
	}
}

// TestViewDialsEndpointsByDefault: without a mapping each endpoint is dialled at the address listed (here
// loopback ones); with a single endpoint the kubeconfig's server is that apiserver and is not asked twice.
func TestViewDialsEndpointsByDefault(t *testing.T) {
	ctx := context.Background()
	c := newHACluster(t, []string{"127.0.0.1"}, []string{"127.0.0.1"})
	c.list(c.servers[0].addr(), c.servers[1].addr())
	a := APIServer{Kubeconfig: c.kubeconfig(t, 1), Timeout: 5 * time.Second}
	v, err := a.View(ctx, "sha256:one")
	if err != nil || len(v.Endpoints) != 2 || v.Endpoints[0].Dialed != "" || !v.RunsThisFile {
		t.Fatalf("two loopback endpoints: %+v, %v", v, err)
	}
	if n0, n1 := c.servers[0].asked.Load(), c.servers[1].asked.Load(); n0 != 1 || n1 != 2 {
		t.Errorf("/metrics asked %d and %d times, want 1 (as endpoint) and 2 (kubeconfig server and endpoint)", n0, n1)
	}

	// One endpoint, at an address nothing listens on: not dialled.
	c.list("127.0.0.3:1")
	v, err = a.View(ctx, "sha256:one")
	if err != nil || len(v.Endpoints) != 0 || !v.RunsThisFile {
		t.Fatalf("one endpoint: %+v, %v", v, err)
	}
	// Two, one unreachable: an error that names the endpoint and the way to map it.
	c.list(c.servers[0].addr(), "127.0.0.3:1")
	if _, err := a.View(ctx, "sha256:one"); err == nil || !strings.Contains(err.Error(), "--apiserver-endpoint 127.0.0.3:1=HOST:PORT") {
		t.Errorf("an unreachable endpoint: %v", err)
	}
}

// TestStepArgsRepeatEndpointMappings: the command lines suggested after a refusal repeat the mappings, so
// they can be run as printed.
func TestStepArgsRepeatEndpointMappings(t *testing.T) {
	a := NewStepArgs(ConfigSource{}, APIServer{Kubeconfig: "/a.conf", Connect: map[string]string{"10.0.0.6:6443": "127.0.0.2:6443", "10.0.0.5:6443": "127.0.0.1:6443"}}, Etcd{})
	if want := " --kubeconfig /a.conf --apiserver-endpoint 10.0.0.5:6443=127.0.0.1:6443 --apiserver-endpoint 10.0.0.6:6443=127.0.0.2:6443"; a.Kubeconfig != want {
		t.Errorf("StepArgs.Kubeconfig = %q, want %q", a.Kubeconfig, want)
	}
}
