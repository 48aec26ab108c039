package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Test 1: k8scrypto init's output boots a 3-member etcd cluster with peer TLS and a kube-apiserver whose
// /readyz is ok over TLS verified against ca.crt.
func TestInitBootsControlPlane(t *testing.T) {
	cp := sharedControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	tc, err := tlsConfig(cp.cert("ca.crt"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	body, err := httpGet(ctx, c, cp.URL+"/readyz?verbose")
	if err != nil {
		t.Fatalf("/readyz over TLS verified against ca.crt: %v", err)
	}
	if !strings.Contains(body, "[+]etcd ok") || !strings.HasSuffix(strings.TrimSpace(body), "readyz check passed") {
		t.Fatalf("/readyz?verbose does not report etcd and overall ok:\n%s", body)
	}
}
