package kubeadmcompat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	kubeconfigphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/kubeconfig"
	kubeadmutil "k8s.io/kubernetes/cmd/kubeadm/app/util"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// A case is one input configuration, run through "k8scrypto init" into a fresh directory.
type initCase struct {
	name      string
	input     string
	overrides config.Overrides
}

var cases = []initCase{
	{name: "example-ha", input: "../../examples/kubeadm-config.yaml"},
	{name: "example-single", input: "../../examples/kubeadm-config-single.yaml"},
	{name: "custom", input: "../testdata/kubeadm-config/custom.yaml"},
	{name: "flags-only", overrides: config.Overrides{NodeName: "node-a", AdvertiseAddress: "10.0.0.5", ControlPlaneEndpoint: "10.0.0.100", EncryptionAlgorithm: "ECDSA-P256"}},
}

// result is what one k8scrypto init left behind.
type result struct {
	certDir, kubeDir string
	rendered         []byte
	data             *phases.Data
}

// runInit runs every init phase as "k8scrypto init --config <input> --cert-dir <tmp>/pki --kubeconfig-dir
// <tmp>/kube" does, with kubeadm's own start time as the clock so the two tools' certificates line up.
func runInit(t *testing.T, c initCase) result {
	t.Helper()
	dir := t.TempDir()
	o := c.overrides
	o.CertDir = filepath.Join(dir, "pki")
	cfg, err := config.Load(c.input, o, func() (string, error) { return "cp-host", nil })
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	d := phases.NewData(cfg.PKI, kubeadmutil.StartTimeUTC(), pkitest.Keys(), nil)
	d.Kubeadm = cfg
	d.Rand = pkitest.Rand(1)
	d.KubeconfigDir = filepath.Join(dir, "kube")
	if err := (&phases.Runner{Phases: phases.InitPhases()}).Run(context.Background(), d, phases.Selection{}); err != nil {
		t.Fatalf("%s: k8scrypto init: %v", c.name, err)
	}
	rendered, err := os.ReadFile(d.KubeadmConfigPath())
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return result{certDir: o.CertDir, kubeDir: d.KubeconfigDir, rendered: rendered, data: d}
}

// kubeadmConfig loads the rendered file as "kubeadm init --config" does (strict, defaulted, validated).
func kubeadmConfig(t *testing.T, rendered []byte) *kubeadmapi.InitConfiguration {
	t.Helper()
	// What "kubeadm config validate" runs: strict decoding (unknown fields are errors) and validation.
	if err := configutil.ValidateConfig(rendered, false, false); err != nil {
		t.Fatalf("kubeadm config validate: %v\n%s", err, rendered)
	}
	cfg, err := configutil.BytesToInitConfiguration(rendered, true)
	if err != nil {
		t.Fatalf("kubeadm could not load the rendered config: %v", err)
	}
	return cfg
}

