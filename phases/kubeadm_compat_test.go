package phases_test

// This file runs kubeadm v1.37.2's own certificate code (certsphase.CreatePKIAssets) and k8scrypto's certs
// and sa phases on the same kubeadm v1beta4 file, each into its own directory, and compares every field of
// every certificate, every key's format and algorithm, every file name and every mode.

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"io/fs"
	"maps"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	certutil "k8s.io/client-go/util/cert"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmscheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme"
	kubeadmv1beta4 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	kubeadmutil "k8s.io/kubernetes/cmd/kubeadm/app/util"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

var compatInit = pkitest.KubeadmInit

var compatCases = []struct {
	name string
	yaml string
}{
	{"RSA-2048", compatInit},
	{"ECDSA-P256", compatInit + `---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: ECDSA-P256
certificateValidityPeriod: 2160h
caCertificateValidityPeriod: 43800h
`},
	{"ECDSA-P384", compatInit + `---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: ECDSA-P384
`},
	{"dual-stack", `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: fd00::5
nodeRegistration:
  name: cp-6
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: "[fd00::100]:6443"
networking:
  serviceSubnet: fd00:10:96::/112,10.96.0.0/16
  dnsDomain: k8s.example.org
`},
	{"external-etcd", compatInit + `---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
etcd:
  external:
    endpoints: [https://etcd-0.example.com:2379]
    caFile: /etc/etcd/ca.crt
    certFile: /etc/etcd/client.crt
    keyFile: /etc/etcd/client.key
`},
	{"extra-SANs", `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
nodeRegistration:
  name: " CP-1 "
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndpoint: lb.example.com:6443
apiServer:
  certSANs:
  - 10.96.0.1
  - LB.Example.com
  - "*.wild.example.com"
  - foo.example.com
  - foo.example.com
  - 1.2.3.4
  - 2001:db8::1
  - kubernetes
  - 10.0.0.5
etcd:
  local:
    serverCertSANs: [etcd.example.com, 192.168.1.1, etcd.example.com, "*.etcd.example.com", 127.0.0.1]
    peerCertSANs: [peer.example.com, 192.168.1.2, "2001:db8::2"]
`},
}

