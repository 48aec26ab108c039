package encryption

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"

	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestRotationThroughApiserverTransformer walks every stage with the apiserver's own loader and
// transformers: what was written before a stage still decrypts after it, new writes use the key the stage
// says, and after prune only values written under the new key decrypt.
func TestRotationThroughApiserverTransformer(t *testing.T) {
	for _, provider := range []string{Secretbox, AESCBC, AESGCM} {
		t.Run(provider, func(t *testing.T) {
			now := pkitest.Now
			rnd := pkitest.Rand(3)
			steady, err := Build(Options{Provider: provider}, now, rnd)
			if err != nil {
				t.Fatal(err)
			}
			oldName := firstKeys(steady)[0].Name
			tr0 := loadTransformer(t, mustMarshal(t, steady))
			v0 := encrypt(t, tr0, "v0", "written before rotation")

			prepared, added, err := Prepare(steady, now.Add(time.Hour), rnd)
			if err != nil {
				t.Fatal(err)
			}
			if Describe(prepared).Stage != StagePrepared || len(added) != 1 {
				t.Fatalf("after prepare: stage %s, %d added", Describe(prepared).Stage, len(added))
			}
			newName := added[0].Key.Name
			if got := firstKeys(prepared); len(got) != 2 || got[0].Name != oldName || got[1].Name != newName {
				t.Fatalf("prepare must add the new key second: %v", names(got))
			}
			tr1 := loadTransformer(t, mustMarshal(t, prepared))
			if got, stale, err := decrypt(t, tr1, "v0", v0); err != nil || got != "written before rotation" || stale {
				t.Fatalf("prepared: v0 = %q stale %v err %v", got, stale, err)
			}
			v1 := encrypt(t, tr1, "v1", "written while prepared")
			if Classify(v1) != provider+":"+oldName {
				t.Fatalf("prepared: new writes must still use the old key, got %s", Classify(v1))
			}

			promoted, moved, err := Promote(prepared)
			if err != nil {
				t.Fatal(err)
			}
			if Describe(promoted).Stage != StagePromoted || moved[0].Key.Name != newName {
				t.Fatalf("after promote: stage %s, moved %v", Describe(promoted).Stage, moved)
			}
			tr2 := loadTransformer(t, mustMarshal(t, promoted))
			for name, v := range map[string][]byte{"v0": v0, "v1": v1} {
				// Old values still decrypt and are stale: a no-op update rewrites them under the new key.
				if got, stale, err := decrypt(t, tr2, name, v); err != nil || !strings.HasPrefix(got, "written") || !stale {
					t.Fatalf("promoted: %s = %q stale %v err %v", name, got, stale, err)
				}
			}
			v2 := encrypt(t, tr2, "v2", "written after promote")
			if Classify(v2) != provider+":"+newName {
				t.Fatalf("promoted: new writes use %s, want %s", Classify(v2), newName)
			}
			// What reencrypt does: read with the old key, write with the new one.
			plain, _, _ := decrypt(t, tr2, "v0", v0)
			v0re := encrypt(t, tr2, "v0", plain)

			pruned, removed, err := Prune(promoted)
			if err != nil {
				t.Fatal(err)
			}
			if Describe(pruned).Stage != StageSteady || len(removed) != 1 || removed[0].Key.Name != oldName {
				t.Fatalf("after prune: stage %s, removed %v", Describe(pruned).Stage, removed)
			}
			tr3 := loadTransformer(t, mustMarshal(t, pruned))
			for name, v := range map[string][]byte{"v2": v2, "v0": v0re} {
				if got, stale, err := decrypt(t, tr3, name, v); err != nil || !strings.HasPrefix(got, "written") || stale {
					t.Fatalf("pruned: %s = %q stale %v err %v", name, got, stale, err)
				}
			}
			if _, _, err := decrypt(t, tr3, "v1", v1); err == nil {
				t.Fatal("pruned: a value under the removed key still decrypted")
			}
		})
	}
}

func names(keys []apiserverv1.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}

