package main

// The hostile-input table: every bad input README.md's table lists, given to the command that meets it.
// In every case the command exits non-zero, the message names the file or field and says what to do, and
// no file of the certificate, kubeconfig or backup directories changes (content, mode, modification time);
// the audit log, kept outside them as in production, may only gain lines recording the failure.

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// badInput is one row of the bad-input table in README.md.
type badInput struct {
	name string
	// fresh: the node is not initialised first (configuration errors meet an empty directory).
	fresh bool
	// setup breaks the node; it may return a path outside the node that must not change either.
	setup func(t *testing.T, n *node) (outside string)
	now   time.Time
	args  []string
	// fault, when set, fails every file-system step of that kind with this error (a read-only or full disk),
	// in the node's certificate and kubeconfig directories, or only in the backup directory with inBackups.
	fault     pki.Op
	faultErr  error
	inBackups bool
	// faultIn, when set, limits the fault to paths containing it (a write of the renewed files, not of the
	// bookkeeping before them).
	faultIn string
	code    int
	// where are pieces of the message naming the file or field; fix, pieces saying what to do. Both are
	// required: a message that names the problem but not the way out fails the row.
	where, fix []string
	// keepsBackups marks a command that fails after taking its backups (a write of the renewed or rotated
	// files fails): it keeps them, each an exact copy of a file that did not change. Every other row must
	// leave the backup directory exactly as it was.
	keepsBackups bool
}

