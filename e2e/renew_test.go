package e2e

import (
	"bytes"
	"context"
	"fmt"

	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Test 6: `k8scrypto renew certs --force` on a running control plane replaces apiserver.crt, and the running
// kube-apiserver serves the new certificate to new connections without a restart (it watches its serving
// certificate files), while a connection opened before keeps working and every client keeps its access.
func TestRenewWhileRunning(t *testing.T) {
	t.Parallel() // own control plane
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	oldCert := loadCert(t, cp.cert("apiserver.crt"))
	oldKey := readFile(t, cp.cert("apiserver.key"))
	oldEtcd := loadCert(t, cp.cert("etcd/server.crt"))
	super := filepath.Join(cp.KubeconfigDir, "super-admin.conf")
	oldSuper := readFile(t, super) // init writes it; reading it fails the test if it did not
	admin := cp.admin(t)

	// A keep-alive connection opened before the renewal.
	tc, err := tlsConfig(cp.cert("ca.crt"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	existing := &http.Transport{TLSClientConfig: tc, MaxConnsPerHost: 1}
	defer existing.CloseIdleConnections()
	if serial, reused := getReadyz(ctx, t, existing, cp.URL); serial != oldCert.SerialNumber.String() || reused {
		t.Fatalf("before renewal: serial %s (reused %v), want %s on a new connection", serial, reused, oldCert.SerialNumber)
	}

	args := append([]string{"renew", "certs", "--force"}, cp.clusterFlags()...)
	if _, _, err := cp.run(t, args...); err != nil {
		t.Fatalf("renew certs --force: %v", err)
	}
	newCert := loadCert(t, cp.cert("apiserver.crt"))
	if newCert.SerialNumber.Cmp(oldCert.SerialNumber) == 0 {
		t.Fatalf("renew certs --force left apiserver.crt at serial %s", oldCert.SerialNumber)
	}
	if bytes.Equal(oldKey, readFile(t, cp.cert("apiserver.key"))) {
		t.Errorf("renew certs --force kept apiserver.key; --rotate-keys defaults to true")
	}
	t.Logf("apiserver.crt renewed: serial %s -> %s", oldCert.SerialNumber, newCert.SerialNumber)

	// New connections get the new certificate once the apiserver notices the file changed (fsnotify, with a
	// one-minute resync as the fallback); no restart.
	start := time.Now()
	err = waitFor(ctx, "the apiserver to serve the renewed certificate", 250*time.Millisecond, func() error { return errExited(cp.apiserver) }, func(ctx context.Context) error {
		got := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), tc)
		if !bytes.Equal(got.Raw, newCert.Raw) {
			return fmt.Errorf("still serving serial %s", got.SerialNumber)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new connections see the renewed certificate after %v", time.Since(start).Round(time.Millisecond))

	// The connection opened before is still the old session and still answers.
	if serial, reused := getReadyz(ctx, t, existing, cp.URL); !reused || serial != oldCert.SerialNumber.String() {
		t.Errorf("the pre-renewal connection: reused %v serial %s; want the same connection, still on %s", reused, serial, oldCert.SerialNumber)
	}
	// Clients keep working: an admin client made before, and the renewed super-admin.conf.
	if _, err := whoami(ctx, admin); err != nil {
		t.Errorf("client created before the renewal: %v", err)
	}
	// super-admin.conf is renewed with the rest (its client certificate is in the catalogue): it must exist
	// and work, or the renewal broke the break-glass credential.
	if !fileExists(super) {
		t.Fatalf("%s is missing after renew certs --force", super)
	}
	if bytes.Equal(oldSuper, readFile(t, super)) {
		t.Errorf("renew certs --force left %s unchanged; its client certificate is renewable", super)
	}
	superCS, _ := kubeconfigClient(t, super)
	if err := createAndDeleteNamespace(ctx, superCS); err != nil {
		t.Errorf("renewed super-admin.conf: %v", err)
	}

	// etcd reads its serving certificate on every handshake: new clients see the renewed etcd/server.crt,
	// and the apiserver's etcd connections survive (a write still reaches etcd).
	newEtcd := loadCert(t, cp.cert("etcd/server.crt"))
	if newEtcd.SerialNumber.Cmp(oldEtcd.SerialNumber) == 0 {
		t.Errorf("renew certs --force left etcd/server.crt at serial %s", oldEtcd.SerialNumber)
	}
	etls, err := tlsConfig(cp.cert("etcd/ca.crt"), cp.cert("etcd/healthcheck-client.crt"), cp.cert("etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCert(t, cp.Etcd[0].ClientURL[len("https://"):], etls); !bytes.Equal(got.Raw, newEtcd.Raw) {
		t.Errorf("etcd serves serial %s after renewal, want %s", got.SerialNumber, newEtcd.SerialNumber)
	}
	if err := createAndDeleteNamespace(ctx, admin); err != nil {
		t.Errorf("a write through the apiserver after etcd's certificates were renewed: %v", err)
	}
}

// getReadyz GETs /readyz through tr and reports the serving certificate's serial and whether the request
// went over an existing connection.
func getReadyz(ctx context.Context, t testing.TB, tr *http.Transport, base string) (serial string, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, base+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz: %s", resp.Status)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection goes back to the pool
	return resp.TLS.PeerCertificates[0].SerialNumber.String(), reused
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
