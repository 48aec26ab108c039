package pkitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/pki"
)

// Node is a control-plane node's files for a test, every state path inside one directory: the kubeadm
// configuration (Config), the certificate directory pki/, the kubeconfig directory kube/, backups/ and
// audit.log. Commands under test are pointed at these paths; Save, Reset and Snap let a test repeat a
// command from the same starting state and compare what it changed.
type Node struct {
	T                             testing.TB
	Dir, Config, CertDir, KubeDir string
	BackupDir, AuditLog           string
	// Saved is a copy of the starting state of a command under test (Save); SavedAudit the audit log's
	// content then.
	Saved, SavedAudit string
}

// NewNode makes a node in a fresh directory (on tmpfs when there is one) with config as its kubeadm
// configuration file.
func NewNode(t testing.TB, config string) *Node {
	t.Helper()
	dir := MemTempDir(t)
	n := &Node{T: t, Dir: dir, Config: filepath.Join(dir, "kubeadm.yaml"), CertDir: filepath.Join(dir, "pki"),
		KubeDir: filepath.Join(dir, "kube"), BackupDir: filepath.Join(dir, "backups"), AuditLog: filepath.Join(dir, "audit.log")}
	if err := os.WriteFile(n.Config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// MemTempDir is a temporary directory on tmpfs when the machine has one: tests that repeat whole runs
// hundreds of times (the crash walks) would otherwise spend their time in fsync.
func MemTempDir(t testing.TB) string {
	t.Helper()
	if info, err := os.Stat("/dev/shm"); err == nil && info.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "k8scrypto-test-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// CopyTree copies a directory tree with its modes (whatever the umask) and modification times.
func CopyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		data, err := os.ReadFile(p) // #nosec G304 G122 -- tests copy their own temporary trees
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o600); err != nil { // #nosec G703 -- tests copy their own temporary trees
			return err
		}
		if err := os.Chmod(target, info.Mode().Perm()); err != nil {
			return err
		}
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Reset puts the node's directory back to a saved copy, at the same path (kubeadm-config.yaml names it).
func (n *Node) Reset(saved string) {
	n.T.Helper()
	if err := os.RemoveAll(n.Dir); err != nil {
		n.T.Fatal(err)
	}
	CopyTree(n.T, saved, n.Dir)
}

// Save copies the node's directory away and returns the copy, for Reset.
func (n *Node) Save() string {
	n.T.Helper()
	saved := filepath.Join(MemTempDir(n.T), "saved")
	CopyTree(n.T, n.Dir, saved)
	return saved
}

// SavedFile reads a file of the saved starting state (rel is relative to the node's directory).
func (n *Node) SavedFile(rel string) []byte {
	n.T.Helper()
	data, err := os.ReadFile(filepath.Join(n.Saved, rel)) // #nosec G304 -- a test's own saved tree
	if err != nil {
		n.T.Fatal(err)
	}
	return data
}

// Snap records the node's own files: the certificate and kubeconfig directories (not the audit log or
// backups), keyed "pki/..." and "kube/...".
func (n *Node) Snap() Snapshot {
	n.T.Helper()
	out := Snapshot{}
	for _, sub := range []string{"pki", "kube"} {
		for p, st := range MustSnapshot(n.T, filepath.Join(n.Dir, sub)) {
			out[filepath.ToSlash(filepath.Join(sub, p))] = st
		}
	}
	return out
}

// CheckBookkeeping fails for any temp, rollback, journal or other ".k8scrypto-" file anywhere in the node's
// directory, but the allowed names.
func (n *Node) CheckBookkeeping(label string, allowed ...string) {
	n.T.Helper()
	_ = filepath.WalkDir(n.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (pki.IsBookkeeping(d.Name()) || strings.Contains(d.Name(), ".k8scrypto-")) && !slices.Contains(allowed, d.Name()) {
			n.T.Errorf("%s: %s left behind", label, strings.TrimPrefix(p, n.Dir+"/"))
		}
		return nil
	})
}

// CheckUnchanged: after a failed command the certificate and kubeconfig directories are exactly as before
// (content, mode and modification time), but for the lock file the command may have created.
func (n *Node) CheckUnchanged(label string, before Snapshot) {
	n.T.Helper()
	for _, d := range NodeDiff(before, n.Snap()) {
		n.T.Errorf("%s: %s", label, d)
	}
}

// NodeDiff lists the differences between two snapshots of a node's files but the lock file, and the
// certificate directory a writing command creates to hold it (empty, 0600, opened without following links).
func NodeDiff(before, after Snapshot) []string {
	var out []string
	for _, d := range Diff(before, after) {
		path := d[strings.Index(d, " ")+1:]
		path, _, _ = strings.Cut(path, ":")
		if path != "pki" && path != "pki/"+pki.LockName {
			out = append(out, d)
		}
	}
	return out
}

// AuditLines reads an audit log's lines.
func AuditLines(t testing.TB, path string) []pki.AuditEvent {
	t.Helper()
	data, err := os.ReadFile(path) // #nosec G304 -- a test's own audit log
	if err != nil {
		t.Fatal(err)
	}
	var out []pki.AuditEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev pki.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}
