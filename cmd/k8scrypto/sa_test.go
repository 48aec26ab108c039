package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

func (c *encCase) saStatus() phases.SAStatusResult {
	c.t.Helper()
	var st phases.SAStatusResult
	out := c.mustExec("sa", "status", "--cert-dir", c.certDir, "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("%v\n%s", err, out)
	}
	return st
}

func (c *encCase) saFiles() map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, n := range []string{sakeys.KeyName, sakeys.PubName, sakeys.NextName} {
		if data, err := os.ReadFile(filepath.Join(c.certDir, n)); err == nil {
			out[n] = string(data)
		}
	}
	return out
}

func pubKeysIn(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pki.ParsePublicKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for _, k := range keys {
		fp, _ := pki.PublicKeyFingerprint(k)
		fps = append(fps, fp)
	}
	return fps
}

func TestSARotationThroughTheCommands(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("sa")
	st := c.saStatus()
	if st.Kind != "ServiceAccountKeyStatus" || st.Stage != sakeys.StageSteady || st.Key.Algorithm != "RSA-2048" {
		t.Fatalf("status = %+v", st.State)
	}
	oldFP := st.Key.SHA256
	before := c.saFiles()

	for _, args := range [][]string{{"promote"}, {"prune", "--yes"}} {
		step := args[0]
		code, _, stderr := c.rotate("sa", step, args[1:]...)
		if code != 3 || !strings.Contains(stderr, "stage steady") {
			t.Fatalf("%s when steady: exit %d, %s", step, code, stderr)
		}
	}
	code, out, stderr := c.rotate("sa", "prepare", "-o", "json")
	if code != 0 {
		t.Fatalf("prepare: exit %d, %s", code, stderr)
	}
	var res phases.SARotateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.State.Stage != sakeys.StagePrepared || res.Added == nil || res.Added.Algorithm != "RSA-2048" || len(res.Backups) != 2 {
		t.Fatalf("prepare result = %+v", res)
	}
	newFP := res.Added.SHA256
	for _, b := range res.Backups {
		if want := before[filepath.Base(b)]; string(c.read(b)) != want {
			t.Errorf("backup %s differs from the file before prepare", b)
		}
	}
	if info, err := os.Stat(filepath.Join(c.certDir, sakeys.NextName)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("sa.key.next: %v %v", err, info)
	}
	if got := pubKeysIn(t, filepath.Join(c.certDir, sakeys.PubName)); strings.Join(got, ",") != oldFP+","+newFP {
		t.Fatalf("sa.pub after prepare = %v, want old then new", got)
	}
	if c.saFiles()[sakeys.KeyName] != before[sakeys.KeyName] {
		t.Fatal("prepare changed the signing key")
	}

	c.mustExec("sa", "rotate", "promote", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	st = c.saStatus()
	if st.Stage != sakeys.StagePromoted || st.Key.SHA256 != newFP || st.New != nil || len(st.Pub) != 2 {
		t.Fatalf("after promote: %+v", st.State)
	}
	code, _, stderr = c.rotate("sa", "promote")
	if code != 3 || !strings.Contains(stderr, "stage promoted") {
		t.Fatalf("promote twice: exit %d, %s", code, stderr)
	}

	promoted := c.saFiles()
	code, _, stderr = c.rotate("sa", "prune")
	if code != 2 || !strings.Contains(stderr, oldFP[:16]) || !strings.Contains(stderr, "--yes") {
		t.Fatalf("prune without --yes: exit %d, %s", code, stderr)
	}
	if got := c.saFiles(); got[sakeys.PubName] != promoted[sakeys.PubName] {
		t.Fatal("prune without --yes changed sa.pub")
	}
	c.mustExec("sa", "rotate", "prune", "--yes", "--cert-dir", c.certDir, "--audit-log", c.audit, "--backup-dir", c.backups)
	if got := pubKeysIn(t, filepath.Join(c.certDir, sakeys.PubName)); strings.Join(got, ",") != newFP {
		t.Fatalf("sa.pub after prune = %v, want only %s", got, newFP)
	}
	if st := c.saStatus(); st.Stage != sakeys.StageSteady {
		t.Fatalf("after prune: %+v", st.State)
	}

	audit := string(c.read(c.audit))
	for _, want := range []string{
		`"operation":"rotate","file":"` + filepath.Join(c.certDir, sakeys.NextName) + `","sha256":"` + newFP + `"`,
		`"operation":"rotate","file":"` + filepath.Join(c.certDir, sakeys.KeyName) + `","sha256":"` + newFP + `"`,
		`"operation":"remove","file":"` + filepath.Join(c.certDir, sakeys.PubName) + `","sha256":"` + oldFP + `"`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(audit, "PRIVATE KEY") {
		t.Fatal("the audit log holds a key")
	}
}

func TestSARotateKeyAlgorithm(t *testing.T) {
	c := newEncCase(t)
	c.initPhase("sa", "--encryption-algorithm", "ECDSA-P256")
	code, out, stderr := c.rotate("sa", "prepare", "-o", "json")
	if code != 0 {
		t.Fatal(stderr)
	}
	var res phases.SARotateResult
	json.Unmarshal([]byte(out), &res)
	if res.Added.Algorithm != "ECDSA-P256" {
		t.Errorf("without an explicit algorithm the new key is %s, want the current key's ECDSA-P256", res.Added.Algorithm)
	}

	c = newEncCase(t)
	c.initPhase("sa")
	code, out, stderr = c.rotate("sa", "prepare", "-o", "json", "--encryption-algorithm", "ECDSA-P256")
	if code != 0 {
		t.Fatal(stderr)
	}
	json.Unmarshal([]byte(out), &res)
	if res.Added.Algorithm != "ECDSA-P256" || res.State.Key.Algorithm != "RSA-2048" {
		t.Errorf("--encryption-algorithm ECDSA-P256: new %s, signing %s", res.Added.Algorithm, res.State.Key.Algorithm)
	}
}

func TestSARotateRefusesMissingAndHandEditedFiles(t *testing.T) {
	c := newEncCase(t)
	os.MkdirAll(c.certDir, 0o755)
	code, _, stderr := c.rotate("sa", "prepare")
	if code != 1 || !strings.Contains(stderr, "init phase sa") {
		t.Fatalf("no sa.key: exit %d, %s", code, stderr)
	}
	c.initPhase("sa")
	// Replace sa.pub by another key's public key.
	other := newEncCase(t)
	other.initPhase("sa", "--encryption-algorithm", "ECDSA-P256")
	os.WriteFile(filepath.Join(c.certDir, sakeys.PubName), other.read(filepath.Join(other.certDir, sakeys.PubName)), 0o600)
	before := c.saFiles()
	code, _, stderr = c.rotate("sa", "prepare")
	if code != 1 || !strings.Contains(stderr, "does not contain the public key") {
		t.Fatalf("hand-edited sa.pub: exit %d, %s", code, stderr)
	}
	if after := c.saFiles(); len(after) != len(before) || after[sakeys.PubName] != before[sakeys.PubName] {
		t.Fatal("a refused prepare changed the files")
	}
	if _, err := os.Stat(c.backups); err == nil {
		t.Fatal("a refused prepare made a backup")
	}
	if bytes.Contains(c.read(c.audit), []byte(`"operation":"rotate"`)) {
		t.Fatal("a refused prepare was audited as a rotation")
	}
}
