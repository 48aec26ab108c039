package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
)

// suiteOnlyFlags are what the suite adds because it runs kube-apiserver as a process on loopback, not as a
// static pod: kubeadm does not set them.
var suiteOnlyFlags = map[string]bool{"bind-address": true, "cert-dir": true}

// kubeadmDiffers are flags whose value the suite sets differently from kubeadm on purpose: kubeadm points
// etcd-servers at its single local member on 127.0.0.1:2379, the suite at its three members on free ports.
var kubeadmDiffers = map[string]bool{"etcd-servers": true}

// TestAPIServerFlagsMatchKubeadm guards against drift between the flags the suite runs kube-apiserver with
// and kubeadm's static pod: it renders k8scrypto's kubeadm config for a control plane laid out as the
// suite lays it out, loads it with kubeadm's own loader, builds the kube-apiserver pod with kubeadm's own
// GetStaticPodSpecs, and compares flag by flag with apiserverFlags. No control-plane binary is needed.
func TestAPIServerFlagsMatchKubeadm(t *testing.T) {
	cp := &controlPlane{Dir: t.TempDir(), bins: bins{k8scrypto: k8scrypto(t)}}
	if err := cp.prepare(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cp.init(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ip := range etcdIPs { // what startEtcd would choose; no member is started
		cp.Etcd = append(cp.Etcd, &etcdMember{Name: fmt.Sprintf("etcd-%d", i), IP: ip, ClientURL: "https://" + ip + ":2379"})
	}
	ours, err := cp.apiserverFlags()
	if err != nil {
		t.Fatal(err)
	}
	suite := flagMap(t, "the suite", ours)

	rendered, err := os.ReadFile(cp.RenderedConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configutil.BytesToInitConfiguration(rendered, true)
	if err != nil {
		t.Fatalf("kubeadm's loader rejects the rendered config %s: %v", cp.RenderedConfig(), err)
	}
	pod, ok := controlplane.GetStaticPodSpecs(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, nil)["kube-apiserver"]
	if !ok || len(pod.Spec.Containers) != 1 {
		t.Fatalf("kubeadm built no single-container kube-apiserver pod: %+v", pod.Spec.Containers)
	}
	command := pod.Spec.Containers[0].Command
	if len(command) == 0 || command[0] != "kube-apiserver" {
		t.Fatalf("kubeadm's kube-apiserver command %q", command)
	}
	kubeadm := flagMap(t, "kubeadm", command[1:])

	var files int
	for _, name := range slices.Sorted(maps.Keys(kubeadm)) {
		want := kubeadm[name]
		got, ok := suite[name]
		switch {
		case !ok:
			t.Errorf("kubeadm sets --%s=%s; the suite does not pass it (add it to apiserverFlags)", name, want)
		case kubeadmDiffers[name]:
		case got != want:
			t.Errorf("--%s: the suite passes %q, kubeadm %q", name, got, want)
		}
		// A flag naming a file must name one that init wrote: the comparison above is only as good as the
		// paths being k8scrypto's.
		if strings.HasPrefix(want, cp.CertDir+"/") {
			files++
			if _, err := os.Stat(want); err != nil {
				t.Errorf("kubeadm's --%s names %s, which k8scrypto init did not write: %v", name, want, err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(suite)) {
		if _, ok := kubeadm[name]; !ok && !suiteOnlyFlags[name] {
			t.Errorf("the suite passes --%s=%s, which kubeadm does not set (remove it, or list it in suiteOnlyFlags with the reason)", name, suite[name])
		}
	}
	// 14 file flags: client CA, serving pair, 3 etcd, 2 kubelet-client, front-proxy CA and pair, sa pair,
	// and the encryption config. Fewer means the paths no longer come from certificatesDir.
	if files < 14 {
		t.Errorf("kubeadm's command names %d files under %s, want at least 14:\n%s", files, cp.CertDir, strings.Join(command, "\n"))
	}
	// The encryption flags come from the rendered config's extraArgs: kubeadm must see them as the suite does.
	if got := kubeadm["encryption-provider-config"]; got != cp.EncryptionConfig() {
		t.Errorf("kubeadm runs --encryption-provider-config=%q, want %s (rendered apiServer.extraArgs)", got, cp.EncryptionConfig())
	}
	if got := kubeadm["encryption-provider-config-automatic-reload"]; got != "true" {
		t.Errorf("kubeadm runs --encryption-provider-config-automatic-reload=%q, want true", got)
	}
	if got, want := kubeadm["etcd-servers"], "https://127.0.0.1:2379"; got != want {
		t.Errorf("kubeadm's --etcd-servers is %q, want %q: the documented deviation no longer holds", got, want)
	}
}

// flagMap parses --name=value arguments, failing on anything else or a repeated name.
func flagMap(t *testing.T, who string, args []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Fatalf("%s: argument %q is not --name=value", who, a)
		}
		if _, dup := m[name]; dup {
			t.Fatalf("%s: --%s given twice", who, name)
		}
		m[name] = value
	}
	return m
}
