package phases_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// wantSANs are the SANs of the base configuration (node cp-1, advertise 10.0.0.5, default networking), in
// the order kubeadm encodes them.
var wantSANs = map[string][2][]string{
	"ca":             {{"kubernetes"}, nil},
	"apiserver":      {{"cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, {"10.96.0.1", "10.0.0.5"}},
	"front-proxy-ca": {{"front-proxy-ca"}, nil},
	"etcd-ca":        {{"etcd-ca"}, nil},
	"etcd-server":    {{"cp-1", "localhost"}, {"10.0.0.5", "127.0.0.1", "::1"}},
	"etcd-peer":      {{"cp-1", "localhost"}, {"10.0.0.5", "127.0.0.1", "::1"}},
}

// TestCertsPerCertificate parses every file of a fresh run and checks each property issue 2 names.
func TestCertsPerCertificate(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			cfg := pkiConfig(t, alg)
			res := mustRun(t, cfg, pkitest.Now)
			certs := map[string]*x509.Certificate{}
			for _, spec := range cfg.Certs() {
				cert := readCert(t, spec.CertPath(cfg.CertDir))
				key := readKey(t, spec.KeyPath(cfg.CertDir), keyBlockType(alg))
				certs[spec.Name] = cert
				checkCert(t, cfg, spec, cert)
				if !pki.KeyMatchesCert(key, cert) {
					t.Errorf("%s: key does not match certificate", spec.Name)
				}
				if got := pki.AlgorithmOf(cert.PublicKey); got != alg {
					t.Errorf("%s: key algorithm %q, want %q", spec.Name, got, alg)
				}
			}
			for _, spec := range cfg.Certs() {
				cert := certs[spec.Name]
				if spec.IsCA() {
					if len(cert.SubjectKeyId) != 20 {
						t.Errorf("%s: SKI %x", spec.Name, cert.SubjectKeyId)
					}
					continue
				}
				ca := certs[spec.CAName]
				if len(cert.SubjectKeyId) != 0 || !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
					t.Errorf("%s: SKI %x AKI %x; want no SKI and AKI = %s's SKI", spec.Name, cert.SubjectKeyId, cert.AuthorityKeyId, spec.CAName)
				}
				for caName, other := range certs {
					if !other.IsCA {
						continue
					}
					err := pki.VerifyChain(cert, nil, other, pkitest.Now)
					if caName == spec.CAName && err != nil {
						t.Errorf("%s: does not verify against %s: %v", spec.Name, caName, err)
					}
					if caName != spec.CAName && err == nil {
						t.Errorf("%s: verifies against %s too", spec.Name, caName)
					}
				}
			}
			checkSA(t, cfg)
			checkModes(t, cfg, pki.ModeCert, pki.ModeDir)
			if len(res.Files) != 2*len(cfg.Certs())+2 {
				t.Errorf("%d results, want %d", len(res.Files), 2*len(cfg.Certs())+2)
			}
			for _, f := range res.Files {
				if f.Action != phases.ActionCreated || f.Path == "" {
					t.Errorf("result %+v, want created with a path", f)
				}
			}
		})
	}
}

