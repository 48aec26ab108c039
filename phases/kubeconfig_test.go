package phases

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// kcEnv is one test cluster: a config file, a certificate directory and a kubeconfig directory.
type kcEnv struct {
	t                *testing.T
	cfgFile          string
	certDir, kubeDir string
	keys             pki.KeySource
	overrides        config.Overrides
}

func newKCEnv(t *testing.T, yaml string) *kcEnv {
	t.Helper()
	dir := t.TempDir()
	e := &kcEnv{t: t, certDir: filepath.Join(dir, "pki"), kubeDir: filepath.Join(dir, "kube"), keys: pkitest.Keys()}
	e.cfgFile = filepath.Join(dir, "kubeadm.yaml")
	if err := os.WriteFile(e.cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

const kcConfig = `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
  bindPort: 6444
nodeRegistration:
  name: CP-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: prod-eu
controlPlaneEndpoint: lb.example.com
encryptionAlgorithm: %s
certificateValidityPeriod: 720h
`

func (e *kcEnv) data(now time.Time) *Data {
	e.t.Helper()
	o := e.overrides
	o.CertDir = e.certDir
	cfg, err := config.Load(e.cfgFile, o, func() (string, error) { return "host-unused", nil })
	if err != nil {
		e.t.Fatalf("loading config: %v", err)
	}
	d := NewData(cfg.PKI, now, e.keys, nil)
	d.Kubeadm = cfg
	d.KubeconfigDir = e.kubeDir
	d.Rand = pkitest.Rand(7)
	return d
}

func (e *kcEnv) run(now time.Time, only ...string) (*Data, error) {
	e.t.Helper()
	d := e.data(now)
	r := &Runner{Phases: InitPhases()}
	if len(only) == 0 {
		only = []string{"certs", "sa", "kubeconfig"}
	}
	return d, r.Run(context.Background(), d, Selection{Only: only})
}

func (e *kcEnv) mustRun(now time.Time, only ...string) *Data {
	e.t.Helper()
	d, err := e.run(now, only...)
	if err != nil {
		e.t.Fatalf("init: %v", err)
	}
	return d
}

// kcHashes fingerprints every file under the roots (content, mode and mtime), for "nothing changed" checks.
func kcHashes(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[p] = hex.EncodeToString(sum[:]) + " " + info.Mode().String() + " " + info.ModTime().String()
			return nil
		})
	}
	return out
}

