package phases

import (
	"errors"
	"fmt"
	"strings"

	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// The words of the encryption config's rotation: pki/encryption reports stages and key problems as data,
// and these name the commands that continue or repair them.

// encryptionNext says what to run in an encryption config's rotation stage.
func encryptionNext(s encryption.Stage) string {
	switch s {
	case encryption.StageSteady, encryption.StageUnordered:
		return `"k8scrypto encryption rotate prepare" when the key is due`
	case encryption.StagePrepared:
		return `"k8scrypto encryption rotate promote --kubeconfig ADMIN.CONF --wait" (it waits until the apiserver has loaded this file)`
	case encryption.StagePromoted:
		return `"k8scrypto encryption reencrypt --kubeconfig ADMIN.CONF --wait --etcd-endpoints URL", then "k8scrypto encryption rotate prune --yes --kubeconfig ADMIN.CONF --etcd-endpoints URL"`
	case encryption.StageInconsistent:
		return "make every resources entry's first provider hold its keys in the same stage (or restore the file from a backup)"
	case encryption.StagePlaintext:
		return `"k8scrypto encryption rotate prepare" (it adds a new key after identity; apiservers can read with it, still writing plaintext), then "k8scrypto encryption rotate promote --kubeconfig ADMIN.CONF --wait" (it puts that provider first: new writes are encrypted), then "k8scrypto encryption reencrypt" to encrypt what is stored`
	}
	return "nothing: every resources entry encrypts with a KMS plugin, which is fine (rotate its key in the KMS plugin)"
}

// describeEncryption is the encryption config's stage and keys (encryption.Describe) with the next command
// and, as warnings, the keys k8scrypto does not manage and those not told apart, each with its fix.
func describeEncryption(cfg *encryption.Config) encryption.Status {
	st := encryption.Describe(cfg)
	st.Next = encryptionNext(st.Stage)
	if err := checkKeySizes(cfg); err != nil {
		st.Warnings = strings.Split(err.Error(), "\n")
	}
	for _, p := range encryption.CheckKeyIdentity(cfg) {
		if p.DuplicateName {
			p.Message += `; rename one with "k8scrypto encryption rotate prepare" and drop the duplicate`
		}
		st.Warnings = append(st.Warnings, p.Message)
	}
	return st
}

// checkKeySizes is the policy for adopting an existing file (init): every aescbc and aesgcm key must be
// encryption.KeySize bytes. The error names each key and the fix.
func checkKeySizes(cfg *encryption.Config) error {
	var errs []error
	for _, p := range encryption.KeySizeProblems(cfg) {
		fix := `rotate it out: "k8scrypto encryption rotate prepare" adds a 32-byte key, then "rotate promote", "encryption reencrypt" and "rotate prune --yes"`
		if p.Provider > 0 {
			// Rotation only touches the first provider; a later one is read-only and goes by hand.
			fix = `remove it by hand once "k8scrypto encryption status --etcd-endpoints ..." shows no stored value uses it`
		}
		errs = append(errs, fmt.Errorf("%s: k8scrypto manages AES-256 keys only; %s", p, fix))
	}
	return errors.Join(errs...)
}

// writeKeyError adds the fix to a step refused for leaving a write key that is not AES-256.
func writeKeyError(e *encryption.WriteKeyError) error {
	fix := `remove that key from the file (nothing is written with it yet), then run "k8scrypto encryption rotate prepare", which adds a 32-byte key`
	if e.Op == "prune" {
		fix = `k8scrypto cannot rotate away from it at this stage: add a 32-byte key second by hand and move it first once every apiserver has loaded the file, or restore the file from a backup`
	}
	return fmt.Errorf("%w: %s", e, fix)
}

// kmsFlagsError words a KMS option error with the flags that set the options.
func kmsFlagsError(e *encryption.KMSOptionsError) error {
	if e.Provider == encryption.KMS {
		return errors.New("--encryption-provider kms needs --kms-name and --kms-endpoint unix:///path/to/plugin.sock")
	}
	return fmt.Errorf("--kms-name and --kms-endpoint apply only to --encryption-provider kms, not %s", e.Provider)
}
