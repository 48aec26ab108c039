package phases

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestCARenewalKeepsEveryLeafValid: renewing each CA with its own key, even long after it expired, keeps
// its subject, key and SubjectKeyId and gives it a new serial and validity; every leaf and kubeconfig
// client certificate it signed still verifies against the new certificate; kubeconfigs carry the renewed
// cluster CA; check-expiration finds no chain problem afterwards.
func TestCARenewalKeepsEveryLeafValid(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	mid := pkitest.Now.Add(100 * day)
	before := map[string]*x509.Certificate{}
	for _, s := range cfg.Certs() {
		before[s.Name] = readCertFile(t, s.CertPath(cfg.CertDir))
	}
	plan, err := PlanCARenewal(cfg, e.kubeDir, CANames, mid, pkitest.Rand(11))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Renewed) != 3 || len(plan.Renewed[0].Embedding) != 5 {
		t.Fatalf("renewed %+v", plan.Renewed)
	}
	for _, f := range plan.Files {
		if err := os.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range cfg.Certs() {
		if !s.IsCA() {
			continue
		}
		old, renewed := before[s.Name], readCertFile(t, s.CertPath(cfg.CertDir))
		if !bytes.Equal(old.RawSubject, renewed.RawSubject) || !bytes.Equal(old.SubjectKeyId, renewed.SubjectKeyId) ||
			!bytes.Equal(old.RawSubjectPublicKeyInfo, renewed.RawSubjectPublicKeyInfo) || old.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
			t.Errorf("%s: subject, SKI or key changed, or the serial did not", s.Name)
		}
		if !renewed.NotAfter.Equal(mid.Add(cfg.CAValidity).UTC().Truncate(time.Second)) || !renewed.NotBefore.Before(mid) {
			t.Errorf("%s: valid %s to %s", s.Name, renewed.NotBefore, renewed.NotAfter)
		}
	}
	for _, s := range cfg.Certs() {
		if s.IsCA() {
			continue
		}
		leaf := before[s.Name]
		ca := readCertFile(t, filepath.Join(cfg.CertDir, caFile(cfg, s.CAName)))
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: mid, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s no longer verifies against the renewed %s: %v", s.Name, s.CAName, err)
		}
	}
	renewedCA := readCertFile(t, filepath.Join(cfg.CertDir, "ca.crt"))
	for _, k := range pki.Kubeconfigs() {
		kc, err := LoadKubeconfig(k.Path(e.kubeDir))
		if err != nil {
			t.Fatal(err)
		}
		if !kc.CAs[0].Equal(renewedCA) {
			t.Errorf("%s: certificate-authority-data is not the renewed CA", k.FileName)
		}
		if err := kc.ClientCert.CheckSignatureFrom(renewedCA); err != nil {
			t.Errorf("%s: client certificate does not verify against the renewed CA: %v", k.FileName, err)
		}
	}
	info := CheckExpiration(cfg, e.kubeDir, mid)
	for _, r := range append(info.Certificates, info.CertificateAuthorities...) {
		if r.Problem != "" || r.Error != "" {
			t.Errorf("%s after renewal: %s %s", r.Name, r.Problem, r.Error)
		}
	}

	// Long after every CA expired, renewal still works from the key: the recovery.
	late := pkitest.Now.Add(3651 * day)
	plan, err = PlanCARenewal(cfg, e.kubeDir, []string{"etcd-ca"}, late, pkitest.Rand(13))
	if err != nil {
		t.Fatal(err)
	}
	recovered, _, err := pki.ParseCertChain(plan.Files[0].Data)
	if err != nil || !recovered.NotAfter.After(late) || recovered.CheckSignatureFrom(recovered) != nil || before["etcd-server"].CheckSignatureFrom(recovered) != nil {
		t.Errorf("recovering an expired etcd-ca: %v, valid until %s", err, recovered.NotAfter)
	}
}

// TestCARenewalInABundle: with ca.crt a bundle whose signer is second, only the signer is replaced, in
// place; a bundle no certificate of which matches ca.key is refused, naming the count.
func TestCARenewalInABundle(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	other, _ := foreignCA(t, e.keys)
	caPath := filepath.Join(cfg.CertDir, "ca.crt")
	own, _ := os.ReadFile(caPath)
	overwrite(t, caPath, append(pki.EncodeCert(other), own...))
	plan, err := PlanCARenewal(cfg, e.kubeDir, []string{"ca"}, pkitest.Now.Add(day), pkitest.Rand(12))
	if err != nil {
		t.Fatal(err)
	}
	first, rest, err := pki.ParseCertChain(plan.Files[0].Data)
	if err != nil || len(rest) != 1 || !first.Equal(other) || rest[0].Equal(readCertFile(t, caPath)) {
		t.Fatalf("bundle after renewal: first %v, %d more, err %v", first.Subject, len(rest), err)
	}
	overwrite(t, caPath, pki.EncodeCert(other))
	if _, err := PlanCARenewal(cfg, e.kubeDir, []string{"ca"}, pkitest.Now.Add(day), pkitest.Rand(12)); err == nil || !bytes.Contains([]byte(err.Error()), []byte("matches none of the 1 certificate(s) in "+caPath)) {
		t.Errorf("no signer in the bundle: %v", err)
	}
}

func readCertFile(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, _, err := LoadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caFile(cfg *pki.Config, name string) string {
	for _, s := range cfg.Certs() {
		if s.Name == name {
			rel, _ := filepath.Rel(cfg.CertDir, s.CertPath(cfg.CertDir))
			return rel
		}
	}
	return ""
}

// TestCARenewalDuringARotation: "ca renew ca" between prepare and promote replaces the signer in ca.crt and
// in its one-certificate copy for kube-controller-manager (CASignerFile), so kube-controller-manager signs
// with the certificate every bundle carries.
func TestCARenewalDuringARotation(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	now := pkitest.Now.Add(day)
	r := &CARotation{Cfg: cfg, KubeconfigDir: e.kubeDir, Name: "ca", Now: now, Keys: e.keys, Rand: pkitest.Rand(5)}
	if err := r.Read(); err != nil {
		t.Fatal(err)
	}
	p, err := r.Plan(context.Background(), "prepare")
	if err != nil {
		t.Fatal(err)
	}
	applyPlan(t, p)
	plan, err := PlanCARenewal(cfg, e.kubeDir, []string{"ca"}, now.Add(day), pkitest.Rand(12))
	if err != nil {
		t.Fatal(err)
	}
	signer := filepath.Join(cfg.CertDir, CASignerFile)
	var bundle, alone []byte
	for _, f := range plan.Files {
		switch f.Path {
		case filepath.Join(cfg.CertDir, "ca.crt"):
			bundle = f.Data
		case signer:
			alone = f.Data
		}
	}
	renewed, _, err := pki.ParseCertChain(bundle)
	if err != nil {
		t.Fatal(err)
	}
	c, rest, err := pki.ParseCertChain(alone)
	if err != nil || len(rest) != 0 || !c.Equal(renewed) {
		t.Fatalf("%s in the renewal plan: %v, %d more; want the renewed signer alone", signer, err, len(rest))
	}
	if !slices.Contains(plan.Renewed[0].Embedding, signer) {
		t.Errorf("the result does not list %s: %v", signer, plan.Renewed[0].Embedding)
	}
}
