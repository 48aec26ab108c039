package phases

import (
	"context"
	"fmt"
	"path/filepath"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
)

// SAPhase generates the service-account signing key pair.
//
// INPUTS: the configuration (key algorithm); an existing sa.key and sa.pub, reused when they match.
// OUTPUTS: <cert-dir>/sa.key and <cert-dir>/sa.pub, both 0600 as kubeadm writes them.
func SAPhase() Phase {
	return Phase{
		Name:  "sa",
		Short: "Generate the service-account signing key pair (sa.key, sa.pub)",
		Run:   func(_ context.Context, d *Data) error { return ensureSA(d) },
		KeysNeeded: func(d *Data) []string {
			if haveAny(d, filepath.Join(d.Cfg.CertDir, sakeys.KeyName), filepath.Join(d.Cfg.CertDir, sakeys.PubName)) {
				return nil
			}
			return []string{"sa"}
		},
		Outputs: func(d *Data) []string {
			return []string{filepath.Join(d.Cfg.CertDir, sakeys.KeyName), filepath.Join(d.Cfg.CertDir, sakeys.PubName)}
		},
	}
}

func ensureSA(d *Data) error {
	keyPath, pubPath := filepath.Join(d.Cfg.CertDir, sakeys.KeyName), filepath.Join(d.Cfg.CertDir, sakeys.PubName)
	haveKey, err := d.Exists(keyPath)
	if err != nil {
		return err
	}
	havePub, err := d.Exists(pubPath)
	if err != nil {
		return err
	}
	if haveKey {
		key, err := LoadKey(keyPath)
		if err != nil {
			return err
		}
		pubPEM, err := pki.EncodePublicKey(key.Public())
		if err != nil {
			return err
		}
		kr := keyResult(key)
		kr.Path = keyPath
		d.Reuse(kr)
		if !havePub {
			// sa.pub is derived from sa.key, so writing it loses nothing.
			d.Stage(pki.File{Path: pubPath, Data: pubPEM, Mode: pki.ModeKey}, pubResult(pubPEM))
			return nil
		}
		data, err := readRegular(pubPath)
		if err != nil {
			return err
		}
		pubs, err := pki.ParsePublicKeys(data)
		if err != nil {
			return fmt.Errorf("%s: %w", pubPath, err)
		}
		for _, p := range pubs {
			if pki.PublicKeysEqual(key.Public(), p) {
				r := pubResult(pubPEM)
				r.Path = pubPath
				d.Reuse(r)
				return nil
			}
		}
		return fmt.Errorf("%s does not contain the public key of %s: tokens signed with sa.key would be rejected; restore the matching pair (or remove sa.pub to derive it from sa.key)", pubPath, keyPath)
	}
	if havePub {
		return fmt.Errorf("%s exists but %s does not: restore sa.key (tokens signed by it are still in use), or remove sa.pub to create a new pair", pubPath, keyPath)
	}
	if ca, err := d.CA("ca"); err == nil && ca.external() {
		return fmt.Errorf("external CA mode: provide %s and %s (k8scrypto, like kubeadm, generates nothing when ca.key is absent)", keyPath, pubPath)
	}
	if d.DryRun {
		d.Stage(pki.File{Path: keyPath, Mode: pki.ModeKey}, FileResult{Type: "key"})
		d.Stage(pki.File{Path: pubPath, Mode: pki.ModeKey}, FileResult{Type: "public-key"})
		return nil
	}
	key, err := d.Keys.Get("sa")
	if err != nil {
		return fmt.Errorf("generating sa key: %w", err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return err
	}
	pubPEM, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		return err
	}
	d.Stage(pki.File{Path: keyPath, Data: keyPEM, Mode: pki.ModeKey}, keyResult(key))
	d.Stage(pki.File{Path: pubPath, Data: pubPEM, Mode: pki.ModeKey}, pubResult(pubPEM))
	return nil
}

func pubResult(pubPEM []byte) FileResult {
	r := FileResult{Type: "public-key"}
	if pubs, err := pki.ParsePublicKeys(pubPEM); err == nil && len(pubs) > 0 {
		if fp, err := pki.PublicKeyFingerprint(pubs[0]); err == nil {
			r.SHA256 = fp
		}
	}
	return r
}
