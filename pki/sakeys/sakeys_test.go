package sakeys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// writePair writes sa.key and sa.pub as "init phase sa" does.
func writePair(t *testing.T, dir string, key crypto.Signer) {
	t.Helper()
	keyPEM, _ := pki.EncodePrivateKey(key)
	pubPEM, _ := pki.EncodePublicKey(key.Public())
	if err := os.WriteFile(filepath.Join(dir, KeyName), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, PubName), pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, dir string) *State {
	t.Helper()
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sign stands in for a token: a signature over a claim with a private key.
func sign(t *testing.T, key crypto.Signer, msg string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(msg))
	sig, err := key.Sign(nil, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// accepted reports whether some public key in sa.pub verifies sig, as the apiserver's
// --service-account-key-file does for a token.
func accepted(t *testing.T, dir, msg string, sig []byte) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, PubName))
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := pki.ParsePublicKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(msg))
	for _, p := range pubs {
		switch k := p.(type) {
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			if ecdsa.VerifyASN1(k, sum[:], sig) {
				return true
			}
		}
	}
	return false
}

func signingKey(t *testing.T, dir string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, KeyName))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != want {
		t.Errorf("%s mode %04o, want %04o", path, info.Mode().Perm(), want)
	}
}

func TestRotationStages(t *testing.T) {
	for _, alg := range pkitest.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			defer syscall.Umask(syscall.Umask(0o022))
			dir := t.TempDir()
			oldKey := pkitest.MustKey(alg, "sa")
			newKey := pkitest.MustKey(alg, "spare-a")
			writePair(t, dir, oldKey)
			s := mustRead(t, dir)
			if s.Stage != StageSteady || len(s.Pub) != 1 || s.New != nil {
				t.Fatalf("fresh pair: %+v", s)
			}
			oldToken := sign(t, oldKey, "token-1")

			if err := apply(s.Prepare(newKey)); err != nil {
				t.Fatal(err)
			}
			s = mustRead(t, dir)
			if s.Stage != StagePrepared || s.New == nil || len(s.Pub) != 2 || s.Pub[0].Role != RoleSigning || s.Pub[1].Role != RoleNext {
				t.Fatalf("after prepare: %+v", s)
			}
			if !signingKey(t, dir).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(oldKey.Public()) {
				t.Fatal("prepare changed the signing key")
			}
			for _, n := range []string{KeyName, PubName, NextName} {
				assertMode(t, filepath.Join(dir, n), 0o600)
			}
			if !accepted(t, dir, "token-1", oldToken) || !accepted(t, dir, "token-2", sign(t, newKey, "token-2")) {
				t.Fatal("prepared: sa.pub must verify tokens of both keys")
			}

			if err := apply(s.Promote()); err != nil {
				t.Fatal(err)
			}
			s = mustRead(t, dir)
			if s.Stage != StagePromoted || s.New != nil || len(s.Pub) != 2 || s.Pub[0].Role != RoleOld || s.Pub[1].Role != RoleSigning {
				t.Fatalf("after promote: %+v", s)
			}
			if _, err := os.Stat(filepath.Join(dir, NextName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("sa.key.next is still there after promote")
			}
			signer := signingKey(t, dir)
			if fp, _ := pki.PublicKeyFingerprint(signer.Public()); fp != s.Key.SHA256 {
				t.Fatal("sa.key is not the promoted key")
			}
			newToken := sign(t, signer, "token-3")
			if !accepted(t, dir, "token-1", oldToken) || !accepted(t, dir, "token-3", newToken) {
				t.Fatal("promoted: tokens signed before promote must stay valid")
			}
			assertMode(t, filepath.Join(dir, KeyName), 0o600)

			pruned, err := s.Prune()
			if err := apply(pruned, err); err != nil {
				t.Fatal(err)
			}
			removed := pruned.Removed
			s = mustRead(t, dir)
			if s.Stage != StageSteady || len(s.Pub) != 1 || len(removed) != 1 || removed[0].Role != RoleOld {
				t.Fatalf("after prune: %+v, removed %+v", s, removed)
			}
			if accepted(t, dir, "token-1", oldToken) {
				t.Fatal("pruned: a token of the old key is still accepted")
			}
			if !accepted(t, dir, "token-3", newToken) {
				t.Fatal("pruned: a token of the new key is rejected")
			}
			assertMode(t, filepath.Join(dir, PubName), 0o600)
		})
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = string(data)
	}
	return out
}

