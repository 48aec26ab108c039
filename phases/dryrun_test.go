package phases_test

// --dry-run shows everything the run would do (issue 15): for every command that has it, the dry run and
// then the real run are made on the same node at the same clock, and what the dry run predicted (files,
// backups and their directory, pruned backups, --on-renew, the audit log, the stage reached) must be what the
// real run did; the dry run itself must leave the node's whole directory, the audit log and the backups
// included, byte for byte as it was.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// prediction is what a run reports it does (or, dry, would do), in the fields every command shares.
type prediction struct {
	Files, Removes, Backups, Pruned []string
	BackupDir, AuditLog, OnRenew    string
	Stage, Next                     string
}

// dryRunCase runs one command on n at now, dry or not, and returns what its result says.
type dryRunCase struct {
	name string
	// before brings the node to the state the command needs (after init).
	before []string
	run    func(n *node, now time.Time, dry bool) (prediction, error)
}

// bundleSecret seals the bundle of the "certs import" case.
var bundleSecret = certshare.BundleSecret{Key: bytes.Repeat([]byte{7}, 32)}

// sharedBundle exports n's shared files to <dir>/shared.bundle, then removes sa.key and sa.pub, so that
// importing the bundle writes those two; once (a bundle in place is left as it is).
func sharedBundle(n *node) error {
	out := filepath.Join(n.Dir, "shared.bundle")
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	src := phases.ConfigSource{Flags: config.Overrides{CertDir: n.CertDir}, Hostname: func() (string, error) { return "cp-1", nil }}
	if _, err := phases.RunExport(phases.ExportOptions{Config: src, Out: out, Secret: bundleSecret, Rand: pkitest.Rand(3)}); err != nil {
		return err
	}
	for _, f := range []string{"sa.key", "sa.pub"} {
		if err := os.Remove(filepath.Join(n.CertDir, f)); err != nil {
			return err
		}
	}
	return nil
}

