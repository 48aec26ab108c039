package pki

import (
	"crypto/rand"
	"io"
	"math/big"
)

// readerOr returns rnd, or crypto/rand when the caller injected none.
func readerOr(rnd io.Reader) io.Reader {
	if rnd == nil {
		return rand.Reader
	}
	return rnd
}

// randInt returns a uniform value in [0, max) read from rnd; crypto/rand.Int honours a custom reader, which
// keeps test serials fixed.
func randInt(rnd io.Reader, max *big.Int) (*big.Int, error) {
	return rand.Int(readerOr(rnd), max)
}
