package phases_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

func init() {
	// Other test files of this binary may define -update too; define it once.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

func update() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// pkiConfig is a resolved configuration like the one config.Load returns for a kubeadm v1beta4 file with
// nodeRegistration.name cp-1 and advertiseAddress 10.0.0.5, writing under a fresh directory.
func pkiConfig(t testing.TB, alg pki.Algorithm) *pki.Config {
	t.Helper()
	return pkiConfigIn(t.TempDir(), alg)
}

func pkiConfigIn(root string, alg pki.Algorithm) *pki.Config {
	return &pki.Config{
		CertDir:          filepath.Join(root, "pki"),
		NodeName:         "cp-1",
		AdvertiseAddress: net.ParseIP("10.0.0.5"),
		BindPort:         6443,
		ServiceSubnet:    pki.DefaultServiceSubnet,
		DNSDomain:        pki.DefaultDNSDomain,
		LocalEtcd:        true,
		Algorithm:        alg,
		CertValidity:     pki.DefaultCertValidity,
		CAValidity:       pki.DefaultCAValidity,
	}
}

// pkiRunner runs only the PKI core's phases (certs and sa), whatever else "init" has.
func pkiRunner() *phases.Runner {
	return &phases.Runner{Phases: []phases.Phase{phases.CertsPhase(), phases.SAPhase()}}
}

// run runs the certs and sa phases with fixture keys, a fixed serial seed and the given clock.
func run(cfg *pki.Config, now time.Time, keys pki.KeySource, sel phases.Selection) (phases.Result, error) {
	return runWith(cfg, now, keys, sel, false)
}

func runWith(cfg *pki.Config, now time.Time, keys pki.KeySource, sel phases.Selection, dryRun bool) (phases.Result, error) {
	if keys == nil {
		keys = pkitest.Keys()
	}
	d := phases.NewData(cfg, now, keys, nil)
	d.Rand = pkitest.Rand(1)
	d.DryRun = dryRun
	err := pkiRunner().Run(context.Background(), d, sel)
	return d.Result(), err
}

func mustRun(t testing.TB, cfg *pki.Config, now time.Time) phases.Result {
	t.Helper()
	res, err := run(cfg, now, nil, phases.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// readCert parses a certificate file that must hold exactly one CERTIFICATE block, as kubeadm writes it.
func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 || len(rest) != 0 {
		t.Fatalf("%s: want exactly one CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

// readKey parses a private key file that must hold exactly one block of the given type.
func readKey(t testing.TB, path, blockType string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != blockType || len(rest) != 0 {
		t.Fatalf("%s: want exactly one %q block", path, blockType)
	}
	key, err := pki.ParsePrivateKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return key
}

func keyBlockType(alg pki.Algorithm) string {
	if strings.HasPrefix(string(alg), "ECDSA") {
		return "EC PRIVATE KEY"
	}
	return "RSA PRIVATE KEY"
}

// assertUnchanged fails with the list of differences when dir differs from before.
func assertUnchanged(t testing.TB, before pkitest.Snapshot, dir string) {
	t.Helper()
	if d := pkitest.Diff(before, pkitest.MustSnapshot(t, dir)); len(d) > 0 {
		t.Errorf("%s changed:\n  %s", dir, strings.Join(d, "\n  "))
	}
}

// writeFile replaces a file for a test scenario.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func errContains(t testing.TB, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one mentioning %q", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