// kubeadmInitConfiguration builds kubeadm's internal InitConfiguration from a v1beta4 file the way
// documentMapToInitConfiguration does (scheme decoding with v1beta4 defaulting and conversion, defaults for
// a missing document), then applies the two dynamic defaults the certificates depend on: the node name
// canonicalised as component-helpers' GetHostname does (trimmed, lower-cased) and certSANs lower-cased
// (LowercaseSANs). Both test configurations set the advertise address, so no interface is probed.
func kubeadmInitConfiguration(t *testing.T, data []byte, certDir string) *kubeadmapi.InitConfiguration {
	t.Helper()
	docs, err := kubeadmutil.SplitConfigDocuments(data)
	if err != nil {
		t.Fatal(err)
	}
	var initcfg *kubeadmapi.InitConfiguration
	var clustercfg *kubeadmapi.ClusterConfiguration
	for gvk, doc := range docs {
		switch gvk.Kind {
		case "InitConfiguration":
			initcfg = &kubeadmapi.InitConfiguration{}
			if err := runtime.DecodeInto(kubeadmscheme.Codecs.UniversalDecoder(), doc, initcfg); err != nil {
				t.Fatal(err)
			}
		case "ClusterConfiguration":
			clustercfg = &kubeadmapi.ClusterConfiguration{}
			if err := runtime.DecodeInto(kubeadmscheme.Codecs.UniversalDecoder(), doc, clustercfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if initcfg == nil {
		ext := &kubeadmv1beta4.InitConfiguration{}
		kubeadmscheme.Scheme.Default(ext)
		initcfg = &kubeadmapi.InitConfiguration{}
		if err := kubeadmscheme.Scheme.Convert(ext, initcfg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if clustercfg == nil {
		ext := &kubeadmv1beta4.ClusterConfiguration{}
		kubeadmscheme.Scheme.Default(ext)
		clustercfg = &kubeadmapi.ClusterConfiguration{}
		if err := kubeadmscheme.Scheme.Convert(ext, clustercfg, nil); err != nil {
			t.Fatal(err)
		}
	}
	initcfg.ClusterConfiguration = *clustercfg
	initcfg.NodeRegistration.Name = strings.ToLower(strings.TrimSpace(initcfg.NodeRegistration.Name))
	for i, s := range initcfg.APIServer.CertSANs {
		initcfg.APIServer.CertSANs[i] = strings.ToLower(s)
	}
	initcfg.CertificatesDir = certDir
	return initcfg
}

// runKubeadm runs kubeadm's CreatePKIAssets (certificates, then sa.key/sa.pub) with its "[certs]" lines
// kept out of the test output.
func runKubeadm(t *testing.T, cfg *kubeadmapi.InitConfiguration) {
	t.Helper()
	stdout := os.Stdout
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = null
	defer func() { os.Stdout = stdout; null.Close() }()
	if err := certsphase.CreatePKIAssets(cfg); err != nil {
		t.Fatalf("kubeadm CreatePKIAssets: %v", err)
	}
}

// TestMatchesKubeadm is the field-by-field comparison of issue 2.
func TestMatchesKubeadm(t *testing.T) {
	old := syscall.Umask(0o022) // kubeadm's modes depend on the umask; ours must not, but compare at the usual one
	defer syscall.Umask(old)
	kubeadmNow := kubeadmutil.StartTimeUTC() // kubeadm's clock: the process start time
	for _, tc := range compatCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "kubeadm.yaml")
			writeFile(t, file, []byte(tc.yaml))
			ours, theirs := filepath.Join(dir, "k8scrypto"), filepath.Join(dir, "kubeadm")

			cfg, err := config.Load(file, config.Overrides{CertDir: ours}, func() (string, error) { return "unused", nil })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := run(cfg.PKI, pkitest.Now, nil, phases.Selection{Only: []string{"certs", "sa"}}); err != nil {
				t.Fatal(err)
			}
			runKubeadm(t, kubeadmInitConfiguration(t, []byte(tc.yaml), theirs))

			compareTrees(t, ours, theirs, pkitest.Now, kubeadmNow)
		})
	}
}

// compareTrees compares two certificate directories: the same names and modes, and for each certificate
// and key the same fields.
func compareTrees(t *testing.T, ours, theirs string, ourNow, theirNow time.Time) {
	t.Helper()
	a, b := modes(t, ours), modes(t, theirs)
	if !maps.Equal(a, b) {
		t.Fatalf("file trees differ:\n k8scrypto: %v\n kubeadm:   %v", a, b)
	}
	certs := map[string][2]*x509.Certificate{}
	for rel := range a {
		if strings.HasSuffix(rel, ".crt") {
			certs[strings.TrimSuffix(rel, ".crt")] = [2]*x509.Certificate{
				readCert(t, filepath.Join(ours, rel)), readCert(t, filepath.Join(theirs, rel)),
			}
		}
	}
	if len(certs) == 0 {
		t.Fatal("no certificates compared")
	}
	for base, pair := range certs {
		compareCert(t, base, pair[0], pair[1], ourNow, theirNow)
		for i, root := range []string{ours, theirs} {
			key := readKey(t, filepath.Join(root, base+".key"), pemType(t, filepath.Join(ours, base+".key")))
			if !pki.KeyMatchesCert(key, pair[i]) {
				t.Errorf("%s: %s.key does not match its certificate", root, base)
			}
			if !pair[i].IsCA {
				ca := certs[caBase(pair[i], certs, i)][i]
				if ca == nil || !bytes.Equal(pair[i].AuthorityKeyId, ca.SubjectKeyId) || pair[i].CheckSignatureFrom(ca) != nil {
					t.Errorf("%s: %s is not signed by its CA with a matching AKI", root, base)
				}
			}
		}
		if pa, pb := pemType(t, filepath.Join(ours, base+".key")), pemType(t, filepath.Join(theirs, base+".key")); pa != pb {
			t.Errorf("%s.key: PEM block %q, kubeadm %q", base, pa, pb)
		}
	}
	// sa.key and sa.pub: same formats, same algorithm, each pub matching its key.
	for _, f := range []string{"sa.key", "sa.pub"} {
		if pa, pb := pemType(t, filepath.Join(ours, f)), pemType(t, filepath.Join(theirs, f)); pa != pb {
			t.Errorf("%s: PEM block %q, kubeadm %q", f, pa, pb)
		}
	}
	var algs [2]pki.Algorithm
	for i, root := range []string{ours, theirs} {
		key := readKey(t, filepath.Join(root, "sa.key"), pemType(t, filepath.Join(root, "sa.key")))
		data, _ := os.ReadFile(filepath.Join(root, "sa.pub"))
		pubs, err := pki.ParsePublicKeys(data)
		if err != nil || len(pubs) != 1 || !pki.PublicKeysEqual(pubs[0], key.Public()) {
			t.Errorf("%s: sa.pub does not hold exactly sa.key's public key", root)
		}
		algs[i] = pki.AlgorithmOf(key.Public())
	}
	if algs[0] != algs[1] || algs[0] == "" {
		t.Errorf("sa.key algorithm %q, kubeadm %q", algs[0], algs[1])
	}
}

func caBase(cert *x509.Certificate, certs map[string][2]*x509.Certificate, i int) string {
	for base, pair := range certs {
		if pair[i].IsCA && bytes.Equal(pair[i].RawSubject, cert.RawIssuer) {
			return base
		}
	}
	return ""
}

var (
	oidSKI = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKI = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// compareCert compares every field of two certificates for the same file. Key-dependent values (serial,
// key, SKI/AKI, signature) are compared by kind and presence; times relative to each run's clock.
func compareCert(t *testing.T, name string, a, b *x509.Certificate, aNow, bNow time.Time) {
	t.Helper()
	diff := func(field string, x, y any) { t.Errorf("%s: %s = %v, kubeadm %v", name, field, x, y) }
	if a.Version != b.Version {
		diff("version", a.Version, b.Version)
	}
	if !bytes.Equal(a.RawSubject, b.RawSubject) {
		diff("subject (DER)", a.Subject, b.Subject)
	}
	if !bytes.Equal(a.RawIssuer, b.RawIssuer) {
		diff("issuer (DER)", a.Issuer, b.Issuer)
	}
	if a.SignatureAlgorithm != b.SignatureAlgorithm {
		diff("signature algorithm", a.SignatureAlgorithm, b.SignatureAlgorithm)
	}
	if a.PublicKeyAlgorithm != b.PublicKeyAlgorithm || pki.AlgorithmOf(a.PublicKey) != pki.AlgorithmOf(b.PublicKey) || pki.AlgorithmOf(a.PublicKey) == "" {
		diff("key algorithm", pki.AlgorithmOf(a.PublicKey), pki.AlgorithmOf(b.PublicKey))
	}
	if a.KeyUsage != b.KeyUsage {
		diff("KeyUsage", a.KeyUsage, b.KeyUsage)
	}
	if !slices.Equal(a.ExtKeyUsage, b.ExtKeyUsage) || len(a.UnknownExtKeyUsage)+len(b.UnknownExtKeyUsage) != 0 {
		diff("ExtKeyUsage", a.ExtKeyUsage, b.ExtKeyUsage)
	}
	if a.BasicConstraintsValid != b.BasicConstraintsValid || a.IsCA != b.IsCA || a.MaxPathLen != b.MaxPathLen || a.MaxPathLenZero != b.MaxPathLenZero {
		diff("basic constraints", [4]any{a.BasicConstraintsValid, a.IsCA, a.MaxPathLen, a.MaxPathLenZero}, [4]any{b.BasicConstraintsValid, b.IsCA, b.MaxPathLen, b.MaxPathLenZero})
	}
	if !slices.Equal(a.DNSNames, b.DNSNames) {
		diff("DNS SANs", a.DNSNames, b.DNSNames)
	}
	//lint:ignore SA1021 the encoded addresses must match byte for byte (4 vs 16 bytes), not only as IPs
	if !slices.EqualFunc(a.IPAddresses, b.IPAddresses, func(x, y net.IP) bool { return bytes.Equal(x, y) }) {
		diff("IP SANs", a.IPAddresses, b.IPAddresses)
	}
	if len(a.EmailAddresses)+len(b.EmailAddresses)+len(a.URIs)+len(b.URIs) != 0 {
		diff("email/URI SANs", a.EmailAddresses, b.EmailAddresses)
	}
	// x509 times have second precision; kubeadm's clock does not.
	if da, db := a.NotBefore.Sub(aNow), b.NotBefore.Sub(bNow.Truncate(time.Second)); da != db || da != -5*time.Minute {
		diff("NotBefore - now", da, db)
	}
	if sa, sb := a.NotAfter.Sub(a.NotBefore), b.NotAfter.Sub(b.NotBefore); sa != sb {
		diff("validity span", sa, sb)
	}
	maxSerial := big.NewInt(math.MaxInt64)
	for _, s := range []*big.Int{a.SerialNumber, b.SerialNumber} {
		if s.Sign() <= 0 || s.Cmp(maxSerial) >= 0 {
			diff("serial range", a.SerialNumber, b.SerialNumber)
		}
	}
	// Every extension in the same order with the same criticality and, except the key identifiers (which
	// depend on the key), the same DER value: this covers the SANs exactly as encoded.
	if len(a.Extensions) != len(b.Extensions) {
		diff("extensions", oids(a), oids(b))
		return
	}
	for i, ea := range a.Extensions {
		eb := b.Extensions[i]
		if !ea.Id.Equal(eb.Id) || ea.Critical != eb.Critical {
			diff("extension "+ea.Id.String(), ea.Critical, eb.Critical)
			continue
		}
		if ea.Id.Equal(oidSKI) || ea.Id.Equal(oidAKI) {
			if len(ea.Value) != len(eb.Value) {
				diff("length of "+ea.Id.String(), len(ea.Value), len(eb.Value))
			}
			continue
		}
		if !bytes.Equal(ea.Value, eb.Value) {
			diff("value of extension "+ea.Id.String(), ea.Value, eb.Value)
		}
	}
	if (len(a.SubjectKeyId) > 0) != (len(b.SubjectKeyId) > 0) || (len(a.AuthorityKeyId) > 0) != (len(b.AuthorityKeyId) > 0) {
		diff("SKI/AKI presence", [2]int{len(a.SubjectKeyId), len(a.AuthorityKeyId)}, [2]int{len(b.SubjectKeyId), len(b.AuthorityKeyId)})
	}
}

func oids(c *x509.Certificate) []string {
	var out []string
	for _, e := range c.Extensions {
		out = append(out, e.Id.String())
	}
	return out
}

func pemType(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || len(rest) != 0 {
		t.Fatalf("%s: want exactly one PEM block", path)
	}
	return block.Type
}

// modes maps every entry under root (relative path) to its permission bits and type.
func modes(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeyIdentifiersMatchKubeadm compares the key identifiers by value, which TestMatchesKubeadm (two runs, two
// sets of keys) can only compare by presence: for every certificate k8scrypto wrote, kubeadm's own
// pkiutil.NewSelfSignedCACert or NewSignedCert is given the same key (and the same CA) and must produce the
// same SubjectKeyId and AuthorityKeyId byte for byte.
func TestKeyIdentifiersMatchKubeadm(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			cfg := pkiConfig(t, alg)
			if _, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"certs"}}); err != nil {
				t.Fatal(err)
			}
			for _, spec := range cfg.Certs() {
				ours := readCert(t, spec.CertPath(cfg.CertDir))
				key := readKey(t, spec.KeyPath(cfg.CertDir), keyBlockType(alg))
				kcfg := &pkiutil.CertConfig{Config: certutil.Config{CommonName: ours.Subject.CommonName, Organization: ours.Subject.Organization, Usages: ours.ExtKeyUsage}}
				var theirs *x509.Certificate
				var err error
				if spec.IsCA() {
					theirs, err = pkiutil.NewSelfSignedCACert(kcfg, key)
				} else {
					caSpec, _ := pki.LookupCert(spec.CAName)
					ca := readCert(t, caSpec.CertPath(cfg.CertDir))
					caKey := readKey(t, caSpec.KeyPath(cfg.CertDir), keyBlockType(alg))
					theirs, err = pkiutil.NewSignedCert(kcfg, key, ca, caKey, false)
				}
				if err != nil {
					t.Fatalf("%s: kubeadm: %v", spec.Name, err)
				}
				if !bytes.Equal(ours.SubjectKeyId, theirs.SubjectKeyId) {
					t.Errorf("%s: SubjectKeyId %x, kubeadm computes %x for the same key", spec.Name, ours.SubjectKeyId, theirs.SubjectKeyId)
				}
				if !bytes.Equal(ours.AuthorityKeyId, theirs.AuthorityKeyId) {
					t.Errorf("%s: AuthorityKeyId %x, kubeadm computes %x for the same CA", spec.Name, ours.AuthorityKeyId, theirs.AuthorityKeyId)
				}
				if spec.IsCA() && len(ours.SubjectKeyId) == 0 {
					t.Errorf("%s: a CA without a SubjectKeyId", spec.Name)
				}
			}
		})
	}
}
