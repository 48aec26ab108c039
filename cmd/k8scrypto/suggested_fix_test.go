package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// suggestedRenew extracts the renew command an init failure names, split into words as a POSIX shell would
// (the command quotes with single quotes only).
func suggestedRenew(t *testing.T, stderr string) []string {
	t.Helper()
	m := regexp.MustCompile(`run "(k8scrypto renew certs [^"]*)"`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no renew command in %q", stderr)
	}
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range m[1] {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// runExactly runs a command line as printed, without the paths initCase.exec adds: only the environment
// keeps the audit log, the backups and the kubeconfig directory inside the test.
func (c *initCase) runExactly(words []string) (int, string) {
	c.t.Helper()
	if len(words) == 0 || words[0] != "k8scrypto" {
		c.t.Fatalf("not a k8scrypto command: %q", words)
	}
	c.t.Setenv("K8SCRYPTO_AUDIT_LOG", c.log)
	c.t.Setenv("K8SCRYPTO_BACKUP_DIR", filepath.Join(c.dir, "backups"))
	c.t.Setenv("K8SCRYPTO_KUBECONFIG_DIR", c.kubeDir)
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: c.keys,
		rand: pkitest.Rand(2), hostname: func() (string, error) { return "host-from-os", nil }}
	code := run(words[1:], e)
	return code, stdout.String() + stderr.String()
}

func apiserverDNSNames(t *testing.T, c *initCase) []string {
	t.Helper()
	return readPEMCert(t, filepath.Join(c.certDir, "apiserver.crt")).DNSNames
}

// TestMissingSANFixRunsAsSuggested: when an existing apiserver.crt lacks a SAN the run asks for, init fails
// naming a renew command; running exactly that command, and init again, gives a certificate with the SAN.
// Without the run's --config and SAN flags renew would keep the old SANs and init would fail again.
func TestMissingSANFixRunsAsSuggested(t *testing.T) {
	t.Run("flag", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		c.mustExec("init")
		code, _, stderr := c.exec("init", "--apiserver-cert-extra-sans", "new.example.com,192.168.0.9")
		if code == 0 || !strings.Contains(stderr, "DNS:new.example.com") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		words := suggestedRenew(t, stderr)
		for _, want := range [][]string{{"--config", c.cfg}, {"--cert-dir", c.certDir}, {"--apiserver-cert-extra-sans", "new.example.com,192.168.0.9"}} {
			if i := slices.Index(words, want[0]); i < 0 || i+1 >= len(words) || words[i+1] != want[1] {
				t.Errorf("suggested %q lacks %s %s", words, want[0], want[1])
			}
		}
		if code, out := c.runExactly(words); code != 0 || !strings.Contains(out, "renewed") {
			t.Fatalf("suggested command: exit %d\n%s", code, out)
		}
		c.mustExec("init", "--apiserver-cert-extra-sans", "new.example.com,192.168.0.9")
		cert := readPEMCert(t, filepath.Join(c.certDir, "apiserver.crt"))
		if !slices.Contains(cert.DNSNames, "new.example.com") || !slices.ContainsFunc(cert.IPAddresses, net.ParseIP("192.168.0.9").Equal) {
			t.Errorf("apiserver.crt SANs %v %v, want new.example.com and 192.168.0.9", cert.DNSNames, cert.IPAddresses)
		}
	})
	t.Run("config file", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		c.mustExec("init")
		edited := pkitest.KubeadmConfig("apiServer:\n  certSANs: [from-file.example.com]\n")
		if err := os.WriteFile(c.cfg, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := c.exec("init")
		if code == 0 || !strings.Contains(stderr, "DNS:from-file.example.com") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if code, out := c.runExactly(suggestedRenew(t, stderr)); code != 0 {
			t.Fatalf("suggested command: exit %d\n%s", code, out)
		}
		c.mustExec("init")
		if got := apiserverDNSNames(t, c); !slices.Contains(got, "from-file.example.com") {
			t.Errorf("apiserver.crt DNS names %v", got)
		}
	})
	t.Run("external CA", func(t *testing.T) {
		c := newInitCase(t, initTestConfig)
		c.mustExec("init")
		if err := os.Remove(filepath.Join(c.certDir, "ca.key")); err != nil {
			t.Fatal(err)
		}
		before := pkitest.MustSnapshot(t, c.certDir)
		code, _, stderr := c.exec("init", "--apiserver-cert-extra-sans", "new.example.com")
		if code == 0 || !strings.Contains(stderr, "ca is an external CA") || !strings.Contains(stderr, "have that CA issue a new apiserver certificate") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if strings.Contains(stderr, "renew certs") {
			t.Errorf("suggests renew, which refuses a certificate of an external CA: %q", stderr)
		}
		if d := pkitest.Diff(before, pkitest.MustSnapshot(t, c.certDir)); len(d) > 0 {
			t.Errorf("files changed: %v", d)
		}
	})
}

