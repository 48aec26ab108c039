package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/keyutil"
)

// loopClient makes one request every interval, the whole test long, with the client it was last given (a
// real client re-reads its kubeconfig or CA bundle after the operator has distributed the new files).
type loopClient struct {
	name string
	cs   atomic.Pointer[kubernetes.Clientset]
	do   func(context.Context, *kubernetes.Clientset) error

	ok, failed, unavailable atomic.Int64
	mu                      sync.Mutex
	errs                    []string // the first failures, for the report
}

func (c *loopClient) run(ctx context.Context, down *atomic.Int32) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		restarting := down.Load() > 0
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.do(rctx, c.cs.Load())
		cancel()
		switch {
		case err == nil:
			c.ok.Add(1)
		case ctx.Err() != nil:
			return
		case restarting || down.Load() > 0:
			// The one kube-apiserver of the suite is being restarted: no process answers. That is
			// downtime of a single-apiserver control plane, not a rejected credential.
			c.unavailable.Add(1)
		default:
			c.failed.Add(1)
			c.mu.Lock()
			if len(c.errs) < 10 {
				c.errs = append(c.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			c.mu.Unlock()
		}
	}
}

// caLife is a control plane with kube-controller-manager and the two looping clients of issue 17: one
// with admin.conf, one with a service-account token that trusts the kube-root-ca.crt ConfigMap (what a pod
// gets projected).
type caLife struct {
	t     *testing.T
	cp    *controlPlane
	cm    *controllerManager
	ctx   context.Context
	ns    string
	token string
	down  atomic.Int32
	admin *loopClient
	sa    *loopClient
	wg    sync.WaitGroup
	// more are the other control-plane nodes' kube-apiservers (TestHACARotation), restarted after the
	// first node's, one at a time; the looping clients above talk to the first node's alone.
	more []*controlPlane
	// servesAgain, when set, waits after an apiserver's restart until the clients that balance between
	// the nodes send to it again, before the next node's restarts.
	servesAgain func(context.Context, *controlPlane) error
}

// op is a system:masters client of the test itself, minted from the CA files as they are now.
func (l *caLife) op() *kubernetes.Clientset { return l.cp.admin(l.t) }

