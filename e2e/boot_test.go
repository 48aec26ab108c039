package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
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

	t.Run("apiserver readyz over verified TLS", func(t *testing.T) {
		tc, err := tlsConfig(cp.cert("ca.crt"), "", "")
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		body, err := httpGet(ctx, c, cp.URL+"/readyz?verbose")
		if err != nil {
			t.Fatalf("/readyz over TLS verified against ca.crt: %v", err)
		}
		if !strings.Contains(body, "[+]etcd ok") || !strings.HasSuffix(strings.TrimSpace(body), "readyz check passed") {
			t.Fatalf("/readyz?verbose does not report etcd and overall ok:\n%s", body)
		}
		// The certificate served is the one k8scrypto wrote, not one the apiserver made up.
		served := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), tc)
		if want := loadCert(t, cp.cert("apiserver.crt")); !bytes.Equal(served.Raw, want.Raw) {
			t.Fatalf("apiserver serves serial %s, apiserver.crt has %s", served.SerialNumber, want.SerialNumber)
		}
	})

	t.Run("etcd members and peer TLS", func(t *testing.T) {
		cli := cp.healthcheckEtcd(t)
		ml, err := cli.MemberList(ctx)
		if err != nil {
			t.Fatalf("etcd member list: %v", err)
		}
		var peers []string
		for _, m := range ml.Members {
			if len(m.PeerURLs) != 1 || !strings.HasPrefix(m.PeerURLs[0], "https://127.0.0.") {
				t.Errorf("member %s peer URLs %v: want one https URL on 127.0.0.x", m.Name, m.PeerURLs)
			}
			peers = append(peers, m.PeerURLs...)
		}
		if len(ml.Members) != 3 {
			t.Fatalf("etcd has %d members, want 3", len(ml.Members))
		}
		// Every member agrees on one leader: raft is replicating over the TLS peer links.
		leaders, ids := map[uint64]bool{}, map[uint64]bool{}
		for _, ep := range cp.etcdEndpoints() {
			st, err := cli.Status(ctx, ep)
			if err != nil {
				t.Fatalf("etcd status of %s: %v", ep, err)
			}
			leaders[st.Leader] = true
			ids[st.Header.MemberId] = true
		}
		if len(ids) != 3 || len(leaders) != 1 || leaders[0] {
			t.Fatalf("etcd: %d distinct members answered, leaders %v; want 3 members agreeing on one leader", len(ids), leaders)
		}
		// Each peer port speaks TLS with etcd/peer.crt and demands a client certificate signed by etcd-ca.
		tc, err := tlsConfig(cp.cert("etcd/ca.crt"), cp.cert("etcd/peer.crt"), cp.cert("etcd/peer.key"))
		if err != nil {
			t.Fatal(err)
		}
		peerCert := loadCert(t, cp.cert("etcd/peer.crt"))
		for _, p := range peers {
			u, err := url.Parse(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := servedCert(t, u.Host, tc); !bytes.Equal(got.Raw, peerCert.Raw) {
				t.Errorf("peer %s serves serial %s, want etcd/peer.crt", p, got.SerialNumber)
			}
			anon := tc.Clone()
			anon.Certificates = nil
			if err := handshake(u.Host, anon); err == nil || !isTLSRejection(err) {
				t.Errorf("peer %s without a client certificate: %v; want the handshake refused", p, err)
			}
		}
	})
}

// servedCert completes a TLS handshake with addr (verifying it with tc) and returns the leaf it served.
func servedCert(t testing.TB, addr string, tc *tls.Config) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// handshake dials addr and forces the handshake to finish, including the server's verdict on the client
// certificate (TLS 1.3 reports it on the first read).
func handshake(addr string, tc *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func portOf(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}
