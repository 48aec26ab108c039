package encryption

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// Stage is where a file is in the key rotation (see the package documentation).
type Stage string

const (
	StageSteady    Stage = "steady"
	StagePrepared  Stage = "prepared"
	StagePromoted  Stage = "promoted"
	StageUnordered Stage = "unordered"
	// StageInconsistent: rotatable entries are in different stages (edited by hand mid-rotation).
	StageInconsistent Stage = "inconsistent"
	// StagePlaintext: an entry writes plaintext (identity is its first provider) and no repair is staged:
	// prepare adds a key after identity, promote puts it first. Entries in stage steady or unordered may be
	// beside it (prepare rotates them at the same time).
	StagePlaintext Stage = "plaintext"
	// StageNone: no entry encrypts with local keys and none writes plaintext (a KMS plugin first): there is
	// nothing to rotate here, and nothing wrong.
	StageNone Stage = "none"
)

// Key roles.
const (
	RoleWrite = "write" // encrypts new writes (first key of the first provider)
	RoleRead  = "read"  // decrypts only
)

// KeyInfo describes a key without its secret.
type KeyInfo struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Role        string `json:"role"`
}

// ProviderInfo describes one provider of an entry.
type ProviderInfo struct {
	Type string `json:"type"`
	// Name is a kms provider's name; Endpoint its plugin socket.
	Name     string    `json:"name,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"`
	Keys     []KeyInfo `json:"keys,omitempty"`
	// Prefix is what values this provider writes start with (for kms the name follows).
	Prefix string `json:"prefix"`
}

// Entry describes one resources entry.
type Entry struct {
	Resources []string       `json:"resources"`
	Providers []ProviderInfo `json:"providers"`
	// Stage is "" when the first provider holds no local keys.
	Stage Stage `json:"stage,omitempty"`
}

// Status describes a whole file.
type Status struct {
	Stage   Stage   `json:"stage"`
	Next    string  `json:"next"` // what to run next: filled by the caller, which knows the commands
	Entries []Entry `json:"entries"`
	// Warnings name keys k8scrypto does not manage (aescbc/aesgcm keys that are not AES-256) and keys not
	// told apart, with the fix: filled by the caller, which knows the commands.
	Warnings []string `json:"warnings,omitempty"`
}

// ValuePrefix is the prefix of values a provider writes, as the apiserver writes them.
func ValuePrefix(p apiserverv1.ProviderConfiguration) string {
	switch typ := ProviderType(p); typ {
	case Secretbox, AESCBC, AESGCM:
		return "k8s:enc:" + typ + ":v1:"
	case KMS:
		v := p.KMS.APIVersion
		if v == "" {
			v = "v1" // the apiserver's default
		}
		return "k8s:enc:kms:" + v + ":" + p.KMS.Name + ":"
	}
	return ""
}

// Describe reports the stage and keys of cfg.
func Describe(cfg *apiserverv1.EncryptionConfiguration) Status {
	st := Status{}
	var stages []Stage
	for _, rc := range cfg.Resources {
		e := Entry{Resources: slices.Clone(rc.Resources)}
		for i, p := range rc.Providers {
			pi := ProviderInfo{Type: ProviderType(p), Prefix: ValuePrefix(p)}
			if p.KMS != nil {
				pi.Name, pi.Endpoint = p.KMS.Name, p.KMS.Endpoint
			}
			for j, k := range KeysOf(p) {
				role := RoleRead
				if i == 0 && j == 0 {
					role = RoleWrite
				}
				pi.Keys = append(pi.Keys, KeyInfo{Name: k.Name, Fingerprint: Fingerprint(k.Secret), Role: role})
			}
			e.Providers = append(e.Providers, pi)
		}
		switch {
		case len(rc.Providers) > 0 && len(KeysOf(rc.Providers[0])) > 0:
			e.Stage = entryStage(KeysOf(rc.Providers[0]))
		case plaintextEntry(rc.Providers):
			e.Stage = StagePlaintext
			if repairStaged(rc.Providers) {
				e.Stage = StagePrepared
			}
		}
		if e.Stage != "" {
			stages = append(stages, e.Stage)
		}
		st.Entries = append(st.Entries, e)
	}
	only := func(allowed ...Stage) bool {
		return !slices.ContainsFunc(stages, func(s Stage) bool { return !slices.Contains(allowed, s) })
	}
	switch {
	case len(stages) == 0:
		st.Stage = StageNone
	case slices.Contains(stages, StagePlaintext) && only(StagePlaintext, StageSteady, StageUnordered):
		// prepare repairs the plaintext entries and rotates the others in one step
		st.Stage = StagePlaintext
	case slices.Contains(stages, StagePromoted) && only(StagePromoted, StageSteady):
		// a repaired entry is steady after promote (one key), beside the rotated entries it was prepared with
		st.Stage = StagePromoted
	case slices.ContainsFunc(stages, func(s Stage) bool { return s != stages[0] }):
		st.Stage = StageInconsistent
	default:
		st.Stage = stages[0]
	}
	return st
}

