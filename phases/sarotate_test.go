package phases

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// saNode is a certificate directory with a service-account key pair and nothing else, and the state paths
// of a rotation.
func saNode(t *testing.T) RotateOptions {
	t.Helper()
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	if err := os.Mkdir(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := pkitest.MustKey(pki.ECDSAP256, "sa")
	keyPEM, _ := pki.EncodePrivateKey(key)
	pubPEM, _ := pki.EncodePublicKey(key.Public())
	for name, data := range map[string][]byte{sakeys.KeyName: keyPEM, sakeys.PubName: pubPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return RotateOptions{CertDir: certDir, KubeconfigDir: filepath.Join(dir, "kube"), AuditLog: filepath.Join(dir, "audit.log"),
		BackupDir: filepath.Join(dir, "backups"), Now: pkitest.Now}
}

// certDirOnly is a configuration of the certificate directory alone (--cert-dir, nothing else).
func certDirOnly(certDir string) ConfigSource {
	return ConfigSource{Flags: config.Overrides{CertDir: certDir}}
}

// TestPromoteSurvivesAFailedCleanup: the removal of sa.key.next and its directory fsync go through the
// fault hook; when either fails after sa.key was replaced, promote has done its job (it reports success,
// not an error for a change that happened), Read reports the identical leftover, and the next promote
// removes it.
func TestPromoteSurvivesAFailedCleanup(t *testing.T) {
	for _, op := range []pki.Op{pki.OpRemove, pki.OpSyncDir} {
		t.Run(string(op), func(t *testing.T) {
			o := saNode(t)
			dir := o.CertDir
			keys := func(string, pki.Algorithm) (crypto.Signer, error) {
				return pkitest.MustKey(pki.ECDSAP256, "spare-b"), nil
			}
			if _, err := SARotate(context.Background(), "prepare", SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir), Keys: keys}); err != nil {
				t.Fatal(err)
			}
			st, err := sakeys.Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			next := st.New
			nextPath, removed := filepath.Join(dir, sakeys.NextName), false
			restore := pki.SetFaultHook(func(o pki.Op, path string) error {
				// The commit fsyncs the directory too; fail only the cleanup's steps.
				if o == op && (o == pki.OpRemove && path == nextPath || o == pki.OpSyncDir && removed && path == dir) {
					return errors.New("injected fault")
				}
				removed = removed || o == pki.OpRemove && path == nextPath
				return nil
			})
			_, err = SARotate(context.Background(), "promote", SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir)})
			restore()
			if err != nil {
				t.Fatalf("promote failed after replacing sa.key: %v", err)
			}
			st, err = sakeys.Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Stage != sakeys.StagePromoted || st.Key.SHA256 != next.SHA256 {
				t.Fatalf("stage %s, signing key %s; want promoted with %s", st.Stage, st.Key.SHA256, next.SHA256)
			}
			if op == pki.OpRemove && !st.LeftoverNext {
				t.Error("the leftover sa.key.next is not reported")
			}
			if st.LeftoverNext {
				if _, err := SARotate(context.Background(), "promote", SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir)}); err != nil {
					t.Fatalf("finishing the cleanup: %v", err)
				}
			}
			if _, err := os.Stat(nextPath); !os.IsNotExist(err) {
				t.Errorf("sa.key.next still there: %v", err)
			}
		})
	}
}

// TestSAStepsOutOfOrder: a step the stage does not allow is refused with exit status 3, a message that
// names the stage and the command to run next, and no file changed.
func TestSAStepsOutOfOrder(t *testing.T) {
	spare := func(string, pki.Algorithm) (crypto.Signer, error) {
		return pkitest.MustKey(pki.ECDSAP256, "spare-c"), nil
	}
	for _, tc := range []struct {
		stage sakeys.Stage
		steps []string // to reach the stage
		op    string
		next  string
	}{
		{sakeys.StageSteady, nil, "promote", "sa rotate prepare"},
		{sakeys.StageSteady, nil, "prune", "sa rotate prepare"},
		{sakeys.StagePrepared, []string{"prepare"}, "prepare", "sa rotate promote"},
		{sakeys.StagePrepared, []string{"prepare"}, "prune", "sa rotate promote"},
		{sakeys.StagePromoted, []string{"prepare", "promote"}, "prepare", "sa rotate prune"},
		{sakeys.StagePromoted, []string{"prepare", "promote"}, "promote", "sa rotate prune"},
	} {
		t.Run(tc.op+" when "+string(tc.stage), func(t *testing.T) {
			o := saNode(t)
			for _, step := range tc.steps {
				if _, err := SARotate(context.Background(), step, SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir), Keys: spare}); err != nil {
					t.Fatal(err)
				}
			}
			before := pkitest.MustSnapshot(t, o.CertDir)
			_, err := SARotate(context.Background(), tc.op, SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir), Keys: spare, Yes: true})
			var refused *RefusedError
			if !errors.As(err, &refused) || refused.ExitCode() != 3 {
				t.Fatalf("err = %v, want a refusal with exit status 3", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "stage "+string(tc.stage)) || !strings.Contains(msg, tc.next) || !strings.HasPrefix(msg, tc.op+" refused") {
				t.Errorf("message: %s", msg)
			}
			after := pkitest.MustSnapshot(t, o.CertDir)
			delete(after, pki.LockName) // the session's lock file, which the first step creates
			delete(before, pki.LockName)
			if d := pkitest.Diff(before, after); len(d) > 0 {
				t.Errorf("a refused step changed the files: %v", d)
			}
		})
	}
}

