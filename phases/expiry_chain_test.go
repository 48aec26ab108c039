package phases

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// foreignCA is another cluster's CA: same subject as kubeadm's, its own key.
func foreignCA(t *testing.T, keys pki.KeySource) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := keys("foreign-ca", pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewSelfSignedCA(pki.CertRequest{CommonName: "kubernetes", NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(3650 * day)}, key, pkitest.Rand(7))
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

func overwrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckExpirationVerifiesChains: a kubeconfig whose client certificate another cluster's CA signed, a
// leaf whose key is not its certificate's, and a CA key that matches no certificate of ca.crt are each a
// problem (a row's Problem, the fail list, the metric), whatever their dates; a ca.crt bundle whose signer
// is not first is fine.
func TestCheckExpirationVerifiesChains(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(day)
	cfg := e.loadConfig()
	if info := CheckExpiration(cfg, e.kubeDir, now); len(info.ExpiringWithin(time.Hour)) != 0 {
		t.Fatalf("a fresh node has problems: %v", info.ExpiringWithin(time.Hour))
	}

	// admin.conf with a client certificate signed by another cluster's CA.
	other, otherSigner := foreignCA(t, e.keys)
	adminPath := filepath.Join(e.kubeDir, "admin.conf")
	kc, err := LoadKubeconfig(adminPath)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := pki.NewSignedCert(pki.CertRequest{CommonName: "kubernetes-admin", RawSubject: kc.ClientCert.RawSubject, NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(365 * day),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, kc.ClientKey.Public(), other, otherSigner, pkitest.Rand(8))
	if err != nil {
		t.Fatal(err)
	}
	kc.Config.AuthInfos[kc.User].ClientCertificateData = pki.EncodeCert(forged)
	if err := clientcmd.WriteToFile(*kc.Config, adminPath); err != nil {
		t.Fatal(err)
	}
	// apiserver.key replaced by another key.
	stranger, err := e.keys("stranger", pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	strangerPEM, _ := pki.EncodePrivateKey(stranger)
	overwrite(t, filepath.Join(e.certDir, "apiserver.key"), strangerPEM)

	info := CheckExpiration(cfg, e.kubeDir, now)
	rows := rowsBy(info.Certificates)
	if p := rows["admin.conf"].Problem; !strings.Contains(p, "not signed by ca on disk") {
		t.Errorf("admin.conf signed by a foreign CA: problem %q", p)
	}
	if p := rows["apiserver"].Problem; !strings.Contains(p, "private key does not match") {
		t.Errorf("apiserver with a stranger's key: problem %q", p)
	}
	for _, name := range []string{"scheduler.conf", "etcd-server", "front-proxy-client"} {
		if p := rows[name].Problem; p != "" {
			t.Errorf("%s: unexpected problem %q", name, p)
		}
	}
	fails := info.ExpiringWithin(0)
	if !slices.ContainsFunc(fails, func(s string) bool { return strings.HasPrefix(s, "admin.conf: not signed") }) ||
		!slices.ContainsFunc(fails, func(s string) bool { return strings.HasPrefix(s, "apiserver: ") }) {
		t.Errorf("fail list %v does not name both", fails)
	}
	var prom bytes.Buffer
	if err := info.WritePrometheus(&prom); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prom.String(), MetricChainProblem+`{name="admin.conf",kind="kubeconfig",ca="ca",path="`+adminPath+`"} 1`) ||
		!strings.Contains(prom.String(), MetricChainProblem+`{name="scheduler.conf",`) {
		t.Errorf("metrics lack the chain problem gauge:\n%s", prom.String())
	}

	// ca.crt as a bundle, the signer second: every leaf still verifies, the CA row is fine.
	caPath := filepath.Join(e.certDir, "ca.crt")
	caPEM, _ := os.ReadFile(caPath)
	overwrite(t, caPath, append(pki.EncodeCert(other), caPEM...))
	info = CheckExpiration(cfg, e.kubeDir, now)
	if r := rowsBy(info.CertificateAuthorities)["ca"]; r.Problem != "" {
		t.Errorf("bundle with the signer second: CA problem %q", r.Problem)
	}
	if p := rowsBy(info.Certificates)["scheduler.conf"].Problem; p != "" {
		t.Errorf("scheduler.conf against the bundle: %q", p)
	}
	if p := rowsBy(info.Certificates)["admin.conf"].Problem; p != "" {
		t.Errorf("admin.conf is signed by a certificate of the bundle now: %q", p)
	}
	// ca.key matching none of the bundle's certificates.
	overwrite(t, caPath, pki.EncodeCert(other))
	info = CheckExpiration(cfg, e.kubeDir, now)
	if r := rowsBy(info.CertificateAuthorities)["ca"]; !strings.Contains(r.Problem, "matches none of the 1 certificate(s) in "+caPath) {
		t.Errorf("ca.key matching no certificate: problem %q", r.Problem)
	}
}

// TestCAEndOfLifeWarning: a CA that expires before a certificate signed today would is warned about, with
// its date; one with years left is not.
func TestCAEndOfLifeWarning(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	if info := CheckExpiration(cfg, e.kubeDir, pkitest.Now.Add(day)); len(info.Warnings) != 0 {
		t.Errorf("fresh CAs warned about: %v", info.Warnings)
	}
	late := pkitest.Now.Add(3650*day - 100*day) // every CA has 100 days left; leaves last 365
	info := CheckExpiration(cfg, e.kubeDir, late)
	if len(info.Warnings) != 3 || !strings.Contains(info.Warnings[0], "CA ca expires on "+pkitest.Now.Add(3650*day).UTC().Format(time.RFC3339)) ||
		!strings.Contains(info.Warnings[0], `"k8scrypto ca renew ca"`) {
		t.Errorf("warnings = %q", info.Warnings)
	}
}
