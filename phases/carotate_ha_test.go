package phases

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// caRotate runs "ca rotate <step> --ca name" on the node of e, through CARotate (its session, backups,
// commit and audit lines), at now.
func (e *renewEnv) caRotate(name, step string, dryRun bool) (*CARotateResult, error) {
	e.t.Helper()
	now := pkitest.Now.Add(30 * day)
	return CARotate(context.Background(), step, CARotateOptions{
		RotateOptions: RotateOptions{KubeconfigDir: e.kubeDir, AuditLog: filepath.Join(e.dir, "audit.log"), BackupDir: e.backupDir, DryRun: dryRun, Now: now},
		Config:        ConfigSource{File: e.cfgFile, Flags: config.Overrides{CertDir: e.certDir}, Hostname: func() (string, error) { return "cp-1", nil }},
		Name:          name, Keys: e.keys, Rand: pkitest.Rand(uint64(len(e.dir))), Yes: step == "prune",
	})
}

// copyFile copies a file as an operator's scp would (0600).
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCARotationAdoptsCopiedStage is the HA procedure of a CA rotation in unit form, for each CA: two
// control-plane nodes (their own certificate and kubeconfig directories, the shared CAs), prepare on the
// first, the files caStageFiles names copied to the second, prepare there. The second adopts the stage:
// no new key, the same bundle, staged key and signer byte for byte, its own kubeconfigs trusting exactly
// what the first node's do, its own certificates verifying against the bundle, and the first node's
// client certificates too. prepare again on either node is a no-op that says so (no backup, no audit
// line). promote on both makes one new CA sign the certificates of both nodes; prune on both leaves only
// it. Out of order, prepare is still refused (exit 3).
func TestCARotationAdoptsCopiedStage(t *testing.T) {
	for _, name := range CANames {
		t.Run(name, func(t *testing.T) {
			e1 := newRenewEnv(t, pki.ECDSAP256, "")
			e2 := newNodeEnv(t, pki.ECDSAP256, "", e1)
			spec, _ := pki.LookupCert(name)
			crt2 := spec.CertPath(e2.certDir)
			oldCA := readCertFile(t, crt2)

			res, err := e1.caRotate(name, "prepare", false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Adopted || res.Unchanged {
				t.Errorf("prepare on a steady node: adopted %v, unchanged %v; want a new key", res.Adopted, res.Unchanged)
			}
			// The bundle and the staged key; ca-signer.crt, which README also copies, is left for prepare to
			// write from the bundle.
			for _, f := range caStageFiles(name)[:2] {
				copyFile(t, filepath.Join(e1.certDir, f), filepath.Join(e2.certDir, f))
			}
			if !strings.Contains(res.Next, strings.Join(caStageFiles(name), ", ")) || !strings.Contains(res.Next, `run "k8scrypto ca rotate prepare --ca `+name+`" there`) {
				t.Errorf("prepare's next does not say to copy %v and run prepare on the other nodes: %s", caStageFiles(name), res.Next)
			}

			dry, err := e2.caRotate(name, "prepare", true)
			if err != nil {
				t.Fatalf("prepare --dry-run on the node the stage was copied to: %v", err)
			}
			res, err = e2.caRotate(name, "prepare", false)
			if err != nil {
				t.Fatalf("prepare on the node the stage was copied to: %v", err)
			}
			if !res.Adopted || res.Stage != CAPrepared || !slices.Equal(dry.Files, res.Files) {
				t.Errorf("adopting: adopted %v, stage %s, files %v (dry run %v)", res.Adopted, res.Stage, res.Files, dry.Files)
			}
			if bytes.Contains([]byte(strings.Join(res.Files, "\n")), []byte(".next")) {
				t.Errorf("adopting wrote a staged key: %v", res.Files)
			}
			if signer := filepath.Join(e2.certDir, CASignerFile); name == pki.KubeconfigCAName && !slices.Contains(res.Files, signer) {
				t.Errorf("adopting the cluster CA's stage without %s did not write it: %v", signer, res.Files)
			}
			wantWritten := name == pki.KubeconfigCAName // only the cluster CA has files of the node's own to bring along
			if res.Unchanged == wantWritten || (len(res.Files) > 0) != wantWritten {
				t.Errorf("adopting %s: unchanged %v, files %v", name, res.Unchanged, res.Files)
			}
			for _, f := range caStageFiles(name) {
				if !bytes.Equal(mustRead(t, filepath.Join(e1.certDir, f)), mustRead(t, filepath.Join(e2.certDir, f))) {
					t.Errorf("%s differs between the nodes after adopting", f)
				}
			}
			bundle := parseBundle(t, mustRead(t, crt2))
			if len(bundle) != 2 || !bundle[0].Equal(oldCA) {
				t.Fatalf("%s on the second node: %d certificates, old first %v", crt2, len(bundle), len(bundle) > 0 && bundle[0].Equal(oldCA))
			}
			newCA := bundle[1]
			if k, err := LoadKey(spec.KeyPath(e2.certDir) + ".next"); err != nil || !pki.KeyMatchesCert(k, newCA) {
				t.Fatalf("the second node's staged key does not match the new CA: %v", err)
			}
			now := pkitest.Now.Add(30 * day)
			for _, s := range e2.loadConfig().Certs() {
				if s.CAName == name {
					if err := verifies(t, readCertFile(t, s.CertPath(e2.certDir)), crt2, now); err != nil {
						t.Errorf("the second node's %s does not verify against its bundle: %v", s.Name, err)
					}
				}
			}
			if name == pki.KubeconfigCAName {
				for _, k := range pki.Kubeconfigs() {
					kc2, err := LoadKubeconfig(k.Path(e2.kubeDir))
					if errors.Is(err, os.ErrNotExist) {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					kc1, err := LoadKubeconfig(k.Path(e1.kubeDir))
					if err != nil {
						t.Fatal(err)
					}
					if len(kc2.CAs) != 2 || !kc2.CAs[0].Equal(oldCA) || !kc2.CAs[1].Equal(newCA) || !sameCerts(kc1.CAs, kc2.CAs) {
						t.Errorf("%s on the second node trusts %d certificate(s), not the first node's old, new", k.FileName, len(kc2.CAs))
					}
					// Either node's client certificate verifies against either node's trust.
					for _, c := range []*x509.Certificate{kc1.ClientCert, kc2.ClientCert} {
						if err := verifies(t, c, crt2, now); err != nil {
							t.Errorf("%s: a client certificate does not verify against the second node's bundle: %v", k.FileName, err)
						}
					}
				}
			}

			// Again, on either node: nothing to do, and it says so.
			for i, e := range []*renewEnv{e1, e2} {
				audit := pkitest.AuditLines(t, filepath.Join(e.dir, "audit.log"))
				before := pkitest.MustSnapshot(t, e.dir)
				res, err := e.caRotate(name, "prepare", false)
				if err != nil || !res.Unchanged || !res.Adopted || len(res.Files)+len(res.Removes)+len(res.Backups) != 0 || res.Stage != CAPrepared {
					t.Errorf("prepare again on node %d: %v, %+v; want unchanged, nothing written", i+1, err, res)
				}
				if txt := fmt.Sprint(res.Text(false)); !strings.Contains(txt, "unchanged: every file is at stage prepared already; nothing written") {
					t.Errorf("prepare again on node %d does not say it changed nothing:\n%s", i+1, txt)
				}
				if d := pkitest.Diff(before, pkitest.MustSnapshot(t, e.dir)); len(d) != 0 {
					t.Errorf("prepare again on node %d changed %v", i+1, d)
				}
				if n := len(pkitest.AuditLines(t, filepath.Join(e.dir, "audit.log"))); n != len(audit) {
					t.Errorf("prepare again on node %d wrote %d audit line(s)", i+1, n-len(audit))
				}
			}

			for _, e := range []*renewEnv{e1, e2} {
				if _, err := e.caRotate(name, "promote", false); err != nil {
					t.Fatalf("promote: %v", err)
				}
			}
			// One new CA signs both nodes' certificates: each verifies against either node's CA file.
			if !bytes.Equal(mustRead(t, spec.CertPath(e1.certDir)), mustRead(t, crt2)) || !bytes.Equal(mustRead(t, spec.KeyPath(e1.certDir)), mustRead(t, spec.KeyPath(e2.certDir))) {
				t.Errorf("after promote on both nodes the CA pair differs between them")
			}
			var se *CAStageError
			if _, err := e2.caRotate(name, "prepare", false); !errors.As(err, &se) || se.ExitCode() != 3 {
				t.Errorf("prepare after promote: %v, want refused (exit 3)", err)
			}
			for _, e := range []*renewEnv{e1, e2} {
				if _, err := e.caRotate(name, "prune", false); err != nil {
					t.Fatalf("prune: %v", err)
				}
			}
			for _, e := range []*renewEnv{e1, e2} {
				crt := spec.CertPath(e.certDir)
				if b := parseBundle(t, mustRead(t, crt)); len(b) != 1 || !b[0].Equal(newCA) {
					t.Errorf("%s after prune: %d certificate(s), want the new CA alone", crt, len(b))
				}
				for _, s := range e.loadConfig().Certs() {
					if s.CAName != name {
						continue
					}
					c := readCertFile(t, s.CertPath(e.certDir))
					if err := verifies(t, c, spec.CertPath(e1.certDir), now); err != nil || c.CheckSignatureFrom(oldCA) == nil {
						t.Errorf("%s of %s after prune: %v, or still signed by the old CA", s.Name, e.dir, err)
					}
				}
				if name == pki.KubeconfigCAName {
					for _, k := range pki.Kubeconfigs() {
						kc, err := LoadKubeconfig(k.Path(e.kubeDir))
						if errors.Is(err, os.ErrNotExist) {
							continue
						}
						if err != nil {
							t.Fatal(err)
						}
						if len(kc.CAs) != 1 || !kc.CAs[0].Equal(newCA) || kc.ClientCert.CheckSignatureFrom(newCA) != nil {
							t.Errorf("%s of %s after prune: trusts %d certificate(s); want the new CA alone, and a client certificate it signed", k.FileName, e.dir, len(kc.CAs))
						}
					}
				}
			}
		})
	}
}

// TestCARotationRefusesBrokenCopiedStage: a stage copied wrong to a second node is a clear error naming
// the files, and nothing is written: a staged key from another prepare than the bundle's (here the old
// CA's key under the staged key's name), and the bundle without its staged key (which would otherwise
// read as promoted).
func TestCARotationRefusesBrokenCopiedStage(t *testing.T) {
	e1 := newRenewEnv(t, pki.ECDSAP256, "")
	e2 := newNodeEnv(t, pki.ECDSAP256, "", e1)
	if _, err := e1.caRotate("ca", "prepare", false); err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(e2.certDir, "ca.crt"), filepath.Join(e2.certDir, "ca.key")
	copyFile(t, filepath.Join(e1.certDir, "ca.crt"), crt)
	for _, c := range []struct {
		name  string
		setup func()
		want  []string
	}{
		{"bundle without its staged key", func() {}, []string{crt, "no staged key " + key + ".next", "copy ca.key.next from the node where prepare ran"}},
		{"staged key of another prepare", func() { copyFile(t, key, key+".next") }, []string{"the staged key " + key + ".next does not match the new CA certificate, the second in " + crt, "copy both from the node where prepare ran"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			before := pkitest.MustSnapshot(t, e2.dir)
			for _, step := range []string{"prepare", "promote", "prune"} {
				_, err := e2.caRotate("ca", step, false)
				if err == nil {
					t.Fatalf("%s succeeded", step)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %v\nwant it to say %q", step, err, w)
					}
				}
			}
			// The session's lock file and an empty audit log are its bookkeeping, not a write of the step.
			if d := slices.DeleteFunc(pkitest.Diff(before, pkitest.MustSnapshot(t, e2.dir)), func(s string) bool {
				return s == "added pki/.k8scrypto.lock" || s == "added audit.log"
			}); len(d) != 0 {
				t.Errorf("a refused step changed %v", d)
			}
			if n := len(pkitest.AuditLines(t, filepath.Join(e2.dir, "audit.log"))); n != 0 {
				t.Errorf("a refused step wrote %d audit line(s)", n)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parseBundle(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	first, rest, err := pki.ParseCertChain(data)
	if err != nil {
		t.Fatal(err)
	}
	return append([]*x509.Certificate{first}, rest...)
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