// plaintextEntry says whether an entry writes plaintext: identity is its first provider.
func plaintextEntry(ps []apiserverv1.ProviderConfiguration) bool {
	return len(ps) > 0 && ProviderType(ps[0]) == Identity
}

// repairStaged says whether a plaintext entry has had its repair prepared: the provider after identity
// holds local keys, the first of which is k8scrypto's newest (prepare put it there).
func repairStaged(ps []apiserverv1.ProviderConfiguration) bool {
	if len(ps) < 2 {
		return false
	}
	keys := KeysOf(ps[1])
	return len(keys) > 0 && newestKey(keys) == 0
}

// entryStage reads the stage from the keys of a first provider.
func entryStage(keys []apiserverv1.Key) Stage {
	if len(keys) == 1 {
		return StageSteady
	}
	newest := newestKey(keys)
	switch newest {
	case -1:
		return StageUnordered
	case 0:
		return StagePromoted
	}
	return StagePrepared
}

// newestKey is the index of the key with the latest k8scrypto time, or -1 when no key has one or the
// latest time is shared.
func newestKey(keys []apiserverv1.Key) int {
	best, tie := -1, false
	var bestT time.Time
	for i, k := range keys {
		t, ok := keyTime(k.Name)
		if !ok {
			continue
		}
		switch {
		case best == -1 || t.After(bestT):
			best, bestT, tie = i, t, false
		case t.Equal(bestT):
			tie = true
		}
	}
	if tie {
		return -1
	}
	return best
}

// StageError is a rotation step run in the wrong stage (the command layer gives it exit status 3). Its
// message ends with Status.Next, which the caller fills: it knows the commands.
type StageError struct {
	Op     string
	Status Status
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s refused: the encryption config is in stage %s (%s); next: %s", e.Op, e.Status.Stage, describeStage(e.Status), e.Status.Next)
}

// describeStage explains a stage with the key names of the first rotatable entry.
func describeStage(st Status) string {
	if st.Stage == StageInconsistent {
		var parts []string
		for i, e := range st.Entries {
			if e.Stage != "" {
				parts = append(parts, fmt.Sprintf("resources[%d] (%s) is %s", i, strings.Join(e.Resources, ","), e.Stage))
			}
		}
		return strings.Join(parts, ", ")
	}
	for _, e := range st.Entries {
		if e.Stage == "" {
			continue
		}
		keys := e.Providers[0].Keys
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.Name
		}
		switch e.Stage {
		case StageSteady:
			return fmt.Sprintf("one %s key, %s", e.Providers[0].Type, names[0])
		case StagePrepared:
			return fmt.Sprintf("%s keys %s: the newest is not first yet", e.Providers[0].Type, strings.Join(names, ", "))
		case StagePromoted:
			return fmt.Sprintf("%s keys %s: the newest encrypts, older keys still decrypt", e.Providers[0].Type, strings.Join(names, ", "))
		case StageUnordered:
			return fmt.Sprintf("%s keys %s, none named by k8scrypto", e.Providers[0].Type, strings.Join(names, ", "))
		}
	}
	return "no resources entry has a local-key provider first"
}

// Change is one key a rotation step added, moved or removed.
type Change struct {
	Entry    int     `json:"entry"`
	Provider string  `json:"provider"`
	Key      KeyInfo `json:"key"`
}

