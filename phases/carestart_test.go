package phases

import (
	"slices"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestCAStepRestartsNameOnlyWhatReadsAtStart: kube-apiserver reloads ca.crt, front-proxy-ca.crt and its
// own serving pairs by itself, so no step of the ca and front-proxy-ca rotations asks to restart it; the
// etcd CA is read at start by etcd and kube-apiserver, so etcd-ca's prepare asks for both, in that order.
func TestCAStepRestartsNameOnlyWhatReadsAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, step  string
		now, later  []string
		text, noTxt []string
	}{
		{"ca", "prepare", []string{CompControllerManager, CompScheduler, CompKubelet}, nil,
			[]string{"--cluster-signing-cert-file=/pki/" + CASignerFile, "kube-apiserver needs no restart", "reloads ca.crt (--client-ca-file)", "within a minute"}, nil},
		{"ca", "promote", []string{CompControllerManager, CompScheduler, CompKubelet}, nil,
			[]string{"kube-apiserver needs no restart", "serving and kubelet-client certificates"}, nil},
		{"ca", "prune", []string{CompControllerManager}, []string{CompScheduler, CompKubelet},
			[]string{"--cluster-signing-cert-file=/pki/ca.crt again", "kube-apiserver needs no restart", "at a convenient time", "still trust the old CA"}, nil},
		{"front-proxy-ca", "prepare", nil, nil, []string{"nothing", "--requestheader-client-ca-file"}, []string{"restart kube-apiserver"}},
		{"front-proxy-ca", "promote", nil, nil, []string{"nothing", "--proxy-client-cert-file"}, nil},
		{"front-proxy-ca", "prune", nil, nil, []string{"nothing"}, nil},
		{"etcd-ca", "prepare", []string{CompEtcd, CompAPIServer}, nil, []string{"one at a time", "quorum", "--etcd-cafile only at start", "before promote"}, nil},
		{"etcd-ca", "promote", nil, nil, []string{"nothing", "every new connection"}, nil},
		{"etcd-ca", "prune", []string{CompEtcd}, []string{CompAPIServer}, []string{"refuse certificates of the old etcd CA", "convenient time", "still trusts the old etcd CA"}, nil},
	} {
		now, later := caStepRestarts(tc.name, tc.step)
		if !slices.Equal(now, tc.now) || !slices.Equal(later, tc.later) {
			t.Errorf("%s %s: restarts %q, later %q; want %q, %q", tc.name, tc.step, now, later, tc.now, tc.later)
		}
		text := caRestart(tc.name, tc.step, "/pki")
		for _, w := range tc.text {
			if !strings.Contains(text, w) {
				t.Errorf("%s %s: %q lacks %q", tc.name, tc.step, text, w)
			}
		}
		for _, w := range tc.noTxt {
			if strings.Contains(text, w) {
				t.Errorf("%s %s: %q says %q", tc.name, tc.step, text, w)
			}
		}
	}
}

// TestCARenewAdvice: a CA renewed before its end needs only kube-controller-manager restarted now (to
// publish kube-root-ca.crt); what holds the old certificate may wait until its end, which the advice
// dates. An expired CA needs every holder restarted now.
func TestCARenewAdvice(t *testing.T) {
	end := pkitest.Now.Add(10 * day)
	renewed := func(names ...string) []RenewedCA {
		var r []RenewedCA
		for _, n := range names {
			r = append(r, RenewedCA{Name: n, OldNotAfter: end})
		}
		return r
	}
	text, restarts := caRenewNext(renewed(CANames...), pkitest.Now)
	if !slices.Equal(restarts, []string{CompControllerManager}) {
		t.Errorf("before the end: restarts %q, want only %s", restarts, CompControllerManager)
	}
	date := end.UTC().Format("2006-01-02 15:04 MST")
	for _, w := range []string{"copy the renewed files", "kube-apiserver reloads ca.crt", "restart kube-controller-manager now", "kube-root-ca.crt",
		"until it ends on " + date, "at a convenient time before then", "front-proxy-ca: nothing to restart", "etcd-ca: the etcd members and kube-apiserver (--etcd-cafile) read it only at start",
		`"k8scrypto renew certs"`} {
		if !strings.Contains(text, w) {
			t.Errorf("before the end: %q lacks %q", text, w)
		}
	}
	if _, r := caRenewNext(renewed("front-proxy-ca"), pkitest.Now); len(r) != 0 {
		t.Errorf("front-proxy-ca renewal restarts %q, want nothing", r)
	}
	if _, r := caRenewNext(renewed("etcd-ca"), pkitest.Now); len(r) != 0 {
		t.Errorf("etcd-ca renewal before its end restarts %q, want nothing now", r)
	}

	text, restarts = caRenewNext(renewed(CANames...), end)
	if want := []string{CompEtcd, CompAPIServer, CompControllerManager, CompScheduler, CompKubelet}; !slices.Equal(restarts, want) {
		t.Errorf("expired: restarts %q, want %q", restarts, want)
	}
	if !strings.Contains(text, "ca: it had expired, restart now") || !strings.Contains(text, "etcd-ca: it had expired, restart now every etcd member, one at a time, then kube-apiserver") || strings.Contains(text, "convenient") {
		t.Errorf("expired: %q", text)
	}
}

// TestCARenewResultDatesTheOldEnd: the renewal result carries the replaced certificates' end and the
// restarts, through PlanCARenewal.
func TestCARenewResultDatesTheOldEnd(t *testing.T) {
	e := newRenewEnv(t, pki.ECDSAP256, "")
	cfg := e.loadConfig()
	old := readCertFile(t, cfg.Certs()[0].CertPath(cfg.CertDir))
	plan, err := PlanCARenewal(cfg, e.kubeDir, []string{"ca"}, pkitest.Now.Add(day), pkitest.Rand(3))
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Renewed[0].OldNotAfter.Equal(old.NotAfter) {
		t.Errorf("oldNotAfter %s, want %s", plan.Renewed[0].OldNotAfter, old.NotAfter)
	}
	text, restarts := caRenewNext(plan.Renewed, pkitest.Now.Add(day))
	if !strings.Contains(text, old.NotAfter.UTC().Format("2006-01-02")) || !slices.Equal(restarts, []string{CompControllerManager}) {
		t.Errorf("next %q, restarts %q", text, restarts)
	}
}