func dryRunCases() []dryRunCase {
	ctx := context.Background()
	src := func(n *node) phases.ConfigSource {
		return phases.ConfigSource{Flags: config.Overrides{CertDir: n.CertDir}, Hostname: func() (string, error) { return "cp-1", nil }}
	}
	rot := func(n *node, now time.Time, dry bool) phases.RotateOptions {
		return phases.RotateOptions{KubeconfigDir: n.KubeDir, AuditLog: n.AuditLog, BackupDir: n.BackupDir, LockTimeout: time.Minute, DryRun: dry, Now: now}
	}
	caRotate := func(step string) func(n *node, now time.Time, dry bool) (prediction, error) {
		return func(n *node, now time.Time, dry bool) (prediction, error) {
			res, err := phases.CARotate(ctx, step, phases.CARotateOptions{RotateOptions: rot(n, now, dry), Config: src(n), Name: "ca", Rand: pkitest.Rand(7), Yes: true})
			if err != nil {
				return prediction{}, err
			}
			return prediction{Files: res.Files, Removes: res.Removes, Backups: res.Backups, BackupDir: res.BackupDir, AuditLog: res.AuditLog, Stage: string(res.Stage), Next: res.Next}, nil
		}
	}
	saRotate := func(step string) func(n *node, now time.Time, dry bool) (prediction, error) {
		return func(n *node, now time.Time, dry bool) (prediction, error) {
			res, err := phases.SARotate(ctx, step, phases.SARotateOptions{RotateOptions: rot(n, now, dry), Config: src(n), Keys: pkitest.Keys(), Yes: true})
			if err != nil {
				return prediction{}, err
			}
			return prediction{Files: res.Files, Removes: res.Removes, Backups: res.Backups, BackupDir: res.BackupDir, AuditLog: res.AuditLog, Stage: string(res.State.Stage), Next: res.State.Next}, nil
		}
	}
	encRotate := func(step string) func(n *node, now time.Time, dry bool) (prediction, error) {
		return func(n *node, now time.Time, dry bool) (prediction, error) {
			res, err := phases.EncryptionRotate(ctx, step, phases.EncryptionRotateOptions{RotateOptions: rot(n, now, dry), Config: src(n), Rand: pkitest.Rand(9), Yes: true, Unsafe: true})
			if err != nil {
				return prediction{}, err
			}
			return prediction{Files: []string{res.File}, Backups: res.Backups, BackupDir: res.BackupDir, AuditLog: res.AuditLog, Stage: string(res.Stage), Next: res.Next}, nil
		}
	}
	return []dryRunCase{
		{"init", nil, func(n *node, now time.Time, dry bool) (prediction, error) {
			s := src(n)
			s.File = n.Config
			res, err := phases.Init(ctx, &phases.Runner{Phases: phases.InitPhases()}, phases.Selection{}, phases.InitOptions{
				Config: s, KubeconfigDir: n.KubeDir, Now: now, Rand: pkitest.Rand(3), AuditLog: n.AuditLog, LockTimeout: time.Minute, DryRun: dry})
			if err != nil {
				return prediction{}, err
			}
			p := prediction{AuditLog: res.AuditLog, Next: res.NextCommand}
			for _, f := range res.Files {
				if f.Action == phases.ActionCreated {
					p.Files = append(p.Files, f.Path)
				}
			}
			return p, nil
		}},
		{"renew certs", []string{"old backups"}, func(n *node, now time.Time, dry bool) (prediction, error) {
			res, err := phases.RenewCerts(ctx, phases.RenewCertsOptions{
				RenewOptions: phases.RenewOptions{KubeconfigDir: n.KubeDir, Now: now, Force: true, RotateKeys: true, Keys: pkitest.Keys(), Rand: pkitest.Rand(5), KeepBackups: 2, DryRun: dry},
				Config:       src(n), AuditLog: n.AuditLog, BackupDir: n.BackupDir, LockTimeout: time.Minute,
				OnRenew: "true", HookOutput: &bytes.Buffer{}})
			if err != nil {
				return prediction{}, err
			}
			p := prediction{BackupDir: res.BackupDir, Pruned: res.PrunedBackups, AuditLog: res.AuditLog, OnRenew: res.OnRenew}
			for _, it := range res.Certificates {
				if it.Action == phases.RenewRenewed || it.Action == phases.RenewWouldRenew {
					p.Files = append(p.Files, it.Path)
				}
				p.Backups = append(p.Backups, it.Backups...)
			}
			return p, nil
		}},
		{"ca renew", nil, func(n *node, now time.Time, dry bool) (prediction, error) {
			res, err := phases.CARenew(ctx, []string{"all"}, rot(n, now, dry), src(n), pkitest.Rand(11))
			if err != nil {
				return prediction{}, err
			}
			p := prediction{Backups: res.Backups, BackupDir: res.BackupDir, AuditLog: res.AuditLog, Next: res.Next}
			for _, c := range res.CAs {
				p.Files = append(p.Files, c.Path)
				p.Files = append(p.Files, c.Embedding...)
			}
			return p, nil
		}},
		{"ca rotate prepare", nil, caRotate("prepare")},
		{"ca rotate promote", []string{"ca rotate prepare"}, caRotate("promote")},
		{"ca rotate prune", []string{"ca rotate prepare", "ca rotate promote"}, caRotate("prune")},
		{"sa rotate prepare", nil, saRotate("prepare")},
		{"sa rotate promote", []string{"sa rotate prepare"}, saRotate("promote")},
		{"sa rotate prune", []string{"sa rotate prepare", "sa rotate promote"}, saRotate("prune")},
		{"encryption rotate prepare", nil, encRotate("prepare")},
		{"encryption rotate promote", []string{"encryption rotate prepare"}, encRotate("promote")},
		{"encryption rotate prune", []string{"encryption rotate prepare", "encryption rotate promote"}, encRotate("prune")},
		{"certs import", []string{"shared bundle"}, func(n *node, now time.Time, dry bool) (prediction, error) {
			if err := sharedBundle(n); err != nil { // for callers that skip the before steps
				return prediction{}, err
			}
			res, err := phases.InstallShared(ctx, phases.InstallSharedOptions{Config: src(n), RotateOptions: rot(n, now, dry),
				Bundle: filepath.Join(n.Dir, "shared.bundle"), Secret: bundleSecret})
			if err != nil {
				return prediction{}, err
			}
			if len(res.Written) != 2 {
				return prediction{}, fmt.Errorf("import writes %v, want sa.key and sa.pub", res.Written)
			}
			return prediction{Files: res.Written, AuditLog: res.AuditLog, Next: res.Next}, nil
		}},
	}
}

