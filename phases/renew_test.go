package phases

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

const day = 24 * time.Hour

// renewEnv is a PKI made by the init phases (certs, sa, kubeconfig) at pkitest.Now.
type renewEnv struct {
	t                          testing.TB
	dir, certDir, kubeDir      string
	backupDir, cfgFile, config string
	keys                       pki.KeySource
}

// newRenewEnv builds the PKI with algorithm alg; extra is appended to the ClusterConfiguration.
func newRenewEnv(t testing.TB, alg pki.Algorithm, extra string) *renewEnv {
	t.Helper()
	return newNodeEnv(t, alg, extra, nil)
}

// newNodeEnv is newRenewEnv for another control-plane node of shared's cluster: the files control planes
// share (the CAs and the service-account keys) are copied from it first, so the init phases issue only
// this node's own certificates and kubeconfigs. shared nil is a first node.
func newNodeEnv(t testing.TB, alg pki.Algorithm, extra string, shared *renewEnv) *renewEnv {
	t.Helper()
	dir := t.TempDir()
	e := &renewEnv{t: t, dir: dir, certDir: filepath.Join(dir, "pki"), kubeDir: filepath.Join(dir, "kube"),
		backupDir: filepath.Join(dir, "backups"), cfgFile: filepath.Join(dir, "kubeadm.yaml"), keys: pkitest.Keys()}
	e.writeConfig(alg, extra)
	if shared != nil {
		for _, f := range []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub"} {
			data, err := os.ReadFile(filepath.Join(shared.certDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(e.certDir, f)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.certDir, f), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := NewData(e.loadConfig(), pkitest.Now, e.keys, nil)
	d.KubeconfigDir = e.kubeDir
	d.Rand = pkitest.Rand(1)
	r := &Runner{Phases: InitPhases()}
	if err := r.Run(context.Background(), d, Selection{Only: []string{"certs", "sa", "kubeconfig"}}); err != nil {
		t.Fatalf("init: %v", err)
	}
	return e
}

func (e *renewEnv) writeConfig(alg pki.Algorithm, extra string) {
	e.t.Helper()
	e.config = pkitest.KubeadmConfig(fmt.Sprintf("encryptionAlgorithm: %s\n%s\n", alg, extra))
	if err := os.WriteFile(e.cfgFile, []byte(e.config), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *renewEnv) loadConfig() *pki.Config {
	e.t.Helper()
	c, err := config.Load(e.cfgFile, config.Overrides{CertDir: e.certDir}, func() (string, error) { return "unused", nil })
	if err != nil {
		e.t.Fatalf("loading config: %v", err)
	}
	return c.PKI
}

// opts are the options "renew certs --config" would use at now.
func (e *renewEnv) opts(now time.Time) RenewOptions {
	cfg := e.loadConfig()
	return RenewOptions{Cfg: cfg, KubeconfigDir: e.kubeDir, CheckSANs: true, Now: now, RotateKeys: true,
		Algorithm: cfg.Algorithm, Keys: e.keys, Rand: pkitest.Rand(uint64(now.Unix())), BackupRoot: e.backupDir, KeepBackups: 10}
}

func (e *renewEnv) renew(o RenewOptions) RenewResult {
	e.t.Helper()
	res, err := Renew(context.Background(), o)
	if err != nil {
		e.t.Fatalf("Renew: %v", err)
	}
	return res
}

func itemsBy(res RenewResult) map[string]RenewItem {
	out := map[string]RenewItem{}
	for _, it := range res.Certificates {
		out[it.Name] = it
	}
	return out
}

func namesWith(res RenewResult, action string) []string {
	var out []string
	for _, it := range res.Certificates {
		if it.Action == action {
			out = append(out, it.Name)
		}
	}
	sort.Strings(out)
	return out
}

var allLeafNames = []string{"admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "controller-manager.conf",
	"etcd-healthcheck-client", "etcd-peer", "etcd-server", "front-proxy-client", "kubelet.conf", "scheduler.conf", "super-admin.conf"}

// snapshot hashes every file under the roots, with its mode.
func snapshot(t testing.TB, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info, _ := d.Info()
			sum := sha256.Sum256(data)
			out[p] = fmt.Sprintf("%s %v", hex.EncodeToString(sum[:8]), info.Mode())
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return out
}

// pair reads a target's certificate and key as renewal would.
func (e *renewEnv) pair(name string) (*x509.Certificate, crypto.Signer) {
	e.t.Helper()
	return e.pairWith(e.loadConfig(), name)
}

func (e *renewEnv) pairWith(cfg *pki.Config, name string) (*x509.Certificate, crypto.Signer) {
	e.t.Helper()
	leaves, _ := certTargets(cfg, e.kubeDir)
	for _, t := range leaves {
		if t.Name == name {
			lt, err := loadTarget(t, true)
			if err != nil || lt.Missing {
				e.t.Fatalf("%s: %v (missing %v)", name, err, lt.Missing)
			}
			return lt.Cert, lt.Key
		}
	}
	e.t.Fatalf("no target %s", name)
	return nil, nil
}

func (e *renewEnv) ca(name string) *x509.Certificate {
	e.t.Helper()
	spec, _ := pki.LookupCert(name)
	cert, _, err := LoadCert(spec.CertPath(e.certDir))
	if err != nil {
		e.t.Fatal(err)
	}
	return cert
}

// checkConsistent asserts what must hold after any run, failed or not: no bookkeeping file is left, every
// certificate matches its key and chains to its CA at now, and the CA files are as given.
func (e *renewEnv) checkConsistent(now time.Time, caFiles map[string]string) {
	e.t.Helper()
	for _, dir := range []string{e.certDir, filepath.Join(e.certDir, "etcd"), e.kubeDir} {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			if pki.IsBookkeeping(ent.Name()) {
				e.t.Errorf("bookkeeping file left behind: %s", filepath.Join(dir, ent.Name()))
			}
		}
	}
	cfg := e.loadConfig()
	cas := map[string]*x509.Certificate{}
	for _, name := range []string{"ca", "etcd-ca", "front-proxy-ca"} {
		cas[name] = e.ca(name)
	}
	for _, name := range allLeafNames {
		cert, key := e.pairWith(cfg, name)
		if !pki.KeyMatchesCert(key, cert) {
			e.t.Errorf("%s: key does not match certificate", name)
		}
		caName := "ca"
		if s, ok := pki.LookupCert(name); ok {
			caName = s.CAName
		}
		if err := pki.VerifyChain(cert, nil, cas[caName], now); err != nil {
			e.t.Errorf("%s: does not verify against %s at %s: %v", name, caName, now, err)
		}
	}
	snap := snapshot(e.t, e.certDir)
	for p, h := range caFiles {
		if snap[p] != h {
			e.t.Errorf("CA file %s changed", p)
		}
	}
}

func (e *renewEnv) caFiles() map[string]string {
	snap := snapshot(e.t, e.certDir)
	out := map[string]string{}
	for p, h := range snap {
		base := filepath.Base(p)
		if strings.HasPrefix(base, "ca.") || strings.HasPrefix(base, "front-proxy-ca.") {
			out[p] = h
		}
	}
	return out
}

func TestRenewNothingDueChangesNothing(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	before := snapshot(t, e.dir)
	res := e.renew(e.opts(pkitest.Now.Add(200 * day)))
	if got := namesWith(res, RenewNotDue); !slices.Equal(got, allLeafNames) {
		t.Errorf("not due = %v, want every leaf %v", got, allLeafNames)
	}
	if len(res.Renewed()) != 0 || len(res.Problems()) != 0 || res.BackupDir != "" {
		t.Errorf("renewed %v, problems %v, backups %q; want none", res.Renewed(), res.Problems(), res.BackupDir)
	}
	if after := snapshot(t, e.dir); !maps.Equal(before, after) {
		t.Errorf("files changed on a run with nothing due:\nbefore %v\nafter  %v", before, after)
	}
	it := itemsBy(res)["apiserver"]
	if !strings.Contains(it.Reason, "expires in 165d") || !strings.Contains(it.Reason, "due under 121d") {
		t.Errorf("apiserver reason = %q, want the residual and the threshold", it.Reason)
	}
}

// TestRenewNothingDueSweepsPartialBackups: a run killed while copying into its backup directory leaves a
// partial copy; the next run removes it even when nothing is due (cron runs are mostly such runs), and
// keeps complete copies.
func TestRenewNothingDueSweepsPartialBackups(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	o := e.opts(pkitest.Now.Add(200 * day))
	killed := filepath.Join(o.BackupRoot, "20260101T000000Z", "pki")
	if err := os.MkdirAll(killed, 0o700); err != nil {
		t.Fatal(err)
	}
	partial, complete := filepath.Join(killed, ".apiserver.crt.k8scrypto-tmp"), filepath.Join(killed, "apiserver.key")
	for _, p := range []string{partial, complete} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if res := e.renew(o); len(res.Renewed()) != 0 {
		t.Fatalf("renewed %v; want nothing due", res.Renewed())
	}
	if _, err := os.Lstat(partial); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial backup copy still there after a run with nothing due: %v", err)
	}
	if _, err := os.Lstat(complete); err != nil {
		t.Errorf("complete backup copy lost: %v", err)
	}
	o.DryRun = true
	if err := os.WriteFile(partial, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.renew(o)
	if _, err := os.Lstat(partial); err != nil {
		t.Errorf("a dry run removed a file: %v", err)
	}
}

func TestRenewAllDue(t *testing.T) {
	e := newRenewEnv(t, pki.RSA2048, "")
	now := pkitest.Now.Add(250 * day) // 115 days left: under a third of 365 days
	old := map[string]*x509.Certificate{}
	oldKeys := map[string]crypto.Signer{}
	for _, n := range allLeafNames {
		old[n], oldKeys[n] = e.pair(n)
	}
	oldFiles := snapshot(t, e.certDir, e.kubeDir)
	cas := e.caFiles()
	res := e.renew(e.opts(now))
	if got := namesWith(res, RenewRenewed); !slices.Equal(got, allLeafNames) {
		t.Fatalf("renewed = %v, want %v (result %+v)", got, allLeafNames, res.Certificates)
	}
	e.checkConsistent(now, cas)
	for _, n := range allLeafNames {
		cert, key := e.pair(n)
		it := itemsBy(res)[n]
		o := old[n]
		if cert.SerialNumber.Cmp(o.SerialNumber) == 0 || it.Serial != cert.SerialNumber.String() || it.Previous.Serial != o.SerialNumber.String() {
			t.Errorf("%s: serial %s (item %s, previous %s), old %s", n, cert.SerialNumber, it.Serial, it.Previous.Serial, o.SerialNumber)
		}
		if !cert.NotBefore.Equal(now.Add(-pki.Backdate)) || !cert.NotAfter.Equal(now.Add(pki.DefaultCertValidity)) {
			t.Errorf("%s: validity %s..%s, want now-5m..now+365d", n, cert.NotBefore, cert.NotAfter)
		}
		if cert.Subject.String() != o.Subject.String() || !slices.Equal(cert.DNSNames, o.DNSNames) ||
			!slices.EqualFunc(cert.IPAddresses, o.IPAddresses, net.IP.Equal) ||
			!slices.Equal(cert.ExtKeyUsage, o.ExtKeyUsage) {
			t.Errorf("%s: subject/SANs/usages changed: %s %v %v %v, was %s %v %v %v", n, cert.Subject, cert.DNSNames, cert.IPAddresses, cert.ExtKeyUsage,
				o.Subject, o.DNSNames, o.IPAddresses, o.ExtKeyUsage)
		}
		if pki.PublicKeysEqual(key.Public(), oldKeys[n].Public()) || !it.KeyRotated {
			t.Errorf("%s: key was not rotated", n)
		}
		if pki.AlgorithmOf(key.Public()) != pki.RSA2048 {
			t.Errorf("%s: new key is %s, want RSA-2048", n, pki.AlgorithmOf(key.Public()))
		}
		if fp, _ := pki.PublicKeyFingerprint(key.Public()); it.KeySHA256 != fp || it.SHA256 != pki.Fingerprint(cert.Raw) {
			t.Errorf("%s: fingerprints in the result do not match the files", n)
		}
		if len(it.Backups) == 0 {
			t.Errorf("%s: no backup recorded", n)
		}
	}
	// Modes: keys and kubeconfigs 0600, certificates as they were (0644).
	after := snapshot(t, e.certDir, e.kubeDir)
	for p, h := range after {
		var want string
		switch {
		case strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".conf") || strings.HasSuffix(p, ".pub"):
			want = "-rw-------"
		case strings.HasSuffix(p, ".crt"):
			want = "-rw-r--r--"
		default:
			continue
		}
		if !strings.HasSuffix(h, want) {
			t.Errorf("%s: mode %s, want %s", p, h, want)
		}
	}
	// Every replaced file is in the backup, byte for byte, with its mode.
	backups := snapshot(t, res.BackupDir)
	replaced := 0
	for p, h := range oldFiles {
		if after[p] == h {
			continue
		}
		replaced++
		abs, _ := filepath.Abs(p)
		if got := backups[filepath.Join(res.BackupDir, abs)]; got != h {
			t.Errorf("backup of %s = %q, want %q", p, got, h)
		}
	}
	if replaced != 7*2+5 || len(backups) != replaced {
		t.Errorf("%d files replaced, %d backed up; want 7 certificate/key pairs and 5 kubeconfigs", replaced, len(backups))
	}
	if info, err := os.Stat(res.BackupDir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode: %v %v", info.Mode(), err)
	}
	// The kubeconfigs carry the CA and keep their server and names.
	kc, err := LoadKubeconfig(filepath.Join(e.kubeDir, "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !pki.SameCert(kc.CAs[0], e.ca("ca")) || kc.Server != "https://10.0.0.5:6443" || kc.Context != "kubernetes-admin@kubernetes" {
		t.Errorf("admin.conf after renewal: server %s context %s", kc.Server, kc.Context)
	}
	// A second run the same day finds nothing to do.
	if got := e.renew(e.opts(now.Add(time.Hour))).Renewed(); len(got) != 0 {
		t.Errorf("second run renewed %v", got)
	}
}

func TestRenewSomeDue(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	o := e.opts(pkitest.Now.Add(100 * day))
	o.Names, o.Force = []string{"apiserver", "admin"}, true
	if got := e.renew(o).Renewed(); !slices.Equal(got, []string{"admin.conf", "apiserver"}) {
		t.Fatalf("forced renewal renewed %v", got)
	}
	res := e.renew(e.opts(pkitest.Now.Add(250 * day)))
	want := slices.DeleteFunc(slices.Clone(allLeafNames), func(n string) bool { return n == "apiserver" || n == "admin.conf" })
	if got := namesWith(res, RenewRenewed); !slices.Equal(got, want) {
		t.Errorf("renewed %v, want %v", got, want)
	}
	if got := namesWith(res, RenewNotDue); !slices.Equal(got, []string{"admin.conf", "apiserver"}) {
		t.Errorf("not due %v, want admin.conf and apiserver", got)
	}
}

func TestRenewExpired(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(400 * day)
	o := e.opts(now)
	o.Keys = nil // fresh keys
	res := e.renew(o)
	if got := namesWith(res, RenewRenewed); !slices.Equal(got, allLeafNames) {
		t.Fatalf("renewed %v", got)
	}
	if r := itemsBy(res)["etcd-peer"].Reason; !strings.HasPrefix(r, "expired 35d ago") {
		t.Errorf("reason %q", r)
	}
	e.checkConsistent(now, e.caFiles())
}

func TestRenewMissingFiles(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	for _, p := range []string{"pki/apiserver.crt", "pki/apiserver.key", "kube/super-admin.conf"} {
		if err := os.Remove(filepath.Join(e.dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	o := e.opts(pkitest.Now.Add(250 * day))
	o.Keys = nil
	res := e.renew(o)
	items := itemsBy(res)
	if items["apiserver"].Action != RenewMissing || !items["apiserver"].Required || !strings.Contains(items["apiserver"].Reason, "apiserver.crt does not exist") {
		t.Errorf("apiserver: %+v", items["apiserver"])
	}
	if items["super-admin.conf"].Action != RenewMissing || items["super-admin.conf"].Required {
		t.Errorf("super-admin.conf: %+v (an absent super-admin.conf is normal on joined nodes)", items["super-admin.conf"])
	}
	if p := res.Problems(); len(p) != 1 || p[0].Name != "apiserver" {
		t.Errorf("problems = %v, want only apiserver", p)
	}
	if len(res.Renewed()) != len(allLeafNames)-2 {
		t.Errorf("renewed %v: the others must still be renewed", res.Renewed())
	}
	// Named explicitly, an optional file is required.
	o.Names = []string{"super-admin.conf"}
	if res := e.renew(o); len(res.Problems()) != 1 {
		t.Errorf("explicitly named missing super-admin.conf is not a problem: %+v", res.Certificates)
	}
}

func TestRenewExternalCARefused(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	if err := os.Remove(filepath.Join(e.certDir, "front-proxy-ca.key")); err != nil {
		t.Fatal(err)
	}
	// Not due: reported as external, not a problem.
	res := e.renew(e.opts(pkitest.Now.Add(10 * day)))
	if it := itemsBy(res)["front-proxy-client"]; it.Action != RenewNotDue || !strings.Contains(it.Reason, "external front-proxy-ca CA") || len(res.Problems()) != 0 {
		t.Errorf("front-proxy-client not due: %+v; problems %v", it, res.Problems())
	}
	before := snapshot(t, e.certDir)
	o := e.opts(pkitest.Now.Add(250 * day))
	o.Keys = nil
	res = e.renew(o)
	it := itemsBy(res)["front-proxy-client"]
	if it.Action != RenewFailed || !strings.Contains(it.Reason, "its CA front-proxy-ca is external") || !strings.Contains(it.Reason, "front-proxy-ca.key is absent") {
		t.Errorf("front-proxy-client: %+v", it)
	}
	if p := res.Problems(); len(p) != 1 || p[0].Name != "front-proxy-client" {
		t.Errorf("problems %v", p)
	}
	if len(res.Renewed()) != len(allLeafNames)-1 {
		t.Errorf("the other certificates must be renewed: %v", res.Renewed())
	}
	after := snapshot(t, e.certDir)
	for _, f := range []string{"front-proxy-client.crt", "front-proxy-client.key"} {
		if p := filepath.Join(e.certDir, f); before[p] != after[p] {
			t.Errorf("%s changed although its CA is external", f)
		}
	}
}

func TestRenewSANDrift(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "apiServer:\n  certSANs: [old.example.com, 192.0.2.7]")
	oldCert, _ := e.pair("apiserver")
	e.writeConfig(pki.ECDSAP256, "apiServer:\n  certSANs: [new.example.com, 192.0.2.8]")
	now := pkitest.Now.Add(10 * day)

	// Without a configuration nothing is compared.
	o := e.opts(now)
	o.CheckSANs = false
	o.DryRun = true
	if it := itemsBy(e.renew(o))["apiserver"]; it.Action != RenewNotDue || it.AddedSANs != nil {
		t.Errorf("without a configuration: %+v", it)
	}

	res := e.renew(e.opts(now))
	it := itemsBy(res)["apiserver"]
	if it.Action != RenewRenewed || !strings.Contains(it.Reason, "asks for SANs it lacks") {
		t.Fatalf("apiserver: %+v", it)
	}
	if !slices.Equal(it.AddedSANs, []string{"DNS:new.example.com", "IP:192.0.2.8"}) {
		t.Errorf("added %v", it.AddedSANs)
	}
	if !slices.Equal(it.UnrequestedSANs, []string{"DNS:old.example.com", "IP:192.0.2.7"}) {
		t.Errorf("unrequested %v", it.UnrequestedSANs)
	}
	cert, _ := e.pair("apiserver")
	for _, name := range []string{"new.example.com", "old.example.com", "kubernetes.default.svc.cluster.local", "192.0.2.7", "192.0.2.8", "10.96.0.1"} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("renewed apiserver certificate: %v", err)
		}
	}
	if cert.Subject.CommonName != oldCert.Subject.CommonName || len(cert.DNSNames) != len(oldCert.DNSNames)+1 {
		t.Errorf("renewed certificate: CN %s DNS %v", cert.Subject.CommonName, cert.DNSNames)
	}
	if got := res.Renewed(); !slices.Equal(got, []string{"apiserver"}) {
		t.Errorf("renewed %v, want only apiserver", got)
	}
	// The drift that remains (names kept) does not make it due again.
	if it := itemsBy(e.renew(e.opts(now.Add(day))))["apiserver"]; it.Action != RenewNotDue || !strings.Contains(it.Reason, "no longer asks for (kept): DNS:old.example.com") {
		t.Errorf("next day: %+v", it)
	}
}

func TestRenewKeyReuseVersusRotation(t *testing.T) {
	e := newRenewEnv(t, pki.RSA2048, "")
	now := pkitest.Now.Add(250 * day)
	keyPath := filepath.Join(e.certDir, "apiserver.key")
	before, _ := os.ReadFile(keyPath)
	_, oldKey := e.pair("apiserver")
	_, oldKCKey := e.pair("admin.conf")

	o := e.opts(now)
	o.RotateKeys = false
	res := e.renew(o)
	if len(res.Renewed()) != len(allLeafNames) {
		t.Fatalf("renewed %v", res.Renewed())
	}
	after, _ := os.ReadFile(keyPath)
	cert, key := e.pair("apiserver")
	if !bytes.Equal(before, after) || !pki.KeyMatchesCert(key, cert) || !pki.PublicKeysEqual(cert.PublicKey, oldKey.Public()) || itemsBy(res)["apiserver"].KeyRotated {
		t.Error("--rotate-keys=false replaced the apiserver key")
	}
	kcCert, _ := e.pair("admin.conf")
	if !pki.PublicKeysEqual(kcCert.PublicKey, oldKCKey.Public()) {
		t.Error("--rotate-keys=false replaced the admin.conf key")
	}
	for _, it := range res.Certificates {
		for _, b := range it.Backups {
			if strings.HasSuffix(b, ".key") {
				t.Errorf("%s: a kept key was backed up as if replaced: %s", it.Name, b)
			}
		}
	}

	// Rotation to another algorithm, as a changed configuration asks.
	o = e.opts(now.Add(day))
	o.Force, o.Algorithm, o.Keys = true, pki.ECDSAP256, nil
	res = e.renew(o)
	cert, key = e.pair("apiserver")
	if pki.AlgorithmOf(key.Public()) != pki.ECDSAP256 || !pki.KeyMatchesCert(key, cert) || !itemsBy(res)["apiserver"].KeyRotated {
		t.Errorf("rotation to ECDSA-P256: got %s", pki.AlgorithmOf(key.Public()))
	}
	// Algorithm "" keeps each key's algorithm.
	o = e.opts(now.Add(2 * day))
	o.Force, o.Algorithm, o.Keys = true, "", nil
	e.renew(o)
	if _, key = e.pair("apiserver"); pki.AlgorithmOf(key.Public()) != pki.ECDSAP256 {
		t.Errorf("algorithm not kept: %s", pki.AlgorithmOf(key.Public()))
	}
}

func TestRenewBrokenPair(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	other, _ := os.ReadFile(filepath.Join(e.certDir, "apiserver-kubelet-client.key"))
	if err := os.WriteFile(filepath.Join(e.certDir, "apiserver.key"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.opts(pkitest.Now.Add(10 * day))
	res := e.renew(o)
	if it := itemsBy(res)["apiserver"]; it.Action != RenewFailed || !strings.Contains(it.Reason, "does not match") || !strings.Contains(it.Reason, "--force") {
		t.Errorf("mismatched pair: %+v", it)
	}
	o.Names, o.Force = []string{"apiserver"}, true
	res = e.renew(o)
	cert, key := e.pair("apiserver")
	if itemsBy(res)["apiserver"].Action != RenewRenewed || !pki.KeyMatchesCert(key, cert) {
		t.Errorf("--force did not repair the pair: %+v", res.Certificates)
	}
}

func TestRenewAfterCARotation(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	// An operator replaces the cluster CA.
	for _, f := range []string{"ca.crt", "ca.key"} {
		os.Remove(filepath.Join(e.certDir, f))
	}
	d := NewData(e.loadConfig(), pkitest.Now.Add(day), nil, nil)
	d.KubeconfigDir = e.kubeDir
	if err := (&Runner{Phases: InitPhases()}).Run(context.Background(), d, Selection{Only: []string{"certs/ca"}}); err != nil {
		t.Fatal(err)
	}
	now := pkitest.Now.Add(2 * day)
	o := e.opts(now)
	o.Keys = nil
	res := e.renew(o)
	want := []string{"admin.conf", "apiserver", "apiserver-kubelet-client", "controller-manager.conf", "kubelet.conf", "scheduler.conf", "super-admin.conf"}
	if got := namesWith(res, RenewRenewed); !slices.Equal(got, want) {
		t.Errorf("renewed %v, want the certificates signed by ca: %v", got, want)
	}
	if r := itemsBy(res)["apiserver"].Reason; r != "not signed by the current ca CA" {
		t.Errorf("reason %q", r)
	}
	e.checkConsistent(now, nil)
	kc, _ := LoadKubeconfig(filepath.Join(e.kubeDir, "scheduler.conf"))
	if !pki.SameCert(kc.CAs[0], e.ca("ca")) {
		t.Error("scheduler.conf still embeds the old CA")
	}
}

func TestRenewCAValidityBounds(t *testing.T) {
	// A CA of two years: leaves renewed in the second year are cut to end with it, and once renewing gains
	// nothing the run fails and asks for the CA to be rotated.
	e := newRenewEnv(t, pki.ECDSAP256, "caCertificateValidityPeriod: 17520h")
	caEnd := e.ca("ca").NotAfter
	o := e.opts(pkitest.Now.Add(250 * day))
	o.Keys = nil
	res := e.renew(o)
	if it := itemsBy(res)["apiserver"]; it.Action != RenewRenewed || it.ClampedToCA {
		t.Fatalf("first renewal: %+v", it)
	}
	now := pkitest.Now.Add(500 * day) // 250+365 > 730: the new validity must stop at the CA's end
	o = e.opts(now)
	o.Keys = nil
	res = e.renew(o)
	it := itemsBy(res)["apiserver"]
	cert, _ := e.pair("apiserver")
	if it.Action != RenewRenewed || !it.ClampedToCA || !cert.NotAfter.Equal(caEnd) || !strings.Contains(it.Reason, `renew the CA before then ("k8scrypto ca renew ca")`) {
		t.Fatalf("second renewal: %+v, NotAfter %s, CA ends %s", it, cert.NotAfter, caEnd)
	}
	e.checkConsistent(now, nil)
	// Due again (under a third of its shortened lifetime), but renewing cannot extend it.
	o = e.opts(caEnd.Add(-30 * day))
	o.Keys = nil
	res = e.renew(o)
	it = itemsBy(res)["apiserver"]
	if it.Action != RenewFailed || !strings.Contains(it.Reason, `could not outlive the current one: renew the ca CA first ("k8scrypto ca renew ca")`) {
		t.Errorf("near the CA's end: %+v", it)
	}
	if len(res.Problems()) == 0 {
		t.Error("a certificate that cannot be renewed is not a problem")
	}
	// --force still re-issues (e.g. to rotate a key), within the CA's life.
	o.Force, o.Names = true, []string{"apiserver"}
	if it := itemsBy(e.renew(o))["apiserver"]; it.Action != RenewRenewed || !it.NotAfter.Equal(caEnd) {
		t.Errorf("forced near the CA's end: %+v", it)
	}
	// After the CA expired nothing it signs can be renewed.
	o = e.opts(caEnd.Add(day))
	o.Keys = nil
	res = e.renew(o)
	for _, n := range []string{"apiserver", "admin.conf"} {
		if it := itemsBy(res)[n]; it.Action != RenewFailed || !strings.Contains(it.Reason, "expired on") {
			t.Errorf("%s after the CA expired: %+v", n, it)
		}
	}
}

func TestRenewDryRunWritesNothing(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	before := snapshot(t, e.dir)
	o := e.opts(pkitest.Now.Add(250 * day))
	o.DryRun, o.BackupRoot = true, ""
	res := e.renew(o)
	if got := namesWith(res, RenewWouldRenew); !slices.Equal(got, allLeafNames) || !res.DryRun {
		t.Errorf("would renew %v", got)
	}
	if after := snapshot(t, e.dir); !maps.Equal(before, after) {
		t.Error("dry run changed files")
	}
}

func TestRenewSelection(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	o := e.opts(pkitest.Now)
	o.DryRun = true
	for _, tc := range []struct {
		names []string
		want  []string
		err   string
	}{
		{names: []string{"all"}, want: allLeafNames},
		{names: []string{"admin", "etcd-peer", "admin.conf"}, want: []string{"admin.conf", "etcd-peer"}},
		{names: []string{"ca"}, err: "ca is a certificate authority: k8scrypto never renews CAs"},
		{names: []string{"etcd-ca"}, err: "etcd-ca is a certificate authority"},
		{names: []string{"apiserver", "nope"}, err: `unknown certificate "nope"; valid names are: all, admin.conf, apiserver`},
		{names: []string{"all", "apiserver"}, err: `"all" cannot be combined`},
	} {
		o.Names = tc.names
		res, err := Renew(context.Background(), o)
		if tc.err != "" {
			var ine *InvalidNamesError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ine) {
				t.Errorf("%v: error %v, want %q", tc.names, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.names, err)
			continue
		}
		var got []string
		for _, it := range res.Certificates {
			got = append(got, it.Name)
		}
		sort.Strings(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v selected %v, want %v", tc.names, got, tc.want)
		}
	}
	// With external etcd the etcd certificates are neither expected nor renewable.
	e.writeConfig(pki.ECDSAP256, "etcd:\n  external:\n    endpoints: [https://etcd.example.com:2379]")
	o = e.opts(pkitest.Now)
	o.DryRun = true
	res, _ := Renew(context.Background(), o)
	if _, ok := itemsBy(res)["etcd-server"]; ok || len(res.Certificates) != len(allLeafNames)-4 {
		t.Errorf("external etcd still lists etcd certificates: %d items", len(res.Certificates))
	}
	o.Names = []string{"etcd-server"}
	if _, err := Renew(context.Background(), o); err == nil || !strings.Contains(err.Error(), "external etcd") {
		t.Errorf("etcd-server with external etcd: %v", err)
	}
}

func TestRenewValidatesOptions(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	before := snapshot(t, e.dir)
	for _, mut := range []func(*RenewOptions){
		func(o *RenewOptions) { o.Threshold = 400 * day },
		func(o *RenewOptions) { o.Threshold = -time.Hour },
		func(o *RenewOptions) { o.KeepBackups = 0 },
	} {
		o := e.opts(pkitest.Now.Add(300 * day))
		mut(&o)
		if _, err := Renew(context.Background(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if !maps.Equal(before, snapshot(t, e.dir)) {
		t.Error("a rejected run changed files")
	}
	// An explicit threshold replaces the third of the lifetime.
	o := e.opts(pkitest.Now.Add(200 * day))
	o.Threshold, o.DryRun = 180*day, true
	if got := namesWith(e.renew(o), RenewWouldRenew); len(got) != len(allLeafNames) {
		t.Errorf("with a 180d threshold at 165d left: %v", got)
	}
}

func TestRenewBackupsRotate(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	var dirs, pruned []string
	for i := range 5 {
		o := e.opts(pkitest.Now.Add(time.Duration(i+1) * day))
		o.Force, o.Names, o.KeepBackups, o.Keys = true, []string{"apiserver"}, 3, nil
		res := e.renew(o)
		dirs = append(dirs, res.BackupDir)
		pruned = append(pruned, res.PrunedBackups...)
		// Each backup holds the files this run replaced, as they were.
		cert, _ := e.pair("apiserver")
		if it := itemsBy(res)["apiserver"]; len(it.Backups) != 2 || it.Previous.Serial == cert.SerialNumber.String() {
			t.Errorf("run %d: backups %v", i, it.Backups)
		}
	}
	ents, err := os.ReadDir(e.backupDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ent := range ents {
		got = append(got, filepath.Join(e.backupDir, ent.Name()))
	}
	if !slices.Equal(got, dirs[2:]) {
		t.Errorf("backups kept %v, want the newest three %v", got, dirs[2:])
	}
	// The runs that pruned say which directories went (the command layer audits each).
	if !slices.Equal(pruned, dirs[:2]) {
		t.Errorf("pruned %v, want the oldest two %v", pruned, dirs[:2])
	}
}

// TestRenewFaultAtEveryStep fails each file-system step of a renewal in turn (backups, temp files, links,
// journal, renames, directory syncs). After every failure the next run's recovery leaves no temp file,
// every certificate matches its key, the CAs are untouched, and the run is all or nothing; a re-run then
// renews everything. Three certificates keep it quick while covering both certificate directories and a
// kubeconfig in one transaction.
func TestRenewFaultAtEveryStep(t *testing.T) {
	tmpl := newRenewEnv(t, pki.ECDSAP256, "")
	now := pkitest.Now.Add(250 * day)
	names := []string{"apiserver", "etcd-server", "admin.conf"}
	opts := func(e *renewEnv) RenewOptions {
		o := e.opts(now)
		o.Keys, o.Names = nil, names
		return o
	}
	count := func() int {
		e := cloneEnv(t, tmpl)
		n := 0
		restore := pki.SetFaultHook(func(pki.Op, string) error { n++; return nil })
		defer restore()
		e.renew(opts(e))
		return n
	}
	steps := count()
	if steps < 30 {
		t.Fatalf("only %d file-system steps counted; the hook is not reached", steps)
	}
	cas := tmpl.caFiles()
	outcomes := map[int]int{} // files replaced -> runs
	for i := 1; i <= steps; i++ {
		e := cloneEnv(t, tmpl)
		oldFiles := snapshot(t, e.certDir, e.kubeDir)
		var failedOp pki.Op
		var failedPath string
		n := 0
		restore := pki.SetFaultHook(func(op pki.Op, path string) error {
			n++
			if n == i {
				failedOp, failedPath = op, path
				return errors.New("injected fault")
			}
			return nil
		})
		_, err := Renew(context.Background(), opts(e))
		restore()
		if err == nil && failedOp != pki.OpSyncDir {
			// Only a lost directory sync after the journal is gone may go unnoticed.
			t.Errorf("step %d (%s %s): no error", i, failedOp, failedPath)
		}
		// What the next run does first.
		if _, err := pki.Recover(e.certDir, e.certDir, filepath.Join(e.certDir, "etcd"), e.kubeDir); err != nil {
			t.Fatalf("step %d (%s %s): recover: %v", i, failedOp, failedPath, err)
		}
		myCAs := relocate(cas, tmpl.dir, e.dir)
		e.checkConsistent(now, myCAs)
		// All or nothing: either every leaf file is as before or every one is new.
		after := snapshot(t, e.certDir, e.kubeDir)
		changed := 0
		for p, h := range oldFiles {
			if after[p] != h {
				changed++
			}
		}
		outcomes[changed]++
		if changed != 0 && changed != 5 {
			t.Errorf("step %d (%s %s): %d files replaced; want none or all 5", i, failedOp, failedPath, changed)
		}
		res := e.renew(opts(e))
		if changed == 0 && len(res.Renewed()) != len(names) {
			t.Errorf("step %d: re-run renewed %v", i, res.Renewed())
		}
		e.checkConsistent(now, myCAs)
		if t.Failed() {
			t.Logf("failed at step %d: %s %s", i, failedOp, failedPath)
			return
		}
	}
	// Faults before the commit point leave the old files; the last steps only tidy up after it.
	if outcomes[0] == 0 || outcomes[5] == 0 {
		t.Errorf("outcomes %v: expected both untouched and completed runs over %d steps", outcomes, steps)
	}
	t.Logf("%d steps: %v", steps, outcomes)
}

// cloneEnv copies a test PKI, so each fault injection starts from the same files.
func cloneEnv(t *testing.T, src *renewEnv) *renewEnv {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src.dir, p)
		target := filepath.Join(dst, rel)
		info, _ := d.Info()
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	e := *src
	e.dir, e.certDir, e.kubeDir = dst, filepath.Join(dst, "pki"), filepath.Join(dst, "kube")
	e.backupDir, e.cfgFile = filepath.Join(dst, "backups"), filepath.Join(dst, "kubeadm.yaml")
	return &e
}

func relocate(m map[string]string, from, to string) map[string]string {
	out := map[string]string{}
	for p, h := range m {
		out[strings.Replace(p, from, to, 1)] = h
	}
	return out
}

func TestRenewLeavesKubeletRotatedCertificateAlone(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	pem := bootstrapKubelet(t, e)
	before := snapshot(t, e.kubeDir, filepath.Dir(pem))
	o := e.opts(pkitest.Now.Add(250 * day))
	o.Keys = nil
	res := e.renew(o)
	if it := itemsBy(res)["kubelet.conf"]; it.Action != RenewSkipped || it.Path != pem || !strings.Contains(it.Reason, "the kubelet rotates its own client certificate") {
		t.Errorf("kubelet.conf: %+v", it)
	}
	if len(res.Problems()) != 0 || len(res.Renewed()) != len(allLeafNames)-1 {
		t.Errorf("renewed %v, problems %v", res.Renewed(), res.Problems())
	}
	after := snapshot(t, e.kubeDir, filepath.Dir(pem))
	for _, p := range []string{filepath.Join(e.kubeDir, "kubelet.conf"), pem} {
		if before[p] != after[p] {
			t.Errorf("%s changed", p)
		}
	}
	o.Names = []string{"kubelet.conf"}
	if it := itemsBy(e.renew(o))["kubelet.conf"]; it.Action != RenewFailed || !strings.Contains(it.Reason, "renews only embedded client certificates") {
		t.Errorf("kubelet.conf named explicitly: %+v", it)
	}
}

// kubeadm backdates kubeconfig client certificates to the CA's NotBefore; on a node set up years after the
// CA, a fresh kubeconfig must not count as due.
func TestRenewThresholdIgnoresBackdating(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	os.Remove(filepath.Join(e.kubeDir, "admin.conf"))
	joined := pkitest.Now.Add(3 * 365 * day)
	d := NewData(e.loadConfig(), joined, nil, nil)
	d.KubeconfigDir = e.kubeDir
	if err := (&Runner{Phases: InitPhases()}).Run(context.Background(), d, Selection{Only: []string{"kubeconfig/admin"}}); err != nil {
		t.Fatal(err)
	}
	cert, _ := e.pair("admin.conf")
	if !cert.NotBefore.Equal(e.ca("ca").NotBefore) {
		t.Fatalf("admin.conf NotBefore %s, expected the CA's (kubeadm's backdating)", cert.NotBefore)
	}
	o := e.opts(joined.Add(10 * day))
	o.DryRun = true
	if it := itemsBy(e.renew(o))["admin.conf"]; it.Action != RenewNotDue || !strings.Contains(it.Reason, "due under 121d") {
		t.Errorf("fresh admin.conf on a late node: %+v", it)
	}
	o = e.opts(joined.Add(250 * day))
	o.DryRun = true
	if it := itemsBy(e.renew(o))["admin.conf"]; it.Action != RenewWouldRenew {
		t.Errorf("admin.conf with 115 days left: %+v", it)
	}
}

func TestRenewSymlinkFailsOnlyItsCertificate(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	real := filepath.Join(e.dir, "elsewhere.crt")
	crt := filepath.Join(e.certDir, "apiserver-kubelet-client.crt")
	os.Rename(crt, real)
	if err := os.Symlink(real, crt); err != nil {
		t.Fatal(err)
	}
	o := e.opts(pkitest.Now.Add(250 * day))
	o.Keys = nil
	res := e.renew(o)
	if it := itemsBy(res)["apiserver-kubelet-client"]; it.Action != RenewFailed || !strings.Contains(it.Reason, "is a symbolic link") {
		t.Errorf("symlinked certificate: %+v", it)
	}
	if len(res.Renewed()) != len(allLeafNames)-1 {
		t.Errorf("renewed %v", res.Renewed())
	}
}

// TestRenewKeepsWholeSubjectAndOtherSANs: a certificate with subject attributes and SAN kinds kubeadm never
// sets (an operator's or another tool's) keeps all of them when renewed: the subject byte for byte (every
// RDN, in order), URI and e-mail SANs, next to its DNS and IP SANs.
func TestRenewKeepsWholeSubjectAndOtherSANs(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	old, key := e.pair("apiserver")
	caCert := e.ca("ca")
	caKey, err := LoadKey(filepath.Join(e.certDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/kube-system/sa/apiserver")
	tmpl := *old
	tmpl.Subject = pkix.Name{CommonName: old.Subject.CommonName, Organization: []string{"Example"}, OrganizationalUnit: []string{"Platform", "Control plane"},
		Country: []string{"DE"}, Locality: []string{"Berlin"}, SerialNumber: "cp-1"}
	tmpl.RawSubject = nil
	tmpl.URIs = []*url.URL{spiffe}
	tmpl.EmailAddresses = []string{"pki@example.com"}
	der, err := x509.CreateCertificate(pkitest.Rand(7), &tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.certDir, "apiserver.crt"), pki.EncodeCert(&x509.Certificate{Raw: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := e.pair("apiserver")

	o := e.opts(pkitest.Now.Add(day))
	o.Force, o.Names = true, []string{"apiserver"}
	if got := namesWith(e.renew(o), RenewRenewed); !slices.Equal(got, []string{"apiserver"}) {
		t.Fatalf("renewed %v", got)
	}
	after, _ := e.pair("apiserver")
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("not renewed")
	}
	if !bytes.Equal(after.RawSubject, before.RawSubject) {
		t.Errorf("subject %q, want %q", after.Subject, before.Subject)
	}
	if len(after.URIs) != 1 || after.URIs[0].String() != spiffe.String() {
		t.Errorf("URI SANs %v, want %v", after.URIs, spiffe)
	}
	if !slices.Equal(after.EmailAddresses, before.EmailAddresses) {
		t.Errorf("e-mail SANs %v, want %v", after.EmailAddresses, before.EmailAddresses)
	}
	if !slices.Equal(after.DNSNames, before.DNSNames) || fmt.Sprint(after.IPAddresses) != fmt.Sprint(before.IPAddresses) {
		t.Errorf("SANs %v %v, want %v %v", after.DNSNames, after.IPAddresses, before.DNSNames, before.IPAddresses)
	}
}

// TestRenewIntentErrorReplacesNothing: the session writes the run's audit intent before the commit; when
// that fails, no file is replaced and this run's backup directory is discarded. When the commit itself fails
// after the intent is written, the intent holds every leaf as renewed (what the next run's recovery records,
// as applied or not, from what is then on disk).
func TestRenewIntentErrorReplacesNothing(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	o := e.opts(pkitest.Now.Add(250 * day))
	s, err := OpenSession(context.Background(), SessionOptions{CertDir: e.certDir, KubeconfigDir: e.kubeDir, AuditLog: filepath.Join(e.dir, "audit.log"),
		BackupDir: e.backupDir, Backups: true, Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	o.Session, o.BackupRoot = s, s.BackupRoot
	before := snapshot(t, e.certDir, e.kubeDir) // with the session's lock file
	intent := filepath.Join(e.certDir, AuditIntentName)
	restore := pki.SetFaultHook(func(op pki.Op, path string) error {
		if op == pki.OpCreate && strings.Contains(filepath.Base(path), AuditIntentName) {
			return errors.New("disk full")
		}
		return nil
	})
	_, err = Renew(context.Background(), o)
	restore()
	if err == nil || !strings.Contains(err.Error(), "recording the audit intent") || !strings.Contains(err.Error(), "disk full; nothing was renewed") {
		t.Fatalf("error %v", err)
	}
	if after := snapshot(t, e.certDir, e.kubeDir); !maps.Equal(before, after) {
		t.Error("files changed")
	}
	if ents, _ := os.ReadDir(e.backupDir); len(ents) != 0 {
		t.Errorf("backup directory kept: %v", ents)
	}

	// Now the intent is written and the transaction's first temp file fails.
	restore = pki.SetFaultHook(func(op pki.Op, path string) error {
		d := filepath.Dir(path)
		if op == pki.OpCreate && (d == e.certDir || d == e.kubeDir) && !strings.Contains(filepath.Base(path), AuditIntentName) {
			return errors.New("disk full")
		}
		return nil
	})
	_, err = Renew(context.Background(), o)
	restore()
	if err == nil || !strings.Contains(err.Error(), "writing the renewed certificates") {
		t.Fatalf("error %v", err)
	}
	after := snapshot(t, e.certDir, e.kubeDir)
	delete(after, intent)
	if !maps.Equal(before, after) {
		t.Error("files changed")
	}
	data, err := os.ReadFile(intent)
	if err != nil {
		t.Fatal(err)
	}
	var in auditIntent
	if err := json.Unmarshal(data, &in); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ev := range in.Events {
		if ev.Operation == pki.AuditRenew && ev.Outcome == "ok" {
			seen = append(seen, ev.File)
		}
	}
	if len(seen) != len(allLeafNames) {
		t.Errorf("the intent records renewed %v, want every leaf", seen)
	}
}

// TestRenewBackupRootUnusable: a backup root that cannot be looked into (here a regular file in its path,
// which stops root too) fails the run at once with a clear error; it used to spin for ever.
func TestRenewBackupRootUnusable(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e.certDir, e.kubeDir)
	o := e.opts(pkitest.Now.Add(250 * day))
	o.BackupRoot = filepath.Join(file, "backups")
	done := make(chan error, 1)
	go func() { _, err := Renew(context.Background(), o); done <- err }()
	select {
	case err := <-done:
		// pki names the root; the flag that chooses another is named here.
		const fix = ": not a directory (give a --backup-dir this user can create and write); nothing was renewed"
		if err == nil || !strings.HasPrefix(err.Error(), "backup directory "+o.BackupRoot+": ") || !strings.HasSuffix(err.Error(), fix) {
			t.Errorf("error %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Renew did not return within a minute")
	}
	if after := snapshot(t, e.certDir, e.kubeDir); !maps.Equal(before, after) {
		t.Error("files changed")
	}
}