// writeFile replaces a node file, keeping its mode.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	mode := os.FileMode(0o600)
	if info, err := os.Stat(path); err == nil {
		mode = info.Mode().Perm()
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func withConfig(doc string) func(t *testing.T, n *node) string {
	return func(t *testing.T, n *node) string {
		writeFile(t, n.Config, []byte(doc))
		return ""
	}
}

// setEncryptionSecret replaces the secret of the encryption config's first key.
func setEncryptionSecret(secret string) func(t *testing.T, n *node) string {
	return func(t *testing.T, n *node) string {
		p := phases.EncryptionConfigPath(n.CertDir)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, line := range strings.Split(string(data), "\n") {
			if k, _, ok := strings.Cut(line, "secret: "); ok {
				line = k + "secret: " + secret
			}
			out = append(out, line)
		}
		writeFile(t, p, []byte(strings.Join(out, "\n")))
		return ""
	}
}

// signedBy issues a certificate for key's public half from a CA (caKey self-signed when ca is nil).
func signedBy(t *testing.T, cn string, isCA bool, pub any, ca *x509.Certificate, caKey any, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: pkitest.Now.Add(-time.Hour), NotAfter: notAfter, BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	parent := tmpl
	if ca != nil {
		parent = ca
	}
	der, err := x509.CreateCertificate(pkitest.Rand(3), tmpl, parent, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pki.EncodeCert(cert)
}

func badInputs() []badInput {
	day := 24 * time.Hour
	removeLeaf := func(n *node, name string) {
		os.Remove(filepath.Join(n.CertDir, name+".crt"))
		os.Remove(filepath.Join(n.CertDir, name+".key"))
	}
	return []badInput{
		{name: "unknown config field", fresh: true, args: []string{"init"},
			setup: withConfig(pkitest.KubeadmConfig("networking:\n  servceSubnet: 10.97.0.0/16\n")),
			code:  2, where: []string{"kubeadm.yaml", "ClusterConfiguration", `unknown field "networking.servceSubnet"`}, fix: []string{"check the spelling and indentation", "or remove it"}},
		{name: "unsupported API version (v1beta3)", fresh: true, args: []string{"init"},
			setup: withConfig("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"),
			code:  2, where: []string{"kubeadm.yaml", `"kubeadm.k8s.io/v1beta3"`}, fix: []string{"kubeadm config migrate", "use kubeadm.k8s.io/v1beta4"}},
		{name: "broken YAML", fresh: true, args: []string{"init"},
			setup: withConfig(pkitest.KubeadmConfig("apiServer:\n  certSANs: [a, b\n")),
			code:  2, where: []string{"kubeadm.yaml", "document 2", "not valid YAML", "line 4"}, fix: []string{"fix the syntax there"}},
		{name: "invalid SAN", fresh: true, args: []string{"init", "--apiserver-cert-extra-sans", "bad_name!"},
			code: 2, where: []string{"apiServer.certSANs", `"bad_name!"`, "not an IP address or an RFC 1123 DNS name"}, fix: []string{"correct it or remove it"}},
		{name: "invalid CIDR", fresh: true, args: []string{"init", "--service-cidr", "10.96.0.0/33"},
			code: 2, where: []string{"networking.serviceSubnet", `"10.96.0.0/33"`, "is not a CIDR"}, fix: []string{"give an address/prefix such as 10.96.0.0/12"}},
		{name: "unknown algorithm", fresh: true, args: []string{"init", "--encryption-algorithm", "DSA-1024"},
			code: 2, where: []string{"encryptionAlgorithm", `"DSA-1024"`}, fix: []string{"must be one of ECDSA-P256, ECDSA-P384, RSA-2048, RSA-3072, RSA-4096"}},
		{name: "certificate validity longer than the CA validity", fresh: true, args: []string{"init"},
			setup: withConfig(pkitest.KubeadmConfig("certificateValidityPeriod: 100000h\n")),
			code:  2, where: []string{"certificateValidityPeriod", "longer than caCertificateValidityPeriod"}, fix: []string{"shorten it or lengthen caCertificateValidityPeriod"}},
		{name: "certificate would outlive its existing CA", now: pkitest.Now.Add(9*365*day + 200*day), args: []string{"init"},
			setup: func(t *testing.T, n *node) string { removeLeaf(n, "apiserver"); return "" },
			code:  1, where: []string{"certificateValidityPeriod", "apiserver would expire", "after its CA ca"}, fix: []string{"shorten the period or renew the CA"}},
		{name: "truncated certificate", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				p := filepath.Join(n.CertDir, "apiserver.crt")
				data, _ := os.ReadFile(p)
				writeFile(t, p, data[:len(data)/2])
				return ""
			},
			code: 1, where: []string{"pki/apiserver.crt", "truncated"}, fix: []string{"restore it from a backup, or remove", "run init again"}},
		{name: "garbage key", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				writeFile(t, filepath.Join(n.CertDir, "apiserver.key"), []byte("\x00\x01garbage\xff"))
				return ""
			},
			code: 1, where: []string{"pki/apiserver.key", "no valid private key"}, fix: []string{"restore it from a backup, or remove", "run init again"}},
		{name: "truncated key", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				p := filepath.Join(n.CertDir, "apiserver.key")
				data, _ := os.ReadFile(p)
				writeFile(t, p, data[:len(data)/2])
				return ""
			},
			code: 1, where: []string{"pki/apiserver.key", "no valid private key"}, fix: []string{"restore it from a backup, or remove", "run init again"}},
		{name: "garbage certificate", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				writeFile(t, filepath.Join(n.CertDir, "apiserver.crt"), []byte("\x00\x01garbage\xff-----BEGIN CERTIFICATE-----\nnot base64\n"))
				return ""
			},
			code: 1, where: []string{"pki/apiserver.crt", "no valid CERTIFICATE"}, fix: []string{"restore it from a backup, or remove", "run init again"}},
		{name: "garbage key (renew keeping the key)", now: cmdTime, args: []string{"renew", "certs", "apiserver", "--force", "--rotate-keys=false"},
			setup: func(t *testing.T, n *node) string {
				writeFile(t, filepath.Join(n.CertDir, "apiserver.key"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
				return ""
			},
			code: 1, where: []string{"pki/apiserver.key", "no valid private key"}, fix: []string{`run "k8scrypto renew certs apiserver --force`}},
		{name: "key does not match its certificate", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				other, _ := os.ReadFile(filepath.Join(n.CertDir, "front-proxy-client.key"))
				writeFile(t, filepath.Join(n.CertDir, "apiserver.key"), other)
				return ""
			},
			code: 1, where: []string{"pki/apiserver.key does not match", "pki/apiserver.crt"}, fix: []string{`run "k8scrypto renew certs apiserver --force`}},
		{name: "leaf signed by another CA", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				otherKey := pkitest.MustKey(pki.ECDSAP256, "spare-a")
				other, _, _ := pki.ParseCertChain(signedBy(t, "other-ca", true, otherKey.Public(), nil, otherKey, pkitest.Now.Add(365*day)))
				key, err := phases.LoadKey(filepath.Join(n.CertDir, "apiserver.key"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(n.CertDir, "apiserver.crt"), signedBy(t, "kube-apiserver", false, key.Public(), other, otherKey, pkitest.Now.Add(300*day)))
				return ""
			},
			code: 1, where: []string{"pki/apiserver.crt cannot be reused", "does not verify against ca"}, fix: []string{`run "k8scrypto renew certs apiserver --force`}},
		{name: "CA certificate without the CA bit", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				key, err := phases.LoadKey(filepath.Join(n.CertDir, "ca.key"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(n.CertDir, "ca.crt"), signedBy(t, "kubernetes", false, key.Public(), nil, key, pkitest.Now.Add(3650*day)))
				return ""
			},
			code: 1, where: []string{"pki/ca.crt is not a CA certificate"}, fix: []string{"restore the ca CA or remove it and its key"}},
		{name: "expired CA", now: pkitest.Now.Add(11 * 365 * day), args: []string{"init"},
			code: 1, where: []string{"pki/ca.crt expired on"}, fix: []string{`"k8scrypto ca renew ca"`}},
		{name: "expired CA (renew)", now: pkitest.Now.Add(11 * 365 * day), args: []string{"renew", "certs"},
			code: 1, where: []string{"pki/ca.crt expired on"}, fix: []string{`"k8scrypto ca renew ca"`}},
		{name: "ca.key without ca.crt", args: []string{"init"},
			setup: func(t *testing.T, n *node) string { os.Remove(filepath.Join(n.CertDir, "ca.crt")); return "" },
			code:  1, where: []string{"pki/ca.key exists but", "pki/ca.crt does not"}, fix: []string{"restore the CA certificate, or remove the key"}},
		{name: "symlink in the cert dir (renew)", now: cmdTime, args: []string{"renew", "certs", "apiserver", "--force"},
			setup: symlinkOut("apiserver.crt"),
			code:  1, where: []string{"pki/apiserver.crt is a symbolic link"}, fix: []string{"replace it with the file it points to"}},
		{name: "symlink in the cert dir (encryption rotate)", now: cmdTime, args: []string{"encryption", "rotate", "prepare"},
			setup: symlinkOut(encryption.FileName),
			code:  1, where: []string{"pki/" + encryption.FileName, "symbolic links"}, fix: []string{"replace the link with the file it points to"}},
		{name: "symlink in the cert dir (sa rotate)", now: cmdTime, args: []string{"sa", "rotate", "prepare"},
			setup: symlinkOut("sa.pub"),
			code:  1, where: []string{"pki/sa.pub is not a regular file", "symbolic links are refused"}, fix: []string{"replace the link with the file it points to"}},
		{name: "symlink for a missing key (init)", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				removeLeaf(n, "apiserver")
				out := filepath.Join(t.TempDir(), "planted")
				os.Symlink(out, filepath.Join(n.CertDir, "apiserver.key"))
				return out
			},
			code: 1, where: []string{"pki/apiserver.key exists but its certificate", "pki/apiserver.crt does not"}, fix: []string{"restore the certificate, or move the key out of the directory", "re-run"}},
		{name: "read-only directory", args: []string{"init"}, fault: pki.OpCreate, faultErr: syscall.EROFS,
			setup: func(t *testing.T, n *node) string { removeLeaf(n, "apiserver"); return "" },
			code:  1, where: []string{"pki/.k8scrypto.lock", "read-only file system"}, fix: []string{"remount it read-write"}},
		{name: "full disk (renew)", now: cmdTime, args: []string{"renew", "certs", "--force"}, fault: pki.OpWrite, faultErr: syscall.ENOSPC, faultIn: "/kube/",
			code: 1, where: []string{"writing the renewed certificates", "kube/admin.conf", "no space left on device"}, fix: []string{"free space, then run the command again"}, keepsBackups: true},
		{name: "full backup disk (renew)", now: cmdTime, args: []string{"renew", "certs", "--force"}, fault: pki.OpWrite, faultErr: syscall.ENOSPC, inBackups: true,
			code: 1, where: []string{"backing up", "kube/admin.conf", "no space left on device", "nothing was renewed"}, fix: []string{"free space, then run the command again"}},
		{name: "full disk (init)", args: []string{"init"}, fault: pki.OpWrite, faultErr: syscall.ENOSPC, faultIn: "apiserver.key",
			setup: func(t *testing.T, n *node) string { removeLeaf(n, "apiserver"); return "" },
			code:  1, where: []string{"pki/apiserver.key", "no space left on device"}, fix: []string{"free space, then run the command again"}},
		{name: "full disk (encryption rotate)", now: cmdTime, args: []string{"encryption", "rotate", "prepare"}, fault: pki.OpSync, faultErr: syscall.ENOSPC, faultIn: encryption.FileName,
			code: 1, where: []string{"pki/" + encryption.FileName, "no space left on device"}, fix: []string{"free space, then run the command again"}, keepsBackups: true},
		{name: "full disk (sa rotate)", now: cmdTime, args: []string{"sa", "rotate", "prepare"}, fault: pki.OpWrite, faultErr: syscall.ENOSPC, faultIn: sakeys.NextName,
			code: 1, where: []string{"pki/sa.key.next", "no space left on device"}, fix: []string{"free space, then run the command again"}, keepsBackups: true},
		{name: "read-only directory (renew)", now: cmdTime, args: []string{"renew", "certs", "--force"}, fault: pki.OpRename, faultErr: syscall.EROFS, faultIn: "journal",
			code: 1, where: []string{"writing the renewed certificates", "journal", "read-only file system"}, fix: []string{"remount it read-write"}, keepsBackups: true},
		{name: "encryption key not 32 bytes", args: []string{"init"},
			setup: setEncryptionSecret(base64.StdEncoding.EncodeToString(make([]byte, 16))),
			code:  1, where: []string{"pki/" + encryption.FileName, "secret"}, fix: []string{"fix it by hand or restore it from a backup"}},
		{name: "encryption key not base64", now: cmdTime, args: []string{"encryption", "rotate", "prepare"},
			setup: setEncryptionSecret("not-base64!!"),
			code:  1, where: []string{"pki/" + encryption.FileName, "secret"}, fix: []string{"fix it by hand or restore it from a backup"}},
		{name: "encryption key not base64 (status)", args: []string{"encryption", "status"},
			setup: setEncryptionSecret("not-base64!!"),
			code:  1, where: []string{"pki/" + encryption.FileName, "secret"}, fix: []string{"fix it by hand or restore it from a backup"}},
		{name: "group-writable certificate directory", args: []string{"init"},
			setup: func(t *testing.T, n *node) string {
				removeLeaf(n, "apiserver")
				os.Chmod(n.CertDir, 0o775)
				return ""
			},
			code: 1, where: []string{"refusing to write private file", "pki/apiserver.key", "group- or world-writable"}, fix: []string{"chmod go-w"}},
	}
}

