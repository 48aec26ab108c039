package encryption

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// gatewayTLS writes a CA, a server certificate for 127.0.0.1 and a client certificate, and returns the
// server's TLS config (client certificates required, as kubeadm's etcd has --client-cert-auth) and the
// client's file paths.
func gatewayTLS(t *testing.T) (*tls.Config, EtcdOptions) {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	srvCert, srvKey := issue(2, "etcd-server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cliCert, cliKey := issue(3, "kube-apiserver-etcd-client", x509.ExtKeyUsageClientAuth, nil)
	o := EtcdOptions{CACert: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "client.crt"), Key: filepath.Join(dir, "client.key")}
	for p, data := range map[string][]byte{
		o.CACert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		o.Cert:   cliCert, o.Key: cliKey,
	} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}, o
}

// fakeGateway answers POST /v3/kv/range from a memEtcd as etcd's gRPC gateway does: protobuf JSON with
// proto field names, bytes in base64, int64 as strings, unset fields left out.
func fakeGateway(t *testing.T, m *memEtcd, requests *[]map[string]any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v3/kv/range" {
			http.Error(w, `{"code":5,"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		var raw map[string]any
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		*requests = append(*requests, raw)
		b64 := func(k string) string {
			s, _ := raw[k].(string)
			var out []byte
			if s != "" {
				var err error
				if out, err = decodeBase64(s); err != nil {
					t.Errorf("%s %q is not base64: %v", k, s, err)
				}
			}
			return string(out)
		}
		num := func(k string) int64 {
			s, _ := raw[k].(string) // protobuf JSON's int64
			n, _ := strconv.ParseInt(s, 10, 64)
			return n
		}
		if num("revision") == 99 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":11,"message":"etcdserver: mvcc: required revision has been compacted"}`))
			return
		}
		kvs, rev, more, _ := m.rng(r.Context(), b64("key"), b64("range_end"), num("revision"), num("limit"))
		type kv struct {
			Key            []byte `json:"key"`
			CreateRevision string `json:"create_revision"`
			Value          []byte `json:"value,omitempty"`
		}
		resp := map[string]any{"header": map[string]string{"cluster_id": "1", "revision": strconv.FormatInt(rev, 10), "raft_term": "2"}}
		if len(kvs) > 0 {
			out := make([]kv, len(kvs))
			for i, x := range kvs {
				out[i] = kv{Key: x.Key, CreateRevision: "3", Value: x.Value}
			}
			resp["kvs"], resp["count"] = out, strconv.Itoa(len(m.kv))
		}
		if more {
			resp["more"] = true
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
}

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func TestDialEtcdCountsThroughTheGateway(t *testing.T) {
	m := &memEtcd{kv: map[string]string{
		"/registry/secrets/a/1": "k8s:enc:secretbox:v1:new:x",
		"/registry/secrets/a/2": "k8s:enc:secretbox:v1:old:x",
		"/registry/secrets/b/1": "k8s\x00plain",
		"/registry/secretsX":    "k8s:enc:secretbox:v1:zzz:x",
	}}
	var requests []map[string]any
	srvTLS, o := gatewayTLS(t)
	srv := httptest.NewUnstartedServer(fakeGateway(t, m, &requests))
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()

	// The first endpoint refuses connections: the count moves on to the next, as the gRPC client would.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	o.Endpoints = []string{strings.Replace(deadURL, "http:", "https:", 1), srv.URL}
	rng, closeFn, err := DialEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	c, err := CountPrefix(context.Background(), rng, "secrets", "/registry/secrets/", 2, Labels{Known: map[string]bool{"secretbox:new": true, "secretbox:old": true}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Total != 3 || c.ByLabel["secretbox:new"] != 1 || c.ByLabel["secretbox:old"] != 1 || c.ByLabel[LabelPlaintext] != 1 || c.Unreadable != 1 {
		t.Errorf("count = %+v, want 3: one per key, one plaintext (unreadable: no identity)", c)
	}
	if len(requests) != 2 {
		t.Fatalf("%d requests, want 2 pages of 2: %v", len(requests), requests)
	}
	first, second := requests[0], requests[1]
	if first["key"] != "L3JlZ2lzdHJ5L3NlY3JldHMv" || first["range_end"] != "L3JlZ2lzdHJ5L3NlY3JldHMw" || first["limit"] != "2" || first["revision"] != nil {
		t.Errorf("first request = %v, want key and range_end of the prefix in base64, limit 2, no revision", first)
	}
	if second["revision"] != "42" {
		t.Errorf("second page asked for revision %v, want the first page's 42", second["revision"])
	}
}

func TestDialEtcdErrors(t *testing.T) {
	srvTLS, o := gatewayTLS(t)
	var hits atomic.Int32
	m := &memEtcd{kv: map[string]string{}}
	var requests []map[string]any
	gw := fakeGateway(t, m, &requests)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); gw.ServeHTTP(w, r) }))
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()

	// An error etcd returns is reported with etcd's message and not retried on another member.
	o.Endpoints = []string{srv.URL, srv.URL}
	rng, closeFn, err := DialEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if _, _, _, err := rng(ctx, "a", "b", 99, 10); err == nil || !strings.Contains(err.Error(), "required revision has been compacted") || !strings.Contains(err.Error(), "400") {
		t.Errorf("compacted revision: err = %v, want etcd's message and status", err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests for an error etcd returned, want 1", hits.Load())
	}

	// Without the client certificate etcd refuses the handshake: every endpoint is tried and named.
	noCert := o
	noCert.Cert, noCert.Key, noCert.CACert = "", "", ""
	rng2, close2, err := DialEtcd(noCert)
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	if _, _, _, err := rng2(ctx, "a", "b", 0, 10); err == nil || !strings.Contains(err.Error(), "no etcd endpoint answered") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("no client certificate: err = %v, want every endpoint named", err)
	}

	for _, tc := range []struct {
		name string
		o    EtcdOptions
		want string
	}{
		{"no endpoints", EtcdOptions{}, "no etcd endpoints"},
		{"bad endpoint", EtcdOptions{Endpoints: []string{"127.0.0.1:2379"}}, `"127.0.0.1:2379": want https://HOST:PORT`},
		{"endpoint with a path", EtcdOptions{Endpoints: []string{"https://127.0.0.1:2379/v3"}}, "want https://HOST:PORT"},
		{"cert without key", EtcdOptions{Endpoints: []string{srv.URL}, Cert: o.Cert}, "go together"},
		{"missing CA", EtcdOptions{Endpoints: []string{srv.URL}, CACert: o.CACert + ".missing", Cert: o.Cert, Key: o.Key}, "etcd CA"},
		{"CA not a certificate", EtcdOptions{Endpoints: []string{srv.URL}, CACert: o.Key, Cert: o.Cert, Key: o.Key}, "holds no PEM certificate"},
		{"key of another certificate", EtcdOptions{Endpoints: []string{srv.URL}, CACert: o.CACert, Cert: o.CACert, Key: o.Key}, "etcd client certificate"},
	} {
		if _, _, err := DialEtcd(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
