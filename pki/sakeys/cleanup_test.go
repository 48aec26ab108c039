package sakeys

import (
	"errors"
	"os"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestPromoteSurvivesAFailedCleanup: the removal of sa.key.next and its directory fsync go through the
// fault hook; when either fails after sa.key was replaced, promote has done its job (it reports success,
// not an error for a change that happened), Read reports the identical leftover, and the next promote
// removes it.
func TestPromoteSurvivesAFailedCleanup(t *testing.T) {
	for _, op := range []pki.Op{pki.OpRemove, pki.OpSyncDir} {
		t.Run(string(op), func(t *testing.T) {
			dir := t.TempDir()
			writePair(t, dir, pkitest.MustKey(pki.ECDSAP256, "sa"))
			if err := mustRead(t, dir).Prepare(pkitest.MustKey(pki.ECDSAP256, "spare-b")); err != nil {
				t.Fatal(err)
			}
			next := mustRead(t, dir).New
			nextPath, removed := mustPath(dir, NextName), false
			restore := pki.SetFaultHook(func(o pki.Op, path string) error {
				// The commit fsyncs the directory too; fail only the cleanup's steps.
				if o == op && (o == pki.OpRemove && path == nextPath || o == pki.OpSyncDir && removed && path == dir) {
					return errors.New("injected fault")
				}
				removed = removed || o == pki.OpRemove && path == nextPath
				return nil
			})
			err := mustRead(t, dir).Promote()
			restore()
			if err != nil {
				t.Fatalf("promote failed after replacing sa.key: %v", err)
			}
			st := mustRead(t, dir)
			if st.Stage != StagePromoted || st.Key.SHA256 != next.SHA256 {
				t.Fatalf("stage %s, signing key %s; want promoted with %s", st.Stage, st.Key.SHA256, next.SHA256)
			}
			if op == pki.OpRemove && !st.LeftoverNext {
				t.Error("the leftover sa.key.next is not reported")
			}
			if st.LeftoverNext {
				if err := st.Promote(); err != nil {
					t.Fatalf("finishing the cleanup: %v", err)
				}
			}
			if _, err := os.Stat(mustPath(dir, NextName)); !os.IsNotExist(err) {
				t.Errorf("sa.key.next still there: %v", err)
			}
		})
	}
}

func mustPath(dir, name string) string { return (&State{Dir: dir}).path(name) }