// TestEncryptionStepsOutOfOrder: an encryption rotation step the file's stage does not allow is refused with
// exit status 3 and a message naming the stage and the command to run next (pki/encryption gives the stage;
// the command is named here).
func TestEncryptionStepsOutOfOrder(t *testing.T) {
	o := saNode(t)
	cfg := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: " + strings.Repeat("A", 43) + "=\n  - identity: {}\n"
	if err := os.WriteFile(filepath.Join(o.CertDir, EncryptionFileName), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rotate := func(step string) error {
		_, err := EncryptionRotate(context.Background(), step, EncryptionRotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir), Rand: pkitest.Rand(1), Yes: true, Unsafe: true})
		return err
	}
	for _, tc := range []struct{ done, op, stage, next string }{
		{"", "promote", "steady", `next: "k8scrypto encryption rotate prepare" when the key is due`},
		{"prepare", "prepare", "prepared", `next: "k8scrypto encryption rotate promote --kubeconfig ADMIN.CONF --wait"`},
		{"promote", "promote", "promoted", `next: "k8scrypto encryption reencrypt --kubeconfig ADMIN.CONF --wait --etcd-endpoints URL", then "k8scrypto encryption rotate prune`},
	} {
		if tc.done != "" {
			if err := rotate(tc.done); err != nil {
				t.Fatal(err)
			}
		}
		err := rotate(tc.op)
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.ExitCode() != 3 {
			t.Fatalf("%s: err = %v, want a refusal with exit status 3", tc.op, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tc.op+" refused: the encryption config is in stage "+tc.stage) || !strings.Contains(msg, tc.next) {
			t.Errorf("message: %s", msg)
		}
	}
}

// TestSAKeyFileErrorsNameTheRepair: a key file that stops the rotation is reported with what is wrong
// (pki/sakeys) and the command that repairs it (named here).
func TestSAKeyFileErrorsNameTheRepair(t *testing.T) {
	other := pkitest.MustKey(pki.ECDSAP256, "spare-d")
	otherPEM, _ := pki.EncodePrivateKey(other)
	for _, tc := range []struct {
		name string
		edit func(certDir string) error
		want string
	}{
		{"no sa.key", func(d string) error { return os.Remove(filepath.Join(d, SAKeyFile)) }, `sa.key does not exist: create the pair with "k8scrypto init phase sa" first`},
		{"no sa.pub", func(d string) error { return os.Remove(filepath.Join(d, SAPubFile)) }, `sa.pub does not exist: restore it from a backup, or run "k8scrypto init phase sa" to derive it from sa.key`},
		{"corrupt sa.key.next", func(d string) error { return os.WriteFile(filepath.Join(d, SANextFile), []byte("x"), 0o600) },
			`; it is the key staged by an unfinished prepare: remove it and run "k8scrypto sa rotate prepare" again`},
		{"sa.key.next not in sa.pub", func(d string) error { return os.WriteFile(filepath.Join(d, SANextFile), otherPEM, 0o600) },
			`(hand-edited, or sa.pub was restored): remove sa.key.next and run "k8scrypto sa rotate prepare" again`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := saNode(t)
			if err := tc.edit(o.CertDir); err != nil {
				t.Fatal(err)
			}
			_, err := SARotate(context.Background(), "promote", SARotateOptions{RotateOptions: o, Config: certDirOnly(o.CertDir)})
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to end %q", err, tc.want)
			}
		})
	}
}