func TestKubeconfigPhaseMatchesKubeadmLayout(t *testing.T) {
	for _, alg := range []pki.Algorithm{pki.RSA2048, pki.ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			e := newKCEnv(t, strings.Replace(kcConfig, "%s", string(alg), 1))
			d := e.mustRun(pkitest.Now)
			caPEM, err := os.ReadFile(filepath.Join(e.certDir, "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			ca, _, err := pki.ParseCertChain(caPEM)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct{ server, cn, org string }{
				"admin.conf":              {"https://lb.example.com:6444", "kubernetes-admin", "kubeadm:cluster-admins"},
				"super-admin.conf":        {"https://lb.example.com:6444", "kubernetes-super-admin", "system:masters"},
				"kubelet.conf":            {"https://10.0.0.5:6444", "system:node:cp-1", "system:nodes"},
				"controller-manager.conf": {"https://10.0.0.5:6444", "system:kube-controller-manager", ""},
				"scheduler.conf":          {"https://10.0.0.5:6444", "system:kube-scheduler", ""},
			}
			for file, w := range want {
				path := filepath.Join(e.kubeDir, file)
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", file, info.Mode().Perm())
				}
				raw, err := clientcmd.LoadFromFile(path)
				if err != nil {
					t.Fatal(err)
				}
				ctxName := w.cn + "@prod-eu"
				if raw.CurrentContext != ctxName || len(raw.Contexts) != 1 || len(raw.Clusters) != 1 || len(raw.AuthInfos) != 1 {
					t.Fatalf("%s: current-context %q with %d contexts, %d clusters, %d users", file, raw.CurrentContext, len(raw.Contexts), len(raw.Clusters), len(raw.AuthInfos))
				}
				if c := raw.Contexts[ctxName]; c.Cluster != "prod-eu" || c.AuthInfo != w.cn {
					t.Errorf("%s: context = %+v", file, c)
				}
				cl := raw.Clusters["prod-eu"]
				if cl == nil || cl.Server != w.server || !bytes.Equal(cl.CertificateAuthorityData, caPEM) {
					t.Fatalf("%s: cluster = %+v, want server %s and ca.crt as data", file, cl, w.server)
				}
				kc, err := LoadKubeconfig(path)
				if err != nil {
					t.Fatal(err)
				}
				cert := kc.ClientCert
				if cert.Subject.CommonName != w.cn || strings.Join(cert.Subject.Organization, ",") != w.org {
					t.Errorf("%s: subject %s", file, cert.Subject)
				}
				if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) ||
					cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment || cert.IsCA || !cert.BasicConstraintsValid {
					t.Errorf("%s: usages EKU=%v KU=%v IsCA=%v", file, cert.ExtKeyUsage, cert.KeyUsage, cert.IsCA)
				}
				if len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
					t.Errorf("%s: unexpected SANs %v %v", file, cert.DNSNames, cert.IPAddresses)
				}
				if !cert.NotBefore.Equal(ca.NotBefore) || !cert.NotAfter.Equal(pkitest.Now.Add(720*time.Hour)) {
					t.Errorf("%s: validity %s..%s, want CA's NotBefore %s .. now+720h", file, cert.NotBefore, cert.NotAfter, ca.NotBefore)
				}
				if err := pki.VerifyChain(cert, nil, ca, pkitest.Now); err != nil {
					t.Errorf("%s: %v", file, err)
				}
				if !pki.KeyMatchesCert(kc.ClientKey, cert) || pki.AlgorithmOf(cert.PublicKey) != alg {
					t.Errorf("%s: key matches=%v algorithm=%s", file, pki.KeyMatchesCert(kc.ClientKey, cert), pki.AlgorithmOf(cert.PublicKey))
				}
				switch alg {
				case pki.RSA2048:
					_, ok := kc.ClientKey.(*rsa.PrivateKey)
					if !ok || !bytes.Contains(raw.AuthInfos[w.cn].ClientKeyData, []byte("RSA PRIVATE KEY")) {
						t.Errorf("%s: client key is not PKCS#1 RSA", file)
					}
				case pki.ECDSAP256:
					_, ok := kc.ClientKey.(*ecdsa.PrivateKey)
					if !ok || !bytes.Contains(raw.AuthInfos[w.cn].ClientKeyData, []byte("EC PRIVATE KEY")) {
						t.Errorf("%s: client key is not SEC 1 ECDSA", file)
					}
				}
			}
			var got []string
			for _, r := range d.Result().Files {
				if r.Type == "kubeconfig" {
					got = append(got, filepath.Base(r.Path)+"="+r.Action)
					if r.SHA256 == "" || r.Serial == "" || r.Phase != "kubeconfig/"+strings.TrimSuffix(filepath.Base(r.Path), ".conf") {
						t.Errorf("result %+v lacks fingerprint, serial or phase", r)
					}
				}
			}
			wantOrder := []string{"admin.conf=created", "super-admin.conf=created", "kubelet.conf=created", "controller-manager.conf=created", "scheduler.conf=created"}
			if !slices.Equal(got, wantOrder) {
				t.Errorf("results %v, want %v", got, wantOrder)
			}
		})
	}
}

