package phases_test

// Crash safety of every writing workflow, against phases without argv: each file-system step of init, renew
// certs, encryption rotate prepare|promote|prune and sa rotate prepare|promote|prune is failed in turn (an
// injected error, and an "abort" that stops the run dead at that step, as a SIGKILL would), and after each
// the node is checked: no temp file, every certificate matches its key and chains to its CA, no CA key,
// sa.key or encryption key that existed before is lost or changed unless the command exists to change it,
// and a re-run of the same command completes. Every one of them runs through the one envelope
// (phases.Session), so this is the envelope's test. The real-process SIGKILL test is in cmd/k8scrypto
// (crash_test.go): only a real process shows what the kernel leaves behind.

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/phases/phasestest"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// node is a control-plane node's files (pkitest.Node) with the workflows run against them.
type node struct {
	*pkitest.Node
	t *testing.T
}

func newNode(t *testing.T) *node {
	t.Helper()
	return &node{Node: pkitest.NewNode(t, pkitest.KubeadmConfig("encryptionAlgorithm: ECDSA-P256\n")), t: t}
}

// exec runs the workflow a command line names (init; renew certs --force; encryption rotate STEP [--yes]
// [--unsafe-skip-etcd-check]; sa rotate STEP [--yes]) with the node's paths, a fixed clock, serials and
// encryption keys from a seeded reader and fresh keys, as the command layer would call it. It returns the
// exit status the command layer would give the error, and what was logged with the error last.
func (n *node) exec(now time.Time, args []string) (int, string) {
	var log bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&log, nil))
	ctx := context.Background()
	src := phases.ConfigSource{Flags: config.Overrides{CertDir: n.CertDir}, Hostname: func() (string, error) { return "cp-1", nil }}
	rnd := pkitest.Rand(uint64(now.UnixNano()))
	rot := phases.RotateOptions{KubeconfigDir: n.KubeDir, AuditLog: n.AuditLog, BackupDir: n.BackupDir, LockTimeout: 2 * time.Minute, Now: now.UTC(), Log: lg}
	yes, unsafe := slices.Contains(args, "--yes"), slices.Contains(args, "--unsafe-skip-etcd-check")
	var err error
	switch cmd := strings.Join(args[:min(2, len(args))], " "); cmd {
	case "init":
		src.File = n.Config
		_, err = phases.Init(ctx, &phases.Runner{Phases: phases.InitPhases()}, phases.Selection{}, phases.InitOptions{
			Config: src, KubeconfigDir: n.KubeDir, Now: now.UTC(), Rand: rnd, AuditLog: n.AuditLog, LockTimeout: 2 * time.Minute, Log: lg})
	case "renew certs":
		_, err = phases.RenewCerts(ctx, phases.RenewCertsOptions{
			RenewOptions: phases.RenewOptions{KubeconfigDir: n.KubeDir, Now: now.UTC(), Force: slices.Contains(args, "--force"), RotateKeys: true, Rand: rnd, KeepBackups: 10, Log: lg},
			Config:       src, AuditLog: n.AuditLog, BackupDir: n.BackupDir, LockTimeout: 2 * time.Minute})
	case "encryption rotate":
		_, err = phases.EncryptionRotate(ctx, args[2], phases.EncryptionRotateOptions{RotateOptions: rot, Config: src, Rand: rnd, Yes: yes, Unsafe: unsafe})
	case "sa rotate":
		_, err = phases.SARotate(ctx, args[2], phases.SARotateOptions{RotateOptions: rot, Config: src, Yes: yes})
	default:
		n.t.Fatalf("exec: no workflow for %q", cmd)
	}
	if err == nil {
		return 0, log.String()
	}
	log.WriteString("error: " + err.Error() + "\n")
	var ce interface{ ExitCode() int }
	switch pu := new(phases.UsageError); {
	case errors.As(err, &pu):
		return 2, log.String()
	case errors.As(err, &ce):
		return ce.ExitCode(), log.String()
	}
	return 1, log.String()
}

func (n *node) run(now time.Time, args ...string) (int, string, string) {
	n.t.Helper()
	code, stderr := n.exec(now, args)
	return code, "", stderr
}