// checkAuditOnlyFailures: the audit log is a file a refused command may change, by appending lines that
// record the failure (and the backups it took); it never records a success, and never loses a line.
func checkAuditOnlyFailures(t *testing.T, n *node, before, after pkitest.Snapshot) {
	t.Helper()
	if before["audit.log"] == after["audit.log"] {
		return
	}
	data, err := os.ReadFile(n.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	old := n.SavedAudit
	if !strings.HasPrefix(string(data), old) {
		t.Fatal("the audit log lost lines")
	}
	for _, line := range strings.Split(strings.TrimSpace(strings.TrimPrefix(string(data), old)), "\n") {
		var ev pki.AuditEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		// A backup that was taken is recorded as such; nothing else may claim success.
		if (ev.Outcome == "ok" || ev.Outcome == "") && ev.Operation != pki.AuditBackup {
			t.Errorf("a refused command recorded a success: %s", line)
		}
	}
}

// checkBackupsAreCopies: a command that fails after taking its backups keeps them; every file added under
// the backup directory must be an exact copy of a node file as it was (and still is).
func checkBackupsAreCopies(t *testing.T, n *node, before, after pkitest.Snapshot) {
	t.Helper()
	for p, st := range after {
		if _, had := before[p]; had || !strings.HasPrefix(p, "backups/") || !st.Mode.IsRegular() {
			continue
		}
		orig, ok := n.backedUp(p)
		if !ok || before[orig].SHA256 != st.SHA256 {
			t.Errorf("%s is not a copy of a node file as it was", p)
		}
	}
}

// symlinkOut replaces a node file by a symbolic link to a copy outside the node.
func symlinkOut(name string) func(t *testing.T, n *node) string {
	return func(t *testing.T, n *node) string {
		p := filepath.Join(n.CertDir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "outside-"+name)
		if err := os.WriteFile(out, data, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		if err := os.Symlink(out, p); err != nil {
			t.Fatal(err)
		}
		return out
	}
}

// TestBadInput runs the table (README.md's bad-input table points here, row by row).
func TestBadInput(t *testing.T) {
	base := newNode(t)
	initNode(base)
	initialised := base.Save()
	for _, bi := range badInputs() {
		t.Run(bi.name, func(t *testing.T) {
			n := newNode(t)
			if !bi.fresh {
				// The same directory each time: kubeadm-config.yaml names it.
				nn := *base
				n = &nn
				n.t = t
				n.Reset(initialised)
			}
			outside := ""
			if bi.setup != nil {
				outside = bi.setup(t, n)
			}
			now := bi.now
			if now.IsZero() {
				now = setupTime.Add(time.Hour)
			}
			before := pkitest.MustSnapshot(t, n.Dir)
			audit, _ := os.ReadFile(n.AuditLog)
			n.SavedAudit = string(audit)
			var outBefore pkitest.Snapshot
			if outside != "" {
				outBefore = pkitest.MustSnapshot(t, filepath.Dir(outside))
			}
			if bi.fault != "" {
				restore := pki.SetFaultHook(func(op pki.Op, path string) error {
					// The disk of the node's files, or of the backups; never the audit log's (the row
					// is about the directories, and the audit log is elsewhere in production).
					inNode := strings.HasPrefix(path, n.CertDir+"/") || strings.HasPrefix(path, n.KubeDir+"/")
					if op == bi.fault && (bi.inBackups && strings.HasPrefix(path, n.BackupDir+"/") || !bi.inBackups && inNode) && strings.Contains(path, bi.faultIn) {
						return bi.faultErr
					}
					return nil
				})
				defer restore()
			}
			code, stdout, stderr := n.run(now, append(bi.args, "-v")...)
			t.Logf("exit %d: %s", code, stderr)
			if code != bi.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, bi.code, stdout, stderr)
			}
			msg := stderr[max(strings.LastIndex(stderr, "error: "), 0):]
			if len(bi.where) == 0 || len(bi.fix) == 0 {
				t.Fatal("a row must check both that the message names the file or field and that it says what to do")
			}
			for _, w := range bi.where {
				if !strings.Contains(msg, w) {
					t.Errorf("the message does not name %q:\n%s", w, msg)
				}
			}
			for _, w := range bi.fix {
				if !strings.Contains(msg, w) {
					t.Errorf("the message does not say what to do (%q):\n%s", w, msg)
				}
			}
			// Nothing changes anywhere in the node's tree: the configuration, the certificate and kubeconfig
			// directories and the backup directory; only the audit log may gain lines recording the failure
			// (it is append-only by design, so a refused run is on record).
			after := pkitest.MustSnapshot(t, n.Dir)
			checkAuditOnlyFailures(t, n, before, after)
			if bi.keepsBackups {
				checkBackupsAreCopies(t, n, before, after)
				if !slices.ContainsFunc(slices.Collect(maps.Keys(after)), func(p string) bool { _, had := before[p]; return !had && strings.HasPrefix(p, "backups/") }) {
					t.Error("keepsBackups is set but no backup was taken: clear it, so the backup directory is checked unchanged")
				}
			}
			for _, s := range []pkitest.Snapshot{before, after} {
				delete(s, "audit.log")
				if bi.keepsBackups {
					for p := range s {
						if p == "backups" || strings.HasPrefix(p, "backups/") {
							delete(s, p)
						}
					}
				}
			}
			if d := pkitest.Diff(before, after); len(d) > 0 {
				t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
			}
			if !strings.HasPrefix(n.CertDir, n.Dir+"/") || !strings.HasPrefix(n.KubeDir, n.Dir+"/") || !strings.HasPrefix(n.BackupDir, n.Dir+"/") {
				t.Fatal("the snapshot does not cover the certificate, kubeconfig and backup directories")
			}
			if outside != "" {
				if d := pkitest.Diff(outBefore, pkitest.MustSnapshot(t, filepath.Dir(outside))); len(d) > 0 {
					t.Errorf("a file outside the node changed through a symlink:\n%s", strings.Join(d, "\n"))
				}
			}
		})
	}
}

