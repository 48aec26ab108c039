package phases

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// updateGolden says whether to rewrite golden files: go test ./phases -run KubeadmConfigGolden -update
func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func init() {
	// Package-level flag variables of other test files are set before init runs; define -update only once.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files under testdata/")
	}
}

// Staged file contents for rendering cases.
const (
	testEncryptionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - name: key-20260102-0a1b2c3d
        secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
  - identity: {}
`
	testKMSConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets, configmaps]
  providers:
  - kms:
      apiVersion: v2
      name: vault
      endpoint: unix:///var/run/kms-vault/socket.sock
  - kms:
      apiVersion: v2
      name: vault-next
      endpoint: unix:///var/run/kms-vault/next.sock
  - identity: {}
`
)

var withSA = map[string]string{sakeys.KeyName: "k", sakeys.PubName: "p"}

func files(extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range withSA {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// KubeadmConfigCase is one rendering input: a config file (or none) and the files that exist.
type kubeadmConfigCase struct {
	name      string
	input     string // path relative to the package; "" for flags only
	overrides config.Overrides
	files     map[string]string // files under the certificate directory that exist (staged), by name
}

var kubeadmConfigCases = []kubeadmConfigCase{
	{name: "flags-only", overrides: config.Overrides{NodeName: "node-a", AdvertiseAddress: "10.0.0.5"},
		files: files(map[string]string{encryption.FileName: testEncryptionConfig})},
	{name: "no-encryption-config", overrides: config.Overrides{NodeName: "node-a", AdvertiseAddress: "10.0.0.5", EncryptionAlgorithm: "RSA-3072", CertValidity: 90 * 24 * time.Hour},
		files: withSA},
	{name: "example-ha", input: "../examples/kubeadm-config.yaml", files: files(map[string]string{encryption.FileName: testEncryptionConfig})},
	{name: "example-single", input: "../examples/kubeadm-config-single.yaml", files: files(map[string]string{encryption.FileName: testEncryptionConfig})},
	{name: "custom", input: "testdata/kubeadm-config/custom.yaml", files: files(map[string]string{encryption.FileName: testEncryptionConfig})},
	{name: "kms", overrides: config.Overrides{NodeName: "node-a", AdvertiseAddress: "10.0.0.5"},
		files: files(map[string]string{encryption.FileName: testKMSConfig})},
}

// data loads the case and stages its files, without touching the disk.
func (c kubeadmConfigCase) data(t *testing.T, path string, hostname string) *Data {
	t.Helper()
	cfg, err := config.Load(path, c.overrides, func() (string, error) { return hostname, nil })
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	d := NewData(cfg.PKI, pkitest.Now, pkitest.Keys(), nil)
	d.Kubeadm = cfg
	d.KubeconfigDir = "/etc/kubernetes"
	for name, content := range c.files {
		d.Stage(pki.File{Path: filepath.Join(cfg.PKI.CertDir, name), Data: []byte(content)}, FileResult{})
	}
	return d
}

func TestKubeadmConfigGolden(t *testing.T) {
	for _, c := range kubeadmConfigCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := RenderKubeadmConfig(c.data(t, c.input, "golden-host"))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "kubeadm-config", c.name+".golden.yaml")
			if updateGolden() {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendering differs from %s (run with -update after checking the diff):\n%s", golden, got)
			}
		})
	}
}

// TestKubeadmConfigRoundTrip: the rendered file, loaded as k8scrypto's own --config on another host, gives the
// same PKI inputs (so "renew --config <rendered>" and a re-run agree with the first run) and renders to the
// same bytes.
func TestKubeadmConfigRoundTrip(t *testing.T) {
	for _, c := range kubeadmConfigCases {
		t.Run(c.name, func(t *testing.T) {
			d := c.data(t, c.input, "golden-host")
			rendered, err := RenderKubeadmConfig(d)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "rendered.yaml")
			if err := os.WriteFile(path, rendered, 0o600); err != nil {
				t.Fatal(err)
			}
			again := kubeadmConfigCase{name: c.name, files: c.files}.data(t, path, "another-host")
			if !reflect.DeepEqual(again.Cfg, d.Cfg) {
				t.Errorf("PKI inputs differ after the round trip:\nfirst  %+v\nsecond %+v", d.Cfg, again.Cfg)
			}
			if again.ClusterName() != d.ClusterName() {
				t.Errorf("cluster name %q, want %q", again.ClusterName(), d.ClusterName())
			}
			if len(again.Kubeadm.Extra) != len(d.Kubeadm.Extra) {
				t.Errorf("%d extra documents, want %d", len(again.Kubeadm.Extra), len(d.Kubeadm.Extra))
			}
			second, err := RenderKubeadmConfig(again)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(second, rendered) {
				t.Errorf("rendering is not a fixed point:\n%s\n---- versus ----\n%s", rendered, second)
			}
		})
	}
}