// mustRun runs a workflow that has to succeed.
func (n *node) mustRun(now time.Time, args ...string) {
	n.t.Helper()
	if code, stderr := n.exec(now, args); code != 0 {
		n.t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
}

func (n *node) checkConsistent(label string, now time.Time, complete bool) {
	n.t.Helper()
	phasestest.CheckConsistent(n.t, label, n.Node, now, complete)
}

func (n *node) checkProtected(label string, before pkitest.Snapshot, mayChange []string) {
	n.t.Helper()
	phasestest.CheckProtected(n.t, label, n.Node, before, mayChange)
}

// errInjected is what the fault hook returns; the command must report it.
var errInjected = errors.New("injected fault")

// runFault runs a command with the fault hook failing its nth file-system step: with err, or, when abort is
// set, by stopping the run right there (runtime.Goexit: deferred calls run, as the kernel closes files and
// releases the lock of a killed process, but nothing else; temp files and journals stay). It returns the
// exit code (-1 after an abort) and the failed step's operation and path.
func (n *node) runFault(now time.Time, nth int, err error, abort bool, args ...string) (code int, stderr string, op string) {
	n.t.Helper()
	var stderr_ string
	calls := 0
	restore := pki.SetFaultHook(func(o pki.Op, path string) error {
		if calls++; calls == nth {
			op = fmt.Sprintf("%s %s", o, strings.TrimPrefix(path, n.Dir+"/"))
			if abort {
				runtime.Goexit()
			}
			return err
		}
		return nil
	})
	defer restore()
	done := make(chan int, 1)
	go func() {
		aborted := true
		defer func() {
			if aborted {
				done <- -1
			}
		}()
		c, out := n.exec(now, args)
		stderr_ = out
		aborted = false
		done <- c
	}()
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		n.t.Fatalf("step %d (%s): the run neither finished nor stopped (was the hook called from another goroutine?)", nth, op)
	}
	return code, stderr_, op
}