func checkCert(t *testing.T, cfg *pki.Config, spec pki.CertSpec, cert *x509.Certificate) {
	t.Helper()
	n := spec.Name
	if cert.Subject.CommonName != spec.CN(cfg) || len(cert.Subject.Organization) != 0 || len(cert.Subject.Names) != 1 {
		t.Errorf("%s: subject %s, want CN=%s only", n, cert.Subject, spec.CN(cfg))
	}
	if cert.Issuer.String() != "CN="+map[bool]string{true: spec.CommonName, false: caCN(spec.CAName)}[spec.IsCA()] {
		t.Errorf("%s: issuer %s", n, cert.Issuer)
	}
	want := wantSANs[n]
	if !slices.Equal(cert.DNSNames, want[0]) || !slices.Equal(ipStrings(cert), want[1]) {
		t.Errorf("%s: SANs DNS=%v IP=%v, want DNS=%v IP=%v", n, cert.DNSNames, ipStrings(cert), want[0], want[1])
	}
	ku := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	validity := pki.DefaultCertValidity
	if spec.IsCA() {
		ku |= x509.KeyUsageCertSign
		validity = pki.DefaultCAValidity
	}
	if cert.KeyUsage != ku || !slices.Equal(cert.ExtKeyUsage, spec.Usages) {
		t.Errorf("%s: KU %b EKU %v, want %b %v", n, cert.KeyUsage, cert.ExtKeyUsage, ku, spec.Usages)
	}
	if !cert.BasicConstraintsValid || cert.IsCA != spec.IsCA() || cert.MaxPathLen > 0 || cert.MaxPathLenZero {
		t.Errorf("%s: BC %v IsCA %v MaxPathLen %d/%v", n, cert.BasicConstraintsValid, cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if !cert.NotBefore.Equal(pkitest.Now.Add(-5*time.Minute)) || !cert.NotAfter.Equal(pkitest.Now.Add(validity)) {
		t.Errorf("%s: valid %s..%s, want now-5m..now+%s", n, cert.NotBefore, cert.NotAfter, validity)
	}
	if span := cert.NotAfter.Sub(cert.NotBefore); span != validity+5*time.Minute {
		t.Errorf("%s: span %s", n, span)
	}
}

func caCN(name string) string {
	spec, _ := pki.LookupCert(name)
	return spec.CommonName
}

func ipStrings(cert *x509.Certificate) []string {
	var out []string
	for _, ip := range cert.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func checkSA(t *testing.T, cfg *pki.Config) {
	t.Helper()
	key := readKey(t, filepath.Join(cfg.CertDir, "sa.key"), keyBlockType(cfg.Algorithm))
	data, err := os.ReadFile(filepath.Join(cfg.CertDir, "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := pki.ParsePublicKeys(data)
	if err != nil || len(pubs) != 1 || !pki.PublicKeysEqual(pubs[0], key.Public()) || !strings.HasPrefix(string(data), "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("sa.pub is not the PKIX public key of sa.key (%v)", err)
	}
	if pki.AlgorithmOf(key.Public()) != cfg.Algorithm {
		t.Errorf("sa.key algorithm %q", pki.AlgorithmOf(key.Public()))
	}
}

// checkModes walks the certificate directory: keys and sa.pub 0600, certificates certMode, directories dirMode,
// no temp or journal file.
func checkModes(t *testing.T, cfg *pki.Config, certMode, dirMode os.FileMode) {
	t.Helper()
	err := filepath.WalkDir(cfg.CertDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := pki.ModeKey
		switch {
		case d.IsDir():
			want = dirMode
		case strings.HasSuffix(p, ".crt"):
			want = certMode
		case pki.IsBookkeeping(d.Name()):
			t.Errorf("bookkeeping file left: %s", p)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCertsGolden pins every byte of an RSA-2048 run with fixture keys, a fixed clock and seeded serials
// (RSA PKCS#1 v1.5 signatures are deterministic). Update with: go test ./phases -run TestCertsGolden -update
func TestCertsGolden(t *testing.T) {
	cfg := pkiConfig(t, pki.RSA2048)
	mustRun(t, cfg, pkitest.Now)
	var b strings.Builder
	snap := pkitest.MustSnapshot(t, cfg.CertDir)
	var paths []string
	for p := range snap {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		st := snap[p]
		fmt.Fprintf(&b, "%s %04o %s\n", p, st.Mode.Perm(), st.SHA256)
		if strings.HasSuffix(p, ".crt") {
			c := readCert(t, filepath.Join(cfg.CertDir, p))
			fmt.Fprintf(&b, "  subject=%s issuer=%s serial=%s\n  notBefore=%s notAfter=%s\n  dns=%v ip=%v ku=%b eku=%v ca=%v\n",
				c.Subject, c.Issuer, c.SerialNumber, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339),
				c.DNSNames, ipStrings(c), c.KeyUsage, c.ExtKeyUsage, c.IsCA)
		}
	}
	golden := filepath.Join("testdata", "certs-rsa2048.golden")
	if update() {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if string(want) != b.String() {
		t.Errorf("output differs from %s (re-run with -update if intended):\n%s", golden, b.String())
	}
}

// TestRerunChangesNothing: a second run with the same inputs (later clock, other keys) leaves every byte
// and mtime as it was and reports every file reused.
func TestRerunChangesNothing(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		cfg := pkiConfig(t, alg)
		mustRun(t, cfg, pkitest.Now)
		before := pkitest.MustSnapshot(t, cfg.CertDir)
		res, err := run(cfg, pkitest.Now.Add(30*24*time.Hour), nil, phases.Selection{})
		if err != nil {
			t.Fatal(err)
		}
		assertUnchanged(t, before, cfg.CertDir)
		if len(res.Files) != 2*len(cfg.Certs())+2 {
			t.Errorf("%s: %d results", alg, len(res.Files))
		}
		for _, f := range res.Files {
			if f.Action != phases.ActionReused {
				t.Errorf("%s: %s %s, want reused", alg, f.Action, f.Path)
			}
		}
	}
}

// TestExternalCA: ca.crt without ca.key. With every leaf present the run reuses all; with a leaf (or sa.key)
// missing it fails naming what to provide, and writes nothing.
func TestExternalCA(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	mustRun(t, cfg, pkitest.Now)
	if err := os.Remove(filepath.Join(cfg.CertDir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	res, err := run(cfg, pkitest.Now, nil, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, before, cfg.CertDir)
	for _, f := range res.Files {
		if f.Action != phases.ActionReused {
			t.Errorf("%s %s, want reused", f.Action, f.Path)
		}
		if strings.HasSuffix(f.Path, "/ca.crt") && !strings.HasSuffix(f.Path, "etcd/ca.crt") && !strings.Contains(f.Reason, "external CA") {
			t.Errorf("ca.crt result %+v does not say external CA", f)
		}
	}

	for _, missing := range [][]string{{"apiserver.crt", "apiserver.key"}, {"apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"}, {"sa.key", "sa.pub"}} {
		t.Run(missing[0], func(t *testing.T) {
			dir := t.TempDir()
			c := *cfg
			c.CertDir = filepath.Join(dir, "pki")
			copyDir(t, cfg.CertDir, c.CertDir)
			for _, m := range missing {
				os.Remove(filepath.Join(c.CertDir, m))
			}
			before := pkitest.MustSnapshot(t, c.CertDir)
			_, err := run(&c, pkitest.Now, nil, phases.Selection{})
			errContains(t, err, "external CA", filepath.Join(c.CertDir, missing[0]), filepath.Join(c.CertDir, missing[1]))
			assertUnchanged(t, before, c.CertDir)
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		info, _ := d.Info()
		if d.IsDir() {
			return os.MkdirAll(dst, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBadExistingFiles covers the existing-file cases of issue 2: each run fails before writing anything,
// with a message naming the file, what is wrong and how to fix it.
func TestBadExistingFiles(t *testing.T) {
	base := pkiConfig(t, pki.RSA2048)
	mustRun(t, base, pkitest.Now)
	// A second PKI with other keys (each name's second request gets a spare fixture), for "signed by another CA".
	other := pkiConfig(t, pki.RSA2048)
	spares := pkitest.Keys()
	otherKeys := func(name string, alg pki.Algorithm) (crypto.Signer, error) {
		if _, err := spares(name, alg); err != nil {
			return nil, err
		}
		return spares(name, alg)
	}
	if _, err := run(other, pkitest.Now, otherKeys, phases.Selection{}); err != nil {
		t.Fatal(err)
	}
	// A leaf certificate and its key, for "CA certificate without the CA bit".
	leafCrt, _ := os.ReadFile(filepath.Join(base.CertDir, "apiserver-kubelet-client.crt"))
	leafKey, _ := os.ReadFile(filepath.Join(base.CertDir, "apiserver-kubelet-client.key"))
	goodKey, _ := os.ReadFile(filepath.Join(base.CertDir, "apiserver.key"))
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")

	p := func(dir, name string) string { return filepath.Join(dir, name) }
	cases := []struct {
		name   string
		mutate func(dir string, cfg *pki.Config)
		now    time.Time
		want   func(dir string) []string
	}{
		{"truncated key", func(dir string, _ *pki.Config) { writeFile(t, p(dir, "apiserver.key"), goodKey[:len(goodKey)/2]) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "apiserver.key"), "truncated"} }},
		{"garbage certificate", func(dir string, _ *pki.Config) { writeFile(t, p(dir, "etcd/peer.crt"), []byte("garbage\n")) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "etcd/peer.crt"), "CERTIFICATE"} }},
		{"garbage CA key", func(dir string, _ *pki.Config) { writeFile(t, p(dir, "front-proxy-ca.key"), []byte{0, 1, 2}) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "front-proxy-ca.key")} }},
		{"key mismatch", func(dir string, _ *pki.Config) { writeFile(t, p(dir, "apiserver.key"), leafKey) }, pkitest.Now,
			func(dir string) []string {
				return []string{p(dir, "apiserver.key"), "does not match", p(dir, "apiserver.crt"), "renew certs apiserver --force"}
			}},
		{"signed by another CA", func(dir string, _ *pki.Config) {
			copyFile(t, p(other.CertDir, "front-proxy-client.crt"), p(dir, "front-proxy-client.crt"))
			copyFile(t, p(other.CertDir, "front-proxy-client.key"), p(dir, "front-proxy-client.key"))
		}, pkitest.Now, func(dir string) []string {
			return []string{p(dir, "front-proxy-client.crt"), "does not verify against front-proxy-ca", "renew certs front-proxy-client --force"}
		}},
		{"missing SAN", func(_ string, cfg *pki.Config) { cfg.APIServerCertSANs = []string{"new.example.com", "192.168.0.9"} }, pkitest.Now,
			func(dir string) []string {
				return []string{p(dir, "apiserver.crt"), "DNS:new.example.com", "IP:192.168.0.9", "renew certs apiserver --force"}
			}},
		{"missing etcd SAN", func(_ string, cfg *pki.Config) { cfg.EtcdPeerCertSANs = []string{"peer.example.com"} }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "etcd/peer.crt"), "DNS:peer.example.com"} }},
		{"CA certificate without the CA bit", func(dir string, _ *pki.Config) {
			writeFile(t, p(dir, "ca.crt"), leafCrt)
			writeFile(t, p(dir, "ca.key"), leafKey)
		}, pkitest.Now, func(dir string) []string { return []string{p(dir, "ca.crt"), "not a CA certificate"} }},
		{"expired CA", func(string, *pki.Config) {}, pkitest.Now.Add(pki.DefaultCAValidity + time.Hour),
			func(dir string) []string { return []string{p(dir, "ca.crt"), "expired"} }},
		{"CA not yet valid", func(string, *pki.Config) {}, pkitest.Now.Add(-time.Hour),
			func(dir string) []string { return []string{p(dir, "ca.crt"), "not valid until", "clock"} }},
		{"ca.key without ca.crt", func(dir string, _ *pki.Config) { os.Remove(p(dir, "ca.crt")) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "ca.key"), p(dir, "ca.crt")} }},
		{"leaf key without certificate", func(dir string, _ *pki.Config) { os.Remove(p(dir, "etcd/server.crt")) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "etcd/server.key"), p(dir, "etcd/server.crt")} }},
		{"sa.pub of another key", func(dir string, _ *pki.Config) { copyFile(t, p(other.CertDir, "sa.pub"), p(dir, "sa.pub")) }, pkitest.Now,
			func(dir string) []string {
				return []string{p(dir, "sa.pub"), "does not contain the public key of " + p(dir, "sa.key")}
			}},
		{"garbage sa.pub", func(dir string, _ *pki.Config) { writeFile(t, p(dir, "sa.pub"), []byte("garbage")) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "sa.pub"), "truncated"} }},
		{"sa.pub without sa.key", func(dir string, _ *pki.Config) { os.Remove(p(dir, "sa.key")) }, pkitest.Now,
			func(dir string) []string { return []string{p(dir, "sa.pub"), p(dir, "sa.key")} }},
		{"dangling symlinks where files would be written", func(dir string, _ *pki.Config) {
			for _, f := range []string{"apiserver.crt", "apiserver.key"} {
				os.Remove(p(dir, f))
				if err := os.Symlink(elsewhere+"-"+f, p(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}, pkitest.Now, func(dir string) []string { return []string{p(dir, "apiserver.crt")} }},
		{"directory instead of a key", func(dir string, _ *pki.Config) {
			os.Remove(p(dir, "sa.key"))
			os.Mkdir(p(dir, "sa.key"), 0o700)
		}, pkitest.Now, func(dir string) []string { return []string{p(dir, "sa.key"), "not a regular file"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *base
			cfg.CertDir = filepath.Join(t.TempDir(), "pki")
			copyDir(t, base.CertDir, cfg.CertDir)
			tc.mutate(cfg.CertDir, &cfg)
			before := pkitest.MustSnapshot(t, cfg.CertDir)
			_, err := run(&cfg, tc.now, nil, phases.Selection{})
			errContains(t, err, tc.want(cfg.CertDir)...)
			assertUnchanged(t, before, cfg.CertDir)
			if _, err := os.Lstat(elsewhere + "-apiserver.crt"); err == nil {
				t.Error("a write followed a symlink")
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, data)
}

// TestLeafMissingIsReissuedWithExistingCA: deleting a leaf pair re-creates only that pair, signed by the kept CA.
func TestLeafMissingIsReissuedWithExistingCA(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	mustRun(t, cfg, pkitest.Now)
	for _, f := range []string{"etcd/healthcheck-client.crt", "etcd/healthcheck-client.key"} {
		os.Remove(filepath.Join(cfg.CertDir, f))
	}
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	res, err := run(cfg, pkitest.Now.Add(time.Hour), nil, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	d := pkitest.Diff(before, pkitest.MustSnapshot(t, cfg.CertDir))
	if !slices.Equal(d, []string{"added etcd/healthcheck-client.crt", "added etcd/healthcheck-client.key"}) {
		t.Errorf("changes: %v", d)
	}
	created := 0
	for _, f := range res.Files {
		if f.Action == phases.ActionCreated {
			created++
		}
	}
	if created != 2 {
		t.Errorf("%d created, want 2", created)
	}
	leaf := readCert(t, filepath.Join(cfg.CertDir, "etcd/healthcheck-client.crt"))
	if err := pki.VerifyChain(leaf, nil, readCert(t, filepath.Join(cfg.CertDir, "etcd/ca.crt")), pkitest.Now.Add(time.Hour)); err != nil {
		t.Error(err)
	}
}

// TestLeafWouldOutliveCA: a CA that ends before a new leaf would is an error, not a silently clamped leaf.
func TestLeafWouldOutliveCA(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	cfg.CAValidity = 2 * pki.DefaultCertValidity
	mustRun(t, cfg, pkitest.Now)
	os.Remove(filepath.Join(cfg.CertDir, "apiserver.crt"))
	os.Remove(filepath.Join(cfg.CertDir, "apiserver.key"))
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	_, err := run(cfg, pkitest.Now.Add(pki.DefaultCertValidity+time.Hour), nil, phases.Selection{})
	errContains(t, err, "certificateValidityPeriod", "apiserver", "after its CA ca")
	assertUnchanged(t, before, cfg.CertDir)
}

// TestDryRun writes nothing, not even the directory, and lists every path with subject and SANs.
func TestDryRun(t *testing.T) {
	cfg := pkiConfig(t, pki.RSA2048)
	res, err := runWith(cfg, pkitest.Now, nil, phases.Selection{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(cfg.CertDir); !os.IsNotExist(err) {
		t.Fatalf("dry run created %s", cfg.CertDir)
	}
	if !res.DryRun || len(res.Files) != 2*len(cfg.Certs())+2 {
		t.Fatalf("result %+v", res)
	}
	byPath := map[string]phases.FileResult{}
	for _, f := range res.Files {
		byPath[f.Path] = f
	}
	api := byPath[filepath.Join(cfg.CertDir, "apiserver.crt")]
	if api.Subject != "CN=kube-apiserver" || !slices.Contains(api.SANs, "IP:10.96.0.1") || !slices.Contains(api.SANs, "DNS:kubernetes.default.svc.cluster.local") {
		t.Errorf("apiserver dry-run result %+v", api)
	}
	if f, ok := byPath[filepath.Join(cfg.CertDir, "etcd", "peer.key")]; !ok || f.Action != phases.ActionCreated {
		t.Errorf("etcd/peer.key missing from the dry run: %+v", f)
	}
	// A dry run over an existing PKI reuses everything and changes nothing.
	mustRun(t, cfg, pkitest.Now)
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	if _, err := runWith(cfg, pkitest.Now, nil, phases.Selection{}, true); err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, before, cfg.CertDir)
}

// TestExternalEtcd skips the etcd CA and its four leaves, reports them skipped, and generates no key for them.
func TestExternalEtcd(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	cfg.LocalEtcd = false
	var requested []string
	keys := pkitest.Keys()
	res, err := run(cfg, pkitest.Now, func(name string, alg pki.Algorithm) (crypto.Signer, error) {
		requested = append(requested, name)
		return keys(name, alg)
	}, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(cfg.CertDir, "etcd")); !os.IsNotExist(err) {
		t.Error("external etcd created the etcd directory")
	}
	if _, err := os.Lstat(filepath.Join(cfg.CertDir, "apiserver-etcd-client.crt")); !os.IsNotExist(err) {
		t.Error("external etcd created apiserver-etcd-client.crt")
	}
	for _, n := range requested {
		if strings.Contains(n, "etcd") {
			t.Errorf("a key was generated for %s", n)
		}
	}
	skipped := 0
	for _, f := range res.Files {
		if f.Action == phases.ActionSkipped {
			skipped++
			if !strings.Contains(f.Reason, "external etcd") {
				t.Errorf("skip reason %q", f.Reason)
			}
		}
	}
	if skipped != 10 {
		t.Errorf("%d skipped results, want 10 (5 certificates and their keys)", skipped)
	}
}

// TestStrictPermissions: --strict-permissions makes certificates 0600 and directories 0700.
func TestStrictPermissions(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	cfg.StrictPermissions = true
	mustRun(t, cfg, pkitest.Now)
	checkModes(t, cfg, pki.ModeStrictCert, pki.ModeStrictDir)
}

// TestStrictPermissionsTightensExistingTree: --strict-permissions over a PKI made without it tightens every
// certificate to 0600 and every directory to 0700 with chmod alone (bytes and modification times unchanged),
// says so in each result, loosens nothing, and a dry run only reports it.
func TestStrictPermissionsTightensExistingTree(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	mustRun(t, cfg, pkitest.Now)
	// A certificate already stricter than 0600 stays as it is.
	stricter := filepath.Join(cfg.CertDir, "front-proxy-client.crt")
	if err := os.Chmod(stricter, 0o400); err != nil {
		t.Fatal(err)
	}
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	strict := *cfg
	strict.StrictPermissions = true

	res, err := runWith(&strict, pkitest.Now, nil, phases.Selection{}, true)
	if err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, before, cfg.CertDir)
	for _, f := range res.Files {
		if strings.HasSuffix(f.Path, "apiserver.crt") && !strings.Contains(f.Reason, "mode 0644 would be tightened to 0600") {
			t.Errorf("dry run: %s reason %q, want the mode it would tighten", f.Path, f.Reason)
		}
	}

	res, err = run(&strict, pkitest.Now, nil, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	after := pkitest.MustSnapshot(t, cfg.CertDir)
	for p, st := range before {
		got := after[p]
		if got.SHA256 != st.SHA256 || !got.ModTime.Equal(st.ModTime) {
			t.Errorf("%s: content or modification time changed", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d entries after, %d before", len(after), len(before))
	}
	if got := after["front-proxy-client.crt"].Mode.Perm(); got != 0o400 {
		t.Errorf("front-proxy-client.crt: mode %04o, want the stricter 0400 kept", got)
	}
	if err := os.Chmod(stricter, pki.ModeStrictCert); err != nil {
		t.Fatal(err)
	}
	checkModes(t, &strict, pki.ModeStrictCert, pki.ModeStrictDir)
	tightened := 0
	for _, f := range res.Files {
		if f.Action != phases.ActionReused {
			t.Errorf("%s %s, want reused", f.Action, f.Path)
		}
		if strings.Contains(f.Reason, "mode 0644 tightened to 0600 (--strict-permissions)") {
			tightened++
		}
	}
	// Every certificate but the one already at 0400; keys and sa.pub were 0600 already.
	if want := len(cfg.Certs()) - 1; tightened != want {
		t.Errorf("%d results say tightened, want %d", tightened, want)
	}

	// Once strict, a strict re-run has nothing to note.
	res, err = run(&strict, pkitest.Now, nil, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		if strings.Contains(f.Reason, "tightened") {
			t.Errorf("second strict run: %s: %q", f.Path, f.Reason)
		}
	}
}

// TestModesUnderUmask runs a full certs+sa under umask 0 and 077: the modes are kubeadm's either way.
// Not parallel: the umask is per process.
func TestModesUnderUmask(t *testing.T) {
	for _, mask := range []int{0, 0o077} {
		t.Run(fmt.Sprintf("%04o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			cfg := pkiConfig(t, pki.ECDSAP256)
			mustRun(t, cfg, pkitest.Now)
			checkModes(t, cfg, pki.ModeCert, pki.ModeDir)
		})
	}
}

// TestSAReuse: an existing sa.key is reused only with a matching sa.pub (one of several during a rotation),
// and a missing sa.pub is derived from it.
func TestSAReuse(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	mustRun(t, cfg, pkitest.Now)
	pubPath := filepath.Join(cfg.CertDir, "sa.pub")
	orig, _ := os.ReadFile(pubPath)

	other, _ := pki.EncodePublicKey(pkitest.MustKey(pki.ECDSAP256, "spare-x").Public())
	writeFile(t, pubPath, append(other, orig...))
	before := pkitest.MustSnapshot(t, cfg.CertDir)
	if _, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"sa"}}); err != nil {
		t.Fatalf("sa.pub holding the key among others: %v", err)
	}
	assertUnchanged(t, before, cfg.CertDir)

	os.Remove(pubPath)
	res, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"sa"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(pubPath); !bytes.Equal(got, orig) {
		t.Error("derived sa.pub differs from the original")
	}
	if info, _ := os.Stat(pubPath); info.Mode().Perm() != 0o600 {
		t.Errorf("sa.pub mode %04o, want kubeadm's 0600", info.Mode().Perm())
	}
	if len(res.Files) != 2 || res.Files[0].Action != phases.ActionReused || res.Files[1].Action != phases.ActionCreated {
		t.Errorf("results %+v, want sa.key reused and sa.pub created", res.Files)
	}
}

// TestPhaseAloneNeedsItsCA: "init phase certs apiserver" without a CA says which phase to run first.
func TestPhaseAloneNeedsItsCA(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	_, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"certs/apiserver"}})
	errContains(t, err, filepath.Join(cfg.CertDir, "ca.crt"), "init phase certs ca")
	if _, err := os.Lstat(cfg.CertDir); !os.IsNotExist(err) {
		t.Error("a failed phase created the certificate directory")
	}
	// With the CA present, the phase alone issues exactly its pair, signed by that CA.
	if _, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"certs/ca"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(cfg, pkitest.Now, nil, phases.Selection{Only: []string{"certs/apiserver"}}); err != nil {
		t.Fatal(err)
	}
	snap := pkitest.MustSnapshot(t, cfg.CertDir)
	var files []string
	for p, st := range snap {
		if st.SHA256 != "" {
			files = append(files, p)
		}
	}
	slices.Sort(files)
	if !slices.Equal(files, []string{"apiserver.crt", "apiserver.key", "ca.crt", "ca.key"}) {
		t.Errorf("files %v", files)
	}
	ca := readCert(t, filepath.Join(cfg.CertDir, "ca.crt"))
	if err := pki.VerifyChain(readCert(t, filepath.Join(cfg.CertDir, "apiserver.crt")), nil, ca, pkitest.Now); err != nil {
		t.Error(err)
	}
}

// TestDryRunShowsCASANs: a dry run reports for every certificate, CAs included, the SANs the real run writes.
func TestDryRunShowsCASANs(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	dry, err := runWith(cfg, pkitest.Now, nil, phases.Selection{}, true)
	if err != nil {
		t.Fatal(err)
	}
	real := mustRun(t, cfg, pkitest.Now)
	sans := map[string][]string{}
	for _, f := range real.Files {
		if f.Type == "certificate" {
			sans[f.Path] = f.SANs
		}
	}
	for _, f := range dry.Files {
		if f.Type != "certificate" {
			continue
		}
		if !slices.Equal(f.SANs, sans[f.Path]) {
			t.Errorf("%s: dry run shows SANs %q, the real run wrote %q", f.Path, f.SANs, sans[f.Path])
		}
	}
	for _, ca := range []struct{ path, want string }{{"ca.crt", "DNS:kubernetes"}, {"front-proxy-ca.crt", "DNS:front-proxy-ca"}, {"etcd/ca.crt", "DNS:etcd-ca"}} {
		path := filepath.Join(cfg.CertDir, ca.path)
		if got := readCert(t, path); !slices.Equal(pki.FormatAltNames(got.DNSNames, got.IPAddresses), []string{ca.want}) {
			t.Errorf("%s carries %v, want %s", path, got.DNSNames, ca.want)
		}
		if !slices.Equal(sans[path], []string{ca.want}) {
			t.Errorf("%s: result SANs %q, want %s", path, sans[path], ca.want)
		}
	}
}

// TestExternalCAKeyless extends TestExternalCA to the two other CAs: without front-proxy-ca.key or
// etcd/ca.key, every leaf present and verifying is reused and no key is generated; a missing leaf, or one
// lacking a SAN, is a clear error that asks for the external CA to issue it (renew cannot), and nothing is
// written.
func TestExternalCAKeyless(t *testing.T) {
	for _, tc := range []struct {
		ca, caCrt, caKey, leafCrt, leafKey string
		addSAN                             func(*pki.Config)
	}{
		{"front-proxy-ca", "front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key", nil},
		{"etcd-ca", "etcd/ca.crt", "etcd/ca.key", "etcd/server.crt", "etcd/server.key",
			func(c *pki.Config) { c.EtcdServerCertSANs = []string{"etcd.example.com"} }},
	} {
		t.Run(tc.ca, func(t *testing.T) {
			cfg := pkiConfig(t, pki.ECDSAP256)
			mustRun(t, cfg, pkitest.Now)
			p := func(rel string) string { return filepath.Join(cfg.CertDir, rel) }
			if err := os.Remove(p(tc.caKey)); err != nil {
				t.Fatal(err)
			}
			before := pkitest.MustSnapshot(t, cfg.CertDir)
			var generated []string
			noKeys := func(name string, _ pki.Algorithm) (crypto.Signer, error) {
				generated = append(generated, name)
				return nil, fmt.Errorf("no key may be generated, asked for %s", name)
			}
			res, err := run(cfg, pkitest.Now, noKeys, phases.Selection{})
			if err != nil {
				t.Fatal(err)
			}
			assertUnchanged(t, before, cfg.CertDir)
			if len(generated) > 0 {
				t.Errorf("keys generated: %v", generated)
			}
			for _, f := range res.Files {
				if f.Action != phases.ActionReused {
					t.Errorf("%s %s, want reused", f.Action, f.Path)
				}
				if f.Path == p(tc.caCrt) && !strings.Contains(f.Reason, "external CA") {
					t.Errorf("%s result %+v does not say external CA", tc.caCrt, f)
				}
			}

			t.Run("leaf missing", func(t *testing.T) {
				c := *cfg
				c.CertDir = filepath.Join(t.TempDir(), "pki")
				copyDir(t, cfg.CertDir, c.CertDir)
				os.Remove(filepath.Join(c.CertDir, tc.leafCrt))
				os.Remove(filepath.Join(c.CertDir, tc.leafKey))
				before := pkitest.MustSnapshot(t, c.CertDir)
				_, err := run(&c, pkitest.Now, noKeys, phases.Selection{})
				errContains(t, err, "external CA", tc.ca, filepath.Join(c.CertDir, tc.leafCrt), filepath.Join(c.CertDir, tc.leafKey))
				assertUnchanged(t, before, c.CertDir)
			})
			if tc.addSAN == nil {
				return
			}
			t.Run("leaf lacks a SAN", func(t *testing.T) {
				c := *cfg
				c.CertDir = filepath.Join(t.TempDir(), "pki")
				copyDir(t, cfg.CertDir, c.CertDir)
				tc.addSAN(&c)
				before := pkitest.MustSnapshot(t, c.CertDir)
				_, err := run(&c, pkitest.Now, noKeys, phases.Selection{})
				errContains(t, err, "DNS:etcd.example.com", "is an external CA", "have that CA issue a new", filepath.Join(c.CertDir, tc.leafCrt))
				if err != nil && strings.Contains(err.Error(), "renew certs") {
					t.Errorf("error %q suggests renew, which refuses a certificate of an external CA", err)
				}
				assertUnchanged(t, before, c.CertDir)
			})
		})
	}
}

// TestMissingSANFixNamesTheFlags: the fix for a leaf lacking SANs is a renew command carrying what decides
// them: the command-line flags of the run when there are some, else the resolved values, plus --cert-dir and
// --strict-permissions.
func TestMissingSANFixNamesTheFlags(t *testing.T) {
	base := pkiConfig(t, pki.ECDSAP256)
	mustRun(t, base, pkitest.Now)
	cfg := *base
	cfg.APIServerCertSANs = []string{"new.example.com"}
	cfg.StrictPermissions = true
	d := phases.NewData(&cfg, pkitest.Now, pkitest.Keys(), nil)
	err := pkiRunner().Run(context.Background(), d, phases.Selection{})
	errContains(t, err, `"k8scrypto renew certs apiserver --force --cert-dir `+cfg.CertDir+
		` --node-name cp-1 --advertise-address 10.0.0.5 --apiserver-cert-extra-sans new.example.com --encryption-algorithm ECDSA-P256 --strict-permissions"`)

	d = phases.NewData(&cfg, pkitest.Now, pkitest.Keys(), nil)
	d.RenewArgs = []string{"--config", "/etc/my cluster/kubeadm.yaml"}
	err = pkiRunner().Run(context.Background(), d, phases.Selection{})
	errContains(t, err, `"k8scrypto renew certs apiserver --force --cert-dir `+cfg.CertDir+` --config '/etc/my cluster/kubeadm.yaml' --strict-permissions"`)
}

// TestLargeRSAFullRun takes RSA-3072 and RSA-4096 through a full certs+sa run with fixture keys (generating
// eleven 4096-bit keys would take minutes on a small machine) and checks every key's algorithm and size,
// and every chain. Regenerate the fixtures with: go test ./phases -run TestLargeRSAFullRun -update
func TestLargeRSAFullRun(t *testing.T) {
	for _, tc := range []struct {
		alg  pki.Algorithm
		bits int
	}{{pki.RSA3072, 3072}, {pki.RSA4096, 4096}} {
		t.Run(string(tc.alg), func(t *testing.T) {
			cfg := pkiConfig(t, tc.alg)
			if _, err := run(cfg, pkitest.Now, fixtureKeys(t, tc.alg), phases.Selection{}); err != nil {
				t.Fatal(err)
			}
			checkSize := func(path string, pub crypto.PublicKey) {
				t.Helper()
				rsaPub, ok := pub.(*rsa.PublicKey)
				if !ok {
					t.Errorf("%s: key is %T, want RSA", path, pub)
					return
				}
				if got := rsaPub.N.BitLen(); got != tc.bits {
					t.Errorf("%s: %d-bit key, want %d", path, got, tc.bits)
				}
			}
			for _, spec := range cfg.Certs() {
				cert := readCert(t, spec.CertPath(cfg.CertDir))
				key := readKey(t, spec.KeyPath(cfg.CertDir), "RSA PRIVATE KEY")
				checkSize(spec.CertPath(cfg.CertDir), cert.PublicKey)
				checkSize(spec.KeyPath(cfg.CertDir), key.Public())
				if !pki.KeyMatchesCert(key, cert) {
					t.Errorf("%s: key does not match certificate", spec.Name)
				}
				if got := pki.AlgorithmOf(cert.PublicKey); got != tc.alg {
					t.Errorf("%s: algorithm %q, want %q", spec.Name, got, tc.alg)
				}
				checkCert(t, cfg, spec, cert)
				if !spec.IsCA() {
					if err := pki.VerifyChain(cert, nil, readCert(t, caSpec(spec.CAName).CertPath(cfg.CertDir)), pkitest.Now); err != nil {
						t.Errorf("%s: %v", spec.Name, err)
					}
				}
			}
			saPath := filepath.Join(cfg.CertDir, "sa.key")
			checkSize(saPath, readKey(t, saPath, "RSA PRIVATE KEY").Public())
			checkSA(t, cfg)
			checkModes(t, cfg, pki.ModeCert, pki.ModeDir)
		})
	}
}

func caSpec(name string) pki.CertSpec {
	spec, _ := pki.LookupCert(name)
	return spec
}

// fixtureKeys serves testdata/keys/<alg>/<name>.key, one fixed key per name; -update generates missing ones.
func fixtureKeys(t testing.TB, alg pki.Algorithm) pki.KeySource {
	t.Helper()
	dir := filepath.Join("testdata", "keys", string(alg))
	names := []string{"sa"}
	for _, spec := range pki.Catalog() {
		names = append(names, spec.BaseName)
	}
	for _, name := range names {
		path := filepath.Join(dir, name+".key")
		if _, err := os.Stat(path); err == nil || !update() {
			continue
		}
		key, err := pki.GenerateKey(name, alg)
		if err != nil {
			t.Fatal(err)
		}
		pemKey, err := pki.EncodePrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, pemKey)
	}
	return func(name string, got pki.Algorithm) (crypto.Signer, error) {
		if got != alg {
			return nil, fmt.Errorf("fixture keys are %s, asked for %s", alg, got)
		}
		data, err := os.ReadFile(filepath.Join(dir, name+".key"))
		if err != nil {
			return nil, fmt.Errorf("%w (generate the fixtures with -update)", err)
		}
		return pki.ParsePrivateKey(data)
	}
}