func TestKubeconfigRerunReusesEverythingByteForByte(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "ECDSA-P256", 1))
	e.mustRun(pkitest.Now)
	before := kcHashes(t, e.certDir, e.kubeDir)
	d := e.mustRun(pkitest.Now.Add(24 * time.Hour))
	if after := kcHashes(t, e.certDir, e.kubeDir); !maps.Equal(before, after) {
		t.Errorf("re-run changed files:\nbefore %v\nafter  %v", before, after)
	}
	for _, r := range d.Result().Files {
		if r.Action != ActionReused {
			t.Errorf("%s: %s, want reused", r.Path, r.Action)
		}
	}
}

// TestKubeconfigReuseRefusals: every way an existing file can be wrong gives an error naming the file and the
// fix, and the run writes nothing.
func TestKubeconfigReuseRefusals(t *testing.T) {
	otherCA := func(t *testing.T) []byte { // a kubeconfig from another cluster with the same names
		o := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
		o.keys = pkitest.Keys()
		o.keys("ca", pki.RSA2048) // shift to spare keys: a different CA key
		o.mustRun(pkitest.Now)
		data, err := os.ReadFile(filepath.Join(o.kubeDir, "admin.conf"))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name   string
		file   string
		mutate func(t *testing.T, e *kcEnv, path string)
		now    time.Time
		want   []string
	}{
		{
			name: "signed by another CA", file: "admin.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) { os.WriteFile(path, otherCA(t), 0o600) },
			want:   []string{"certificate-authority data is not", "does not verify", `renew certs admin.conf --force`},
		},
		{
			name: "client certificate expired", file: "admin.conf", now: pkitest.Now.Add(721 * time.Hour),
			want: []string{"client certificate does not verify", "expired", `renew certs admin.conf --force`},
		},
		{
			name: "wrong subject", file: "admin.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) {
				// super-admin.conf has the same server but a different identity.
				data, _ := os.ReadFile(filepath.Join(e.kubeDir, "super-admin.conf"))
				os.WriteFile(path, data, 0o600)
			},
			want: []string{`is for "CN=kubernetes-super-admin,O=system:masters", not "CN=kubernetes-admin,O=kubeadm:cluster-admins"`},
		},
		{
			name: "key does not match", file: "controller-manager.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) {
				cfg, _ := clientcmd.LoadFromFile(path)
				other, _ := clientcmd.LoadFromFile(filepath.Join(e.kubeDir, "scheduler.conf"))
				for _, u := range cfg.AuthInfos {
					for _, o := range other.AuthInfos {
						u.ClientKeyData = o.ClientKeyData
					}
				}
				clientcmd.WriteToFile(*cfg, path)
			},
			want: []string{"client key does not match"},
		},
		{
			name: "server changed", file: "admin.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) { e.overrides.ControlPlaneEndpoint = "lb2.example.com:443" },
			want:   []string{"points at https://lb.example.com:6444, not https://lb2.example.com:443", "init phase kubeconfig admin"},
		},
		{
			name: "not a kubeconfig", file: "kubelet.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) { os.WriteFile(path, []byte("{{{ not yaml"), 0o600) },
			want:   []string{"not a valid kubeconfig", "move it away"},
		},
		{
			name: "token user", file: "admin.conf",
			mutate: func(t *testing.T, e *kcEnv, path string) {
				cfg, _ := clientcmd.LoadFromFile(path)
				for _, u := range cfg.AuthInfos {
					u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, "abc"
				}
				clientcmd.WriteToFile(*cfg, path)
			},
			want: []string{"has no client certificate and key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
			e.mustRun(pkitest.Now)
			path := filepath.Join(e.kubeDir, tt.file)
			if tt.mutate != nil {
				tt.mutate(t, e, path)
			}
			now := tt.now
			if now.IsZero() {
				now = pkitest.Now
			}
			before := kcHashes(t, e.certDir, e.kubeDir)
			_, err := e.run(now, "kubeconfig")
			if err == nil {
				t.Fatal("run succeeded; want a refusal")
			}
			msg := err.Error()
			for _, w := range append(tt.want, path) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if after := kcHashes(t, e.certDir, e.kubeDir); !maps.Equal(before, after) {
				t.Error("a refused run changed files")
			}
		})
	}
}

// A bootstrapped kubelet.conf refers to the kubelet's rotating certificate file instead of embedding one;
// re-running init on a live node must accept it.
func TestKubeconfigReusesBootstrappedKubeletConf(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
	e.mustRun(pkitest.Now)
	path := filepath.Join(e.kubeDir, "kubelet.conf")
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pemDir := filepath.Join(e.kubeDir, "kubelet-pki")
	os.Mkdir(pemDir, 0o700)
	for _, u := range cfg.AuthInfos {
		both := append(append([]byte{}, u.ClientCertificateData...), u.ClientKeyData...)
		if err := os.WriteFile(filepath.Join(pemDir, "kubelet-client-current.pem"), both, 0o600); err != nil {
			t.Fatal(err)
		}
		u.ClientCertificateData, u.ClientKeyData = nil, nil
		u.ClientCertificate = "kubelet-pki/kubelet-client-current.pem" // relative to the kubeconfig's directory
		u.ClientKey = u.ClientCertificate
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	d, err := e.run(pkitest.Now, "kubeconfig/kubelet")
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Result().Files; len(r) != 1 || r[0].Action != ActionReused || r[0].Subject != "CN=system:node:cp-1,O=system:nodes" {
		t.Errorf("results %+v", r)
	}
	kc, err := LoadKubeconfig(path)
	if err != nil || kc.Embedded {
		t.Errorf("LoadKubeconfig: %v, embedded=%v", err, kc != nil && kc.Embedded)
	}
}

func TestKubeconfigDryRunWritesNothing(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
	d := e.data(pkitest.Now)
	d.DryRun = true
	if err := (&Runner{Phases: InitPhases()}).Run(context.Background(), d, Selection{Only: []string{"certs", "kubeconfig"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.kubeDir); !os.IsNotExist(err) {
		t.Errorf("dry run created %s", e.kubeDir)
	}
	n := 0
	for _, r := range d.Result().Files {
		if r.Type == "kubeconfig" {
			n++
			if r.Action != ActionCreated || r.Subject == "" || !r.NotAfter.Equal(pkitest.Now.Add(720*time.Hour)) {
				t.Errorf("dry-run result %+v", r)
			}
		}
	}
	if n != 5 {
		t.Errorf("%d kubeconfig results, want 5", n)
	}
}

func TestKubeconfigExternalCA(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
	e.mustRun(pkitest.Now)
	if err := os.Remove(filepath.Join(e.certDir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run(pkitest.Now, "kubeconfig"); err != nil {
		t.Fatalf("complete external-CA kubeconfigs were not reused: %v", err)
	}
	admin := filepath.Join(e.kubeDir, "admin.conf")
	os.Remove(admin)
	_, err := e.run(pkitest.Now, "kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "external CA mode") || !strings.Contains(err.Error(), admin) {
		t.Fatalf("error %v; want an external-CA refusal naming %s", err, admin)
	}
	if _, err := os.Stat(admin); !os.IsNotExist(err) {
		t.Error("admin.conf was written without a CA key")
	}
}

func TestKubeconfigNeedsCA(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
	_, err := e.run(pkitest.Now, "kubeconfig/admin")
	if err == nil || !strings.Contains(err.Error(), "init phase certs ca") {
		t.Fatalf("error %v; want a hint to create the CA first", err)
	}
}

func TestKubeconfigRefusesLeafOutlivingCA(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "RSA-2048", 1))
	e.mustRun(pkitest.Now, "certs/ca")
	// Ten years later the CA has less than 720h left.
	late := pkitest.Now.Add(10*365*24*time.Hour - 100*time.Hour)
	_, err := e.run(late, "kubeconfig/admin")
	if err == nil || !strings.Contains(err.Error(), "after its CA") {
		t.Fatalf("error %v; want a refusal to outlive the CA", err)
	}
}
