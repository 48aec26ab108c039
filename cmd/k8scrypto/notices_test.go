package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNoticesSaidByEveryCommand: what k8scrypto decides by itself while resolving the configuration (here a
// node name it lower-cases) is said on stderr, once, as a warning, by every command that reads the
// configuration, dry run or not, exactly as init says it; -q silences it as it silences every warning (as
// init always did), so a successful quiet run still writes nothing to stderr.
func TestNoticesSaidByEveryCommand(t *testing.T) {
	const notice = `warn: nodeRegistration.name "CP-1" is used as "cp-1": node names are lower case`
	cfg := []string{"--config", "DIR/upper.yaml", "--cert-dir", "DIR/pki"}
	node := append(append([]string{}, cfg...), "--kubeconfig-dir", "DIR/kube", "--audit-log", "DIR/state/audit.log")
	write := append(append([]string{}, node...), "--backup-dir", "DIR/backups")
	cases := [][]string{
		append([]string{"init"}, node...),
		append([]string{"init", "--dry-run"}, node...),
		append([]string{"init", "phase", "certs", "apiserver"}, node...),
		append([]string{"init", "phase", "kubeconfig", "admin", "--dry-run"}, node...),
		append([]string{"renew", "certs", "--force"}, write...),
		append([]string{"renew", "certs", "--force", "--dry-run"}, write...),
		append([]string{"ca", "renew", "ca"}, write...),
		append([]string{"ca", "renew", "ca", "--dry-run"}, write...),
		append([]string{"ca", "rotate", "prepare", "--ca", "front-proxy-ca"}, write...),
		append([]string{"ca", "rotate", "prepare", "--ca", "front-proxy-ca", "--dry-run"}, write...),
		append([]string{"sa", "rotate", "prepare"}, write...),
		append([]string{"sa", "rotate", "prepare", "--dry-run"}, write...),
		append([]string{"encryption", "rotate", "prepare"}, write...),
		append([]string{"encryption", "rotate", "prepare", "--dry-run"}, write...),
		append([]string{"sa", "status"}, cfg...),
		append([]string{"encryption", "status"}, cfg...),
		append([]string{"certs", "check-expiration", "--kubeconfig-dir", "DIR/kube"}, cfg...),
		append([]string{"certs", "export", "--out", "DIR/out.bundle", "--key-file", "DIR/bundle.key"}, cfg...),
	}
	for _, args := range cases {
		t.Run(strings.ReplaceAll(strings.Join(args[:slices.Index(args, "--config")], " "), "DIR", "_"), func(t *testing.T) {
			for _, quiet := range []bool{false, true} {
				n := outputNode(t, true)
				writeFile(t, filepath.Join(n.dir, "upper.yaml"), []byte(strings.Replace(initTestConfig, "name: cp-1", "name: CP-1", 1)))
				a := args
				if quiet {
					a = append(append([]string{}, args...), "-q")
				}
				code, _, stderr := n.exec(a...)
				if code != 0 {
					t.Fatalf("quiet %v: exit %d\n%s", quiet, code, stderr)
				}
				got := strings.Count(stderr, notice+"\n")
				switch {
				case quiet && stderr != "":
					t.Errorf("-q: stderr is not empty:\n%s", stderr)
				case !quiet && got != 1:
					t.Errorf("the notice is said %d times, want once:\n%s", got, stderr)
				}
			}
		})
	}
}

// TestDryRunTextSaysWhatItWouldDo: the text form of every dry run names, with "would", the backups it would
// take (in the run's backup directory), the audit log it would append to and, for renew, the --on-renew
// command; the JSON form carries the same in backups/backupDir/auditLog/onRenew (pinned by the goldens).
func TestDryRunTextSaysWhatItWouldDo(t *testing.T) {
	write := []string{"--cert-dir", "DIR/pki", "--kubeconfig-dir", "DIR/kube", "--audit-log", "DIR/state/audit.log", "--backup-dir", "DIR/backups", "--dry-run"}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"init", "--config", "DIR/kubeadm.yaml"}, []string{"would append its audit lines to DIR/state/audit.log"}},
		{[]string{"renew", "certs", "--force", "--on-renew", "systemctl restart kubelet"}, []string{"replaced files would be backed up in DIR/backups/2", "would run --on-renew: systemctl restart kubelet", "would append its audit lines to DIR/state/audit.log"}},
		{[]string{"ca", "renew", "ca"}, []string{"would back up to DIR/backups/key-rotations/2", "would append its audit lines to DIR/state/audit.log"}},
		{[]string{"ca", "rotate", "prepare", "--ca", "ca"}, []string{"would write DIR/pki/ca.key.next", "would back up to DIR/backups/key-rotations/2", "would append its audit lines to DIR/state/audit.log", "stage: prepared"}},
		{[]string{"sa", "rotate", "prepare"}, []string{"would write DIR/pki/sa.key.next", "would back up to DIR/backups/key-rotations/2", "would append its audit lines to DIR/state/audit.log", "stage: prepared"}},
		{[]string{"encryption", "rotate", "prepare"}, []string{"would back up to DIR/backups/key-rotations/2", "would append its audit lines to DIR/state/audit.log", "stage: prepared"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(strings.Join(tc.args, " "), "DIR", "_"), func(t *testing.T) {
			n := outputNode(t, true)
			args := append(append([]string{}, tc.args...), write...)
			if tc.args[0] == "init" {
				args = slices.DeleteFunc(args, func(a string) bool { return a == "--backup-dir" || a == "DIR/backups" })
			}
			code, stdout, stderr := n.exec(args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, strings.ReplaceAll(w, "DIR", n.dir)) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if _, err := os.Stat(filepath.Join(n.dir, "backups")); err == nil {
				t.Errorf("the dry run made the backup directory")
			}
		})
	}
}

// TestUploadCertsDryRunSendsNothing: "init phase upload-certs --dry-run" is honoured (it was once accepted and ignored): with
// a kubeconfig whose server nothing listens on (127.0.0.1:1), the dry run succeeds without a request and
// says what it would store; the real run fails to connect.
func TestUploadCertsDryRunSendsNothing(t *testing.T) {
	n := outputNode(t, true)
	data, err := os.ReadFile(filepath.Join(n.dir, "kube", "admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	kc := regexp.MustCompile(`server: \S+`).ReplaceAll(data, []byte("server: https://127.0.0.1:1"))
	writeFile(t, filepath.Join(n.dir, "nowhere.conf"), kc)
	args := []string{"init", "phase", "upload-certs", "--cert-dir", "DIR/pki", "--kubeconfig", "DIR/nowhere.conf"}
	code, stdout, stderr := n.exec(append(args, "--dry-run")...)
	if code != 0 || !strings.HasPrefix(stdout, "dry run: would store kube-system/kubeadm-certs (") || strings.Contains(stdout, "certificate key") {
		t.Errorf("--dry-run: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if code, _, stderr := n.exec(args...); code == 0 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("without --dry-run: exit %d, want a failure to reach 127.0.0.1:1\n%s", code, stderr)
	}
}