func startCALife(ctx context.Context, t *testing.T) *caLife {
	cp := startControlPlane(t)
	l := &caLife{t: t, cp: cp, ctx: ctx}
	l.cm = cp.startControllerManager(t)
	op := l.op()
	if _, err := op.RbacV1().ClusterRoleBindings().Create(ctx, clusterAdminsBinding(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err) // kubeadm init creates it; admin.conf is powerless without it
	}
	l.ns = createNamespace(ctx, t, op, "e2e-calife-")
	const sa = "reader"
	if _, err := op.CoreV1().ServiceAccounts(l.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RbacV1().Roles(l.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RbacV1().RoleBindings(l.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-configmaps"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: l.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.waitRootCA("start")
	l.token = requestToken(ctx, t, op, l.ns, sa)

	l.admin = &loopClient{name: "admin.conf", do: func(ctx context.Context, cs *kubernetes.Clientset) error {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err
	}}
	l.sa = &loopClient{name: "service-account token", do: func(ctx context.Context, cs *kubernetes.Clientset) error {
		_, err := cs.CoreV1().ConfigMaps(l.ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	}}
	l.pickUp()
	loops, stop := context.WithCancel(context.Background())
	for _, c := range []*loopClient{l.admin, l.sa} {
		l.wg.Go(func() { c.run(loops, &l.down) })
	}
	t.Cleanup(func() {
		stop()
		l.wg.Wait()
		for _, c := range []*loopClient{l.admin, l.sa} {
			t.Logf("%s client: %d requests answered, %d failed, %d while the apiserver restarted", c.name, c.ok.Load(), c.failed.Load(), c.unavailable.Load())
		}
	})
	return l
}

// pickUp gives the looping clients the current files: admin.conf as kubectl loads it, and for the
// service account the kube-root-ca.crt ConfigMap as the kubelet projects it into a pod.
func (l *caLife) pickUp() {
	t := l.t
	admin, _ := kubeconfigClient(t, filepath.Join(l.cp.KubeconfigDir, "admin.conf"))
	l.admin.cs.Store(admin)
	cm, err := l.op().CoreV1().ConfigMaps(l.ns).Get(l.ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := clientset(t, &rest.Config{Host: l.cp.URL, BearerToken: l.token, QPS: -1, Burst: -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(cm.Data["ca.crt"])}})
	l.sa.cs.Store(sa)
}

// waitRootCA waits until kube-controller-manager has published ca.crt, as it is on disk, in the test's
// namespace.
func (l *caLife) waitRootCA(when string) {
	l.t.Helper()
	want := string(readFile(l.t, l.cp.cert("ca.crt")))
	ctx, cancel := context.WithTimeout(l.ctx, 90*time.Second)
	defer cancel()
	err := waitFor(ctx, "kube-root-ca.crt to carry ca.crt ("+when+")", 500*time.Millisecond, func() error { return errExited(l.cm.proc) }, func(ctx context.Context) error {
		cm, err := l.op().CoreV1().ConfigMaps(l.ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := cm.Data["ca.crt"]; got != want {
			return fmt.Errorf("kube-root-ca.crt holds %d certificate(s), ca.crt %d", strings.Count(got, "BEGIN CERTIFICATE"), strings.Count(want, "BEGIN CERTIFICATE"))
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// failures is the clients' failed and unavailable counts, to check a phase in isolation.
func (l *caLife) failures() [2][2]int64 {
	return [2][2]int64{{l.admin.failed.Load(), l.admin.unavailable.Load()}, {l.sa.failed.Load(), l.sa.unavailable.Load()}}
}

// expectNoFailures: no request failed since; unless the phase had to restart the suite's one
// kube-apiserver (allowDown), none went unanswered either.
func (l *caLife) expectNoFailures(t *testing.T, since [2][2]int64, phase string, allowDown bool) {
	t.Helper()
	for i, c := range []*loopClient{l.admin, l.sa} {
		n, down := c.failed.Load()-since[i][0], c.unavailable.Load()-since[i][1]
		t.Logf("%s: the %s client: %d failed, %d unanswered while kube-apiserver restarted", phase, c.name, n, down)
		if n > 0 {
			c.mu.Lock()
			t.Errorf("%s: the %s client had %d failed request(s) with the current files; first: %s", phase, c.name, n, strings.Join(c.errs, "\n  "))
			c.mu.Unlock()
		}
		if down > 0 && !allowDown {
			t.Errorf("%s: the %s client had %d request(s) unanswered, but the phase's advice named no kube-apiserver restart", phase, c.name, down)
		}
	}
}

// restart restarts the components a step's output lists as to restart now (its "restarts" field), in the
// order a control plane comes back: etcd members one at a time (each waited for, so two always form a
// quorum), kube-apiserver (node by node, with more nodes), kube-controller-manager (the first node's);
// the suite has no kube-scheduler or kubelet. advice is
// the step's text, which names the file --cluster-signing-cert-file must point at.
func (l *caLife) restart(t *testing.T, comps []string, advice string) {
	t.Helper()
	t.Logf("to restart now: %q", comps)
	ctx, cancel := context.WithTimeout(l.ctx, 4*time.Minute)
	defer cancel()
	var did []string
	if slices.Contains(comps, "etcd") {
		for _, m := range l.cp.Etcd {
			start := time.Now()
			if err := l.cp.restartEtcdMember(ctx, m); err != nil {
				t.Fatalf("restarting %s: %v", m.Name, err)
			}
			did = append(did, fmt.Sprintf("%s %v", m.Name, time.Since(start).Round(100*time.Millisecond)))
		}
	}
	if slices.Contains(comps, "kube-apiserver") {
		// One node at a time: each ready, and balanced to again, before the next stops.
		for i, c := range append([]*controlPlane{l.cp}, l.more...) {
			start := time.Now()
			if i == 0 {
				l.down.Add(1)
			}
			err := c.RestartAPIServer(ctx)
			if i == 0 {
				l.down.Add(-1)
			}
			if err == nil && l.servesAgain != nil {
				err = l.servesAgain(ctx, c)
			}
			if err != nil {
				t.Fatalf("restarting kube-apiserver at %s: %v", c.URL, err)
			}
			did = append(did, fmt.Sprintf("kube-apiserver at %s %v", c.URL, time.Since(start).Round(100*time.Millisecond)))
		}
	}
	if slices.Contains(comps, "kube-controller-manager") {
		start := time.Now()
		// The advice may name the file --cluster-signing-cert-file must point at (kubeadm: ca.crt).
		l.cm.SigningCertFile = ""
		if m := signingFlag.FindStringSubmatch(advice); m != nil {
			l.cm.SigningCertFile = m[1]
		}
		if err := l.cm.Restart(ctx); err != nil {
			t.Fatalf("restarting kube-controller-manager: %v", err)
		}
		did = append(did, fmt.Sprintf("kube-controller-manager %v", time.Since(start).Round(100*time.Millisecond)))
	}
	t.Logf("restarted: %s", strings.Join(did, ", "))
}

var signingFlag = regexp.MustCompile(`--cluster-signing-cert-file=(\S+)`)

// caStepResult is the part of `ca rotate STEP -o json` the tests read.
type caStepResult struct {
	Stage, Restart, Next   string
	Restarts, RestartLater []string
	Files                  []string
	Adopted, Unchanged     bool
}

// caRotateOn runs `k8scrypto ca rotate STEP --ca NAME` on the node of c and returns its result.
func caRotateOn(t *testing.T, c *controlPlane, name, step string, extra ...string) caStepResult {
	t.Helper()
	args := append([]string{"ca", "rotate", step, "--ca", name, "-o", "json"}, c.clusterFlags()...)
	out, _, err := c.run(t, append(args, extra...)...)
	if err != nil {
		t.Fatalf("ca rotate %s --ca %s in %s: %v", step, name, c.CertDir, err)
	}
	var res caStepResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("ca rotate %s --ca %s in %s: stage %s, %d file(s) written, adopted %v, unchanged %v; restart: %s; later: %q", step, name, c.CertDir, res.Stage, len(res.Files), res.Adopted, res.Unchanged, res.Restart, res.RestartLater)
	return res
}

// caStep runs `k8scrypto ca rotate STEP --ca NAME`, restarts what it names, waits for kube-root-ca.crt to
// follow ca.crt and gives the clients the new files.
func (l *caLife) caStep(t *testing.T, name, step string, extra ...string) {
	t.Helper()
	res := caRotateOn(t, l.cp, name, step, extra...)
	l.restart(t, res.Restarts, res.Restart)
	l.waitRootCA("after ca rotate " + step + " --ca " + name)
	l.pickUp()
}

// TestCALife is issue 17 on binaries: kube-apiserver, a 3-member etcd and kube-controller-manager on
// k8scrypto's output, an admin.conf client and a service-account client making requests the whole time,
// through `ca renew` and the rotations of the three CAs to new keys, each step followed by the restarts it
// names. No request of a client that has picked up the current files may fail.
func TestCALife(t *testing.T) {
	t.Parallel() // own control plane
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	l := startCALife(ctx, t)
	cp := l.cp

	t.Run("renew", func(t *testing.T) {
		since := l.failures()
		before := map[string]*x509.Certificate{}
		for _, f := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"} {
			before[f] = loadCert(t, cp.cert(f))
		}
		served := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- only reads the served certificate; verified below
		out, _, err := cp.run(t, append([]string{"ca", "renew", "-o", "json"}, cp.clusterFlags()...)...)
		if err != nil {
			t.Fatalf("ca renew: %v", err)
		}
		var res struct {
			Next     string
			Restarts []string
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("ca renew: next: %s", res.Next)
		if slices.Contains(res.Restarts, "kube-apiserver") || slices.Contains(res.Restarts, "etcd") {
			t.Errorf("ca renew of CAs that have not ended asks to restart %q now; only kube-controller-manager must", res.Restarts)
		}
		for f, old := range before {
			renewed := loadCert(t, cp.cert(f))
			if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 || !bytes.Equal(renewed.SubjectKeyId, old.SubjectKeyId) || !bytes.Equal(renewed.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo) {
				t.Errorf("%s after ca renew: serial %s (was %s), want a new serial with the same key and SubjectKeyId", f, renewed.SerialNumber, old.SerialNumber)
			}
		}
		l.restart(t, res.Restarts, res.Next)
		l.waitRootCA("after ca renew")
		l.pickUp()
		// The apiserver's certificate was not re-issued, and it verifies against the renewed CA alone.
		verifyServed(t, cp, loadCert(t, cp.cert("ca.crt")), true)
		if now := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), &tls.Config{InsecureSkipVerify: true}); !bytes.Equal(now.Raw, served.Raw) { // #nosec G402 -- compared below
			t.Errorf("ca renew re-issued the apiserver's certificate (serial %s -> %s); it should not need to", served.SerialNumber, now.SerialNumber)
		}
		l.expectCSRSignedBy(t, loadCert(t, cp.cert("ca.crt")))
		time.Sleep(2 * time.Second) // a few more requests with the new files
		l.expectNoFailures(t, since, "ca renew", false)
	})

	t.Run("rotate-ca", func(t *testing.T) {
		since := l.failures()
		oldCA := loadCert(t, cp.cert("ca.crt"))
		oldCert, oldKey := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "e2e-old-ca", []string{"system:masters"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		// A client certificate of the old CA, presented by a client that trusts ca.crt as it is at the time.
		oldClient := func() *kubernetes.Clientset { return clientset(t, cp.restConfigPEM(oldCert, oldKey)) }

		l.caStep(t, "ca", "prepare")
		bundle := parseCerts(t, cp.cert("ca.crt"))
		if n := len(bundle); n != 2 {
			t.Fatalf("after prepare ca.crt holds %d certificates, want 2", n)
		}
		// kube-apiserver was not restarted: it must have reloaded ca.crt by itself, and accept a client
		// certificate of the staged CA, before promote hands out such certificates.
		nextKey, err := keyutil.PrivateKeyFromFile(cp.cert("ca.key.next"))
		if err != nil {
			t.Fatal(err)
		}
		newCert, newKey := signClientCert(t, bundle[1], nextKey.(crypto.Signer), "e2e-new-ca", []string{"system:masters"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		start := time.Now()
		if err := waitFor(ctx, "kube-apiserver to accept a client certificate of the staged CA without a restart", 500*time.Millisecond, nil, func(ctx context.Context) error {
			_, err := whoami(ctx, clientset(t, cp.restConfigPEM(newCert, newKey)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("kube-apiserver reloaded ca.crt by itself (%v after the restarts)", time.Since(start).Round(100*time.Millisecond))
		l.expectCSRSignedBy(t, oldCA)

		l.caStep(t, "ca", "promote")
		newCA := loadCert(t, cp.cert("ca.crt"))
		if bytes.Equal(newCA.Raw, oldCA.Raw) {
			t.Fatal("after promote ca.crt still starts with the old CA")
		}
		// Not restarted either: it must serve the re-issued apiserver.crt by itself.
		start = time.Now()
		if err := waitFor(ctx, "kube-apiserver to serve its re-issued certificate without a restart", 500*time.Millisecond, nil, func(context.Context) error {
			got := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- only compared
			if verifyWith(got, newCA, x509.ExtKeyUsageServerAuth) != nil {
				return fmt.Errorf("serial %s does not chain to the new CA yet", got.SerialNumber)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("kube-apiserver serves the re-issued certificate (%v after the restarts)", time.Since(start).Round(100*time.Millisecond))
		verifyServed(t, cp, newCA, true)
		l.expectCSRSignedBy(t, newCA)
		if _, err := whoami(ctx, oldClient()); err != nil {
			t.Errorf("during the overlap a client certificate of the old CA must still work: %v", err)
		}

		l.caStep(t, "ca", "prune", "--yes")
		if n := len(parseCerts(t, cp.cert("ca.crt"))); n != 1 {
			t.Fatalf("after prune ca.crt holds %d certificates, want 1", n)
		}
		verifyServed(t, cp, newCA, true)
		verifyServed(t, cp, oldCA, false)
		l.expectCSRSignedBy(t, newCA)
		err = waitFor(ctx, "the old CA's client certificate to be refused", 500*time.Millisecond, nil, func(ctx context.Context) error {
			u, err := whoami(ctx, oldClient())
			if err == nil {
				return fmt.Errorf("still authenticated as %s", u.Username)
			}
			if !apierrors.IsUnauthorized(err) {
				return fmt.Errorf("%w, want 401 Unauthorized", err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
		l.expectNoFailures(t, since, "ca rotate --ca ca", false)
	})

	t.Run("rotate-etcd-ca", func(t *testing.T) {
		since := l.failures()
		oldCA := loadCert(t, cp.cert("etcd/ca.crt"))
		oldPair, err := tls.X509KeyPair(readFile(t, cp.cert("etcd/healthcheck-client.crt")), readFile(t, cp.cert("etcd/healthcheck-client.key")))
		if err != nil {
			t.Fatal(err)
		}
		l.caStep(t, "etcd-ca", "prepare")
		l.caStep(t, "etcd-ca", "promote")
		newCA := loadCert(t, cp.cert("etcd/ca.crt"))
		// promote restarted nothing: each member re-reads its serving pair at every handshake.
		for _, m := range cp.Etcd {
			got := servedCert(t, strings.TrimPrefix(m.ClientURL, "https://"), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{mustPair(t, cp, "etcd/healthcheck-client")}}) // #nosec G402 -- verified below
			if err := verifyWith(got, newCA, x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("after promote, without a restart, %s serves a certificate that does not chain to the new etcd CA: %v", m.Name, err)
			}
		}
		l.caStep(t, "etcd-ca", "prune", "--yes")
		if n := len(parseCerts(t, cp.cert("etcd/ca.crt"))); n != 1 {
			t.Fatalf("after prune etcd/ca.crt holds %d certificates, want 1", n)
		}
		for _, m := range cp.Etcd {
			addr := strings.TrimPrefix(m.ClientURL, "https://")
			got := servedCert(t, addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{mustPair(t, cp, "etcd/healthcheck-client")}}) // #nosec G402 -- verified below
			if err := verifyWith(got, newCA, x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("%s serves a certificate that does not chain to the new etcd CA: %v", m.Name, err)
			}
			if verifyWith(got, oldCA, x509.ExtKeyUsageServerAuth) == nil {
				t.Errorf("%s's certificate still verifies against the old etcd CA", m.Name)
			}
			// A client certificate of the old CA is refused.
			tc, err := tlsConfig(cp.cert("etcd/ca.crt"), "", "")
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{oldPair}
			if err := handshake(addr, tc); err == nil || !isTLSRejection(err) {
				t.Errorf("%s with a client certificate of the pruned etcd CA: %v, want a TLS rejection", m.Name, err)
			}
		}
		time.Sleep(2 * time.Second)
		// The one restart of kube-apiserver that cannot wait (after prepare: it reads --etcd-cafile only at
		// start) leaves the suite's only apiserver unanswering for its restart: counted apart, allowed.
		l.expectNoFailures(t, since, "ca rotate --ca etcd-ca", true)
	})

	t.Run("rotate-front-proxy-ca", func(t *testing.T) {
		since := l.failures()
		oldPair := [2][]byte{readFile(t, cp.cert("front-proxy-client.crt")), readFile(t, cp.cert("front-proxy-client.key"))}
		for _, step := range []string{"prepare", "promote", "prune"} {
			var extra []string
			if step == "prune" {
				extra = []string{"--yes"}
			}
			l.caStep(t, "front-proxy-ca", step, extra...)
			// No restart: kube-apiserver reloads front-proxy-ca.crt by itself (within its minute).
			start := time.Now()
			if err := waitFor(ctx, "the current front-proxy-client to assert alice after "+step, 500*time.Millisecond, nil, func(ctx context.Context) error {
				if u := proxyWhoami(ctx, t, cp, readFile(t, cp.cert("front-proxy-client.crt")), readFile(t, cp.cert("front-proxy-client.key"))); u != "alice" {
					return fmt.Errorf("authenticated as %q", u)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
			t.Logf("after %s: the current front-proxy-client asserts alice (%v)", step, time.Since(start).Round(100*time.Millisecond))
			if step == "promote" {
				if u := proxyWhoami(ctx, t, cp, oldPair[0], oldPair[1]); u != "alice" {
					t.Errorf("during the overlap the old front-proxy-client asserting alice authenticated as %q", u)
				}
			}
		}
		err := waitFor(ctx, "the old front-proxy-client to be ignored", 500*time.Millisecond, nil, func(ctx context.Context) error {
			if u := proxyWhoami(ctx, t, cp, oldPair[0], oldPair[1]); u == "alice" {
				return errors.New("still trusted to assert alice")
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
		l.expectNoFailures(t, since, "ca rotate --ca front-proxy-ca", false)
	})
}

// proxyWhoami asserts user alice through the front-proxy headers with the given client pair and returns
// who the apiserver says the request is ("" when it is refused).
func proxyWhoami(ctx context.Context, t testing.TB, cp *controlPlane, certPEM, keyPEM []byte) string {
	c := cp.restConfigPEM(certPEM, keyPEM)
	c.WrapTransport = setHeaders(map[string][]string{"X-Remote-User": {"alice"}, "X-Remote-Group": {"e2e-devs"}})
	u, err := whoami(ctx, clientset(t, c))
	if err != nil {
		return ""
	}
	return u.Username
}

func mustPair(t testing.TB, cp *controlPlane, base string) tls.Certificate {
	t.Helper()
	p, err := tls.LoadX509KeyPair(cp.cert(base+".crt"), cp.cert(base+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyWith verifies cert against ca alone.
func verifyWith(cert, ca *x509.Certificate, usage x509.ExtKeyUsage) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// verifyServed checks whether the apiserver's served certificate chains to ca alone.
func verifyServed(t testing.TB, cp *controlPlane, ca *x509.Certificate, want bool) {
	t.Helper()
	got := servedCert(t, "127.0.0.1:"+portOf(t, cp.URL), &tls.Config{InsecureSkipVerify: true}) // #nosec G402 -- verified below
	err := verifyWith(got, ca, x509.ExtKeyUsageServerAuth)
	switch {
	case want && err != nil:
		t.Errorf("the apiserver's certificate (serial %s) does not chain to CA serial %s: %v", got.SerialNumber, ca.SerialNumber, err)
	case !want && err == nil:
		t.Errorf("the apiserver's certificate (serial %s) still chains to the old CA (serial %s)", got.SerialNumber, ca.SerialNumber)
	}
}

// parseCerts parses every certificate of a PEM file.
func parseCerts(t testing.TB, path string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := readFile(t, path)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
}

// expectCSRSignedBy submits a kube-apiserver-client CSR, approves it, and checks that
// kube-controller-manager signs it with ca.
func (l *caLife) expectCSRSignedBy(t *testing.T, ca *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "e2e-csr", Organization: []string{"e2e"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	op := l.op()
	csr, err := op.CertificatesV1().CertificateSigningRequests().Create(l.ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-calife-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName:        certificatesv1.KubeAPIServerClientSignerName,
			ExpirationSeconds: ptr(int32(600)),
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "approved by the e2e test"})
	if _, err := op.CertificatesV1().CertificateSigningRequests().UpdateApproval(l.ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	var signed []byte
	err = waitFor(ctx, "kube-controller-manager to sign "+csr.Name, 250*time.Millisecond, func() error { return errExited(l.cm.proc) }, func(ctx context.Context) error {
		got, err := op.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == certificatesv1.CertificateFailed {
				return fmt.Errorf("signing failed: %s", c.Message)
			}
		}
		if len(got.Status.Certificate) == 0 {
			return errors.New("not signed yet")
		}
		signed = got.Status.Certificate
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(signed)
	if b == nil {
		t.Fatalf("CSR %s: no PEM certificate", csr.Name)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyWith(cert, ca, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("kube-controller-manager signed CSR %s with a CA other than serial %s: %v", csr.Name, ca.SerialNumber, err)
	}
}

// expireCA re-signs the first certificate of a CA file with its own key so that it expired an hour ago
// (same subject, key and SubjectKeyId: the CA of a cluster that outlived it), and puts the expired
// certificate wherever a kubeconfig embedded the old one.
func expireCA(t testing.TB, cp *controlPlane, crtFile, keyFile string) {
	t.Helper()
	old := loadCert(t, cp.cert(crtFile))
	k, err := keyutil.PrivateKeyFromFile(cp.cert(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	key := k.(crypto.Signer)
	tmpl := *old
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().AddDate(-10, 0, 0)
	tmpl.NotAfter = time.Now().Add(-time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	expired := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(cp.cert(crtFile), expired, 0o644); err != nil { // #nosec G306 -- a CA certificate, 0644 as kubeadm writes it
		t.Fatal(err)
	}
	oldPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Raw})
	entries, err := os.ReadDir(cp.KubeconfigDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		path := filepath.Join(cp.KubeconfigDir, e.Name())
		kc, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range kc.Clusters {
			c.CertificateAuthorityData = bytes.ReplaceAll(c.CertificateAuthorityData, oldPEM, expired)
		}
		if err := clientcmd.WriteToFile(*kc, path); err != nil {
			t.Fatal(err)
		}
	}
}

// quotedCommands are the `"k8scrypto …"` command lines a message names, in order.
var quotedCommands = regexp.MustCompile(`"(k8scrypto [^"]+)"`)

// TestExpiredCARecovery: a cluster CA that expired (re-signed into the past with its own key) breaks every
// client; `k8scrypto init` says so and names the commands that recover it, which the test runs literally
// (the flags travel in K8SCRYPTO_* variables, as a node's environment would hold them). Afterwards the
// apiserver starts and admin.conf works.
func TestExpiredCARecovery(t *testing.T) {
	t.Parallel() // own control plane
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adminConf := filepath.Join(cp.KubeconfigDir, "admin.conf")
	admin, _ := kubeconfigClient(t, adminConf)
	if _, err := whoami(ctx, admin); err != nil {
		t.Fatalf("admin.conf before: %v", err)
	}

	expireCA(t, cp, "ca.crt", "ca.key")
	admin, _ = kubeconfigClient(t, adminConf)
	if _, err := whoami(ctx, admin); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("admin.conf with an expired CA: %v, want an x509 expiry error", err)
	}
	cp.apiserver.Stop()

	env := append(cp.k8scryptoEnv(), "K8SCRYPTO_CONFIG="+cp.ConfigPath, "K8SCRYPTO_CERT_DIR="+cp.CertDir, "K8SCRYPTO_KUBECONFIG_DIR="+cp.KubeconfigDir)
	_, stderr, err := runK8scryptoEnv(t, env, "init")
	if err == nil {
		t.Fatal("k8scrypto init succeeded on an expired CA")
	}
	cmds := quotedCommands.FindAllStringSubmatch(stderr, -1)
	if len(cmds) == 0 {
		t.Fatalf("init's error names no command:\n%s", stderr)
	}
	t.Logf("init on an expired CA: %s", strings.TrimSpace(stderr))
	for _, c := range cmds {
		words := strings.Fields(c[1])
		stdout, stderr, err := runK8scryptoEnv(t, env, words[1:]...)
		if err != nil {
			t.Fatalf("%q, as init's error says: %v\n%s", c[1], err, stderr)
		}
		// A CA that had ended leaves no time to wait: what holds it must restart now.
		if len(words) > 2 && words[1] == "ca" && words[2] == "renew" && !strings.Contains(stdout, "ca: it had expired, restart now kube-controller-manager, kube-scheduler and every kubelet") {
			t.Errorf("%q on an expired CA does not say what to restart now:\n%s", c[1], stdout)
		}
	}
	// "... and this command again"
	if _, stderr, err := runK8scryptoEnv(t, env, "init"); err != nil {
		t.Fatalf("init after the commands its error named: %v\n%s", err, stderr)
	}
	ca := loadCert(t, cp.cert("ca.crt"))
	if !ca.NotAfter.After(time.Now()) {
		t.Fatalf("ca.crt still expired (%s)", ca.NotAfter)
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatalf("kube-apiserver after the recovery: %v", err)
	}
	admin, _ = kubeconfigClient(t, adminConf)
	u, err := whoami(ctx, admin)
	if err != nil || u.Username != "kubernetes-admin" || !slices.Contains(u.Groups, "kubeadm:cluster-admins") {
		t.Fatalf("admin.conf after the recovery: %+v %v", u, err)
	}
	verifyServed(t, cp, ca, true)
}
