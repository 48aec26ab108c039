package phases_test

import (
	"errors"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// atomicScenario prepares a certificate directory and returns the configuration to run on it.
type atomicScenario struct {
	name    string
	prepare func(t *testing.T, cfg *pki.Config)
}

var atomicScenarios = []atomicScenario{
	{"fresh directory", func(*testing.T, *pki.Config) {}},
	{"CAs present", func(t *testing.T, cfg *pki.Config) {
		sel := phases.Selection{Only: []string{"certs/ca", "certs/front-proxy-ca", "certs/etcd-ca"}}
		if _, err := run(cfg, pkitest.Now, nil, sel); err != nil {
			t.Fatal(err)
		}
	}},
}

// TestRunFailsAtEveryStep fails the Nth file-system step (create, write, sync, rename, link, mkdir, syncdir)
// of a full certs+sa run, for every N: the run reports the error, the directory is exactly as before (no
// temp file, no half-written pair, no new directory), and a plain re-run then succeeds.
func TestRunFailsAtEveryStep(t *testing.T) {
	for _, sc := range atomicScenarios {
		t.Run(sc.name, func(t *testing.T) {
			ops := map[pki.Op]int{}
			for n := 1; ; n++ {
				cfg := pkiConfigIn(pkitest.MemTempDir(t), pki.ECDSAP256)
				sc.prepare(t, cfg)
				parent := filepath.Dir(cfg.CertDir)
				before := pkitest.MustSnapshot(t, parent)
				calls := 0
				var failed pki.Op
				restore := pki.SetFaultHook(func(op pki.Op, _ string) error {
					if calls++; calls == n {
						failed = op
						return errors.New("injected fault")
					}
					return nil
				})
				_, err := run(cfg, pkitest.Now, nil, phases.Selection{})
				restore()
				if calls < n {
					if err != nil {
						t.Fatal(err)
					}
					break
				}
				ops[failed]++
				switch {
				case err == nil:
					// Only the last directory sync, after the transaction ended, is not worth failing for.
					assertComplete(t, cfg)
				case !strings.Contains(err.Error(), "injected fault"):
					t.Fatalf("step %d (%s): err = %v, want the injected fault", n, failed, err)
				default:
					assertUnchanged(t, before, parent)
				}
				if _, err := run(cfg, pkitest.Now, nil, phases.Selection{}); err != nil {
					t.Fatalf("step %d (%s): re-run: %v", n, failed, err)
				}
				assertComplete(t, cfg)
			}
			for _, op := range []pki.Op{pki.OpCreate, pki.OpWrite, pki.OpSync, pki.OpRename, pki.OpSyncDir} {
				if ops[op] == 0 {
					t.Errorf("no %s step was failed (%v)", op, ops)
				}
			}
			t.Logf("failed steps by kind: %v", ops)
		})
	}
}

// TestRunCrashAtEveryStep stops a full certs+sa run dead at each file-system step (the goroutine exits
// where it stands, as under SIGKILL), then recovers as every command does first: the directory holds
// either what it held before or the complete new PKI, every certificate matching its key.
func TestRunCrashAtEveryStep(t *testing.T) {
	sawOld, sawNew := false, false
	for n := 1; ; n++ {
		cfg := pkiConfigIn(pkitest.MemTempDir(t), pki.ECDSAP256)
		atomicScenarios[1].prepare(t, cfg)
		before := regularFiles(t, cfg.CertDir)
		calls := 0
		restore := pki.SetFaultHook(func(pki.Op, string) error {
			if calls++; calls == n {
				runtime.Goexit()
			}
			return nil
		})
		done := make(chan error, 1)
		go func() {
			crashed := true
			defer func() {
				if crashed {
					close(done)
				}
			}()
			_, err := run(cfg, pkitest.Now, nil, phases.Selection{})
			crashed = false
			done <- err
		}()
		err, finished := <-done
		restore()
		if finished {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if _, err := pki.Recover(cfg.CertDir, cfg.CertDir, filepath.Join(cfg.CertDir, "etcd")); err != nil {
			t.Fatalf("crash at step %d: Recover: %v", n, err)
		}
		after := regularFiles(t, cfg.CertDir)
		switch {
		case maps.Equal(before, after):
			sawOld = true
		case len(after) == 2*len(cfg.Certs())+2:
			sawNew = true
			assertComplete(t, cfg)
		default:
			t.Errorf("crash at step %d recovered to a partial PKI: %d files", n, len(after))
		}
		if _, err := run(cfg, pkitest.Now, nil, phases.Selection{}); err != nil {
			t.Fatalf("crash at step %d: re-run after recovery: %v", n, err)
		}
	}
	if !sawOld || !sawNew {
		t.Errorf("recovered to old=%v new=%v; both must occur", sawOld, sawNew)
	}
}

// assertComplete checks the directory holds the whole PKI, every certificate matching its key and chaining
// to its CA, with no bookkeeping file.
func assertComplete(t *testing.T, cfg *pki.Config) {
	t.Helper()
	for _, spec := range cfg.Certs() {
		cert := readCert(t, spec.CertPath(cfg.CertDir))
		key := readKey(t, spec.KeyPath(cfg.CertDir), keyBlockType(cfg.Algorithm))
		if !pki.KeyMatchesCert(key, cert) {
			t.Errorf("%s: key does not match certificate", spec.Name)
		}
		if !spec.IsCA() {
			ca, _ := pki.LookupCert(spec.CAName)
			if err := pki.VerifyChain(cert, nil, readCert(t, ca.CertPath(cfg.CertDir)), pkitest.Now); err != nil {
				t.Errorf("%s: %v", spec.Name, err)
			}
		}
	}
	checkSA(t, cfg)
	checkModes(t, cfg, pki.ModeCert, pki.ModeDir)
}

func regularFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, st := range pkitest.MustSnapshot(t, dir) {
		if st.Mode.IsRegular() {
			if pki.IsBookkeeping(filepath.Base(p)) {
				t.Errorf("bookkeeping file %s", p)
			}
			out[p] = st.SHA256
		}
	}
	return out
}
