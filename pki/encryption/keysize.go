package encryption

import (
	"encoding/base64"
	"fmt"
	"strings"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

// k8scrypto manages AES-256 only. The apiserver also accepts 16- and 24-byte aescbc and aesgcm keys (and
// its validation already rejects a secret that is not base64, and a secretbox key that is not 32 bytes);
// k8scrypto refuses to adopt a file holding one (init), and never lets a rotation leave one as the key new
// writes use. A file with one can still be inspected (status warns) and rotated away from: prepare adds a
// 32-byte key, promote makes it the write key, reencrypt rewrites the data, prune removes the short key.

// KeySizeProblem is a local key of the wrong size, named without its secret.
type KeySizeProblem struct {
	Entry, Provider int
	Type, Name      string
	Size            int // decoded bytes
}

func (p KeySizeProblem) String() string {
	return fmt.Sprintf("resources[%d].providers[%d] %s key %q is %d bytes, not %d (AES-256)", p.Entry, p.Provider, p.Type, p.Name, p.Size, KeySize)
}

// KeySizeProblems lists every aescbc and aesgcm key of cfg that is not KeySize bytes. A secret that is not
// base64 is left to Validate, which rejects it.
func KeySizeProblems(cfg *apiserverv1.EncryptionConfiguration) []KeySizeProblem {
	var out []KeySizeProblem
	if cfg == nil {
		return nil
	}
	for i, rc := range cfg.Resources {
		for j, p := range rc.Providers {
			typ := ProviderType(p)
			if typ != AESCBC && typ != AESGCM {
				continue
			}
			for _, k := range KeysOf(p) {
				raw, err := base64.StdEncoding.DecodeString(k.Secret)
				if err == nil && len(raw) != KeySize {
					out = append(out, KeySizeProblem{Entry: i, Provider: j, Type: typ, Name: k.Name, Size: len(raw)})
				}
			}
		}
	}
	return out
}

// checkWriteKeys refuses a rotation result whose write key (the first key of a rotatable entry's first
// provider) is not KeySize bytes: promote and prune must not leave a short key as the one new data uses.
func checkWriteKeys(op string, cfg *apiserverv1.EncryptionConfiguration) error {
	var bad []string
	for _, p := range KeySizeProblems(cfg) {
		keys := KeysOf(cfg.Resources[p.Entry].Providers[0])
		if p.Provider == 0 && len(keys) > 0 && keys[0].Name == p.Name {
			bad = append(bad, p.String())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &WriteKeyError{Op: op, Keys: bad}
}

// WriteKeyError refuses a promote or prune (Op) that would leave a key that is not AES-256 as the write
// key; Keys describe those keys (KeySizeProblem, never the secret). The caller adds the fix, which names
// its commands.
type WriteKeyError struct {
	Op   string
	Keys []string
}

func (e *WriteKeyError) Error() string {
	return fmt.Sprintf("%s refused: the write key would not be AES-256, which is all k8scrypto manages (%s)", e.Op, strings.Join(e.Keys, "; "))
}

// KeyIdentityProblem is one finding of CheckKeyIdentity. DuplicateName is two keys of one name, which the
// caller says how to repair (a rename through its rotation command).
type KeyIdentityProblem struct {
	Message       string
	DuplicateName bool
}

// CheckKeyIdentity finds keys that are not told apart: two keys of one provider with the same name (the
// apiserver reads every value of that name with the first one's secret, so values written with the other
// are unreadable), and one secret under two names (a rotation that changed nothing but the name). Each
// finding names the keys and the secret's fingerprint, never the secret.
func CheckKeyIdentity(cfg *apiserverv1.EncryptionConfiguration) []KeyIdentityProblem {
	var out []KeyIdentityProblem
	for i, rc := range cfg.Resources {
		for j, p := range rc.Providers {
			names := map[string]bool{}
			secrets := map[string]string{}
			for _, k := range KeysOf(p) {
				if names[k.Name] {
					out = append(out, KeyIdentityProblem{DuplicateName: true, Message: fmt.Sprintf("resources[%d].providers[%d] %s has two keys named %q: the apiserver decrypts every value with that name using the first one, so values written with the other are unreadable", i, j, ProviderType(p), k.Name)})
				}
				names[k.Name] = true
				fp := Fingerprint(k.Secret)
				if other, ok := secrets[fp]; ok && fp != "" {
					out = append(out, KeyIdentityProblem{Message: fmt.Sprintf("resources[%d].providers[%d] %s holds the same secret (fingerprint %s) under the names %q and %q: a rotation between them changes nothing", i, j, ProviderType(p), fp, other, k.Name)})
				}
				secrets[fp] = k.Name
			}
		}
	}
	return out
}
