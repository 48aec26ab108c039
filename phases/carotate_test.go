package phases

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// applyPlan writes a plan as the session's commit would, and removes what it made obsolete.
func applyPlan(t *testing.T, p *RotationPlan) {
	t.Helper()
	for _, f := range p.Files {
		if err := os.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range p.Obsolete {
		if err := os.Remove(o); err != nil {
			t.Fatal(err)
		}
	}
}

// verifies reports whether cert chains to one of the certificates of the CA file at path, at now.
func verifies(t *testing.T, cert *x509.Certificate, path string, now time.Time) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// TestCARotationStages walks the cluster CA and the etcd CA through prepare, promote and prune: each step
// refuses out of order (exit 3), but prepare on a prepared node adopts the stage; after prepare both CAs are trusted and the old one signs; after promote the
// new key signs, every leaf and kubeconfig client certificate is re-issued by it (same key) and both are
// still trusted, so a client holding an old certificate still verifies; after prune only the new CA is
// trusted.
func TestCARotationStages(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	now := pkitest.Now.Add(30 * day)
	ctx := context.Background()
	for _, name := range []string{"ca", "etcd-ca"} {
		t.Run(name, func(t *testing.T) {
			spec, _ := pki.LookupCert(name)
			crtPath, keyPath := spec.CertPath(cfg.CertDir), spec.KeyPath(cfg.CertDir)
			oldCA := readCertFile(t, crtPath)
			leafName := map[string]string{"ca": "apiserver", "etcd-ca": "etcd-server"}[name]
			leafSpec, _ := pki.LookupCert(leafName)
			oldLeaf := readCertFile(t, leafSpec.CertPath(cfg.CertDir))
			step := func(s string, yes bool) *CARotation {
				t.Helper()
				r := &CARotation{Cfg: cfg, KubeconfigDir: e.kubeDir, Name: name, Now: now, Keys: e.keys, Rand: pkitest.Rand(21), Yes: yes}
				if err := r.Read(); err != nil {
					t.Fatal(err)
				}
				if err := r.Check(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
				p, err := r.Plan(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				applyPlan(t, p)
				return r
			}
			refused := func(s string) {
				t.Helper()
				r := &CARotation{Cfg: cfg, KubeconfigDir: e.kubeDir, Name: name, Now: now, Yes: true}
				if err := r.Read(); err != nil {
					t.Fatal(err)
				}
				var se *CAStageError
				if err := r.Check(ctx, s); !errors.As(err, &se) || se.ExitCode() != 3 || !strings.Contains(err.Error(), "ca rotate "+s+" refused") {
					t.Errorf("%s in stage %s: %v", s, r.Stage(), err)
				}
			}
			refused("promote")
			refused("prune")
			step("prepare", false)
			// prepare again finds the stage in place (as on a node it was copied to): no new key, nothing to write.
			if again := step("prepare", false); !again.Adopted() {
				t.Error("prepare on a prepared node made a new key")
			}
			refused("prune")
			if err := verifies(t, oldLeaf, crtPath, now); err != nil {
				t.Errorf("after prepare the old leaf does not verify: %v", err)
			}
			if _, err := os.Stat(keyPath + ".next"); err != nil {
				t.Fatalf("no staged key: %v", err)
			}
			bundle, rest, _ := LoadCert(crtPath)
			if !bundle.Equal(oldCA) || len(rest) != 1 {
				t.Fatalf("after prepare ca.crt holds %d certificates, signer first: %v", 1+len(rest), bundle.Equal(oldCA))
			}
			newCA := rest[0]
			signer := filepath.Join(cfg.CertDir, CASignerFile)
			// kube-controller-manager signs only with a file of one certificate: while ca.crt is a bundle the
			// cluster CA's rotation keeps the signer alone beside it (the other CAs are not kcm's).
			signerAlone := func(want *x509.Certificate, when string) {
				t.Helper()
				c, rest, err := LoadCert(signer)
				if name != "ca" {
					if !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s after %s for %s: %v, want none", signer, when, name, err)
					}
					return
				}
				if err != nil || len(rest) != 0 || !c.Equal(want) {
					t.Errorf("%s after %s: %v, %d more certificate(s); want the signer alone", signer, when, err, len(rest))
				}
			}
			signerAlone(oldCA, "prepare")
			if restart := caRestart(name, "prepare", cfg.CertDir); name == "ca" && !strings.Contains(restart, "--cluster-signing-cert-file="+signer) {
				t.Errorf("the advice after prepare does not point kube-controller-manager at %s: %s", signer, restart)
			}

			step("promote", false)
			signerAlone(newCA, "promote")
			if _, err := os.Stat(keyPath + ".next"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the staged key is still there after promote: %v", err)
			}
			if k, _ := LoadKey(keyPath); !pki.KeyMatchesCert(k, newCA) {
				t.Error("after promote the CA key is not the new CA's")
			}
			newLeaf := readCertFile(t, leafSpec.CertPath(cfg.CertDir))
			if newLeaf.CheckSignatureFrom(newCA) != nil || !pki.PublicKeysEqual(newLeaf.PublicKey, oldLeaf.PublicKey) || string(newLeaf.RawSubject) != string(oldLeaf.RawSubject) {
				t.Error("the leaf was not re-issued by the new CA with the same key and subject")
			}
			for _, c := range []*x509.Certificate{oldLeaf, newLeaf} {
				if err := verifies(t, c, crtPath, now); err != nil {
					t.Errorf("after promote a leaf (old or new) does not verify against the bundle: %v", err)
				}
			}
			if name == "ca" {
				for _, k := range pki.Kubeconfigs() {
					kc, err := LoadKubeconfig(k.Path(e.kubeDir))
					if err != nil {
						t.Fatal(err)
					}
					if kc.ClientCert.CheckSignatureFrom(newCA) != nil || len(kc.CAs) != 2 || !kc.CAs[0].Equal(newCA) {
						t.Errorf("%s after promote: client certificate not from the new CA, or CA data not [new, old]", k.FileName)
					}
				}
			}
			refused("promote")
			r := &CARotation{Cfg: cfg, KubeconfigDir: e.kubeDir, Name: name, Now: now}
			if err := r.Read(); err != nil {
				t.Fatal(err)
			}
			var ue *UsageError
			if err := r.Check(ctx, "prune"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--yes") {
				t.Errorf("prune without --yes: %v", err)
			}
			step("prune", true)
			if _, err := os.Stat(signer); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after prune: %v, want it removed (ca.crt is one certificate again)", signer, err)
			}
			if restart := caRestart(name, "prune", cfg.CertDir); name == "ca" && !strings.Contains(restart, "--cluster-signing-cert-file="+crtPath) {
				t.Errorf("the advice after prune does not point kube-controller-manager back at %s: %s", crtPath, restart)
			}
			if c, rest, _ := LoadCert(crtPath); !c.Equal(newCA) || len(rest) != 0 {
				t.Error("after prune ca.crt is not the new CA alone")
			}
			if verifies(t, oldLeaf, crtPath, now) == nil {
				t.Error("after prune a certificate of the old CA still verifies")
			}
			if err := verifies(t, newLeaf, crtPath, now); err != nil {
				t.Errorf("after prune the re-issued leaf does not verify: %v", err)
			}
			info := CheckExpiration(cfg, e.kubeDir, now)
			for _, row := range append(info.Certificates, info.CertificateAuthorities...) {
				if row.Problem != "" && (row.CAName == name || row.Name == name) {
					t.Errorf("%s after the rotation: %s", row.Name, row.Problem)
				}
			}
		})
	}
}

// TestEditKubeconfigCA: the one editor of embedded certificate-authority-data. swapCA replaces one
// certificate in place and keeps the rest of a bundle, and leaves a kubeconfig that does not embed it
// untouched (ok false); trustOnly sets the bundle; an absent file is no change.
func TestEditKubeconfigCA(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	own := readCertFile(t, filepath.Join(cfg.CertDir, "ca.crt"))
	other, _ := foreignCA(t, e.keys)
	third, _ := foreignCA(t, e.keys)
	path := filepath.Join(e.kubeDir, "admin.conf")
	embedded := func(f pki.File) []*x509.Certificate {
		t.Helper()
		kc, err := ParseKubeconfig(path, f.Data)
		if err != nil {
			t.Fatal(err)
		}
		return kc.CAs
	}

	f, ok, err := editKubeconfigCA(path, nil, trustOnly([]*x509.Certificate{other, own}))
	if err != nil || !ok || len(embedded(f)) != 2 || !embedded(f)[0].Equal(other) || !embedded(f)[1].Equal(own) {
		t.Fatalf("trustOnly: ok %v err %v", ok, err)
	}
	g, ok, err := editKubeconfigCA(path, f.Data, swapCA(own, third))
	if err != nil || !ok {
		t.Fatalf("swapCA: ok %v err %v", ok, err)
	}
	if cas := embedded(g); len(cas) != 2 || !cas[0].Equal(other) || !cas[1].Equal(third) {
		t.Errorf("swapCA did not replace the certificate in place in the bundle")
	}
	if _, ok, err := editKubeconfigCA(path, g.Data, swapCA(own, third)); ok || err != nil {
		t.Errorf("swapCA of a certificate the file does not embed: ok %v err %v, want no change", ok, err)
	}
	if _, ok, err := editKubeconfigCA(filepath.Join(e.kubeDir, "absent.conf"), nil, trustOnly([]*x509.Certificate{own})); ok || err != nil {
		t.Errorf("absent kubeconfig: ok %v err %v", ok, err)
	}
}