// countSteps counts the file-system steps of an uninterrupted run, which must succeed.
func (n *node) countSteps(now time.Time, args ...string) int {
	n.t.Helper()
	steps := 0
	restore := pki.SetFaultHook(func(pki.Op, string) error { steps++; return nil })
	code, _, stderr := n.run(now, args...)
	restore()
	if code != 0 {
		n.t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return steps
}

// crashCase is one command walked through every failure.
type crashCase struct {
	name string
	// setup brings a new node to the command's starting state.
	setup func(n *node)
	args  []string
	// mayChange lists the protected files the command exists to change.
	mayChange []string
	// effect checks the command's outcome once it has completed.
	effect func(n *node, before pkitest.Snapshot)
	// stage commands refuse (exit 3) to run again once done: after a crash that had reached the commit
	// point, the re-run finds the step complete.
	stage bool
	// journal: the command replaces several files in one journalled transaction.
	journal bool
	// afterAbort checks, right after an abort and before any recovery, the protected files the command
	// may change (checkProtected skips them): no key may be lost even while the change is half done.
	afterAbort func(n *node, label string)
}

// The commands run at these times: init, then each earlier stage an hour apart, the command a day later.
var (
	setupTime = pkitest.Now
	cmdTime   = pkitest.Now.Add(24 * time.Hour)
)

func initNode(n *node) { n.mustRun(setupTime, "init") }

func stages(steps ...[]string) func(n *node) {
	return func(n *node) {
		initNode(n)
		for i, s := range steps {
			n.mustRun(setupTime.Add(time.Duration(i+1)*time.Hour), s...)
		}
	}
}

func crashCases() []crashCase {
	encPrepare := []string{"encryption", "rotate", "prepare"}
	encPromote := []string{"encryption", "rotate", "promote"}
	saPrepare := []string{"sa", "rotate", "prepare"}
	saPromote := []string{"sa", "rotate", "promote"}
	encFile := "pki/" + encryption.FileName
	return []crashCase{
		{name: "init on an empty directory", journal: true, setup: func(*node) {}, args: []string{"init"}, effect: func(*node, pkitest.Snapshot) {}},
		{name: "init keeping CAs, sa and encryption keys", journal: true, setup: func(n *node) {
			initNode(n)
			for _, spec := range pki.Catalog() {
				if !spec.IsCA() {
					os.Remove(spec.CertPath(n.CertDir))
					os.Remove(spec.KeyPath(n.CertDir))
				}
			}
			for _, k := range pki.Kubeconfigs() {
				os.Remove(k.Path(n.KubeDir))
			}
		}, args: []string{"init"}, effect: func(*node, pkitest.Snapshot) {}},
		{name: "renew certs --force", journal: true, setup: initNode, args: []string{"renew", "certs", "--force"}, effect: func(n *node, before pkitest.Snapshot) {
			after := n.Snap()
			for _, spec := range pki.Catalog() {
				p := "pki/" + spec.BaseName + ".crt"
				if !spec.IsCA() && after[p].SHA256 == before[p].SHA256 {
					n.t.Errorf("%s was not renewed", p)
				}
			}
			for _, k := range pki.Kubeconfigs() {
				if p := "kube/" + k.FileName; k.Renewable && after[p].SHA256 == before[p].SHA256 {
					n.t.Errorf("%s was not renewed", p)
				}
			}
		}},
		{name: "encryption rotate prepare", setup: initNode, args: encPrepare, mayChange: []string{encFile}, stage: true,
			effect: encryptionEffect(encryption.StagePrepared, false), afterAbort: encryptionKeysKept(false)},
		{name: "encryption rotate promote", setup: stages(encPrepare), args: encPromote, mayChange: []string{encFile}, stage: true,
			effect: encryptionEffect(encryption.StagePromoted, false), afterAbort: encryptionKeysKept(false)},
		{name: "encryption rotate prune", setup: stages(encPrepare, encPromote), args: []string{"encryption", "rotate", "prune", "--yes", "--unsafe-skip-etcd-check"},
			mayChange: []string{encFile}, stage: true, effect: encryptionEffect(encryption.StageSteady, true), afterAbort: encryptionKeysKept(true)},
		{name: "sa rotate prepare", journal: true, setup: initNode, args: saPrepare, mayChange: []string{"pki/sa.pub", "pki/" + sakeys.NextName}, stage: true,
			effect: saEffect(sakeys.StagePrepared)},
		{name: "sa rotate promote", setup: stages(saPrepare), args: saPromote, mayChange: []string{"pki/sa.key", "pki/" + sakeys.NextName}, stage: true,
			effect: saEffect(sakeys.StagePromoted), afterAbort: saKeyValid},
		{name: "sa rotate prune", setup: stages(saPrepare, saPromote), args: []string{"sa", "rotate", "prune", "--yes"}, mayChange: []string{"pki/sa.pub"}, stage: true,
			effect: saEffect(sakeys.StageSteady)},
	}
}

// encryptionEffect: the file reached the stage, and no key of the file before is lost or changed; prune
// keeps the write key only.
func encryptionEffect(want encryption.Stage, prune bool) func(n *node, before pkitest.Snapshot) {
	return func(n *node, _ pkitest.Snapshot) {
		n.t.Helper()
		cfg := n.checkEncryptionKeys("", prune)
		if cfg == nil {
			return
		}
		if st := encryption.Describe(cfg); st.Stage != want {
			n.t.Errorf("encryption config in stage %s, want %s", st.Stage, want)
		}
	}
}

// encryptionKeysKept: right after an abort the encryption config on disk is valid (the old file or the new
// one, never a mix) and holds every key of the file before (prune: the write key).
func encryptionKeysKept(prune bool) func(n *node, label string) {
	return func(n *node, label string) {
		n.t.Helper()
		n.checkEncryptionKeys(label+", right after: ", prune)
	}
}

// checkEncryptionKeys loads the encryption config and fails for any key of the starting state's file that it
// lost or changed (prune: only the write key must stay). It returns the config, nil if it cannot be loaded.
func (n *node) checkEncryptionKeys(label string, prune bool) *encryption.Config {
	n.t.Helper()
	cfg, _, err := encryption.Load(phases.EncryptionConfigPath(n.CertDir))
	if err != nil {
		n.t.Errorf("%s%v", label, err)
		return nil
	}
	prev, err := encryption.Parse(n.SavedFile("pki/" + encryption.FileName))
	if err != nil {
		n.t.Error(err)
		return nil
	}
	have := encryptionSecrets(cfg)
	prevKeys := encryptionSecrets(prev)
	if prune {
		prevKeys = prevKeys[:1] // the write key
	}
	for _, k := range prevKeys {
		if !slices.Contains(have, k) {
			n.t.Errorf("%sencryption key %s was lost or changed", label, strings.SplitN(k, "=", 2)[0])
		}
	}
	return cfg
}

// saKeyValid: right after an abort of sa rotate promote, sa.key is a valid private key, either the old
// signing key or the staged one (never a third or a partial file), and sa.pub holds its public key, so the
// apiserver can still sign and verify tokens.
func saKeyValid(n *node, label string) {
	n.t.Helper()
	data, err := os.ReadFile(filepath.Join(n.CertDir, "sa.key"))
	if err != nil {
		n.t.Errorf("%s, right after: sa.key: %v", label, err)
		return
	}
	if !bytes.Equal(data, n.SavedFile("pki/sa.key")) && !bytes.Equal(data, n.SavedFile("pki/"+sakeys.NextName)) {
		n.t.Errorf("%s, right after: sa.key is neither the old signing key nor the staged one", label)
		return
	}
	key, err := pki.ParsePrivateKey(data)
	if err != nil {
		n.t.Errorf("%s, right after: sa.key: %v", label, err)
		return
	}
	pubData, err := os.ReadFile(filepath.Join(n.CertDir, "sa.pub"))
	if err != nil {
		n.t.Errorf("%s, right after: sa.pub: %v", label, err)
		return
	}
	pubs, err := pki.ParsePublicKeys(pubData)
	if err != nil {
		n.t.Errorf("%s, right after: sa.pub: %v", label, err)
		return
	}
	if !slices.ContainsFunc(pubs, func(p crypto.PublicKey) bool { return pki.PublicKeysEqual(p, key.Public()) }) {
		n.t.Errorf("%s, right after: sa.pub does not hold sa.key's public key", label)
	}
}

func encryptionSecrets(cfg *encryption.Config) []string {
	var out []string
	for _, rc := range cfg.Resources {
		for _, p := range rc.Providers {
			for _, k := range encryption.KeysOf(p) {
				out = append(out, k.Name+"="+k.Secret)
			}
		}
	}
	return out
}

// saEffect: the key pair reached the stage, and the signing key is the one the stage says: unchanged for
// prepare and prune, the staged key for promote.
func saEffect(want sakeys.Stage) func(n *node, before pkitest.Snapshot) {
	return func(n *node, before pkitest.Snapshot) {
		n.t.Helper()
		st, err := sakeys.Read(n.CertDir)
		if err != nil {
			n.t.Error(err)
			return
		}
		if st.Stage != want {
			n.t.Errorf("sa keys in stage %s, want %s", st.Stage, want)
		}
		signing := before["pki/sa.key"].SHA256
		if want == sakeys.StagePromoted {
			signing = before["pki/"+sakeys.NextName].SHA256
		}
		if got := n.Snap()["pki/sa.key"].SHA256; got != signing {
			n.t.Errorf("sa.key is not the key stage %s signs with", want)
		}
	}
}

// TestFaultAtEveryStep walks every writing command through an injected error at each of its file-system
// steps (create, write, fsync, rename, link, mkdir, directory fsync), then through an abort at each step.
// Error: the command fails naming the fault, the node's files are exactly as before (or, for bookkeeping after
// the commit point, the change is complete) and a re-run completes. Abort: right after, no protected file that
// existed is lost or changed, and those the command may change still hold every key; the re-run recovers (finishing or
// undoing the interrupted replacement) and completes, or, for a rotation stage that had reached its commit
// point, finds the stage done. After every re-run: no temp file anywhere, every key pair consistent, the
// command's effect in place, no protected file changed that the command does not exist to change.
func TestFaultAtEveryStep(t *testing.T) {
	for _, c := range crashCases() {
		t.Run(c.name, func(t *testing.T) { walkCrashCase(t, c) })
	}
}

func walkCrashCase(t *testing.T, c crashCase) {
	n := newNode(t)
	c.setup(n)
	saved := n.Save()
	n.Saved = saved
	before := n.Snap()
	steps := n.countSteps(cmdTime, c.args...)
	c.effect(n, before)
	n.checkConsistent("uninterrupted run", cmdTime, true)
	stride := 1
	if testing.Short() {
		stride = 5
	}
	kinds := map[string]int{}
	// What the re-runs after an abort found and repaired, from their warnings.
	recovered := map[string]int{}
	for _, abort := range []bool{false, true} {
		mode := map[bool]string{false: "error", true: "abort"}[abort]
		for i := 1; i <= steps; i += stride {
			n.Reset(saved)
			code, stderr, op := n.runFault(cmdTime, i, errInjected, abort, c.args...)
			label := fmt.Sprintf("%s at step %d/%d (%s)", mode, i, steps, op)
			kinds[mode+" "+strings.Fields(op)[0]]++
			committed := false
			switch {
			case abort:
				n.checkProtected(label+", right after", before, c.mayChange)
				if c.afterAbort != nil {
					c.afterAbort(n, label)
				}
			case code == 0:
				// Only a step after the transaction ended (removing the kept old files, syncing) can fail
				// without failing the command; the command's work is then complete.
				n.CheckBookkeeping(label)
				c.effect(n, before)
				n.checkConsistent(label, cmdTime, true)
				continue
			default:
				if !strings.Contains(stderr, errInjected.Error()) {
					t.Errorf("%s: exit %d without naming the fault: %s", label, code, stderr)
				}
				if len(pkitest.NodeDiff(before, n.Snap())) > 0 && afterCommit(op) {
					// A step after the change was committed failed (appending to the audit log, removing
					// the staged sa key): the command reports it, and the change itself is complete. The
					// audit lines that could not be appended stay in the intent file, for the next run.
					n.CheckBookkeeping(label, phases.AuditIntentName)
					committed = true
					kinds["error after the commit: "+op]++
					c.effect(n, before)
					n.checkConsistent(label, cmdTime, true)
				} else {
					n.CheckBookkeeping(label)
					n.CheckUnchanged(label, before)
					n.checkConsistent(label, cmdTime, false)
				}
			}
			// The re-run: recovery first, then the command.
			code, _, stderr = n.run(cmdTime, c.args...)
			switch {
			case code == 0:
			case c.stage && (abort || committed) && code == 3 && strings.Contains(stderr, "refused"):
				recovered["stage found done"]++ // the aborted run had committed
			default:
				t.Fatalf("%s: re-run: exit %d: %s", label, code, stderr)
			}
			for _, w := range []string{"completed an interrupted replacement", "undid a failed replacement", "removed a leftover temporary file"} {
				if strings.Contains(stderr, w) {
					recovered[w]++
				}
			}
			n.CheckBookkeeping(label + ", after the re-run")
			n.checkProtected(label+", after the re-run", before, c.mayChange)
			c.effect(n, before)
			n.checkConsistent(label+", after the re-run", cmdTime, true)
			if t.Failed() {
				return
			}
		}
	}
	// The full abort walk must have hit both sides of the commit point: temp files to discard before it, a
	// journalled replacement to complete after it (-short skips steps, and may miss either).
	if stride == 1 && recovered["removed a leftover temporary file"] == 0 {
		t.Error("no abort left a temp file for recovery to remove")
	}
	if stride == 1 && c.journal && recovered["completed an interrupted replacement"] == 0 {
		t.Error("no abort left a journalled replacement for recovery to complete")
	}
	t.Logf("%d steps; failed: %v; recovery: %v", steps, kinds, recovered)
}

// afterCommit reports whether a failed step ("<op> <path>") can be bookkeeping that follows the commit
// point: the audit log, or removing a file the committed change made obsolete and syncing its directory.
// Only there may an error leave the node changed (and then the change must be complete).
func afterCommit(op string) bool {
	kind, path, _ := strings.Cut(op, " ")
	return path == "audit.log" || kind == string(pki.OpRemove) || kind == string(pki.OpSyncDir)
}