func TestKubeadmConfigWiring(t *testing.T) {
	render := func(c kubeadmConfigCase) string {
		t.Helper()
		out, err := RenderKubeadmConfig(c.data(t, c.input, "h"))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	withEnc := render(kubeadmConfigCases[0])
	for _, want := range []string{
		"- name: encryption-provider-config\n    value: /etc/kubernetes/pki/encryption-config.yaml\n",
		"- name: encryption-provider-config-automatic-reload\n    value: \"true\"\n",
		"certificatesDir: /etc/kubernetes/pki\n", "kubernetesVersion: " + config.KubernetesVersion + "\n",
		"encryptionAlgorithm: RSA-2048\n", "certificateValidityPeriod: 8760h0m0s\n", "caCertificateValidityPeriod: 87600h0m0s\n",
		"  name: node-a\n", "  advertiseAddress: 10.0.0.5\n",
		"#   kubeadm init --config /etc/kubernetes/kubeadm-config.yaml\n",
	} {
		if !strings.Contains(withEnc, want) {
			t.Errorf("rendering lacks %q:\n%s", want, withEnc)
		}
	}
	// No invented bootstrap token, no host-dependent or defaulted noise kubeadm would set itself.
	for _, unwanted := range []string{"bootstrapTokens", "token:", "criSocket", "imagePullPolicy", "timeouts", "dataDir", "serviceSubnet", "extraVolumes", "name: service-account"} {
		if strings.Contains(withEnc, unwanted) {
			t.Errorf("rendering contains %q:\n%s", unwanted, withEnc)
		}
	}
	if noEnc := render(kubeadmConfigCases[1]); strings.Contains(noEnc, "encryption-provider-config") {
		t.Errorf("encryption-provider-config set without an encryption config:\n%s", noEnc)
	}
	custom := render(kubeadmConfigCases[4])
	for _, want := range []string{
		"token: abcdef.0123456789abcdef", // the user's own token is carried over
		"- name: service-account-key-file\n    value: /srv/k8s/pki/old-issuer.pub\n  - name: audit-log-path\n    value: /var/log/kubernetes/audit.log\n",
		"- name: service-account-key-file\n    value: /srv/k8s/pki/sa.pub\n",
		"taints: []", "mode: nftables", "# comments inside carried-over documents survive", "addon/kube-proxy",
	} {
		if !strings.Contains(custom, want) {
			t.Errorf("custom rendering lacks %q:\n%s", want, custom)
		}
	}
}

func TestKubeadmConfigRefusesConflictingArgs(t *testing.T) {
	for _, tt := range []struct{ arg, value, want string }{
		{"encryption-provider-config", "/etc/other/enc.yaml", "skip the encryption-config phase"},
		{"service-account-signing-key-file", "/etc/other/sa.key", "service-account-signing-key-file is \"/etc/other/sa.key\""},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.yaml")
			yaml := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n  - name: " + tt.arg + "\n    value: " + tt.value + "\n"
			if err := os.WriteFile(in, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c := kubeadmConfigCases[0]
			c.input = in
			_, err := RenderKubeadmConfig(c.data(t, in, "h"))
			if err == nil || !strings.Contains(err.Error(), "apiServer.extraArgs") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want a conflict naming apiServer.extraArgs and %q", err, tt.want)
			}
		})
	}
}