func TestStagesRefuseToRunOutOfOrder(t *testing.T) {
	alg := pki.ECDSAP256
	setup := func(t *testing.T, stage Stage) string {
		dir := t.TempDir()
		writePair(t, dir, pkitest.MustKey(alg, "sa"))
		if stage == StageSteady {
			return dir
		}
		if err := apply(mustRead(t, dir).Prepare(pkitest.MustKey(alg, "spare-b"))); err != nil {
			t.Fatal(err)
		}
		if stage == StagePrepared {
			return dir
		}
		if err := apply(mustRead(t, dir).Promote()); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	spare := pkitest.MustKey(alg, "spare-c")
	for _, tc := range []struct {
		stage Stage
		op    string
		run   func(*State) error
	}{
		{StageSteady, "promote", func(s *State) error { return apply(s.Promote()) }},
		{StageSteady, "prune", func(s *State) error { return apply(s.Prune()) }},
		{StagePrepared, "prepare", func(s *State) error { return apply(s.Prepare(spare)) }},
		{StagePrepared, "prune", func(s *State) error { return apply(s.Prune()) }},
		{StagePromoted, "prepare", func(s *State) error { return apply(s.Prepare(spare)) }},
		{StagePromoted, "promote", func(s *State) error { return apply(s.Promote()) }},
	} {
		t.Run(tc.op+" when "+string(tc.stage), func(t *testing.T) {
			dir := setup(t, tc.stage)
			before := snapshot(t, dir)
			err := tc.run(mustRead(t, dir))
			// The exit status (3) and the next command in the message are package phases': TestSAStepsOutOfOrder.
			var se *StageError
			if !errors.As(err, &se) || se.State.Stage != tc.stage {
				t.Fatalf("err = %v, want a StageError", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "stage "+string(tc.stage)) || !strings.HasPrefix(msg, tc.op+" refused") {
				t.Errorf("message: %s", msg)
			}
			if after := snapshot(t, dir); len(after) != len(before) || after[KeyName] != before[KeyName] || after[PubName] != before[PubName] || after[NextName] != before[NextName] {
				t.Error("a refused step changed the files")
			}
		})
	}
}

func TestPrepareRefusesAKeyAlreadyInUse(t *testing.T) {
	dir := t.TempDir()
	k := pkitest.MustKey(pki.RSA2048, "sa")
	writePair(t, dir, k)
	if err := apply(mustRead(t, dir).Prepare(k)); err == nil {
		t.Fatal("prepare accepted the current key as the new one")
	}
	if _, err := os.Stat(filepath.Join(dir, NextName)); err == nil {
		t.Fatal("sa.key.next written")
	}
}

func TestMissingCorruptAndHandEditedFiles(t *testing.T) {
	alg := pki.ECDSAP256
	a, b, c := pkitest.MustKey(alg, "sa"), pkitest.MustKey(alg, "spare-d"), pkitest.MustKey(alg, "spare-e")
	pem := func(k crypto.Signer) []byte { d, _ := pki.EncodePrivateKey(k); return d }
	pub := func(k crypto.Signer) []byte { d, _ := pki.EncodePublicKey(k.Public()); return d }
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"no sa.key", map[string][]byte{PubName: pub(a)}, "sa.key does not exist"},
		{"no sa.pub", map[string][]byte{KeyName: pem(a)}, "sa.pub does not exist: restore it from a backup"},
		{"corrupt sa.key", map[string][]byte{KeyName: []byte("-----BEGIN RSA PRIVATE KEY-----\ngarbage\n"), PubName: pub(a)}, "sa.key"},
		{"corrupt sa.pub", map[string][]byte{KeyName: pem(a), PubName: []byte("not pem")}, "sa.pub"},
		{"sa.pub of another key", map[string][]byte{KeyName: pem(a), PubName: pub(b)}, "does not contain the public key"},
		{"corrupt sa.key.next", map[string][]byte{KeyName: pem(a), PubName: append(pub(a), pub(b)...), NextName: []byte("x")}, "it is the key staged by an unfinished prepare"},
		{"sa.key.next not in sa.pub", map[string][]byte{KeyName: pem(a), PubName: append(pub(a), pub(b)...), NextName: pem(c)}, "not in"},
		// The command that repairs each is named by the caller (phases): a FileError carries what is wrong.
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, d := range tc.files {
				os.WriteFile(filepath.Join(dir, n), d, 0o600)
			}
			_, err := Read(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("symlinked sa.key", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, dir, a)
		os.Rename(filepath.Join(dir, KeyName), filepath.Join(dir, "real.key"))
		os.Symlink("real.key", filepath.Join(dir, KeyName))
		if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "symbolic") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("duplicate public keys count once", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, dir, a)
		os.WriteFile(filepath.Join(dir, PubName), append(pub(a), pub(a)...), 0o600)
		if s := mustRead(t, dir); s.Stage != StageSteady {
			t.Fatalf("stage %s", s.Stage)
		}
	})
	t.Run("hand-appended old key reads as promoted", func(t *testing.T) {
		dir := t.TempDir()
		writePair(t, dir, a)
		os.WriteFile(filepath.Join(dir, PubName), append(pub(b), pub(a)...), 0o600)
		if s := mustRead(t, dir); s.Stage != StagePromoted || s.Pub[0].Role != RoleOld {
			t.Fatalf("state %+v", s)
		}
	})
}