// TestFailedFirstInitLeavesNoCertDir: a first run that fails, at a phase or at any file-system step (that
// part is skipped with -short: about two hundred runs), leaves no
// certificate directory (nor the parents it created) behind, not even one holding only the lock; a
// directory that existed before is kept. A first strict run creates it 0700.
func TestFailedFirstInitLeavesNoCertDir(t *testing.T) {
	for _, strict := range []bool{false, true} {
		flags := []string{}
		if strict {
			flags = append(flags, "--strict-permissions")
		}
		c := newInitCase(t, initTestConfig)
		c.certDir = filepath.Join(c.dir, "new", "parent", "pki")
		args := append([]string{"init", "phase", "certs", "apiserver"}, flags...)
		if code, _, stderr := c.exec(args...); code == 0 || !strings.Contains(stderr, "init phase certs ca") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if _, err := os.Lstat(filepath.Join(c.dir, "new")); !os.IsNotExist(err) {
			t.Errorf("strict=%v: a failed first run left %s", strict, filepath.Join(c.dir, "new"))
		}

		// A fault at each step of a full first run in turn, the lock's and the commit's included.
		for n := 1; !testing.Short(); n++ {
			c := newInitCaseIn(t, initTestConfig, initMemDir(t))
			calls := 0
			restore := pki.SetFaultHook(func(_ pki.Op, path string) error {
				if strings.HasPrefix(path, filepath.Dir(c.log)) {
					return nil
				}
				if calls++; calls == n {
					return errors.New("injected fault")
				}
				return nil
			})
			code, _, stderr := c.exec(append([]string{"init"}, flags...)...)
			restore()
			if calls < n {
				if code != 0 || n < 50 {
					t.Fatalf("strict=%v: unfaulted run after %d steps: exit %d: %s", strict, n-1, code, stderr)
				}
				break
			}
			if code == 0 {
				continue // the final directory sync after the transaction ended
			}
			if !strings.Contains(stderr, "injected fault") {
				t.Fatalf("step %d: %s", n, stderr)
			}
			if _, err := os.Lstat(c.certDir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(c.certDir)
				t.Errorf("strict=%v step %d: failed first run left %s with %d entries: %s", strict, n, c.certDir, len(entries), stderr)
			}
		}

		// A directory that was there before the failed run stays.
		c = newInitCase(t, initTestConfig)
		if err := os.Mkdir(c.certDir, 0o750); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := c.exec(args...); code == 0 {
			t.Fatal("phase without its CA succeeded")
		}
		if info, err := os.Stat(c.certDir); err != nil || !info.IsDir() {
			t.Errorf("strict=%v: the existing %s was removed", strict, c.certDir)
		}

		// A first run that succeeds keeps the directory, 0700 when strict.
		c = newInitCase(t, initTestConfig)
		c.mustExec(append([]string{"init", "phase", "certs", "ca"}, flags...)...)
		want := pki.ModeDir
		if strict {
			want = pki.ModeStrictDir
		}
		if info, err := os.Stat(c.certDir); err != nil || info.Mode().Perm() != want {
			t.Errorf("strict=%v: %s: %v, mode %v, want %04o", strict, c.certDir, err, info, want)
		}
	}
}
