package phases_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestInitPhaseOrder: init starts with the certs phase and its sub-phases in kubeadm's order, then sa.
func TestInitPhaseOrder(t *testing.T) {
	names := (&phases.Runner{Phases: phases.InitPhases()}).Names()
	want := []string{"certs", "certs/ca", "certs/apiserver", "certs/apiserver-kubelet-client", "certs/front-proxy-ca",
		"certs/front-proxy-client", "certs/etcd-ca", "certs/etcd-server", "certs/etcd-peer", "certs/etcd-healthcheck-client",
		"certs/apiserver-etcd-client", "sa"}
	if len(names) < len(want) || !slices.Equal(names[:len(want)], want) {
		t.Errorf("phases %v\nwant them to start with %v", names, want)
	}
}

// TestInitTopLevelPhases pins the whole of init's order: certificates first, then the keys and configs that
// need nothing, then the kubeconfigs (which need the CA), and last the kubeadm config that points at them all.
func TestInitTopLevelPhases(t *testing.T) {
	var top []string
	for _, n := range (&phases.Runner{Phases: phases.InitPhases()}).Names() {
		if !strings.Contains(n, "/") {
			top = append(top, n)
		}
	}
	if want := []string{"certs", "sa", "encryption-config", "kubeconfig", "kubeadm-config"}; !slices.Equal(top, want) {
		t.Errorf("init phases %v, want exactly %v", top, want)
	}
}

func TestSelectionRejectsUnknownPhases(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	for _, sel := range []phases.Selection{{Skip: []string{"certs/nope"}}, {Only: []string{"cert"}}, {Skip: []string{"sa/x"}}} {
		_, err := run(cfg, pkitest.Now, nil, sel)
		errContains(t, err, "unknown phase", "certs/apiserver-etcd-client", "sa")
	}
	if _, err := os.Lstat(cfg.CertDir); !os.IsNotExist(err) {
		t.Error("a rejected selection wrote files")
	}
}

// TestSkipPhases: skipped phases write nothing and are reported as skipped with their files.
func TestSkipPhases(t *testing.T) {
	cfg := pkiConfig(t, pki.ECDSAP256)
	res, err := run(cfg, pkitest.Now, nil, phases.Selection{Skip: []string{"sa", "certs/front-proxy-client"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sa.key", "sa.pub", "front-proxy-client.crt", "front-proxy-client.key"} {
		if _, err := os.Lstat(filepath.Join(cfg.CertDir, f)); !os.IsNotExist(err) {
			t.Errorf("skipped %s was written", f)
		}
	}
	skipped := map[string]bool{}
	for _, f := range res.Files {
		if f.Action == phases.ActionSkipped {
			skipped[filepath.Base(f.Path)] = true
			if f.Reason == "" {
				t.Errorf("skip of %s has no reason", f.Path)
			}
		}
	}
	if len(skipped) != 4 || !skipped["sa.pub"] || !skipped["front-proxy-client.key"] {
		t.Errorf("skipped %v", skipped)
	}
	// Skipping a parent skips its children; the etcd CA skipped with its leaves leaves no etcd directory.
	cfg = pkiConfig(t, pki.ECDSAP256)
	if _, err := run(cfg, pkitest.Now, nil, phases.Selection{Skip: []string{"certs"}}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(cfg.CertDir); len(ents) != 2 {
		t.Errorf("--skip-phases certs wrote %d files, want sa.key and sa.pub", len(ents))
	}
	// A skipped CA whose leaves still run is an error naming the CA file and the phase to run.
	cfg = pkiConfig(t, pki.ECDSAP256)
	_, err = run(cfg, pkitest.Now, nil, phases.Selection{Skip: []string{"certs/etcd-ca"}})
	errContains(t, err, "phase certs/etcd-server", filepath.Join(cfg.CertDir, "etcd", "ca.crt"), "init phase certs etcd-ca")
}

// TestRunnerRunIfAndErrors: RunIf skips with its reason, errors name the phase, and a cancelled context
// stops before the next phase.
func TestRunnerRunIfAndErrors(t *testing.T) {
	var ran []string
	mk := func(name string, err error) phases.Phase {
		return phases.Phase{Name: name, Run: func(context.Context, *phases.Data) error { ran = append(ran, name); return err }}
	}
	r := &phases.Runner{Phases: []phases.Phase{
		{Name: "group", Phases: []phases.Phase{mk("a", nil), {Name: "b", Run: func(context.Context, *phases.Data) error { t.Error("b ran"); return nil },
			RunIf: func(*phases.Data) (bool, string) { return false, "not needed" }}}},
		mk("c", errors.New("boom")),
		mk("d", nil),
	}}
	d := phases.NewData(pkiConfig(t, pki.ECDSAP256), pkitest.Now, pkitest.Keys(), nil)
	err := r.Run(context.Background(), d, phases.Selection{})
	errContains(t, err, "phase c", "boom")
	if !slices.Equal(ran, []string{"a", "c"}) {
		t.Errorf("ran %v", ran)
	}
	res := d.Result()
	if len(res.Files) != 1 || res.Files[0].Phase != "group/b" || res.Files[0].Action != phases.ActionSkipped || res.Files[0].Reason != "not needed" {
		t.Errorf("results %+v", res.Files)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran = nil
	if err := r.Run(ctx, phases.NewData(pkiConfig(t, pki.ECDSAP256), pkitest.Now, pkitest.Keys(), nil), phases.Selection{}); !errors.Is(err, context.Canceled) || len(ran) != 0 {
		t.Errorf("cancelled run: %v, ran %v", err, ran)
	}
	if res.APIVersion != phases.ResultAPIVersion || res.Kind != "InitResult" || !strings.Contains(res.APIVersion, "/") {
		t.Errorf("result type %s/%s", res.APIVersion, res.Kind)
	}
}