// TestKubeadmAcceptsRenderedConfig: kubeadm's own loader and validation accept the rendered file, read back the
// values the PKI was made from, and its manifest builder wires the API server to our files.
func TestKubeadmAcceptsRenderedConfig(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runInit(t, c)
			cfg := kubeadmConfig(t, r.rendered)
			p := r.data.Cfg
			check := func(field string, got, want any) {
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: kubeadm reads %v, k8scrypto used %v", field, got, want)
				}
			}
			check("certificatesDir", cfg.CertificatesDir, r.certDir)
			check("encryptionAlgorithm", string(cfg.EncryptionAlgorithm), string(p.Algorithm))
			check("certificateValidityPeriod", cfg.CertificateValidityPeriod.Duration, p.CertValidity)
			check("caCertificateValidityPeriod", cfg.CACertificateValidityPeriod.Duration, p.CAValidity)
			check("nodeRegistration.name", cfg.NodeRegistration.Name, p.NodeName)
			check("advertiseAddress", cfg.LocalAPIEndpoint.AdvertiseAddress, p.AdvertiseAddress.String())
			check("bindPort", cfg.LocalAPIEndpoint.BindPort, p.BindPort)
			check("serviceSubnet", cfg.Networking.ServiceSubnet, p.ServiceSubnet)
			check("dnsDomain", cfg.Networking.DNSDomain, p.DNSDomain)
			check("local etcd", cfg.Etcd.Local != nil, p.LocalEtcd)
			check("certSANs", slices.Clone(cfg.APIServer.CertSANs), slices.Clone(p.APIServerCertSANs))
			check("clusterName", cfg.ClusterName, r.data.ClusterName())
			check("kubernetesVersion", cfg.KubernetesVersion, map[bool]string{true: r.data.Kubeadm.Cluster.KubernetesVersion, false: config.KubernetesVersion}[r.data.Kubeadm.Cluster.KubernetesVersion != ""])
			if want, err := pki.ControlPlaneEndpointURL(p); err != nil || "https://"+cfg.ControlPlaneEndpoint != want && cfg.ControlPlaneEndpoint != "" {
				t.Errorf("controlPlaneEndpoint %q, k8scrypto's URL %q (%v)", cfg.ControlPlaneEndpoint, want, err)
			}

			pod := controlplane.GetStaticPodSpecs(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, nil)["kube-apiserver"]
			command := pod.Spec.Containers[0].Command
			wantArgs := []string{
				"--service-account-key-file=" + filepath.Join(r.certDir, "sa.pub"),
				"--service-account-signing-key-file=" + filepath.Join(r.certDir, "sa.key"),
				"--tls-cert-file=" + filepath.Join(r.certDir, "apiserver.crt"),
				"--client-ca-file=" + filepath.Join(r.certDir, "ca.crt"),
			}
			encPath := filepath.Join(r.certDir, encryption.FileName)
			if _, err := os.Stat(encPath); err == nil {
				wantArgs = append(wantArgs, "--encryption-provider-config="+encPath, "--encryption-provider-config-automatic-reload=true")
			} else if slices.ContainsFunc(command, func(a string) bool { return strings.HasPrefix(a, "--encryption-provider-config") }) {
				t.Errorf("encryption-provider-config set but %s does not exist", encPath)
			}
			for _, w := range wantArgs {
				if !slices.Contains(command, w) {
					t.Errorf("kube-apiserver command lacks %s:\n%s", w, strings.Join(command, "\n"))
				}
			}
			mounted := false
			for _, v := range pod.Spec.Volumes {
				if v.HostPath != nil && v.HostPath.Path == r.certDir {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("kube-apiserver does not mount %s", r.certDir)
			}
		})
	}
}

// TestKubeadmReusesEverything: given the rendered config, kubeadm's own certs and kubeconfig phases find every
// certificate, key and kubeconfig in place, generate nothing and change no byte.
func TestKubeadmReusesEverything(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runInit(t, c)
			cfg := kubeadmConfig(t, r.rendered)
			before := snapshot(t, r.certDir, r.kubeDir)
			out, err := captureStdout(func() error {
				// The join --control-plane path (every cert, SANs verified), then the init path for kubeconfigs.
				if err := certsphase.CreatePKIAssets(cfg); err != nil {
					return fmt.Errorf("CreatePKIAssets: %w", err)
				}
				for _, spec := range pki.Kubeconfigs() {
					c := cfg.DeepCopy()
					if spec.FileName == "kubelet.conf" {
						c.ControlPlaneEndpoint = "" // as kubeadm init's kubeconfig phase does
					}
					if err := kubeconfigphase.CreateKubeConfigFile(spec.FileName, r.kubeDir, c); err != nil {
						return fmt.Errorf("CreateKubeConfigFile %s: %w", spec.FileName, err)
					}
				}
				return kubeconfigphase.CreateJoinControlPlaneKubeConfigFiles(r.kubeDir, cfg)
			})
			if err != nil {
				t.Fatalf("kubeadm: %v\n%s", err, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.Contains(line, "Generating") || strings.Contains(line, "Writing") {
					t.Errorf("kubeadm generated something: %s", line)
				}
			}
			if n := strings.Count(out, "Using existing kubeconfig file"); n != 8 {
				t.Errorf("kubeadm reused %d kubeconfigs, want 8:\n%s", n, out)
			}
			if after := snapshot(t, r.certDir, r.kubeDir); !reflect.DeepEqual(before, after) {
				t.Errorf("kubeadm changed files:\nbefore %v\nafter  %v", before, after)
			}

			// With ca.key gone (an external CA), kubeadm's external-CA checks accept our files as well.
			if err := os.Rename(filepath.Join(r.certDir, "ca.key"), filepath.Join(r.certDir, "ca.key.away")); err != nil {
				t.Fatal(err)
			}
			external, err := certsphase.UsingExternalCA(&cfg.ClusterConfiguration)
			if err != nil || !external {
				t.Errorf("kubeadm's UsingExternalCA = %v, %v; want true", external, err)
			}
			if err := kubeconfigphase.ValidateKubeconfigsForExternalCA(r.kubeDir, cfg); err != nil {
				t.Errorf("kubeadm's ValidateKubeconfigsForExternalCA: %v", err)
			}
		})
	}
}

