package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// The flags each part of the command layer binds (flags.go), as the commands read them.
var (
	globalFlags  = []string{"output", "quiet", "settings", "verbose"}
	sourceFlags  = []string{"cert-dir", "config"}
	sessionFlags = []string{"audit-log", "kubeconfig-dir", "lock-timeout"}
	nodeFlags    = []string{"advertise-address", "apiserver-cert-extra-sans", "control-plane-endpoint", "node-name", "service-cidr", "service-dns-domain", "strict-permissions"}
	writeFlags   = []string{"backup-dir", "dry-run"}
	apiFlags     = []string{"apiserver-timeout", "kubeconfig"}
	waitFlags    = []string{"wait", "wait-timeout"}
	etcdFlagList = []string{"etcd-cacert", "etcd-cert", "etcd-endpoints", "etcd-key", "etcd-page-size", "etcd-prefix"}
	encFlags     = []string{"allow-plaintext-reads", "encrypt-resources", "encryption-provider", "kms-endpoint", "kms-name", "kms-timeout"}
	secretFlags  = []string{"key-file", "passphrase-file"}
)

// expectedFlags is what each command's --help lists and accepts, by command path: the flags its code reads,
// written down here from the code (phases' options each command fills), not from the command tree. A group
// (a command that only holds others) has none; cobra's own help and completion commands keep theirs.
func expectedFlags() map[string][]string {
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	// Every init phase resolves the whole configuration, validates it and takes the lock.
	initPhase := cat(globalFlags, sourceFlags, sessionFlags, nodeFlags, []string{"encryption-algorithm", "dry-run"})
	rotation := cat(globalFlags, sourceFlags, sessionFlags, writeFlags)
	status := cat(globalFlags, sourceFlags, sessionFlags)
	m := map[string][]string{
		"k8scrypto":         nil,
		"k8scrypto version": globalFlags,

		"k8scrypto init":                         cat(initPhase, encFlags, []string{"kubeadm-config-out", "skip-phases"}),
		"k8scrypto init phase":                   nil,
		"k8scrypto init phase certs":             nil,
		"k8scrypto init phase certs all":         initPhase,
		"k8scrypto init phase sa":                initPhase,
		"k8scrypto init phase encryption-config": cat(initPhase, encFlags),
		"k8scrypto init phase kubeconfig":        nil,
		"k8scrypto init phase kubeconfig all":    initPhase,
		"k8scrypto init phase kubeadm-config":    cat(initPhase, []string{"kubeadm-config-out"}),
		// upload-certs reads the shared files and talks to the cluster; it takes no lock and writes no file.
		"k8scrypto init phase upload-certs": cat(globalFlags, sourceFlags, []string{"certificate-key", "dry-run", "kubeconfig"}),

		"k8scrypto renew":       nil,
		"k8scrypto renew certs": cat(initPhase, writeFlags, []string{"force", "keep-backups", "on-renew", "rotate-keys", "threshold"}),
		"k8scrypto certs":       nil,
		"k8scrypto certs renew": cat(initPhase, writeFlags, []string{"force", "keep-backups", "on-renew", "rotate-keys", "threshold"}),
		"k8scrypto certs check-expiration": cat(globalFlags, sourceFlags,
			[]string{"audit-log", "fail-within", "kubeconfig-dir", "lock-timeout", "metrics-file"}),
		// export reads the shared files only; import installs them under the lock (never replacing one, so no
		// backups).
		"k8scrypto certs export": cat(globalFlags, sourceFlags, secretFlags, []string{"out"}),
		"k8scrypto certs import": cat(status, secretFlags, []string{"ca-cert-hash", "dry-run", "in"}),

		"k8scrypto encryption":                nil,
		"k8scrypto encryption status":         cat(status, etcdFlagList, apiFlags, []string{"apiserver-endpoint"}),
		"k8scrypto encryption rotate":         nil,
		"k8scrypto encryption rotate prepare": rotation,
		"k8scrypto encryption rotate promote": cat(rotation, apiFlags, waitFlags, []string{"apiserver-endpoint"}),
		"k8scrypto encryption rotate prune": cat(rotation, apiFlags, waitFlags, etcdFlagList,
			[]string{"apiserver-endpoint", "unsafe-skip-etcd-check", "yes"}),
		"k8scrypto encryption reencrypt": cat(status, apiFlags, waitFlags, etcdFlagList,
			[]string{"apiserver-endpoint", "checkpoint", "page-size", "resources", "restart", "workers"}),

		"k8scrypto sa":        nil,
		"k8scrypto sa status": cat(status, apiFlags),
		"k8scrypto sa rotate": nil,
		// Only prepare makes a key.
		"k8scrypto sa rotate prepare": cat(rotation, []string{"encryption-algorithm"}),
		"k8scrypto sa rotate promote": rotation,
		"k8scrypto sa rotate prune":   cat(rotation, []string{"yes"}),

		"k8scrypto ca":       nil,
		"k8scrypto ca renew": rotation,
		// The new CA key keeps the old one's algorithm.
		"k8scrypto ca rotate":         nil,
		"k8scrypto ca rotate prepare": cat(rotation, []string{"ca"}),
		"k8scrypto ca rotate promote": cat(rotation, []string{"ca"}),
		"k8scrypto ca rotate prune":   cat(rotation, []string{"ca", "yes"}),

		"k8scrypto join":                      nil,
		"k8scrypto join phase":                nil,
		"k8scrypto join phase download-certs": cat(status, []string{"ca-cert-hash", "certificate-key", "dry-run", "kubeconfig"}),

		"k8scrypto help":                  nil,
		"k8scrypto completion":            nil,
		"k8scrypto completion bash":       {"no-descriptions"},
		"k8scrypto completion zsh":        {"no-descriptions"},
		"k8scrypto completion fish":       {"no-descriptions"},
		"k8scrypto completion powershell": {"no-descriptions"},
	}
	// Each certificate and kubeconfig sub-phase reads what its phase reads.
	for _, c := range []string{"ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client", "etcd-ca",
		"etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"} {
		m["k8scrypto init phase certs "+c] = initPhase
	}
	for _, k := range []string{"admin", "super-admin", "kubelet", "controller-manager", "scheduler"} {
		m["k8scrypto init phase kubeconfig "+k] = initPhase
	}
	return m
}

