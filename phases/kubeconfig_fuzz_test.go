package phases

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var clientKeyData = regexp.MustCompile(`client-key-data["']?\s*:\s*["']?([A-Za-z0-9+/=]+)`)

// FuzzParseKubeconfig feeds arbitrary files to the kubeconfig loader that init's reuse checks, renewal and
// expiry checks share. It must never panic or hang, never quote the client key in an error, and what it
// accepts must go through renewal's rewrite (new CA data, client certificate and key) into a file that
// loads again with the new credentials.
func FuzzParseKubeconfig(f *testing.F) {
	alg := pki.ECDSAP256
	caKey, key := pkitest.MustKey(alg, "ca"), pkitest.MustKey(alg, "admin.conf")
	ca, err := pki.NewSelfSignedCA(pki.CertRequest{CommonName: "kubernetes", NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(pki.DefaultCAValidity)}, caKey, pkitest.Rand(1))
	if err != nil {
		f.Fatal(err)
	}
	cert, err := pki.NewSignedCert(pki.CertRequest{CommonName: "kubernetes-admin", Organization: []string{"kubeadm:cluster-admins"},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: pkitest.Now, NotAfter: pkitest.Now.Add(pki.DefaultCertValidity)},
		key.Public(), ca, caKey, pkitest.Rand(2))
	if err != nil {
		f.Fatal(err)
	}
	admin, err := EncodeKubeconfig("https://10.0.0.5:6443", "kubernetes", "kubernetes-admin", ca, cert, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(admin)
	f.Add(admin[:len(admin)*2/3])
	// A bootstrapped kubelet.conf refers to files, relative to its own directory.
	dir := f.TempDir()
	keyPEM, _ := pki.EncodePrivateKey(key)
	for name, data := range map[string][]byte{"client.pem": append(pki.EncodeCert(cert), keyPEM...), "ca.crt": pki.EncodeCert(ca)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte(`apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster: {server: "https://10.0.0.5:6443", certificate-authority: ca.crt}
contexts:
- name: system:node:cp-1@kubernetes
  context: {cluster: kubernetes, user: system:node:cp-1}
current-context: system:node:cp-1@kubernetes
users:
- name: system:node:cp-1
  user: {client-certificate: client.pem, client-key: client.pem}
`))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: abc}\nclusters:\n- name: c\n  cluster: {server: https://h}\n"))

	newKey := pkitest.MustKey(alg, "spare-a")
	path := filepath.Join(dir, "admin.conf")
	f.Fuzz(func(t *testing.T, data []byte) {
		kc, err := ParseKubeconfig(path, data)
		if err != nil {
			for _, m := range clientKeyData.FindAllSubmatch(data, -1) {
				checkNotQuoted(t, err, m[1])
				if raw, derr := base64.StdEncoding.DecodeString(string(m[1])); derr == nil {
					checkNotQuoted(t, err, raw)
				}
			}
			return
		}
		if kc.ClientCert == nil || kc.ClientKey == nil {
			t.Fatal("accepted without client certificate and key")
		}
		_ = pki.KeyMatchesCert(kc.ClientKey, kc.ClientCert)
		out, err := renderKubeconfig(kc, cert, newKey, ca)
		if err != nil {
			return // e.g. a client key of a type clientcmd cannot write back; refused, not panicked
		}
		again, err := ParseKubeconfig(path, out)
		if err != nil {
			t.Fatalf("renewal wrote a kubeconfig that does not load: %v\n%s", err, out)
		}
		if !pki.SameCert(again.ClientCert, cert) || !pki.PublicKeysEqual(again.ClientKey.Public(), newKey.Public()) ||
			len(again.CAs) == 0 || !pki.SameCert(again.CAs[0], ca) {
			t.Fatal("renewal's rewrite did not carry the new CA, certificate and key")
		}
	})
}

func checkNotQuoted(t *testing.T, err error, secret []byte) {
	t.Helper()
	const window = 24
	msg := []byte(err.Error())
	for i := 0; i+window <= len(secret); i += window {
		if bytes.Contains(msg, secret[i:i+window]) {
			t.Fatalf("error quotes the client key: %v", err)
		}
	}
}