// A crash after promote replaced sa.key but before it removed sa.key.next leaves two identical keys:
// that reads as promoted, and promote (or prune) finishes the job.
func TestInterruptedPromote(t *testing.T) {
	alg := pki.RSA2048
	dir := t.TempDir()
	writePair(t, dir, pkitest.MustKey(alg, "sa"))
	if err := apply(mustRead(t, dir).Prepare(pkitest.MustKey(alg, "spare-f"))); err != nil {
		t.Fatal(err)
	}
	next, _ := os.ReadFile(filepath.Join(dir, NextName))
	os.WriteFile(filepath.Join(dir, KeyName), next, 0o600)
	s := mustRead(t, dir)
	if !s.LeftoverNext || s.Stage != StagePromoted {
		t.Fatalf("state %+v", s)
	}
	if err := apply(s.Promote()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, NextName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("leftover sa.key.next not removed")
	}
	if s := mustRead(t, dir); s.Stage != StagePromoted || s.LeftoverNext {
		t.Fatalf("state %+v", s)
	}
}

// A failure in the middle of prepare's commit leaves the files as they were.
func TestPrepareFailureChangesNothing(t *testing.T) {
	alg := pki.ECDSAP256
	dir := t.TempDir()
	writePair(t, dir, pkitest.MustKey(alg, "sa"))
	before := snapshot(t, dir)
	for _, op := range []pki.Op{pki.OpWrite, pki.OpSync, pki.OpRename} {
		target := filepath.Join(dir, PubName)
		restore := pki.SetFaultHook(func(o pki.Op, path string) error {
			if o == op && (path == target || strings.Contains(path, "."+PubName)) {
				return errors.New("injected")
			}
			return nil
		})
		err := apply(mustRead(t, dir).Prepare(pkitest.MustKey(alg, "spare-g")))
		restore()
		if err == nil {
			t.Fatalf("%s fault: prepare succeeded", op)
		}
		if _, err := pki.Recover(dir, dir); err != nil {
			t.Fatal(err)
		}
		after := snapshot(t, dir)
		if len(after) != len(before) || after[KeyName] != before[KeyName] || after[PubName] != before[PubName] {
			t.Fatalf("%s fault: files changed: %v", op, keys(after))
		}
	}
	// And with no fault the same call succeeds.
	if err := apply(mustRead(t, dir).Prepare(pkitest.MustKey(alg, "spare-g"))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snapshotBytes(t, dir, PubName), []byte("PUBLIC KEY")) {
		t.Fatal("sa.pub lost its PEM")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func snapshotBytes(t *testing.T, dir, name string) []byte {
	t.Helper()
	d, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// apply does with a step what package phases does: it commits the step's files in one transaction, then
// removes what the step made obsolete (a failure there matters only when the step had nothing else to do).
func apply(st *Step, err error) error {
	if err != nil {
		return err
	}
	if len(st.Files) > 0 {
		if err := pki.Commit(filepath.Dir(st.Files[0].Path), st.Files); err != nil {
			return err
		}
	}
	for _, p := range st.Obsolete {
		if err := pki.RemoveFile(p); err != nil && len(st.Files) == 0 {
			return err
		}
	}
	return nil
}