// TestReadOnlyDirectoryForReal is the read-only row without fault injection, where the file system enforces
// it: a certificate directory without write permission. Root writes anyway, so it runs only without root.
func TestReadOnlyDirectoryForReal(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestBadInput/read-only_directory injects EROFS instead")
	}
	n := newNode(t)
	initNode(n)
	os.Remove(filepath.Join(n.CertDir, "apiserver.crt"))
	os.Remove(filepath.Join(n.CertDir, "apiserver.key"))
	if err := os.Chmod(n.CertDir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(n.CertDir, 0o755)
	before := n.Snap()
	code, _, stderr := n.run(setupTime.Add(time.Hour), "init")
	if code != 1 || !strings.Contains(stderr, "apiserver") || !strings.Contains(stderr, "permission denied") || !strings.Contains(stderr, "run as the owner of the directory") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if d := pkitest.NodeDiff(before, n.Snap()); len(d) > 0 {
		t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
	}
}

// TestBadInputTableIsTheREADMEs: the README's bad-input table (its "Row" column, comma-separated where one
// line stands for several rows) names exactly the rows of badInputs, so neither can gain a case the other
// lacks; a row given as a test name in backquotes is another package's test, which must exist.
// docs/bad-input.md links to the README instead of repeating the table.
func TestBadInputTableIsTheREADMEs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Bad input\n")
	if !ok {
		t.Fatal(`README.md has no "## Bad input" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	header := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		last := strings.TrimSpace(cells[len(cells)-1])
		switch {
		case last == "Row":
			header = true
			continue
		case strings.Trim(last, "-") == "":
			continue
		}
		for _, row := range strings.Split(last, ",") {
			documented[strings.TrimSpace(row)] = true
		}
	}
	if !header || len(documented) == 0 {
		t.Fatal(`the README's bad-input table has no "Row" column`)
	}
	// A row in backquotes is another package's test (the file layer's, the config loader's): it must exist.
	for row := range documented {
		if name, isTest := strings.CutPrefix(row, "`"); isTest {
			delete(documented, row)
			name = strings.TrimSuffix(name, "`")
			if !testExists(t, name) {
				t.Errorf("README.md's table points at %s, which no _test.go file defines", name)
			}
		}
	}
	tested := map[string]bool{}
	for _, bi := range badInputs() {
		tested[bi.name] = true
		if !documented[bi.name] {
			t.Errorf("row %q is tested but not in README.md's table", bi.name)
		}
	}
	for row := range documented {
		if !tested[row] {
			t.Errorf("README.md's table lists row %q, which TestBadInput does not run", row)
		}
	}
	if docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "bad-input.md")); err != nil {
		t.Error(err)
	} else if strings.Contains(string(docs), "| Row |") {
		t.Error("docs/bad-input.md repeats the bad-input table: keep it in README.md only")
	}
}

