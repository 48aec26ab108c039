package pki_test

import (
	"crypto"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestKeyPool: one key per name whatever the interleaving, at most `workers` generations at once, and a
// generation error reaches the caller.
func TestKeyPool(t *testing.T) {
	var calls, running, peak atomic.Int32
	fixtures := pkitest.Keys()
	src := func(name string, alg pki.Algorithm) (crypto.Signer, error) {
		calls.Add(1)
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		if name == "broken" {
			return nil, errors.New("no entropy")
		}
		return fixtures(name, alg)
	}
	pool := pki.NewKeyPool(src, pki.ECDSAP256, 2)
	names := []string{"ca", "apiserver", "etcd/ca", "etcd/server", "sa", "front-proxy-ca"}
	pool.Prefetch(names...)
	pool.Prefetch(names...) // no second generation
	var wg sync.WaitGroup
	got := make([]crypto.Signer, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := pool.Get(n)
			if err != nil {
				t.Error(err)
			}
			got[i] = k
		}()
	}
	wg.Wait()
	for i, n := range names {
		again, _ := pool.Get(n)
		if again != got[i] {
			t.Errorf("%s: Get returned two different keys", n)
		}
		if !pki.PublicKeysEqual(got[i].Public(), pkitest.MustKey(pki.ECDSAP256, n).Public()) {
			t.Errorf("%s: not the fixture key for its name", n)
		}
	}
	if c := calls.Load(); c != int32(len(names)) {
		t.Errorf("%d generations for %d names", c, len(names))
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d generations ran at once with 2 workers", p)
	}
	if _, err := pool.Get("broken"); err == nil {
		t.Error("generation error was lost")
	}
	if pool.Algorithm() != pki.ECDSAP256 {
		t.Errorf("Algorithm() = %s", pool.Algorithm())
	}
}