// rotatable calls fn with the first provider of every entry that holds local keys.
func rotatable(cfg *apiserverv1.EncryptionConfiguration, fn func(entry int, p *apiserverv1.ProviderConfiguration) error) error {
	for i := range cfg.Resources {
		ps := cfg.Resources[i].Providers
		if len(ps) > 0 && len(KeysOf(ps[0])) > 0 {
			if err := fn(i, &ps[0]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Prepare adds a new key second in the first provider of every rotatable entry: every apiserver that
// loads the result can decrypt with it while the old key still encrypts. Allowed in stage steady or
// unordered, also when the current key is not AES-256 (prepare is how such a key is rotated out; see
// keysize.go). cfg is not modified.
//
// An entry that writes plaintext (identity first, stage plaintext) is repaired the same way: the new key
// goes right after identity, first in the local-key provider there, else in a new secretbox provider, so
// that every apiserver can read with it while still writing plaintext; promote then puts that provider
// first. identity stays, so what is stored in plaintext stays readable until reencrypt has rewritten it.
func Prepare(cfg *apiserverv1.EncryptionConfiguration, now time.Time, rnd io.Reader) (*apiserverv1.EncryptionConfiguration, []Change, error) {
	if err := allow(cfg, "prepare", StageSteady, StageUnordered, StagePlaintext); err != nil {
		return nil, nil, err
	}
	out := cfg.DeepCopy()
	var changes []Change
	err := rotatable(out, func(i int, p *apiserverv1.ProviderConfiguration) error {
		key, err := NewKey(out, now, rnd)
		if err != nil {
			return err
		}
		keys := KeysOf(*p)
		setKeys(p, slices.Insert(slices.Clone(keys), 1, key))
		changes = append(changes, Change{Entry: i, Provider: ProviderType(*p), Key: KeyInfo{Name: key.Name, Fingerprint: Fingerprint(key.Secret), Role: RoleRead}})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for i := range out.Resources {
		ps := out.Resources[i].Providers
		if !plaintextEntry(ps) {
			continue
		}
		key, err := NewKey(out, now, rnd)
		if err != nil {
			return nil, nil, err
		}
		if len(ps) > 1 && len(KeysOf(ps[1])) > 0 {
			setKeys(&ps[1], slices.Insert(slices.Clone(KeysOf(ps[1])), 0, key))
		} else {
			ps = slices.Insert(ps, 1, apiserverv1.ProviderConfiguration{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{key}}})
			out.Resources[i].Providers = ps
		}
		changes = append(changes, Change{Entry: i, Provider: ProviderType(ps[1]), Key: KeyInfo{Name: key.Name, Fingerprint: Fingerprint(key.Secret), Role: RoleRead}})
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return a.Entry - b.Entry })
	return out, changes, Validate(out)
}

// Promote moves the newest key first, so new writes use it; the other keys keep their order and still
// decrypt. Allowed in stage prepared.
func Promote(cfg *apiserverv1.EncryptionConfiguration) (*apiserverv1.EncryptionConfiguration, []Change, error) {
	if err := allow(cfg, "promote", StagePrepared); err != nil {
		return nil, nil, err
	}
	out, changes, err := promote(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := checkWriteKeys("promote", out); err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}

func promote(cfg *apiserverv1.EncryptionConfiguration) (*apiserverv1.EncryptionConfiguration, []Change, error) {
	out := cfg.DeepCopy()
	var changes []Change
	_ = rotatable(out, func(i int, p *apiserverv1.ProviderConfiguration) error {
		keys := slices.Clone(KeysOf(*p))
		n := newestKey(keys)
		k := keys[n]
		keys = slices.Insert(slices.Delete(keys, n, n+1), 0, k)
		setKeys(p, keys)
		changes = append(changes, Change{Entry: i, Provider: ProviderType(*p), Key: KeyInfo{Name: k.Name, Fingerprint: Fingerprint(k.Secret), Role: RoleWrite}})
		return nil
	})
	// A repaired plaintext entry: the provider prepare filled after identity goes first, identity second.
	for i := range out.Resources {
		ps := out.Resources[i].Providers
		if !plaintextEntry(ps) || !repairStaged(ps) {
			continue
		}
		p := ps[1]
		out.Resources[i].Providers = slices.Insert(slices.Delete(ps, 1, 2), 0, p)
		k := KeysOf(p)[0]
		changes = append(changes, Change{Entry: i, Provider: ProviderType(p), Key: KeyInfo{Name: k.Name, Fingerprint: Fingerprint(k.Secret), Role: RoleWrite}})
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return a.Entry - b.Entry })
	return out, changes, Validate(out)
}

// Prune removes every key but the first from the first provider of every rotatable entry. Values still
// stored under a removed key become unreadable, so it must follow a complete reencrypt. Allowed in stage
// promoted. Other providers (identity, an old provider being migrated away from) are kept.
func Prune(cfg *apiserverv1.EncryptionConfiguration) (*apiserverv1.EncryptionConfiguration, []Change, error) {
	if err := allow(cfg, "prune", StagePromoted); err != nil {
		return nil, nil, err
	}
	if err := checkWriteKeys("prune", cfg); err != nil {
		return nil, nil, err
	}
	out := cfg.DeepCopy()
	var changes []Change
	_ = rotatable(out, func(i int, p *apiserverv1.ProviderConfiguration) error {
		keys := KeysOf(*p)
		for _, k := range keys[1:] {
			changes = append(changes, Change{Entry: i, Provider: ProviderType(*p), Key: KeyInfo{Name: k.Name, Fingerprint: Fingerprint(k.Secret), Role: RoleRead}})
		}
		setKeys(p, keys[:1:1])
		return nil
	})
	return out, changes, Validate(out)
}

func allow(cfg *apiserverv1.EncryptionConfiguration, op string, stages ...Stage) error {
	st := Describe(cfg)
	if !slices.Contains(stages, st.Stage) {
		return &StageError{Op: op, Status: st}
	}
	return nil
}

// WriteKey returns the name of the key new writes of the first entry use ("identity" when not encrypted,
// "kms:<name>" for kms): it identifies which rotation a reencrypt run belongs to.
func WriteKey(cfg *apiserverv1.EncryptionConfiguration) string {
	var parts []string
	for _, rc := range cfg.Resources {
		if len(rc.Providers) == 0 {
			continue
		}
		p := rc.Providers[0]
		switch typ := ProviderType(p); typ {
		case Identity:
			parts = append(parts, Identity)
		case KMS:
			parts = append(parts, "kms:"+p.KMS.Name)
		default:
			parts = append(parts, typ+":"+KeysOf(p)[0].Name)
		}
	}
	return strings.Join(parts, ",")
}

// AllResources lists the resource names of every entry, in order.
func AllResources(cfg *apiserverv1.EncryptionConfiguration) []string {
	var out []string
	for _, rc := range cfg.Resources {
		out = append(out, rc.Resources...)
	}
	return out
}
