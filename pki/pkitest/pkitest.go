// Package pkitest gives tests deterministic inputs: fixture keys chosen by name, a fixed clock and a
// seeded reader for serial numbers. Go 1.26 ignores custom random readers when generating RSA and ECDSA
// keys, so keys cannot be made deterministic any other way.
package pkitest

import (
	"crypto"
	"embed"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

//go:embed testdata
var fixtures embed.FS

// Now is the fixed clock of tests.
var Now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Rand returns a deterministic reader for serial numbers.
func Rand(seed uint64) io.Reader { return rand.NewChaCha8(seedBytes(seed)) }

func seedBytes(seed uint64) [32]byte {
	var b [32]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(seed >> (8 * i)) // #nosec G115 -- taking each byte of the seed is the point
	}
	return b
}

// Algorithms that have fixtures.
var Algorithms = []pki.Algorithm{pki.RSA2048, pki.ECDSAP256}

// Keys returns a KeySource that serves fixture keys: the first request for a name gets that name's fixture
// (testdata/<alg>/<name>.key), later requests for the same name (a rotation) get the next unused spare key.
// Other algorithms (RSA-3072/4096, ECDSA-P384) are generated fresh, so tests for them compare fields, not bytes.
func Keys() pki.KeySource {
	var mu sync.Mutex
	used := map[string]bool{}
	return func(name string, alg pki.Algorithm) (crypto.Signer, error) {
		if !hasFixtures(alg) {
			return pki.GenerateKey(name, alg)
		}
		mu.Lock()
		defer mu.Unlock()
		file := path.Join("testdata", string(alg), name+".key")
		if _, err := fixtures.Open(file); err != nil || used[string(alg)+"/"+name] {
			spare, err := nextSpare(alg, used)
			if err != nil {
				return nil, err
			}
			file = spare
		}
		used[string(alg)+"/"+strings.TrimSuffix(strings.TrimPrefix(file, "testdata/"+string(alg)+"/"), ".key")] = true
		used[string(alg)+"/"+name] = true
		return Key(file)
	}
}

func hasFixtures(alg pki.Algorithm) bool {
	for _, a := range Algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

func nextSpare(alg pki.Algorithm, used map[string]bool) (string, error) {
	ents, err := fixtures.ReadDir(path.Join("testdata", string(alg)))
	if err != nil {
		return "", err
	}
	var spares []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "spare-") {
			spares = append(spares, strings.TrimSuffix(e.Name(), ".key"))
		}
	}
	sort.Strings(spares)
	for _, s := range spares {
		if !used[string(alg)+"/"+s] {
			return path.Join("testdata", string(alg), s+".key"), nil
		}
	}
	return "", fmt.Errorf("pkitest: out of spare %s fixture keys", alg)
}

// Key loads one fixture key by its path under the embedded testdata.
func Key(file string) (crypto.Signer, error) {
	data, err := fixtures.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return pki.ParsePrivateKey(data)
}

// MustKey loads the fixture for name and algorithm, panicking if absent.
func MustKey(alg pki.Algorithm, name string) crypto.Signer {
	k, err := Key(path.Join("testdata", string(alg), name+".key"))
	if err != nil {
		panic(err)
	}
	return k
}