// tree is every entry under root with its mode and, for files and links, content: what a dry run must leave
// as it was. Directory times are left out: a dry run checks that --backup-dir is writable as the real run
// does (pki.CheckWritableDir's probe file, removed at once), which touches the directory's time and nothing
// else.
func tree(t *testing.T, root string) pkitest.Snapshot {
	t.Helper()
	s := pkitest.MustSnapshot(t, root)
	for p, st := range s {
		if st.Mode.IsDir() {
			st.ModTime = time.Time{}
			s[p] = st
		}
	}
	return s
}

func TestDryRunPredictsTheRun(t *testing.T) {
	t0 := pkitest.Now
	for _, tc := range dryRunCases() {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			if tc.name != "init" {
				n.mustRun(t0, "init")
			}
			now := t0.Add(time.Hour)
			for i, b := range tc.before {
				now = now.Add(time.Hour)
				if b == "shared bundle" {
					if err := sharedBundle(n); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if b == "old backups" {
					// Three earlier runs' backups, of which --keep-backups 2 keeps one beside this run's.
					for _, d := range []string{"20200101T000000Z", "20200102T000000Z", "20200102T000000Z-1"} {
						mkdirAll(t, filepath.Join(n.BackupDir, d))
						writeFile(t, filepath.Join(n.BackupDir, d, "x.crt"), []byte("old"))
					}
					continue
				}
				for _, c := range dryRunCases() {
					if c.name == b {
						if _, err := c.run(n, now.Add(time.Duration(i)*time.Minute), false); err != nil {
							t.Fatalf("%s: %v", b, err)
						}
					}
				}
			}
			now = now.Add(time.Hour)
			before := tree(t, n.Dir)
			dry, err := tc.run(n, now, true)
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			if d := pkitest.Diff(before, tree(t, n.Dir)); len(d) > 0 {
				t.Fatalf("the dry run changed the node's directory (the audit log and backups included):\n%v", d)
			}
			auditBefore, _ := os.ReadFile(n.AuditLog)
			real, err := tc.run(n, now, false)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if !reflect.DeepEqual(dry, real) {
				t.Errorf("the dry run predicted\n %+v\nthe run did\n %+v", dry, real)
			}
			checkRunDid(t, n, real, before, auditBefore)
		})
	}
}

// checkRunDid checks that the real run did what its result (equal to the dry run's) says: every file it
// lists changed (or appeared), every backup is a copy of the file as it was, the pruned directories are gone
// and the others kept, the audit log grew.
func checkRunDid(t *testing.T, n *node, p prediction, before pkitest.Snapshot, auditBefore []byte) {
	t.Helper()
	after := tree(t, n.Dir)
	rel := func(p string) string { r, _ := filepath.Rel(n.Dir, p); return filepath.ToSlash(r) }
	for _, f := range p.Files {
		if b, a := before[rel(f)], after[rel(f)]; a.SHA256 == "" || a.SHA256 == b.SHA256 {
			t.Errorf("%s: listed as written, but not changed", f)
		}
	}
	for _, f := range p.Removes {
		if _, ok := after[rel(f)]; ok {
			t.Errorf("%s: listed as removed, but still there", f)
		}
	}
	if len(p.Backups) > 0 && p.BackupDir == "" {
		t.Errorf("backups %v without a backup directory", p.Backups)
	}
	for _, b := range p.Backups {
		orig, ok := backupOf(b, p.BackupDir)
		if !ok {
			t.Errorf("backup %s is not in the backup directory %s", b, p.BackupDir)
			continue
		}
		if got, want := after[rel(b)].SHA256, before[rel(orig)].SHA256; got == "" || got != want {
			t.Errorf("backup %s is not a copy of %s as it was", b, orig)
		}
	}
	for _, d := range p.Pruned {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s: listed as pruned, but still there", d)
		}
	}
	if p.AuditLog != n.AuditLog {
		t.Errorf("audit log %q, want %q", p.AuditLog, n.AuditLog)
	}
	if a, _ := os.ReadFile(n.AuditLog); len(a) <= len(auditBefore) || !bytes.HasPrefix(a, auditBefore) {
		t.Errorf("the run did not append to its audit log %s", n.AuditLog)
	}
}

