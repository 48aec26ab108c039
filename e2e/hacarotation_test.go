package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/keyutil"
)

// failoverClient is a client of several kube-apiservers, as one behind a load balancer: it sends each
// request to the next apiserver that answers /readyz (checked every 100 ms, as a load balancer's health
// check), and when that one refuses the connection or times out, to the other. An answer with an HTTP
// error is a failure, not retried elsewhere: a load balancer does not hide a rejected credential. A
// request no apiserver answered is unanswered.
type failoverClient struct {
	urls    []string
	cs      atomic.Pointer[[]*kubernetes.Clientset]
	healthy []atomic.Bool
	served  []atomic.Int64
	next    atomic.Uint64

	ok, failed, unanswered, failovers atomic.Int64
	mu                                sync.Mutex
	errs                              []string
}

func newFailoverClient(nodes []*controlPlane) *failoverClient {
	f := &failoverClient{healthy: make([]atomic.Bool, len(nodes)), served: make([]atomic.Int64, len(nodes))}
	for _, n := range nodes {
		f.urls = append(f.urls, n.URL)
	}
	return f
}

// pickUp gives the client a kubeconfig's credentials and trust, for every apiserver.
func (f *failoverClient) pickUp(t testing.TB, kubeconfig string) {
	t.Helper()
	_, cfg := kubeconfigClient(t, kubeconfig)
	var cs []*kubernetes.Clientset
	for _, u := range f.urls {
		c := rest.CopyConfig(cfg)
		c.Host = u
		cs = append(cs, clientset(t, c))
	}
	f.cs.Store(&cs)
}

// watch health-checks each apiserver every 100 ms until ctx ends.
func (f *failoverClient) watch(ctx context.Context, wg *sync.WaitGroup) {
	for i := range f.urls {
		wg.Go(func() {
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				body, err := (*f.cs.Load())[i].Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
				cancel()
				f.healthy[i].Store(err == nil && string(body) == "ok")
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
}

// loop makes a request every 100 ms until ctx ends.
func (f *failoverClient) loop(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			f.request(ctx)
		}
	})
}

func (f *failoverClient) request(ctx context.Context) {
	cs := *f.cs.Load()
	first := int(f.next.Add(1))
	var errs []string
	for k := range cs {
		i := (first + k) % len(cs)
		if !f.healthy[i].Load() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cs[i].CoreV1().Namespaces().Get(rctx, "kube-system", metav1.GetOptions{})
		cancel()
		var status apierrors.APIStatus
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			f.ok.Add(1)
			f.served[i].Add(1)
			if len(errs) > 0 {
				f.failovers.Add(1)
			}
			return
		case errors.As(err, &status):
			f.failed.Add(1)
			f.record(fmt.Sprintf("%s: %v", f.urls[i], err))
			return
		}
		errs = append(errs, fmt.Sprintf("%s: %v", f.urls[i], err)) // refused or timed out: the next one
	}
	f.unanswered.Add(1)
	if len(errs) == 0 {
		errs = []string{"no apiserver passed its health check"}
	}
	f.record(strings.Join(errs, "; "))
}

func (f *failoverClient) record(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) < 10 {
		f.errs = append(f.errs, time.Now().Format("15:04:05.000")+" "+msg)
	}
}

func (f *failoverClient) counts() [4]int64 {
	return [4]int64{f.ok.Load(), f.failed.Load(), f.unanswered.Load(), f.failovers.Load()}
}

// expectNone: since, every request was answered without error, through whichever apiserver.
func (f *failoverClient) expectNone(t *testing.T, since [4]int64, phase string) {
	t.Helper()
	now := f.counts()
	ok, failed, unanswered, failovers := now[0]-since[0], now[1]-since[1], now[2]-since[2], now[3]-since[3]
	t.Logf("%s: the failover client: %d answered (%d of them by the other apiserver after one refused), %d failed, %d unanswered", phase, ok, failovers, failed, unanswered)
	if failed > 0 || unanswered > 0 {
		f.mu.Lock()
		t.Errorf("%s: the failover client had %d failed and %d unanswered request(s); first: %s", phase, failed, unanswered, strings.Join(f.errs, "\n  "))
		f.mu.Unlock()
	}
}

// waitHealthy waits until the client's health check passes for the apiserver of c again.
func (f *failoverClient) waitHealthy(ctx context.Context, c *controlPlane) error {
	i := slices.Index(f.urls, c.URL)
	return waitFor(ctx, "the failover client to send to "+c.URL+" again", 50*time.Millisecond, nil, func(context.Context) error {
		if !f.healthy[i].Load() {
			return errors.New("its health check has not passed yet")
		}
		return nil
	})
}

// haStageFiles are what README's HA procedure copies from the first node to the others after prepare.
var haStageFiles = map[string][]string{
	"ca":      {"ca.crt", "ca.key.next", "ca-signer.crt"},
	"etcd-ca": {"etcd/ca.crt", "etcd/ca.key.next"},
}

