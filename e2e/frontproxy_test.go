package e2e

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Test 7: the apiserver trusts front-proxy-client (signed by front-proxy-ca, CN front-proxy-client as
// --requestheader-allowed-names demands) to assert a user in X-Remote-User and groups in X-Remote-Group, as
// an aggregated API server's proxy does; the same headers from any other client are ignored.
func TestFrontProxyRequestHeader(t *testing.T) {
	cp := sharedControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	proxy := cp.restConfig(cp.cert("front-proxy-client.crt"), cp.cert("front-proxy-client.key"))
	proxy.WrapTransport = setHeaders(map[string][]string{
		"X-Remote-User":        {"alice"},
		"X-Remote-Group":       {"e2e-devs"},
		"X-Remote-Extra-Scope": {"e2e"},
	})
	u, err := whoami(ctx, clientset(t, proxy))
	if err != nil {
		t.Fatalf("SelfSubjectReview through the front proxy: %v", err)
	}
	if u.Username != "alice" || !slices.Contains(u.Groups, "e2e-devs") || !slices.Contains(u.Extra["scope"], "e2e") {
		t.Fatalf("front-proxy-client with X-Remote-User alice: authenticated as %+v, want user alice, group e2e-devs, extra scope=e2e", u)
	}

	// Control: a client certificate from the cluster CA sending the same headers is itself, not alice.
	// Otherwise the test above would pass for any certificate.
	certPEM, keyPEM := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "mallory", nil, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	other := cp.restConfigPEM(certPEM, keyPEM)
	other.WrapTransport = setHeaders(map[string][]string{"X-Remote-User": {"alice"}})
	u, err = whoami(ctx, clientset(t, other))
	if err != nil {
		t.Fatalf("SelfSubjectReview as mallory: %v", err)
	}
	if u.Username != "mallory" {
		t.Fatalf("a non-proxy certificate's X-Remote-User was honoured: authenticated as %q, want mallory", u.Username)
	}
}