// testExists reports whether a _test.go file of the module defines func name.
func testExists(t *testing.T, name string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(filepath.Join("..", ".."), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != filepath.Join("..", "..") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			found = strings.Contains(string(data), "\nfunc "+name+"(t *testing.T)")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestUnknownSettingsAndVariables: a --settings key that is not a flag of the command and a K8SCRYPTO_*
// variable that names no flag are usage errors (exit 2) naming the key or variable and the nearest valid
// name, before anything is written; the variables k8scrypto itself sets for a hook are not.
func TestUnknownSettingsAndVariables(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "pki")
	args := []string{"init", "phase", "certs", "ca", "--cert-dir", certDir, "--audit-log", filepath.Join(dir, "audit.log"), "--node-name", "n", "--advertise-address", "10.0.0.5"}
	settings := filepath.Join(dir, "settings.yaml")
	for _, tc := range []struct {
		name, settings, env, want string
	}{
		{"settings key", "dryrun: true\n", "", `"dryrun" is not a flag of "k8scrypto init phase certs ca" (did you mean dry-run?)`},
		{"settings key of another command", "backup-dir: /tmp/b\n", "", `"backup-dir" is not a flag of`},
		{"nested settings key", "etcd:\n  endpoints: x\n", "", `"etcd.endpoints" is not a flag`},
		{"variable", "", "K8SCRYPTO_DRYRUN=true", "environment variable K8SCRYPTO_DRYRUN names no k8scrypto flag (did you mean K8SCRYPTO_DRY_RUN?)"},
		{"misspelt backup dir", "", "K8SCRYPTO_BACKUP_DIRS=/x", "K8SCRYPTO_BACKUP_DIR?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := []string{}
			if tc.settings != "" {
				if err := os.WriteFile(settings, []byte(tc.settings), 0o600); err != nil {
					t.Fatal(err)
				}
				extra = append(extra, "--settings", settings)
			}
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(append(slices.Clone(args), extra...), &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: pkitest.Keys(), rand: pkitest.Rand(1), hostname: func() (string, error) { return "n", nil }})
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %s; want 2 and %q", code, stderr.String(), tc.want)
			}
			if _, err := os.Stat(certDir); err == nil {
				t.Error("a refused run wrote the certificate directory")
			}
		})
	}
	// A variable of another command (K8SCRYPTO_BACKUP_DIR: renew's) and the hook's variables are fine.
	t.Setenv("K8SCRYPTO_BACKUP_DIR", filepath.Join(dir, "b"))
	t.Setenv("K8SCRYPTO_RENEWED", "apiserver")
	var stderr bytes.Buffer
	if code := run(args, &env{stdout: io.Discard, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: pkitest.Keys(), rand: pkitest.Rand(1), hostname: func() (string, error) { return "n", nil }}); code != 0 {
		t.Errorf("with K8SCRYPTO_BACKUP_DIR and K8SCRYPTO_RENEWED set: exit %d, %s", code, stderr.String())
	}
}