func cfgWithKeys(keyNames ...string) *apiserverv1.EncryptionConfiguration {
	keys := make([]apiserverv1.Key, len(keyNames))
	for i, n := range keyNames {
		keys[i] = apiserverv1.Key{Name: n, Secret: key32}
	}
	return &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{
		Resources: []string{"secrets"},
		Providers: []apiserverv1.ProviderConfiguration{{AESCBC: &apiserverv1.AESConfiguration{Keys: keys}}, {Identity: &apiserverv1.IdentityConfiguration{}}},
	}}}
}

func TestStageFromTheFileAlone(t *testing.T) {
	const (
		a = "key-20250101T000000Z-aaaaaaaa"
		b = "key-20260101T000000Z-bbbbbbbb"
		c = "key-20260101T000001Z-cccccccc"
		d = "key-20260101T000001Z-dddddddd"
	)
	for _, tc := range []struct {
		keys []string
		want Stage
	}{
		{[]string{a}, StageSteady},
		{[]string{"key1"}, StageSteady},
		{[]string{a, b}, StagePrepared},
		{[]string{b, a}, StagePromoted},
		{[]string{a, b, c}, StagePrepared},
		{[]string{a, c, b}, StagePrepared},
		{[]string{c, a, b}, StagePromoted},
		{[]string{"key1", b}, StagePrepared}, // a foreign name is older than any k8scrypto name
		{[]string{b, "key1"}, StagePromoted},
		{[]string{"key2", "key1"}, StageUnordered},
		{[]string{c, d}, StageUnordered},                   // the newest time is shared: ambiguous
		{[]string{"key-2026-bad", "key1"}, StageUnordered}, // not k8scrypto's form
		{[]string{"key-20260101T000000Z-ABCDEF01", "k"}, StageUnordered},
	} {
		if got := Describe(cfgWithKeys(tc.keys...)).Stage; got != tc.want {
			t.Errorf("keys %v: stage %s, want %s", tc.keys, got, tc.want)
		}
	}
}

func TestStagesRefuseToRunOutOfOrder(t *testing.T) {
	steady, _ := Build(Options{}, pkitest.Now, pkitest.Rand(1))
	prepared, _, _ := Prepare(steady, pkitest.Now, pkitest.Rand(2))
	promoted, _, _ := Promote(prepared)
	type op func(*apiserverv1.EncryptionConfiguration) error
	prepare := func(c *apiserverv1.EncryptionConfiguration) error {
		_, _, err := Prepare(c, pkitest.Now, pkitest.Rand(9))
		return err
	}
	promote := func(c *apiserverv1.EncryptionConfiguration) error { _, _, err := Promote(c); return err }
	prune := func(c *apiserverv1.EncryptionConfiguration) error { _, _, err := Prune(c); return err }
	for _, tc := range []struct {
		name  string
		cfg   *apiserverv1.EncryptionConfiguration
		op    op
		stage Stage
	}{
		{"promote steady", steady, promote, StageSteady},
		{"prune steady", steady, prune, StageSteady},
		{"prepare prepared", prepared, prepare, StagePrepared},
		{"prune prepared", prepared, prune, StagePrepared},
		{"prepare promoted", promoted, prepare, StagePromoted},
		{"promote promoted", promoted, promote, StagePromoted},
		{"promote unordered", cfgWithKeys("key2", "key1"), promote, StageUnordered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mustMarshal(t, tc.cfg)
			err := tc.op(tc.cfg)
			var se *StageError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a StageError", err)
			}
			msg := err.Error()
			// The next step is the caller's to name (phases knows the commands); the stage is here.
			if se.Status.Stage != tc.stage || !strings.Contains(msg, "stage "+string(tc.stage)) {
				t.Errorf("message does not say the stage %s: %s", tc.stage, msg)
			}
			if !bytes.Equal(before, mustMarshal(t, tc.cfg)) {
				t.Error("a refused step modified its input")
			}
		})
	}
}

