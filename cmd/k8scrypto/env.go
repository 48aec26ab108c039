package main

import (
	"io"
	"os"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
)

// env is everything a command takes from the outside world, so tests can inject it.
type env struct {
	stdout, stderr io.Writer
	now            func() time.Time
	keys           phases.KeySource // nil: fresh keys
	rand           io.Reader        // serial numbers; nil: crypto/rand
	hostname       func() (string, error)
}

func defaultEnv() *env {
	return &env{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		now:      time.Now,
		hostname: os.Hostname,
	}
}
