package pki_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
)

// BenchmarkCommit is the crash-safe write of a full PKI: 22 new files in two directories (11 keys and 11
// certificates or public keys, as certs+sa writes them) in one journalled transaction. It is bound by
// fsync, not CPU: run it on the disk the PKI lives on (TMPDIR).
func BenchmarkCommit(b *testing.B) {
	root := b.TempDir()
	data := make([]byte, 1200) // about one PEM certificate or key
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(root, strconv.Itoa(i))
		for _, d := range []string{dir, filepath.Join(dir, "etcd")} {
			if err := os.MkdirAll(d, pki.ModeDir); err != nil {
				b.Fatal(err)
			}
		}
		files := make([]pki.File, 0, 22)
		for n := range 11 {
			sub := dir
			if n >= 7 {
				sub = filepath.Join(dir, "etcd")
			}
			files = append(files,
				pki.File{Path: filepath.Join(sub, fmt.Sprintf("f%d.key", n)), Data: data, Mode: pki.ModeKey},
				pki.File{Path: filepath.Join(sub, fmt.Sprintf("f%d.crt", n)), Data: data, Mode: pki.ModeCert})
		}
		b.StartTimer()
		if err := pki.Commit(dir, files); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 7*2+1 {
			b.Fatalf("%d entries in %s after the commit, want 15 (%v)", len(ents), dir, err)
		}
		b.StartTimer()
	}
}