func TestPrepareFromUnorderedAndPruneKeepsOtherProviders(t *testing.T) {
	cfg := cfgWithKeys("key2", "key1")
	prepared, added, err := Prepare(cfg, pkitest.Now, pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(firstKeys(prepared)); len(got) != 3 || got[0] != "key2" || got[1] != added[0].Key.Name || got[2] != "key1" {
		t.Fatalf("keys = %v", got)
	}
	promoted, _, err := Promote(prepared)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(firstKeys(promoted)); got[0] != added[0].Key.Name || got[1] != "key2" || got[2] != "key1" {
		t.Fatalf("promote must move the newest first and keep the rest in order: %v", got)
	}
	pruned, removed, err := Prune(promoted)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || len(firstKeys(pruned)) != 1 {
		t.Fatalf("removed %v, left %v", removed, names(firstKeys(pruned)))
	}
	if ps := pruned.Resources[0].Providers; len(ps) != 2 || ps[1].Identity == nil {
		t.Errorf("prune dropped the identity provider: %+v", ps)
	}
	if len(firstKeys(cfg)) != 2 || len(firstKeys(promoted)) != 3 {
		t.Error("a step modified its input")
	}
}

func TestSeveralEntries(t *testing.T) {
	cfg := cfgWithKeys("key-20250101T000000Z-aaaaaaaa")
	cfg.Resources[0].Providers = cfg.Resources[0].Providers[:1]
	cfg.Resources = append(cfg.Resources,
		apiserverv1.ResourceConfiguration{Resources: []string{"events"}, Providers: []apiserverv1.ProviderConfiguration{{Identity: &apiserverv1.IdentityConfiguration{}}}},
		apiserverv1.ResourceConfiguration{Resources: []string{"configmaps"}, Providers: []apiserverv1.ProviderConfiguration{{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: "cm", Secret: key32}}}}}},
	)
	prepared, added, err := Prepare(cfg, pkitest.Now, pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	// The identity-first entry (events, written in plaintext) is repaired with the others.
	if len(added) != 3 || added[0].Entry != 0 || added[1].Entry != 1 || added[2].Entry != 2 ||
		added[0].Key.Name == added[1].Key.Name || added[1].Key.Name == added[2].Key.Name || added[0].Key.Name == added[2].Key.Name {
		t.Fatalf("added = %+v: want a distinct new key in entries 0, 1 and 2", added)
	}
	st := Describe(prepared)
	if st.Stage != StagePrepared || st.Entries[1].Stage != StagePrepared {
		t.Fatalf("status = %+v", st)
	}
	// Hand-edit: promote only the first entry.
	broken := prepared.DeepCopy()
	k := broken.Resources[0].Providers[0].AESCBC.Keys
	k[0], k[1] = k[1], k[0]
	st = Describe(broken)
	if st.Stage != StageInconsistent {
		t.Fatalf("stage = %s, want inconsistent", st.Stage)
	}
	_, _, err = Promote(broken)
	if err == nil || !strings.Contains(err.Error(), "resources[0] (secrets) is promoted") || !strings.Contains(err.Error(), "resources[2] (configmaps) is prepared") {
		t.Fatalf("err = %v", err)
	}
	if got := WriteKey(prepared); got != "aescbc:key-20250101T000000Z-aaaaaaaa,identity,secretbox:cm" {
		t.Errorf("WriteKey = %s", got)
	}
}

