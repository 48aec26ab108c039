package phases_test

import (
	"context"
	"crypto"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestRunnerGeneratesKeysConcurrently: a certs+sa run generates its keys on several cores at once, which is
// what puts an RSA PKI near (sum of keygens)/cores (issue 6). Each generation waits until another one
// overlaps it; a run that made keys one at a time would see no overlap and fail here after the wait.
func TestRunnerGeneratesKeysConcurrently(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2")
	}
	fixtures := pkitest.Keys()
	var mu sync.Mutex
	inFlight, maxInFlight, calls := 0, 0, 0
	overlap := make(chan struct{})
	giveUp := make(chan struct{})
	var once, giveUpOnce sync.Once
	src := func(name string, alg pki.Algorithm) (crypto.Signer, error) {
		mu.Lock()
		calls++
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		if inFlight >= 2 {
			once.Do(func() { close(overlap) })
		}
		mu.Unlock()
		select {
		case <-overlap:
		case <-giveUp:
		case <-time.After(5 * time.Second):
			giveUpOnce.Do(func() { close(giveUp) }) // no overlap: fail once, without waiting for every key
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return fixtures(name, alg)
	}
	cfg := &pki.Config{
		CertDir:          filepath.Join(t.TempDir(), "pki"),
		NodeName:         "cp-1",
		AdvertiseAddress: net.ParseIP("10.0.0.5"),
		BindPort:         6443,
		ServiceSubnet:    pki.DefaultServiceSubnet,
		DNSDomain:        pki.DefaultDNSDomain,
		LocalEtcd:        true,
		Algorithm:        pki.RSA2048,
		CertValidity:     pki.DefaultCertValidity,
		CAValidity:       pki.DefaultCAValidity,
	}
	d := phases.NewData(cfg, pkitest.Now, src, nil)
	d.Rand = pkitest.Rand(1)
	runner := &phases.Runner{Phases: []phases.Phase{phases.CertsPhase(), phases.SAPhase()}}
	start := time.Now()
	if err := runner.Run(context.Background(), d, phases.Selection{}); err != nil {
		t.Fatal(err)
	}
	if calls != 11 {
		t.Errorf("%d keys generated, want 11 (10 certificates and sa)", calls)
	}
	if maxInFlight < 2 {
		t.Errorf("at most %d key generation at a time (took %s): keys are made one after the other", maxInFlight, time.Since(start).Round(time.Millisecond))
	}
}