// backupOf returns the file a backup copy under dir is a copy of (copies keep the absolute path).
func backupOf(copyPath, dir string) (string, bool) {
	r, err := filepath.Rel(dir, copyPath)
	if dir == "" || err != nil || strings.HasPrefix(r, "..") {
		return "", false
	}
	return string(filepath.Separator) + r, true
}

// TestDryRunRenewPendingHook: with nothing due, a dry renewal still names the --on-renew command it would
// run for an earlier run's renewals whose hook did not succeed, and writes nothing.
func TestDryRunRenewPendingHook(t *testing.T) {
	n := newNode(t)
	n.mustRun(pkitest.Now, "init")
	marker := filepath.Join(n.BackupDir, phases.HookPendingName)
	mkdirAll(t, n.BackupDir)
	writeFile(t, marker, []byte(`{"renewed":["apiserver"]}`))
	before := tree(t, n.Dir)
	var log bytes.Buffer
	res, err := phases.RenewCerts(context.Background(), phases.RenewCertsOptions{
		RenewOptions: phases.RenewOptions{KubeconfigDir: n.KubeDir, Now: pkitest.Now.Add(time.Hour), KeepBackups: 1, DryRun: true, Log: slog.New(slog.NewTextHandler(&log, nil))},
		Config:       phases.ConfigSource{Flags: config.Overrides{CertDir: n.CertDir}}, AuditLog: n.AuditLog, BackupDir: n.BackupDir, LockTimeout: time.Minute,
		OnRenew: "systemctl restart kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	if res.OnRenew != "systemctl restart kubelet" {
		t.Errorf("nothing is due, but an earlier run's hook is pending: onRenew %q, want the command", res.OnRenew)
	}
	if d := pkitest.Diff(before, tree(t, n.Dir)); len(d) > 0 {
		t.Errorf("the dry run changed the directory: %v", d)
	}
	if got := pki.AbsPath(n.AuditLog); res.AuditLog != got {
		t.Errorf("auditLog %q, want %q", res.AuditLog, got)
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// TestDryRunFailsWhereTheRunWould: an --audit-log or --backup-dir the real run could not use fails the dry
// run too (the real run fails at once, due or not), and the dry run still writes nothing.
func TestDryRunFailsWhereTheRunWould(t *testing.T) {
	for _, tc := range []struct{ name, flag, want string }{
		{"audit log under a file", "audit", "--audit-log"}, {"audit log a directory", "auditdir", "--audit-log"}, {"backup dir under a file", "backup", "--backup-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			n.mustRun(pkitest.Now, "init")
			blocker := filepath.Join(n.Dir, "blocker")
			writeFile(t, blocker, []byte("a file"))
			switch tc.flag {
			case "audit":
				n.AuditLog = filepath.Join(blocker, "audit.log")
			case "auditdir":
				n.AuditLog = filepath.Join(n.Dir, "logdir")
				mkdirAll(t, n.AuditLog)
			case "backup":
				n.BackupDir = filepath.Join(blocker, "backups")
			}
			for _, c := range dryRunCases() {
				if (c.name == "init" || c.name == "certs import") && tc.flag == "backup" {
					continue // they back nothing up: init writes only what is missing, import refuses a different file
				}
				t.Run(c.name, func(t *testing.T) {
					if c.name == "certs import" {
						if err := sharedBundle(n); err != nil {
							t.Fatal(err)
						}
					}
					before := tree(t, n.Dir)
					for _, dry := range []bool{true, false} {
						// The state is opened before anything is read: the error is the flag's, whatever the stage.
						if _, err := c.run(n, pkitest.Now.Add(time.Hour), dry); err == nil || !strings.Contains(err.Error(), tc.want) {
							t.Errorf("dry run %v: %v, want the %s error of an unusable %s", dry, err, tc.want, tc.name)
						}
					}
					if d := pkitest.Diff(before, tree(t, n.Dir)); len(d) > 0 {
						t.Errorf("the failed runs changed the directory: %v", d)
					}
				})
				if t.Failed() {
					return
				}
			}
		})
	}
}
