package phases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// EncryptionOptions are the inputs of the encryption-config phase (provider, extra resources, plaintext
// reads, kms settings).
type EncryptionOptions = encryption.Options

// EncryptionConfigPath is where the encryption-config phase writes.
func EncryptionConfigPath(certDir string) string {
	return filepath.Join(certDir, encryption.FileName)
}

// EncryptionConfigPhase writes the kube-apiserver's encryption-at-rest configuration.
//
// INPUTS: d.Encryption (provider, resources, plaintext reads, kms); an existing encryption-config.yaml,
// which is validated with the apiserver's validation and kept as it is.
// OUTPUTS: <cert-dir>/encryption-config.yaml, 0600.
func EncryptionConfigPhase() Phase {
	return Phase{
		Name:  "encryption-config",
		Short: "Generate the encryption-at-rest configuration (encryption-config.yaml)",
		Long: `Generate the kube-apiserver's --encryption-provider-config: an apiserver.config.k8s.io/v1
EncryptionConfiguration that encrypts Secrets (and --encrypt-resources) with one fresh 32-byte key,
secretbox by default. An existing file is never regenerated (losing its key makes every value written with
it unreadable): it is validated and kept. Rotate it with "k8scrypto encryption rotate".`,
		Run:     func(_ context.Context, d *Data) error { return ensureEncryptionConfig(d) },
		Outputs: func(d *Data) []string { return []string{EncryptionConfigPath(d.Cfg.CertDir)} },
	}
}

func ensureEncryptionConfig(d *Data) error {
	path := EncryptionConfigPath(d.Cfg.CertDir)
	exists, err := d.Exists(path)
	if err != nil {
		return err
	}
	if exists {
		cfg, _, err := encryption.Load(path)
		if err != nil {
			return err
		}
		// k8scrypto manages AES-256 only: adopting a shorter aescbc/aesgcm key would leave it unrotated.
		if err := checkKeySizes(cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r := encryptionResult(cfg)
		r.Path = path
		if diff := encryptionDiff(cfg, d.Encryption); diff != "" {
			d.Log.Warn("keeping the existing encryption config, which differs from the requested one; change it with \"k8scrypto encryption rotate\" or by hand", "file", path, "difference", diff)
		}
		for _, e := range describeEncryption(cfg).Entries {
			if len(e.Providers) > 0 && e.Providers[0].Type == encryption.Identity {
				d.Log.Warn("PLAINTEXT: the existing encryption config writes these resources unencrypted (identity is their first provider); repair it with \"k8scrypto encryption rotate prepare\", then \"k8scrypto encryption rotate promote\" (see \"k8scrypto encryption status\")", "file", path, "resources", strings.Join(e.Resources, ","))
			}
		}
		d.Reuse(r)
		return nil
	}
	cfg, err := encryption.Build(d.Encryption, d.Now, d.Rand)
	if ke := new(encryption.KMSOptionsError); errors.As(err, &ke) {
		err = kmsFlagsError(ke)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	data, err := encryption.Marshal(cfg)
	if err != nil {
		return err
	}
	if d.DryRun {
		data = nil // a dry run shows what it would write, never a key
	}
	d.Stage(pki.File{Path: path, Data: data, Mode: pki.ModeKey}, encryptionResult(cfg))
	return nil
}

// encryptionResult describes the file without its keys: provider and resources, the write key's name.
func encryptionResult(cfg *encryption.Config) FileResult {
	st := describeEncryption(cfg)
	var parts []string
	for _, e := range st.Entries {
		if len(e.Providers) == 0 {
			continue
		}
		p := e.Providers[0]
		desc := p.Type
		if len(p.Keys) > 0 {
			desc += " " + p.Keys[0].Name
		} else if p.Name != "" {
			desc += " " + p.Name
		}
		parts = append(parts, desc+" ["+strings.Join(e.Resources, ",")+"]")
	}
	return FileResult{Type: "encryption-config", Subject: strings.Join(parts, "; ")}
}

// encryptionDiff says how an existing file differs from what the options would build ("" when it does
// not), for a warning: the file is kept either way.
func encryptionDiff(cfg *encryption.Config, o EncryptionOptions) string {
	var diffs []string
	if len(cfg.Resources) == 0 || len(cfg.Resources[0].Providers) == 0 {
		return ""
	}
	want := o.Provider
	if want == "" {
		want = encryption.Secretbox
	}
	first := cfg.Resources[0].Providers
	if got := encryption.ProviderType(first[0]); got != want {
		diffs = append(diffs, fmt.Sprintf("provider is %s, not %s", got, want))
	}
	if got, wantRes := encryption.AllResources(cfg), encryption.Resources(o.Resources); !sameSet(got, wantRes) {
		diffs = append(diffs, fmt.Sprintf("resources are %s, not %s", strings.Join(got, ","), strings.Join(wantRes, ",")))
	}
	hasIdentity := slices.ContainsFunc(first[1:], func(p encryption.ProviderConfig) bool { return p.Identity != nil })
	if hasIdentity != o.AllowPlaintextReads {
		diffs = append(diffs, fmt.Sprintf("plaintext reads (identity provider) %v, not %v", hasIdentity, o.AllowPlaintextReads))
	}
	return strings.Join(diffs, "; ")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
