package encryption

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// secretValue finds the values of "secret:" fields, to check errors never repeat them.
var secretValue = regexp.MustCompile(`secret["']?\s*:\s*["']?([^\s"',}\]]+)`)

// FuzzParse feeds arbitrary files to the encryption-config loader (what init's encryption-config phase,
// encryption status and every rotate stage read first). It must never panic or hang, never quote a key in an
// error, and whatever it accepts must survive k8scrypto's own handling: written back it reads the same, it
// can be described, and each rotation stage that accepts it yields a valid file that loses no key (prune
// drops only keys after the first).
func FuzzParse(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, o := range []Options{{}, {Provider: AESCBC, AllowPlaintextReads: true}, {Provider: AESGCM, Resources: []string{"configmaps", "*.apps"}},
		{Provider: KMS, KMSName: "vault", KMSEndpoint: "unix:///run/kms.sock"}} {
		cfg, err := Build(o, now, pkitest.Rand(uint64(i)))
		if err != nil {
			f.Fatal(err)
		}
		data, err := Marshal(cfg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if prepared, _, err := Prepare(cfg, now.Add(time.Hour), pkitest.Rand(uint64(i+10))); err == nil {
			data, _ := Marshal(prepared)
			f.Add(data)
		}
	}
	f.Add([]byte("apiVersion: v1\nkind: EncryptionConfig\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: c2VjcmV0aXNzZWN1cmVzZWNyZXRpc3NlY3VyZTEyMzQ=\n  - identity: {}\n"))
	f.Add([]byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: c2hvcnQ=\n"))
	// Found by this fuzzer: without kind (or apiVersion) the decoder's error quoted the whole file, keys
	// included (testdata/fuzz/FuzzParse/af6a16076bd9720f is the minimal form).
	f.Add([]byte("apiVersion: apiserver.config.k8s.io/v1\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: c2VjcmV0aXNzZWN1cmVzZWNyZXRpc3NlY3VyZTEyMzQ=\n"))
	f.Add([]byte("kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: key1\n        secret: c2VjcmV0aXNzZWN1cmVzZWNyZXRpc3NlY3VyZTEyMzQ=\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			for _, m := range secretValue.FindAllSubmatch(data, -1) {
				if s := m[1]; len(s) >= 12 && bytes.Contains([]byte(err.Error()), s) {
					t.Fatalf("error quotes the secret %q: %v", s, err)
				}
			}
			return
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted file cannot be written back: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("file written back is refused: %v\n%s", err, out)
		}
		if out2, _ := Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("not stable when written back:\n%s\n---\n%s", out, out2)
		}
		st := Describe(cfg)
		_ = WriteKey(cfg)
		before := keySet(cfg)
		if next, _, err := Prepare(cfg, now, pkitest.Rand(7)); err == nil {
			checkStage(t, "prepare", next, before, false)
			if len(keySet(next)) <= len(before) && st.Stage != StageNone {
				t.Fatal("prepare added no key")
			}
		}
		if next, _, err := Promote(cfg); err == nil {
			checkStage(t, "promote", next, before, false)
		}
		if next, _, err := Prune(cfg); err == nil {
			checkStage(t, "prune", next, before, true)
		}
	})
}

// checkStage: the result is a valid file, and every key of before is still there (for prune: every key
// that is not a later key of a rotated provider).
func checkStage(t *testing.T, op string, next *apiserverv1.EncryptionConfiguration, before map[string]bool, prune bool) {
	t.Helper()
	data, err := Marshal(next)
	if err != nil {
		t.Fatalf("%s produced an invalid file: %v", op, err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatalf("%s produced a file Parse refuses: %v\n%s", op, err, data)
	}
	after := keySet(next)
	for k := range before {
		if !after[k] && !prune {
			t.Fatalf("%s lost key %s", op, strings.SplitN(k, "\x00", 2)[0])
		}
	}
	if prune {
		for k := range after {
			if !before[k] {
				t.Fatalf("prune added key %s", strings.SplitN(k, "\x00", 2)[0])
			}
		}
	}
}

func keySet(cfg *apiserverv1.EncryptionConfiguration) map[string]bool {
	out := map[string]bool{}
	forEachKey(cfg, func(provider string, k apiserverv1.Key) { out[provider+":"+k.Name+"\x00"+k.Secret] = true })
	return out
}