// TestPrepareRepairsPlaintext: an entry whose first provider is identity writes plaintext. prepare adds a
// new key right after identity (a new secretbox provider, or first in the local-key provider already
// there), so every apiserver can read with it while still writing plaintext; promote puts that provider
// first, identity kept second so what is stored stays readable. A KMS plugin first is fine: nothing to do.
func TestPrepareRepairsPlaintext(t *testing.T) {
	identity := apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}}
	old := apiserverv1.ProviderConfiguration{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: "k", Secret: key32}}}}
	for _, tc := range []struct {
		name      string
		providers []apiserverv1.ProviderConfiguration
		// want is the providers' types after promote, and keys the first provider's key count.
		want []string
		keys int
	}{
		{"identity alone", []apiserverv1.ProviderConfiguration{identity}, []string{Secretbox, Identity}, 1},
		{"identity then secretbox", []apiserverv1.ProviderConfiguration{identity, old}, []string{Secretbox, Identity}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}, Providers: tc.providers}}}
			st := Describe(cfg)
			if st.Stage != StagePlaintext {
				t.Fatalf("stage %s: want plaintext", st.Stage)
			}
			if _, _, err := Promote(cfg); err == nil {
				t.Fatal("promote before prepare was accepted")
			}
			prepared, added, err := Prepare(cfg, pkitest.Now, pkitest.Rand(1))
			if err != nil {
				t.Fatal(err)
			}
			ps := prepared.Resources[0].Providers
			if len(added) != 1 || ProviderType(ps[0]) != Identity || KeysOf(ps[1])[0].Name != added[0].Key.Name {
				t.Fatalf("prepare: %+v, added %+v: want identity still first, the new key first after it", ps, added)
			}
			if WriteKey(prepared) != Identity || Describe(prepared).Stage != StagePrepared {
				t.Fatalf("after prepare: write key %s, stage %s; want identity (nothing encrypted before every apiserver can read it), prepared", WriteKey(prepared), Describe(prepared).Stage)
			}
			promoted, changes, err := Promote(prepared)
			if err != nil {
				t.Fatal(err)
			}
			ps = promoted.Resources[0].Providers
			var types []string
			for _, p := range ps {
				types = append(types, ProviderType(p))
			}
			if !slices.Equal(types, tc.want) || len(KeysOf(ps[0])) != tc.keys || KeysOf(ps[0])[0].Name != added[0].Key.Name {
				t.Fatalf("promote: providers %v (first with %d keys), want %v with %d, the new key first", types, len(KeysOf(ps[0])), tc.want, tc.keys)
			}
			if len(changes) != 1 || changes[0].Key.Role != RoleWrite || changes[0].Key.Name != added[0].Key.Name {
				t.Errorf("promote changes = %+v", changes)
			}
			if w := WriteKey(promoted); w != Secretbox+":"+added[0].Key.Name {
				t.Errorf("write key after promote = %s", w)
			}
			if err := Validate(promoted); err != nil {
				t.Error(err)
			}
		})
	}
	kms := &apiserverv1.EncryptionConfiguration{Resources: []apiserverv1.ResourceConfiguration{{Resources: []string{"secrets"}, Providers: []apiserverv1.ProviderConfiguration{
		{KMS: &apiserverv1.KMSConfiguration{APIVersion: "v2", Name: "vault", Endpoint: "unix:///run/kms.sock"}}, identity}}}}
	if st := Describe(kms); st.Stage != StageNone {
		t.Errorf("KMS first: stage %s, want none (nothing to repair)", st.Stage)
	}
}

// TestRepairBesideARotation: a plaintext entry beside an entry with local keys: one prepare repairs the one
// and rotates the other, one promote finishes both, and prune (the rotated entry's old key) is allowed.
func TestRepairBesideARotation(t *testing.T) {
	cfg := cfgWithKeys("key-20250101T000000Z-aaaaaaaa")
	cfg.Resources = append(cfg.Resources, apiserverv1.ResourceConfiguration{Resources: []string{"configmaps"}, Providers: []apiserverv1.ProviderConfiguration{{Identity: &apiserverv1.IdentityConfiguration{}}}})
	if st := Describe(cfg); st.Stage != StagePlaintext {
		t.Fatalf("stage %s, want plaintext", st.Stage)
	}
	prepared, _, err := Prepare(cfg, pkitest.Now, pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	promoted, _, err := Promote(prepared)
	if err != nil {
		t.Fatal(err)
	}
	if st := Describe(promoted); st.Stage != StagePromoted {
		t.Fatalf("after promote: stage %s, want promoted", st.Stage)
	}
	pruned, removed, err := Prune(promoted)
	if err != nil || len(removed) != 1 || removed[0].Entry != 0 {
		t.Fatalf("prune: %v, removed %+v", err, removed)
	}
	if st := Describe(pruned); st.Stage != StageSteady || ProviderType(pruned.Resources[1].Providers[0]) != Secretbox {
		t.Errorf("after prune: %+v", st)
	}
}
