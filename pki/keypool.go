package pki

import (
	"crypto"
	"runtime"
	"sync"
)

// KeyPool generates keys ahead of use on a bounded number of goroutines. RSA key generation dominates a PKI
// run, and the keys are independent, so a full run costs about (sum of keygens)/cores instead of the sum.
// Keys are handed out by name, so which key a file gets never depends on scheduling.
type KeyPool struct {
	src  KeySource
	alg  Algorithm
	sem  chan struct{}
	mu   sync.Mutex
	keys map[string]*pending
}

type pending struct {
	done chan struct{}
	key  crypto.Signer
	err  error
}

// NewKeyPool makes a pool; workers <= 0 means GOMAXPROCS.
func NewKeyPool(src KeySource, alg Algorithm, workers int) *KeyPool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if src == nil {
		src = GenerateKey
	}
	return &KeyPool{src: src, alg: alg, sem: make(chan struct{}, workers), keys: map[string]*pending{}}
}

// Algorithm is the algorithm of every key the pool makes.
func (p *KeyPool) Algorithm() Algorithm { return p.alg }

// Prefetch starts generating the named keys in the background.
func (p *KeyPool) Prefetch(names ...string) {
	for _, n := range names {
		p.start(n)
	}
}

func (p *KeyPool) start(name string) *pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k, ok := p.keys[name]; ok {
		return k
	}
	k := &pending{done: make(chan struct{})}
	p.keys[name] = k
	go func() {
		p.sem <- struct{}{}
		k.key, k.err = p.src(name, p.alg)
		<-p.sem
		close(k.done)
	}()
	return k
}

// Get returns the key for name, generating it now if it was not prefetched. Each name yields one key.
func (p *KeyPool) Get(name string) (crypto.Signer, error) {
	k := p.start(name)
	<-k.done
	return k.key, k.err
}
