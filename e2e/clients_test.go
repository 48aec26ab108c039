package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/keyutil"
)

// restConfig authenticates with a client certificate and trusts only the cluster CA.
func (cp *controlPlane) restConfig(certFile, keyFile string) *rest.Config {
	return &rest.Config{
		Host: cp.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   cp.cert("ca.crt"),
			CertFile: certFile,
			KeyFile:  keyFile,
		},
		QPS:   -1, // no client-side throttling: the tests measure the server
		Burst: -1,
	}
}

// restConfigPEM is restConfig for in-memory credentials.
func (cp *controlPlane) restConfigPEM(certPEM, keyPEM []byte) *rest.Config {
	c := cp.restConfig("", "")
	c.CertData, c.KeyData = certPEM, keyPEM
	return c
}

// clientset builds a typed client, failing the test on error.
func clientset(t testing.TB, c *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// admin returns a system:masters client whose certificate the test signs with the cluster CA, so tests of
// other features do not depend on the kubeconfig phase (test 2 checks admin.conf and super-admin.conf).
func (cp *controlPlane) admin(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	certPEM, keyPEM := mintClientCert(t, cp.cert("ca.crt"), cp.cert("ca.key"), "e2e-admin", []string{"system:masters"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	return clientset(t, cp.restConfigPEM(certPEM, keyPEM))
}

// kubeconfigClient loads a kubeconfig written by k8scrypto exactly as kubectl would, server URL included.
func kubeconfigClient(t testing.TB, path string) (*kubernetes.Clientset, *rest.Config) {
	t.Helper()
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("loading kubeconfig %s: %v", path, err)
	}
	c.QPS, c.Burst = -1, -1
	return clientset(t, c), c
}

// whoami asks the apiserver who the client is (SelfSubjectReview is allowed to every authenticated user).
func whoami(ctx context.Context, cs kubernetes.Interface) (authenticationv1.UserInfo, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	return r.Status.UserInfo, nil
}

// mintClientCert signs a client certificate with the CA at caCert/caKey, for identities k8scrypto does not
// write (an e2e admin, an expired certificate). The key is ECDSA P-256: cheap, and independent of the
// algorithm under test.
func mintClientCert(t testing.TB, caCertFile, caKeyFile, cn string, orgs []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	ca := loadCert(t, caCertFile)
	caKey, err := keyutil.PrivateKeyFromFile(caKeyFile)
	if err != nil {
		t.Fatalf("loading %s: %v", caKeyFile, err)
	}
	return signClientCert(t, ca, caKey.(crypto.Signer), cn, orgs, notBefore, notAfter)
}

func signClientCert(t testing.TB, ca *x509.Certificate, caKey crypto.Signer, cn string, orgs []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatalf("signing %s: %v", cn, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// newSelfSignedCA makes a CA no component trusts.
func newSelfSignedCA(t testing.TB, cn string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// loadCert parses the first certificate of a PEM file.
func loadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// etcdClient connects to every member with a client certificate, verifying the members against etcd/ca.crt.
func (cp *controlPlane) etcdClient(t testing.TB, certFile, keyFile string) *clientv3.Client {
	t.Helper()
	tc, err := tlsConfig(cp.cert("etcd/ca.crt"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cp.etcdEndpoints(),
		TLS:         tc,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(), // its retry chatter would drown the test log
	})
	if err != nil {
		t.Fatalf("etcd client with %s: %v", filepath.Base(certFile), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthcheckEtcd reads etcd as kubeadm's etcd probe does, with etcd/healthcheck-client.
func (cp *controlPlane) healthcheckEtcd(t testing.TB) *clientv3.Client {
	return cp.etcdClient(t, cp.cert("etcd/healthcheck-client.crt"), cp.cert("etcd/healthcheck-client.key"))
}

// setHeaders returns a WrapTransport adding fixed request headers.
func setHeaders(h map[string][]string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			req = req.Clone(req.Context())
			for k, vs := range h {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			return rt.RoundTrip(req)
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// createAndDeleteNamespace makes and removes a throwaway namespace: a cluster-scoped write.
func createAndDeleteNamespace(ctx context.Context, cs kubernetes.Interface) error {
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-admin-"}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
}