// listedFlags are the flags a command's --help lists: its own and the inherited ones, not hidden, not --help.
func listedFlags(c *cobra.Command) []string {
	var out []string
	visit := func(f *pflag.Flag) {
		if !f.Hidden && f.Name != "help" && !slices.Contains(out, f.Name) {
			out = append(out, f.Name)
		}
	}
	c.LocalFlags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	slices.Sort(out)
	return out
}

// TestEachCommandListsOnlyItsFlags walks the whole command tree: every command lists (in --help) and accepts
// exactly the flags its code reads, none inherited from a parent that it would ignore (issue 15), and every
// command of the tree is in the table.
func TestEachCommandListsOnlyItsFlags(t *testing.T) {
	e, _, _ := testEnv(pkitest.Now)
	root := newRootCommand(e, &globals{})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	want := expectedFlags()
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := c.CommandPath()
		seen[path] = true
		exp, ok := want[path]
		if !ok {
			t.Errorf("%s is not in the table of expected flags", path)
		}
		exp = slices.Sorted(slices.Values(exp))
		if got := listedFlags(c); !slices.Equal(got, slices.Compact(exp)) {
			t.Errorf("%s lists %v\nwant %v\n(extra %v, missing %v)", path, got, exp, minus(got, exp), minus(exp, got))
		}
		// Help and the flags parsed are the same set: nothing hidden is accepted below the root.
		if c != root {
			c.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Hidden {
					t.Errorf("%s accepts the hidden flag --%s", path, f.Name)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for path := range want {
		if !seen[path] {
			t.Errorf("the table names %s, which is not a command", path)
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestUnusedFlagRefusedFromEverySource: a flag a command does not read is an unknown flag (exit 2) on its
// command line and an unknown key in its --settings file; a K8SCRYPTO_* variable is refused only when it
// names no flag of any command (the environment is shared by every command a host runs, so
// K8SCRYPTO_BACKUP_DIR must not break "certs check-expiration"), and then it is not read.
func TestUnusedFlagRefusedFromEverySource(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"init", "phase", "sa"}, "encryption-provider"},
		{[]string{"init", "phase", "certs", "all"}, "kubeadm-config-out"},
		{[]string{"certs", "export", "--out", filepath.Join(dir, "b"), "--key-file", filepath.Join(dir, "k")}, "audit-log"},
		{[]string{"sa", "rotate", "promote"}, "encryption-algorithm"},
		{[]string{"ca", "rotate", "prepare", "--ca", "ca"}, "node-name"},
		{[]string{"encryption", "status"}, "strict-permissions"},
		{[]string{"version"}, "cert-dir"},
	} {
		name := strings.Join(tc.args[:min(len(tc.args), 3)], " ")
		t.Run(name+" --"+tc.flag, func(t *testing.T) {
			base := append(slices.Clone(tc.args), "--cert-dir", filepath.Join(dir, "pki"))
			if tc.args[0] == "version" || tc.flag == "cert-dir" {
				base = slices.Clone(tc.args)
			}
			code, _, stderr := execIn(t, append(slices.Clone(base), "--"+tc.flag, "x")...)
			if code != 2 || !strings.Contains(stderr, "unknown flag: --"+tc.flag) {
				t.Errorf("flag: exit %d, %q; want 2, unknown flag", code, stderr)
			}
			settings := filepath.Join(dir, "settings.yaml")
			writeFile(t, settings, []byte(tc.flag+": x\n"))
			code, _, stderr = execIn(t, append(slices.Clone(base), "--settings", settings)...)
			if code != 2 || !strings.Contains(stderr, `"`+tc.flag+`" is not a flag of "k8scrypto `) {
				t.Errorf("settings key: exit %d, %q; want 2 naming the key", code, stderr)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "pki")); len(entries) > 0 {
		t.Errorf("a refused run wrote into %s", dir)
	}
	// A variable naming a flag of another command is not read: version runs, and says nothing of it.
	t.Setenv("K8SCRYPTO_BACKUP_DIR", filepath.Join(dir, "backups"))
	if code, _, stderr := execIn(t, "version"); code != 0 || stderr != "" {
		t.Errorf("version with K8SCRYPTO_BACKUP_DIR: exit %d, %q", code, stderr)
	}
	t.Setenv("K8SCRYPTO_BACKUP_DIRECTORY", "x")
	if code, _, stderr := execIn(t, "version"); code != 2 || !strings.Contains(stderr, "K8SCRYPTO_BACKUP_DIRECTORY names no k8scrypto flag (did you mean K8SCRYPTO_BACKUP_DIR?)") {
		t.Errorf("K8SCRYPTO_BACKUP_DIRECTORY: exit %d, %q", code, stderr)
	}
}

// TestGlobalFlagsBeforeTheCommand: -q, -v, -o and --settings may come before the command's words, as they
// could when they were the root's persistent flags.
func TestGlobalFlagsBeforeTheCommand(t *testing.T) {
	code, stdout, stderr := execIn(t, "-q", "-o", "json", "version")
	if code != 0 || !strings.Contains(stdout, `"kind": "Version"`) || stderr != "" {
		t.Errorf("k8scrypto -q -o json version: exit %d\n%s%s", code, stdout, stderr)
	}
	// A group takes no flags: its misspelt command is named first.
	code, _, stderr = execIn(t, "ca", "rotate", "prepar", "--ca", "ca")
	if code != 2 || !strings.Contains(stderr, `unknown command "prepar"`) {
		t.Errorf("ca rotate prepar --ca ca: exit %d, %q", code, stderr)
	}
}

// execIn runs k8scrypto in-process with the test clock.
func execIn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, now: func() time.Time { return pkitest.Now }, keys: pkitest.Keys(), rand: pkitest.Rand(1),
		hostname: func() (string, error) { return "node-a", nil }}
	code := run(args, e)
	return code, stdout.String(), stderr.String()
}