// The encryption config is in certificatesDir, which kubeadm mounts; a KMS plugin's socket directory is not,
// and the API server cannot reach the plugin without a volume.
func TestKubeadmConfigMountsKMSSocket(t *testing.T) {
	for _, c := range kubeadmConfigCases {
		d := c.data(t, c.input, "h")
		api := d.Kubeadm.Cluster.APIServer
		if err := wireAPIServer(d, d.Cfg.CertDir, &api); err != nil {
			t.Fatal(err)
		}
		want := 0
		if c.name == "kms" {
			want = 1 // two sockets, one directory
		}
		if len(api.ExtraVolumes) != want {
			t.Fatalf("%s: volumes %+v, want %d", c.name, api.ExtraVolumes, want)
		}
		if want == 1 {
			v := api.ExtraVolumes[0]
			if v.HostPath != "/var/run/kms-vault" || v.MountPath != v.HostPath || !v.ReadOnly || v.PathType != "DirectoryOrCreate" {
				t.Errorf("kms volume %+v", v)
			}
		}
	}
	bad := kubeadmConfigCases[0]
	bad.files = files(map[string]string{encryption.FileName: strings.Replace(testKMSConfig, "unix:///var/run/kms-vault/socket.sock", "tcp://10.0.0.1:1234", 1)})
	if _, err := RenderKubeadmConfig(bad.data(t, "", "h")); err == nil || !strings.Contains(err.Error(), "encryption-config.yaml") || !strings.Contains(err.Error(), "unix") {
		t.Errorf("a non-unix KMS endpoint: %v", err)
	}
	if !within("/etc/kubernetes/pki/kms", "/etc/kubernetes/pki") || within("/etc/kubernetes/pki-other/x", "/etc/kubernetes/pki") || within("/etc/x", "/etc/kubernetes/pki") {
		t.Error("within() misjudges paths")
	}
}

func TestKubeadmConfigPhaseReuseReplaceAndDryRun(t *testing.T) {
	e := newKCEnv(t, strings.Replace(kcConfig, "%s", "ECDSA-P256", 1))
	d := e.mustRun(pkitest.Now, "certs", "sa", "kubeconfig", "kubeadm-config")
	out := filepath.Join(e.kubeDir, KubeadmConfigFileName)
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the file may carry bootstrap tokens)", info.Mode().Perm())
	}
	if want := "kubeadm init --config " + out; d.Result().NextCommand != want {
		t.Errorf("next command %q, want %q", d.Result().NextCommand, want)
	}
	first, _ := os.ReadFile(out)
	// kubeadm init has no --kubeconfig-dir: the file says so when the kubeconfigs are not in /etc/kubernetes.
	if !bytes.Contains(first, []byte("# kubeadm init reads kubeconfigs only from /etc/kubernetes, not "+e.kubeDir)) {
		t.Errorf("no note about the kubeconfig directory:\n%s", first)
	}

	d = e.mustRun(pkitest.Now, "kubeadm-config")
	if r := d.Result().Files; len(r) != 1 || r[0].Action != ActionReused {
		t.Errorf("unchanged inputs: %+v, want reused", r)
	}

	e.overrides.APIServerCertSANs = []string{"extra.example.com"}
	dry := e.data(pkitest.Now)
	dry.DryRun = true
	if err := (&Runner{Phases: InitPhases()}).Run(context.Background(), dry, Selection{Only: []string{"kubeadm-config"}}); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(out); !bytes.Equal(now, first) {
		t.Error("dry run changed the file")
	}
	d = e.mustRun(pkitest.Now, "kubeadm-config")
	r := d.Result().Files
	if len(r) != 1 || r[0].Action != ActionCreated || !strings.Contains(r[0].Reason, "replaced") {
		t.Errorf("changed inputs: %+v, want created with a replaced reason", r)
	}
	if now, _ := os.ReadFile(out); !bytes.Contains(now, []byte("- extra.example.com")) {
		t.Errorf("new SAN not rendered:\n%s", now)
	}

	e.mustRun(pkitest.Now, "kubeadm-config")
	custom := filepath.Join(t.TempDir(), "elsewhere", "kubeadm.yaml")
	d = e.data(pkitest.Now)
	d.KubeadmConfigOut = custom
	if err := (&Runner{Phases: InitPhases()}).Run(context.Background(), d, Selection{Only: []string{"kubeadm-config"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(custom); err != nil {
		t.Errorf("--kubeadm-config-out not honoured: %v", err)
	}
	if !strings.HasPrefix(d.Result().NextCommand, "kubeadm init --config "+custom) {
		t.Errorf("next command %q does not name %s", d.Result().NextCommand, custom)
	}
}

// BenchmarkRenderKubeadmConfig measures the kubeadm-config phase's cost (the field-by-field default pruning
// dominates): go test ./phases -run x -bench RenderKubeadmConfig
func BenchmarkRenderKubeadmConfig(b *testing.B) {
	t := &testing.T{}
	d := kubeadmConfigCases[2].data(t, kubeadmConfigCases[2].input, "h") // the HA example
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RenderKubeadmConfig(d); err != nil {
			b.Fatal(err)
		}
	}
}
