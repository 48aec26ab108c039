package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

const kubeletDoc = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"

var initDoc = pkitest.KubeadmInit

func writeConfig(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cfg.yaml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadNeedsAKubeadmDocument: as kubeadm, a file with no InitConfiguration or ClusterConfiguration is an
// error naming the file and the documents it found; a misspelt group of a kind kubeadm knows is an error too,
// even next to a valid document, because kubeadm would drop its settings without a word.
func TestLoadNeedsAKubeadmDocument(t *testing.T) {
	cases := []struct {
		name, data string
		want       []string
	}{
		{"empty file", "", []string{"no InitConfiguration or ClusterConfiguration", "no documents"}},
		{"only comments", "# nothing yet\n---\n# still nothing\n", []string{"no InitConfiguration or ClusterConfiguration", "no documents"}},
		{"only a kubelet config", kubeletDoc, []string{"no InitConfiguration or ClusterConfiguration", "kubelet.config.k8s.io/v1beta1, Kind=KubeletConfiguration"}},
		{"only a join config", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n", []string{"no InitConfiguration", "kubeadm.k8s.io/v1beta4, Kind=JoinConfiguration"}},
		{"only an unknown document", "apiVersion: example.com/v1\nkind: Widget\n", []string{"no InitConfiguration", "example.com/v1, Kind=Widget"}},
		{"misspelt kubeadm group", strings.Replace(initDoc, "kubeadm.k8s.io", "kubeadm.k8s.oi", 1) + "---\n" + kubeletDoc,
			[]string{"document 1", `"kubeadm.k8s.oi/v1beta4"`, "InitConfiguration belongs to kubeadm.k8s.io"}},
		{"misspelt kubeadm group, unknown kind", initDoc + "---\napiVersion: kubeadmm.k8s.io/v1beta4\nkind: Settings\n",
			[]string{"document 2", `"kubeadmm.k8s.io"`, "did you mean kubeadm.k8s.io"}},
		{"misspelt kubelet group next to a valid document", initDoc + "---\n" + strings.Replace(kubeletDoc, "kubelet.config.k8s.io", "kubelet.config.k8s.oi", 1),
			[]string{"document 2", "KubeletConfiguration belongs to kubelet.config.k8s.io"}},
		{"kubeadm kind in a component group", initDoc + "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: ClusterConfiguration\n",
			[]string{"document 2", "ClusterConfiguration belongs to kubeadm.k8s.io"}},
		{"unknown field in a join config", initDoc + "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovry: {}\n",
			[]string{"JoinConfiguration", "discovry"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.data)
			_, err := config.Load(path, config.Overrides{AdvertiseAddress: "10.0.0.5"}, host("h"))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLoadKeepsOtherDocuments: the other kinds kubeadm accepts in init's file are accepted without a warning
// and carried over; a document of an unknown group next to a valid one is carried over with a warning naming
// it, as kubeadm warns.
func TestLoadKeepsOtherDocuments(t *testing.T) {
	docs := []string{initDoc, kubeletDoc,
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: lb:6443\n    token: abcdef.0123456789abcdef\n    unsafeSkipCAVerification: true\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ResetConfiguration\nforce: true\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\n",
	}
	cfg, err := config.Load(writeConfig(t, strings.Join(docs, "---\n")), config.Overrides{}, host("h"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Extra) != 5 || len(cfg.Warnings) != 0 {
		t.Errorf("%d extra documents (want 5), warnings %q", len(cfg.Extra), cfg.Warnings)
	}
	cfg, err = config.Load(writeConfig(t, initDoc+"---\napiVersion: example.com/v1\nkind: Widget\nsize: 3\n"), config.Overrides{}, host("h"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "document 2 (example.com/v1, Kind=Widget)") || !strings.Contains(cfg.Warnings[0], "kubeadm will ignore it") {
		t.Errorf("warnings %q, want one naming document 2 and its kind", cfg.Warnings)
	}
	if len(cfg.Extra) != 1 || !strings.Contains(string(cfg.Extra[0]), "size: 3") {
		t.Errorf("the unknown document was not carried over: %q", cfg.Extra)
	}
}

// TestLoadNamesTheFieldOfATypeError: a value of the wrong type is reported with its field's path, including
// values whose type decodes itself (a duration) and fields inside lists.
func TestLoadNamesTheFieldOfATypeError(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"kind: ClusterConfiguration\ncertificateValidityPeriod: banana\n", "ClusterConfiguration: certificateValidityPeriod: "},
		{"kind: InitConfiguration\nlocalAPIEndpoint:\n  bindPort: many\n", "InitConfiguration: localAPIEndpoint.bindPort: "},
		{"kind: ClusterConfiguration\napiServer:\n  extraArgs:\n  - name: a\n    value: b\n  - name: c\n    value: {x: 1}\n", "ClusterConfiguration: apiServer.extraArgs[1].value: "},
	}
	for _, tc := range cases {
		_, err := config.Load(writeConfig(t, "apiVersion: kubeadm.k8s.io/v1beta4\n"+tc.doc), config.Overrides{AdvertiseAddress: "10.0.0.5"}, host("h"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.doc, err, tc.want)
		}
	}
}
