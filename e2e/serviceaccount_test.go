package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/keyutil"
)

// Test 5: service-account tokens from TokenRequest authenticate (TokenReview). Across `sa rotate prepare`
// and `promote` (each followed by the apiserver restart the procedure requires, since kube-apiserver reads
// its service-account keys at start) a token signed before stays valid and new tokens are signed by the new
// key; after `prune --yes` and a restart the old token is rejected and the new one still works.
func TestServiceAccountKeyRotation(t *testing.T) {
	t.Parallel() // own control plane
	cp := startControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := cp.admin(t)
	const ns, sa = "default", "e2e-sa"
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	restart := func(stage string) {
		t.Helper()
		start := time.Now()
		if err := cp.RestartAPIServer(ctx); err != nil {
			t.Fatalf("restarting kube-apiserver after %s: %v", stage, err)
		}
		t.Logf("kube-apiserver restarted after %s in %v", stage, time.Since(start).Round(time.Millisecond))
		admin = cp.admin(t) // a fresh connection to the new process
	}
	rotate := func(args ...string) {
		t.Helper()
		if _, _, err := cp.run(t, append(append([]string{"sa", "rotate"}, args...), "--cert-dir", cp.CertDir)...); err != nil {
			t.Fatalf("sa rotate %s: %v (issue 3's sa rotate command)", strings.Join(args, " "), err)
		}
	}

	oldKID := keyID(t, cp.cert("sa.key"))
	old := requestToken(ctx, t, admin, ns, sa)
	if kid := tokenKID(t, old); kid != oldKID {
		t.Fatalf("token signed with kid %q, want sa.key's %q", kid, oldKID)
	}
	expectTokenValid(ctx, t, admin, old, "before rotation")

	rotate("prepare")
	if n := len(publicKeys(t, cp.cert("sa.pub"))); n != 2 {
		t.Fatalf("after prepare sa.pub holds %d keys, want 2 (old and next)", n)
	}
	// sa status --kubeconfig reads the apiserver's /openid/v1/jwks: before the restart it serves the old
	// key only, and says the new one is missing; after it, both.
	kubeconfig := cp.adminKubeconfig(t)
	served := func() (ids, missing []string) {
		t.Helper()
		out, stderr, err := cp.run(t, "sa", "status", "--cert-dir", cp.CertDir, "--kubeconfig", kubeconfig, "-o", "json")
		if err != nil {
			t.Fatalf("sa status --kubeconfig: %v\n%s", err, stderr)
		}
		var st struct {
			APIServer struct{ KeyIDs, Missing []string } `json:"apiserver"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return st.APIServer.KeyIDs, st.APIServer.Missing
	}
	nextKID := keyID(t, cp.cert("sa.key.next"))
	if ids, missing := served(); !slices.Equal(ids, []string{oldKID}) || !slices.Equal(missing, []string{nextKID}) {
		t.Errorf("before the restart sa status says the apiserver serves %v, missing %v; want [%s], missing [%s]", ids, missing, oldKID, nextKID)
	}
	restart("prepare")
	if ids, missing := served(); len(ids) != 2 || !slices.Contains(ids, oldKID) || !slices.Contains(ids, nextKID) || len(missing) != 0 {
		t.Errorf("after the restart sa status says the apiserver serves %v, missing %v; want both keys", ids, missing)
	}
	expectTokenValid(ctx, t, admin, old, "after prepare")
	if kid := tokenKID(t, requestToken(ctx, t, admin, ns, sa)); kid != oldKID {
		t.Errorf("after prepare new tokens are signed with kid %q, want the old key %q (it signs until promote)", kid, oldKID)
	}

	rotate("promote")
	newKID := keyID(t, cp.cert("sa.key"))
	if newKID == oldKID {
		t.Fatalf("promote left sa.key unchanged")
	}
	restart("promote")
	expectTokenValid(ctx, t, admin, old, "after promote")
	fresh := requestToken(ctx, t, admin, ns, sa)
	if kid := tokenKID(t, fresh); kid != newKID {
		t.Errorf("after promote new tokens are signed with kid %q, want the new sa.key's %q", kid, newKID)
	}
	expectTokenValid(ctx, t, admin, fresh, "new token after promote")

	pubBefore := readFile(t, cp.cert("sa.pub"))
	if _, _, err := cp.run(t, "sa", "rotate", "prune", "--cert-dir", cp.CertDir); err == nil {
		t.Errorf("sa rotate prune without --yes succeeded; it must refuse")
	}
	if !bytes.Equal(pubBefore, readFile(t, cp.cert("sa.pub"))) {
		t.Fatalf("a refused prune changed sa.pub")
	}
	rotate("prune", "--yes")
	if n := len(publicKeys(t, cp.cert("sa.pub"))); n != 1 {
		t.Fatalf("after prune sa.pub holds %d keys, want 1", n)
	}
	restart("prune")
	if ok, user := reviewToken(ctx, t, admin, old); ok {
		t.Errorf("after prune and restart the token signed by the old key still authenticates as %q", user)
	}
	expectTokenValid(ctx, t, admin, fresh, "new token after prune")
}

// requestToken asks the TokenRequest API for a token of ns/sa.
func requestToken(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, sa string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// reviewToken asks the apiserver whether token authenticates (TokenReview), and as whom.
func reviewToken(ctx context.Context, t testing.TB, cs kubernetes.Interface, token string) (bool, string) {
	t.Helper()
	r, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenReview: %v", err)
	}
	return r.Status.Authenticated, r.Status.User.Username
}

func expectTokenValid(ctx context.Context, t testing.TB, cs kubernetes.Interface, token, when string) {
	t.Helper()
	ok, user := reviewToken(ctx, t, cs, token)
	if !ok || user != "system:serviceaccount:default:e2e-sa" {
		t.Errorf("%s: token authenticated=%v as %q, want system:serviceaccount:default:e2e-sa", when, ok, user)
	}
}

// keyID is the kid kube-apiserver puts in tokens it signs with the key at path: base64url of the SHA-256
// of the public key's PKIX DER (pkg/serviceaccount keyIDFromPublicKey).
func keyID(t testing.TB, path string) string {
	t.Helper()
	k, err := keyutil.PrivateKeyFromFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tokenKID reads the kid from a JWT's header (the signature is the apiserver's business, checked by
// TokenReview).
func tokenKID(t testing.TB, token string) string {
	t.Helper()
	header, _, ok := strings.Cut(token, ".")
	if !ok {
		t.Fatalf("token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return h.KID
}

func publicKeys(t testing.TB, path string) []any {
	t.Helper()
	keys, err := keyutil.PublicKeysFromFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return keys
}

func ptr[T any](v T) *T { return &v }