// copyCertFile copies a file of one node's certificate directory to another's, as scp would, keys 0600.
func copyCertFile(t testing.TB, from, to *controlPlane, rel string) {
	t.Helper()
	mode := os.FileMode(0o644)
	if strings.Contains(filepath.Base(rel), ".key") {
		mode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(to.cert(rel)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to.cert(rel), readFile(t, from.cert(rel)), mode); err != nil {
		t.Fatal(err)
	}
}

// TestHACARotation: the CA rotation of issue 17 on two control-plane nodes, by README's HA procedure
// literally. The first node is TestCALife's (kube-apiserver, the 3-member etcd, kube-controller-manager,
// the admin.conf and service-account clients, which talk to it alone); the second has its own
// certificate and kubeconfig directories (the shared files copied, then its own `k8scrypto init`) and its
// own kube-apiserver on 127.0.0.2 on the same etcd. A failover client (failoverClient, admin.conf's
// credentials) makes a request every 100 ms to either apiserver throughout. For `ca` and then `etcd-ca`:
// prepare on the first node; its bundle, staged key (and ca-signer.crt) copied to the second; prepare
// there adopts them; the restarts both name, node by node (etcd members one at a time, then each
// kube-apiserver, ready and balanced to again before the next stops; kube-controller-manager); promote on
// each node, restarts; prune --yes on each node, restarts. The failover client must have no failed and no
// unanswered request in any of it, including the two kube-apiserver restarts after etcd-ca's prepare.
// Afterwards every certificate and kubeconfig on both nodes chains to the new CAs only, no bundle or
// kubeconfig holds an old one, and both apiservers and every etcd member serve certificates of the new CAs.
func TestHACARotation(t *testing.T) {
	t.Parallel() // own control plane
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l := startCALife(ctx, t)
	cp := l.cp

	n2 := newHANode(t, cp, "e2e-node-2", "10.0.0.6", "127.0.0.2", "abcdef.0123456789abcdef")
	for _, f := range sharedFiles {
		copyCertFile(t, cp, n2.controlPlane, f)
	}
	n2.init(t)
	t0 := time.Now()
	n2.startAPIServer(ctx, t)
	t.Logf("%s: kube-apiserver ready at %s in %v", n2.Name, n2.URL, time.Since(t0).Round(100*time.Millisecond))
	nodes := []*controlPlane{cp, n2.controlPlane}
	l.more = nodes[1:]

	fo := newFailoverClient(nodes)
	fo.pickUp(t, filepath.Join(cp.KubeconfigDir, "admin.conf"))
	var wg sync.WaitGroup
	loops, stop := context.WithCancel(context.Background())
	fo.watch(loops, &wg)
	t.Cleanup(func() {
		stop()
		wg.Wait()
		t.Logf("the failover client: %d requests answered (%d by %s, %d by %s; %d after the other refused), %d failed, %d unanswered",
			fo.ok.Load(), fo.served[0].Load(), fo.urls[0], fo.served[1].Load(), fo.urls[1], fo.failovers.Load(), fo.failed.Load(), fo.unanswered.Load())
	})
	for _, c := range nodes {
		if err := fo.waitHealthy(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	fo.loop(loops, &wg)
	l.servesAgain = fo.waitHealthy
	pickUp := func() {
		l.pickUp()
		fo.pickUp(t, filepath.Join(cp.KubeconfigDir, "admin.conf"))
	}

	// step runs one step on every node, the first first (for prepare, the stage copied to the others
	// before), then the restarts the step names, node by node.
	step := func(t *testing.T, name, s string) {
		t.Helper()
		var extra []string
		if s == "prune" {
			extra = []string{"--yes"}
		}
		var restarts []string
		var advice string
		for i, c := range nodes {
			if i > 0 && s == "prepare" {
				for _, f := range haStageFiles[name] {
					copyCertFile(t, cp, c, f)
				}
			}
			res := caRotateOn(t, c, name, s, extra...)
			if s == "prepare" {
				wantUnchanged := i > 0 && name != "ca" // the cluster CA alone has files of the node's own (kubeconfigs)
				if res.Adopted != (i > 0) || res.Unchanged != wantUnchanged || res.Stage != "prepared" {
					t.Errorf("prepare on node %d: adopted %v, unchanged %v, stage %s; want adopted %v, unchanged %v", i+1, res.Adopted, res.Unchanged, res.Stage, i > 0, wantUnchanged)
				}
				if i > 0 {
					for _, f := range haStageFiles[name] {
						if !bytes.Equal(readFile(t, c.cert(f)), readFile(t, cp.cert(f))) {
							t.Errorf("%s differs between the nodes after prepare", f)
						}
					}
				}
			}
			restarts = append(restarts, res.Restarts...)
			if i == 0 { // kube-controller-manager runs on the first node: its advice names that node's files
				advice = res.Restart
			}
		}
		l.restart(t, orderRestarts(restarts), advice)
		if name == "ca" {
			l.waitRootCA("after ca rotate " + s + " on every node")
		}
		pickUp()
	}

	rotate := func(t *testing.T, name, crtFile string, waitPrepared, waitPromoted func(t *testing.T, newCA *x509.Certificate)) (oldCA, newCA *x509.Certificate) {
		since, sinceL := fo.counts(), l.failures()
		oldCA = loadCert(t, cp.cert(crtFile))
		step(t, name, "prepare")
		newCA = parseCerts(t, cp.cert(crtFile))[1]
		if waitPrepared != nil {
			waitPrepared(t, newCA)
		}
		step(t, name, "promote")
		if waitPromoted != nil {
			waitPromoted(t, newCA)
		}
		step(t, name, "prune")
		time.Sleep(2 * time.Second) // a few more requests with the pruned files
		fo.expectNone(t, since, "ca rotate --ca "+name+" on two nodes")
		// The clients that talk to the first node alone: nothing failed; unanswered only where its
		// kube-apiserver had to restart (etcd-ca's prepare).
		l.expectNoFailures(t, sinceL, "ca rotate --ca "+name+" on two nodes", name == "etcd-ca")
		return oldCA, newCA
	}

	var oldCA, newCA, oldEtcdCA, newEtcdCA *x509.Certificate
	t.Run("rotate-ca", func(t *testing.T) {
		oldCA, newCA = rotate(t, "ca", "ca.crt", func(t *testing.T, next *x509.Certificate) {
			// Both apiservers reload ca.crt by themselves: each accepts a client certificate of the staged
			// CA before promote hands such certificates out.
			key, err := keyutil.PrivateKeyFromFile(cp.cert("ca.key.next"))
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM := signClientCert(t, next, key.(crypto.Signer), "e2e-new-ca", []string{"system:masters"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
			for _, c := range nodes {
				start := time.Now()
				if err := waitFor(ctx, c.URL+" to accept a client certificate of the staged CA", 500*time.Millisecond, nil, func(ctx context.Context) error {
					_, err := whoami(ctx, clientset(t, c.restConfigPEM(certPEM, keyPEM)))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s accepts the staged CA's client certificate (%v)", c.URL, time.Since(start).Round(100*time.Millisecond))
			}
		}, func(t *testing.T, newCA *x509.Certificate) {
			// Both serve their re-issued certificates, reloaded by themselves, before prune.
			for _, c := range nodes {
				start := time.Now()
				if err := waitFor(ctx, c.URL+" to serve its re-issued certificate", 500*time.Millisecond, nil, func(context.Context) error {
					got := servedCert(t, strings.TrimPrefix(c.URL, "https://"), &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- only verified below
					return verifyWith(got, newCA, x509.ExtKeyUsageServerAuth)
				}); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s serves its re-issued certificate (%v)", c.URL, time.Since(start).Round(100*time.Millisecond))
			}
		})
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("rotate-etcd-ca", func(t *testing.T) {
		oldEtcdCA, newEtcdCA = rotate(t, "etcd-ca", "etcd/ca.crt", nil, nil)
	})
	if t.Failed() {
		t.FailNow()
	}

	// Every file on both nodes: the new CAs alone, every certificate chaining to them and not to the old.
	cas := []struct {
		crt, name        string
		oldCA, newCA     *x509.Certificate
		leaves, obsolete []string
	}{
		{"ca.crt", "ca", oldCA, newCA, []string{"apiserver.crt", "apiserver-kubelet-client.crt"}, []string{"ca.key.next", "ca-signer.crt"}},
		{"etcd/ca.crt", "etcd-ca", oldEtcdCA, newEtcdCA, []string{"etcd/server.crt", "etcd/peer.crt", "etcd/healthcheck-client.crt", "apiserver-etcd-client.crt"}, []string{"etcd/ca.key.next"}},
	}
	for _, c := range nodes {
		for _, ca := range cas {
			if got := parseCerts(t, c.cert(ca.crt)); len(got) != 1 || !got[0].Equal(ca.newCA) {
				t.Errorf("%s: %d certificate(s), want the new %s alone", c.cert(ca.crt), len(got), ca.name)
			}
			for _, f := range ca.leaves {
				cert := loadCert(t, c.cert(f))
				if err := verifyWith(cert, ca.newCA, x509.ExtKeyUsageAny); err != nil || verifyWith(cert, ca.oldCA, x509.ExtKeyUsageAny) == nil {
					t.Errorf("%s: does not chain to the new %s alone (%v)", c.cert(f), ca.name, err)
				}
			}
			for _, f := range ca.obsolete {
				if _, err := os.Stat(c.cert(f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after prune: %v, want it gone", c.cert(f), err)
				}
			}
		}
		kubeconfigs, _ := filepath.Glob(filepath.Join(c.KubeconfigDir, "*.conf"))
		if len(kubeconfigs) < 3 {
			t.Errorf("%s holds %d kubeconfigs", c.KubeconfigDir, len(kubeconfigs))
		}
		for _, p := range kubeconfigs {
			kc, err := clientcmd.LoadFromFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, cl := range kc.Clusters {
				if !bytes.Equal(cl.CertificateAuthorityData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCA.Raw})) {
					t.Errorf("%s: certificate-authority-data holds %d certificate(s), not the new CA alone", p, bytes.Count(cl.CertificateAuthorityData, []byte("BEGIN CERTIFICATE")))
				}
			}
			for _, a := range kc.AuthInfos {
				b, _ := pem.Decode(a.ClientCertificateData)
				if b == nil {
					continue // a kubelet.conf pointing at the kubelet's own certificate
				}
				cert, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if err := verifyWith(cert, newCA, x509.ExtKeyUsageClientAuth); err != nil || verifyWith(cert, oldCA, x509.ExtKeyUsageClientAuth) == nil {
					t.Errorf("%s: its client certificate does not chain to the new CA alone (%v)", p, err)
				}
			}
		}
		served := servedCert(t, strings.TrimPrefix(c.URL, "https://"), &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- verified below
		if err := verifyWith(served, newCA, x509.ExtKeyUsageServerAuth); err != nil || verifyWith(served, oldCA, x509.ExtKeyUsageServerAuth) == nil {
			t.Errorf("%s serves a certificate that does not chain to the new CA alone (%v)", c.URL, err)
		}
	}
	fo.expectNone(t, [4]int64{}, "the whole test")
	for _, m := range cp.Etcd {
		got := servedCert(t, strings.TrimPrefix(m.ClientURL, "https://"), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{mustPair(t, cp, "etcd/healthcheck-client")}}) // #nosec G402 -- verified below
		if err := verifyWith(got, newEtcdCA, x509.ExtKeyUsageServerAuth); err != nil || verifyWith(got, oldEtcdCA, x509.ExtKeyUsageServerAuth) == nil {
			t.Errorf("%s serves a certificate that does not chain to the new etcd CA alone (%v)", m.Name, err)
		}
	}
}

// orderRestarts is the components of every node's advice, each once, in the order a control plane comes
// back (the order each step's restarts field already has).
func orderRestarts(cs []string) []string {
	var out []string
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"} {
		if slices.Contains(cs, c) {
			out = append(out, c)
		}
	}
	return out
}

// TestFailoverClient holds the failover client of TestHACARotation to its rules, without a control plane
// (in the live test its health check drained each restarting apiserver first, so no retry was needed):
// a refused connection is retried on the other apiserver and answered; an HTTP error is a failure, not
// retried; an apiserver whose health check failed gets no request; none healthy is unanswered.
func TestFailoverClient(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // refused from now on
	var hits atomic.Int64
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system"}}`)
	}))
	defer live.Close()
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`)
	}))
	defer denied.Close()
	client := func(urls ...string) *failoverClient {
		f := &failoverClient{urls: urls, healthy: make([]atomic.Bool, len(urls)), served: make([]atomic.Int64, len(urls))}
		var cs []*kubernetes.Clientset
		for _, u := range urls {
			cs = append(cs, clientset(t, &rest.Config{Host: u, QPS: -1, Burst: -1}))
			f.healthy[len(cs)-1].Store(true)
		}
		f.cs.Store(&cs)
		return f
	}
	ctx := context.Background()

	f := client(deadURL, live.URL)
	for range 4 { // round robin: two of them try the dead one first
		f.request(ctx)
	}
	if got := f.counts(); got != [4]int64{4, 0, 0, 2} || f.served[1].Load() != 4 {
		t.Errorf("one apiserver refusing: ok, failed, unanswered, failovers = %v, served by the live one %d; want [4 0 0 2], 4", got, f.served[1].Load())
	}
	f = client(denied.URL, live.URL)
	for range 2 {
		f.request(ctx)
	}
	if got := f.counts(); got != [4]int64{1, 1, 0, 0} {
		t.Errorf("one apiserver answering 401: %v, want [1 1 0 0] (the 401 not retried)", got)
	}
	f = client(live.URL, deadURL)
	f.healthy[0].Store(false)
	before := hits.Load()
	f.request(ctx)
	if got := f.counts(); got != [4]int64{0, 0, 1, 0} || hits.Load() != before {
		t.Errorf("the healthy one refusing, the other failing its health check: %v, %d request(s) to the unhealthy one; want [0 0 1 0], none", got, hits.Load()-before)
	}
}
