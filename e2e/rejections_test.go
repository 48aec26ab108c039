package e2e

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Test 8: the apiserver refuses a client certificate from a foreign CA and an expired one from its own CA;
// etcd refuses a client certificate not signed by the etcd CA. Each refusal is paired with the same request
// made with a valid certificate, so a test that "passes" because nothing works is impossible.
func TestRejectsBadClientCertificates(t *testing.T) {
	cp := sharedControlPlane(t)

	t.Run("apiserver", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		now := time.Now()

		good, goodKey := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "e2e-good", nil, now.Add(-time.Hour), now.Add(time.Hour))
		u, err := whoami(ctx, clientset(t, cp.restConfigPEM(good, goodKey)))
		if err != nil || u.Username != "e2e-good" {
			t.Fatalf("control: a valid client certificate from ca.crt: user %q, err %v; want e2e-good", u.Username, err)
		}

		foreignCA, foreignKey := newSelfSignedCA(t, "kubernetes") // same name as the real CA, different key
		foreign, fKey := signClientCert(t, foreignCA, foreignKey, "e2e-foreign", []string{"system:masters"}, now.Add(-time.Hour), now.Add(time.Hour))
		expired, eKey := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "e2e-expired", []string{"system:masters"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
		for name, c := range map[string][2][]byte{"foreign CA": {foreign, fKey}, "expired": {expired, eKey}} {
			_, err := whoami(ctx, clientset(t, cp.restConfigPEM(c[0], c[1])))
			if !apierrors.IsUnauthorized(err) {
				t.Errorf("%s client certificate: got err %v, want 401 Unauthorized", name, err)
			}
		}
	})

	t.Run("etcd", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		// Control: etcd's own healthcheck client reads.
		if _, err := cp.healthcheckEtcd(t).Get(ctx, "/registry/namespaces/default"); err != nil {
			t.Fatalf("control: etcd read with etcd/healthcheck-client: %v", err)
		}

		// apiserver-kubelet-client is a real k8scrypto client certificate, signed by the cluster CA instead
		// of the etcd CA; front-proxy-client by the front-proxy CA.
		for _, name := range []string{"apiserver-kubelet-client", "front-proxy-client"} {
			tc, err := tlsConfig(cp.cert("etcd/ca.crt"), cp.cert(name+".crt"), cp.cert(name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
			for _, m := range cp.Etcd {
				_, err := httpGet(ctx, c, m.ClientURL+"/health")
				if err == nil {
					t.Errorf("etcd member %s accepted %s.crt (not signed by etcd/ca.crt)", m.Name, name)
					continue
				}
				if !isTLSRejection(err) {
					t.Errorf("etcd member %s with %s.crt: %v; want the TLS handshake refused for a bad certificate", m.Name, name, err)
				}
			}
			c.CloseIdleConnections()
		}
	})
}

// isTLSRejection reports whether err is the server aborting the handshake over the client certificate
// (TLS alert "bad certificate" or "unknown certificate authority"), as opposed to a refused connection.
func isTLSRejection(err error) bool {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return false // that would be us rejecting the server
	}
	s := err.Error()
	return strings.Contains(s, "bad certificate") || strings.Contains(s, "unknown certificate authority") || strings.Contains(s, "certificate required")
}