// TestKubeadmJoinControlPlaneReusesSecondNode follows the HA example's instructions for a second control-plane
// node: the shared CAs, sa keys and encryption config copied from the first, k8scrypto init without kubelet.conf,
// super-admin.conf and the kubeadm config; kubeadm join --control-plane's PKI and kubeconfig steps then find
// everything valid for this node (SANs included) and write nothing.
func TestKubeadmJoinControlPlaneReusesSecondNode(t *testing.T) {
	first := runInit(t, cases[0])
	dir := t.TempDir()
	certDir, kubeDir := filepath.Join(dir, "pki"), filepath.Join(dir, "kube")
	shared := []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub", encryption.FileName}
	for _, f := range shared {
		data, err := os.ReadFile(filepath.Join(first.certDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(certDir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(certDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(cases[0].input, config.Overrides{CertDir: certDir, NodeName: "cp-2", AdvertiseAddress: "192.168.10.12"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := phases.NewData(cfg.PKI, kubeadmutil.StartTimeUTC(), pkitest.Keys(), nil)
	d.Kubeadm, d.Rand, d.KubeconfigDir = cfg, pkitest.Rand(2), kubeDir
	skip := []string{"kubeconfig/kubelet", "kubeconfig/super-admin", "kubeadm-config"}
	if err := (&phases.Runner{Phases: phases.InitPhases()}).Run(context.Background(), d, phases.Selection{Skip: skip}); err != nil {
		t.Fatalf("k8scrypto init on the second node: %v", err)
	}
	for _, r := range d.Result().Files {
		if slices.Contains(shared, strings.TrimPrefix(r.Path, certDir+"/")) && r.Action != phases.ActionReused {
			t.Errorf("%s: %s, want the copied file reused", r.Path, r.Action)
		}
	}
	for _, absent := range []string{"kubelet.conf", "super-admin.conf", "kubeadm-config.yaml"} {
		if _, err := os.Stat(filepath.Join(kubeDir, absent)); err == nil {
			t.Errorf("%s written although skipped", absent)
		}
	}
	rendered, err := phases.RenderKubeadmConfig(d) // what kubeadm join sees: the cluster's config, this node's endpoint
	if err != nil {
		t.Fatal(err)
	}
	kcfg := kubeadmConfig(t, rendered)
	before := snapshot(t, certDir, kubeDir)
	out, err := captureStdout(func() error {
		if err := certsphase.CreatePKIAssets(kcfg); err != nil {
			return err
		}
		return kubeconfigphase.CreateJoinControlPlaneKubeConfigFiles(kubeDir, kcfg)
	})
	if err != nil {
		t.Fatalf("kubeadm join's PKI steps: %v\n%s", err, out)
	}
	if strings.Contains(out, "Generating") || strings.Contains(out, "Writing") {
		t.Errorf("kubeadm generated files for the second node:\n%s", out)
	}
	if after := snapshot(t, certDir, kubeDir); !reflect.DeepEqual(before, after) {
		t.Errorf("kubeadm changed files on the second node")
	}
}

// TestKubeconfigsMatchKubeadmFieldForField: kubeadm's kubeconfig phase, given the same CA, configuration and
// clock, writes files that differ from ours only in the client key and certificate bytes; every field of the
// certificates matches too.
func TestKubeconfigsMatchKubeadmFieldForField(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runInit(t, c)
			cfg := kubeadmConfig(t, r.rendered)
			kdir := t.TempDir()
			kpki, kkube := filepath.Join(kdir, "pki"), filepath.Join(kdir, "kube")
			os.MkdirAll(kpki, 0o755)
			for _, f := range []string{"ca.crt", "ca.key"} {
				data, err := os.ReadFile(filepath.Join(r.certDir, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(kpki, f), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			kcfg := cfg.DeepCopy()
			kcfg.CertificatesDir = kpki
			if out, err := captureStdout(func() error {
				for _, spec := range pki.Kubeconfigs() {
					c := kcfg.DeepCopy()
					if spec.FileName == "kubelet.conf" {
						c.ControlPlaneEndpoint = ""
					}
					if err := kubeconfigphase.CreateKubeConfigFile(spec.FileName, kkube, c); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("kubeadm: %v\n%s", err, out)
			}
			ca, _, err := phases.LoadCert(filepath.Join(r.certDir, "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			for _, spec := range pki.Kubeconfigs() {
				ours, theirs := filepath.Join(r.kubeDir, spec.FileName), filepath.Join(kkube, spec.FileName)
				compareFiles(t, spec.FileName, ours, theirs, ca)
			}
		})
	}
}

func compareFiles(t *testing.T, name, ours, theirs string, ca *x509.Certificate) {
	t.Helper()
	for _, p := range []string{ours, theirs} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v", p, err, info.Mode().Perm())
		}
	}
	o, err := phases.LoadKubeconfig(ours)
	if err != nil {
		t.Fatal(err)
	}
	k, err := phases.LoadKubeconfig(theirs)
	if err != nil {
		t.Fatal(err)
	}
	// The files are identical once kubeadm's client credentials are swapped for ours: names, server, CA data,
	// layout and serialisation.
	swapped := k.Config.DeepCopy()
	for user, a := range swapped.AuthInfos {
		a.ClientCertificateData = o.Config.AuthInfos[user].ClientCertificateData
		a.ClientKeyData = o.Config.AuthInfos[user].ClientKeyData
	}
	want, err := clientcmd.Write(*swapped)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(ours)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from kubeadm's beyond the client credentials:\nours:\n%s\nkubeadm's (credentials swapped):\n%s", name, got, want)
	}
	oc, kc := o.ClientCert, k.ClientCert
	fields := []struct {
		what      string
		our, kadm any
	}{
		{"subject", oc.Subject.String(), kc.Subject.String()},
		{"subject DER", oc.RawSubject, kc.RawSubject},
		{"issuer DER", oc.RawIssuer, kc.RawIssuer},
		{"key usage", oc.KeyUsage, kc.KeyUsage},
		{"extended key usage", oc.ExtKeyUsage, kc.ExtKeyUsage},
		{"basic constraints", [3]any{oc.BasicConstraintsValid, oc.IsCA, oc.MaxPathLen}, [3]any{kc.BasicConstraintsValid, kc.IsCA, kc.MaxPathLen}},
		{"SANs", [4]int{len(oc.DNSNames), len(oc.IPAddresses), len(oc.EmailAddresses), len(oc.URIs)}, [4]int{len(kc.DNSNames), len(kc.IPAddresses), len(kc.EmailAddresses), len(kc.URIs)}},
		{"not before", oc.NotBefore, kc.NotBefore},
		{"not after", oc.NotAfter, kc.NotAfter},
		{"signature algorithm", oc.SignatureAlgorithm, kc.SignatureAlgorithm},
		{"key algorithm", pki.AlgorithmOf(oc.PublicKey), pki.AlgorithmOf(kc.PublicKey)},
		{"authority key id", oc.AuthorityKeyId, kc.AuthorityKeyId},
		{"subject key id", oc.SubjectKeyId, kc.SubjectKeyId},
		{"extensions", extensionIDs(oc), extensionIDs(kc)},
		{"version", oc.Version, kc.Version},
	}
	for _, f := range fields {
		if !reflect.DeepEqual(f.our, f.kadm) {
			t.Errorf("%s: %s is %v, kubeadm's is %v", name, f.what, f.our, f.kadm)
		}
	}
	if !oc.NotBefore.Equal(ca.NotBefore) {
		t.Errorf("%s: NotBefore %s is not the CA's %s", name, oc.NotBefore, ca.NotBefore)
	}
	if !bytes.Equal(oc.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("%s: authority key id is not the CA's subject key id", name)
	}
}

func extensionIDs(c *x509.Certificate) []string {
	var ids []string
	for _, e := range c.Extensions {
		ids = append(ids, fmt.Sprintf("%s critical=%v", e.Id, e.Critical))
	}
	return ids
}

// captureStdout runs fn with os.Stdout redirected: kubeadm's phases report on stdout.
func captureStdout(fn func() error) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	ferr := fn()
	w.Close()
	os.Stdout = old
	return string(<-done), ferr
}

// snapshot records content, mode and modification time of every file under the roots.
func snapshot(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			if de.IsDir() {
				out[p] = info.Mode().String()
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[p] = fmt.Sprintf("%s %s %s", hex.EncodeToString(sum[:]), info.Mode(), info.ModTime().Format(time.RFC3339Nano))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
