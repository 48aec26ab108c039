// Package encryption builds, loads, validates and rotates the kube-apiserver's encryption-at-rest
// configuration (--encryption-provider-config): an apiserver.config.k8s.io/v1 EncryptionConfiguration
// written with the apiserver's own API types and checked with the apiserver's own validation code, so a
// file this package accepts is a file the apiserver accepts.
//
// # Key names
//
// k8scrypto names every key it creates key-<UTC time>-<8 random hex digits>, the time in the form
// 20060102T150405Z (as backup directories are named), for example key-20260102T030405Z-1f2e3d4c. The name
// is part of every stored value's prefix (k8s:enc:secretbox:v1:<name>:), so a name is never reused: a new
// name's time is later than every time already in the file (one second after the newest when the clock is
// behind) and its random part differs from every name in the file.
//
// # Rotation stages
//
// The stage is read from the file alone. Only the keys of the first provider of a resources entry matter
// (the first provider encrypts, its first key is the write key); only entries whose first provider holds
// local keys (secretbox, aescbc, aesgcm) can be rotated. "Newest" is the key whose name carries the latest
// time; a name not in k8scrypto's form counts as older than every k8scrypto name.
//
//	steady     one key. A new file starts here and prune returns here. Next: prepare.
//	prepared   two or more keys and the newest is not first: every apiserver can decrypt with it, none
//	           encrypts with it yet. Next: promote (after every apiserver has loaded the file).
//	promoted   two or more keys and the newest is first: new writes use it, older keys still decrypt.
//	           Next: reencrypt, then prune.
//	unordered  two or more keys and none has a k8scrypto name, so which is newest is unknown (a
//	           hand-written file). Next: prepare, which adds a k8scrypto key second.
//
// Every rotatable entry must be in the same stage; a file whose entries disagree was edited by hand
// mid-rotation and is refused with the stage of each entry.
package encryption

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/apis/apiserver"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/apis/apiserver/validation"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/pki"
)

// FileName is the configuration's name under the certificate directory.
const FileName = "encryption-config.yaml"

// Provider types.
const (
	Secretbox = "secretbox"
	AESCBC    = "aescbc"
	AESGCM    = "aesgcm"
	KMS       = "kms"
	Identity  = "identity"
)

// Providers lists the provider types Build can make, the default first.
var Providers = []string{Secretbox, AESCBC, AESGCM, KMS}

// KeySize is the size of every key k8scrypto generates: the only size secretbox accepts and the size the
// Kubernetes documentation gives for aescbc.
const KeySize = 32

// DefaultResource is always encrypted unless a wildcard covers it.
const DefaultResource = "secrets"

// Config, ProviderConfig and KeyConfig are the apiserver's v1 types, named here for callers.
type (
	Config         = apiserverv1.EncryptionConfiguration
	ProviderConfig = apiserverv1.ProviderConfiguration
	KeyConfig      = apiserverv1.Key
)

// Options are the inputs of a new configuration.
type Options struct {
	// Provider is secretbox (default), aescbc, aesgcm or kms (v2).
	Provider string
	// Resources are encrypted in addition to secrets ("configmaps", "*.apps", "*.*" ...).
	Resources []string
	// AllowPlaintextReads appends identity: {} so that values written before encryption was turned on
	// stay readable until reencrypt has rewritten them.
	AllowPlaintextReads bool
	// KMSName and KMSEndpoint (unix://...) configure a kms v2 provider.
	KMSName     string
	KMSEndpoint string
	// KMSTimeout is the plugin call timeout; 0 leaves the apiserver's default (3s).
	KMSTimeout time.Duration
}

// apiserverScheme is the scheme the apiserver's own loader uses (encryptionconfig.init): internal + v1,
// with a strict codec. Built on first use: most commands never read the file, and every command pays for
// package initialisation.
var apiserverScheme = sync.OnceValue(func() (s struct {
	scheme *runtime.Scheme
	codecs serializer.CodecFactory
}) {
	s.scheme = runtime.NewScheme()
	if err := apiserver.AddToScheme(s.scheme); err != nil {
		panic(err)
	}
	if err := apiserverv1.AddToScheme(s.scheme); err != nil {
		panic(err)
	}
	s.codecs = serializer.NewCodecFactory(s.scheme, serializer.EnableStrict)
	return s
})

// Resources returns the resource list Build writes: secrets plus extra, without duplicates, and without
// secrets when a wildcard in extra already covers it (the apiserver rejects overlapping entries).
func Resources(extra []string) []string {
	var out []string
	covered := false
	for _, r := range extra {
		r = strings.TrimSpace(r)
		if r == "" || r == DefaultResource || slices.Contains(out, r) {
			continue
		}
		if r == "*." || r == "*.*" {
			covered = true
		}
		out = append(out, r)
	}
	if !covered {
		out = append([]string{DefaultResource}, out...)
	}
	return out
}

// KMSOptionsError is a KMS name or endpoint given for a local-key Provider, or a kms Provider without both.
// The caller names its options.
type KMSOptionsError struct{ Provider string }

func (e *KMSOptionsError) Error() string {
	if e.Provider == KMS {
		return "the kms provider needs a KMS name and an endpoint unix:///path/to/plugin.sock"
	}
	return "a KMS name and endpoint apply only to the kms provider, not " + e.Provider
}

// Build makes a new configuration with one fresh key (none for kms). rnd supplies the key and the name's
// random part; nil means crypto/rand. The result is validated as the apiserver validates it.
func Build(o Options, now time.Time, rnd io.Reader) (*apiserverv1.EncryptionConfiguration, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	provider := o.Provider
	if provider == "" {
		provider = Secretbox
	}
	var p apiserverv1.ProviderConfiguration
	switch provider {
	case Secretbox, AESCBC, AESGCM:
		if o.KMSName != "" || o.KMSEndpoint != "" {
			return nil, &KMSOptionsError{Provider: provider}
		}
		key, err := NewKey(nil, now, rnd)
		if err != nil {
			return nil, err
		}
		p = providerWithKeys(provider, []apiserverv1.Key{key})
	case KMS:
		if o.KMSName == "" || o.KMSEndpoint == "" {
			return nil, &KMSOptionsError{Provider: provider}
		}
		kms := &apiserverv1.KMSConfiguration{APIVersion: "v2", Name: o.KMSName, Endpoint: o.KMSEndpoint}
		if o.KMSTimeout != 0 {
			kms.Timeout = &metav1.Duration{Duration: o.KMSTimeout}
		}
		p = apiserverv1.ProviderConfiguration{KMS: kms}
	default:
		return nil, fmt.Errorf("unknown encryption provider %q: use one of %s", provider, strings.Join(Providers, ", "))
	}
	providers := []apiserverv1.ProviderConfiguration{p}
	if o.AllowPlaintextReads {
		providers = append(providers, apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}})
	}
	cfg := &apiserverv1.EncryptionConfiguration{
		TypeMeta:  metav1.TypeMeta{APIVersion: apiserverv1.SchemeGroupVersion.String(), Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{Resources: Resources(o.Resources), Providers: providers}},
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func providerWithKeys(typ string, keys []apiserverv1.Key) apiserverv1.ProviderConfiguration {
	switch typ {
	case AESCBC:
		return apiserverv1.ProviderConfiguration{AESCBC: &apiserverv1.AESConfiguration{Keys: keys}}
	case AESGCM:
		return apiserverv1.ProviderConfiguration{AESGCM: &apiserverv1.AESConfiguration{Keys: keys}}
	}
	return apiserverv1.ProviderConfiguration{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: keys}}
}

// NewKey makes a KeySize-byte key named so that the name sorts after every k8scrypto name in cfg and
// differs from every name in cfg (cfg may be nil).
func NewKey(cfg *apiserverv1.EncryptionConfiguration, now time.Time, rnd io.Reader) (apiserverv1.Key, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	stamp := now.UTC().Truncate(time.Second)
	existing := map[string]bool{}
	forEachKey(cfg, func(_ string, k apiserverv1.Key) {
		existing[k.Name] = true
		if t, ok := keyTime(k.Name); ok && !t.Before(stamp) {
			stamp = t.Add(time.Second)
		}
	})
	secret := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, secret); err != nil {
		return apiserverv1.Key{}, fmt.Errorf("reading random key: %w", err)
	}
	for range 100 {
		var r [4]byte
		if _, err := io.ReadFull(rnd, r[:]); err != nil {
			return apiserverv1.Key{}, fmt.Errorf("reading random key name: %w", err)
		}
		name := keyPrefix + stamp.Format(keyTimeFormat) + "-" + hex.EncodeToString(r[:])
		if !existing[name] {
			return apiserverv1.Key{Name: name, Secret: base64.StdEncoding.EncodeToString(secret)}, nil
		}
	}
	return apiserverv1.Key{}, errors.New("could not find an unused key name (is the random source broken?)")
}

const (
	keyPrefix     = "key-"
	keyTimeFormat = "20060102T150405Z"
)

// keyTime returns the time in a k8scrypto key name.
func keyTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, keyPrefix)
	if !ok {
		return time.Time{}, false
	}
	stamp, random, ok := strings.Cut(rest, "-")
	if !ok || len(random) != 8 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(random); err != nil || strings.ToLower(random) != random {
		return time.Time{}, false
	}
	t, err := time.Parse(keyTimeFormat, stamp)
	return t, err == nil
}

// Fingerprint identifies a key without revealing it: the first 8 bytes of the SHA-256 of the decoded key,
// in hex (echo SECRET | base64 -d | sha256sum | cut -c1-16). "" when the secret is not base64.
func Fingerprint(secret string) string {
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// Marshal renders cfg as the file is written, after validating it.
func Marshal(cfg *apiserverv1.EncryptionConfiguration) ([]byte, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	c := cfg.DeepCopy()
	c.APIVersion, c.Kind = apiserverv1.SchemeGroupVersion.String(), "EncryptionConfiguration"
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# kube-apiserver --encryption-provider-config, written by k8scrypto. It holds encryption keys:\n")
	b.WriteString("# keep it 0600, identical on every control-plane node, and backed up; rotate it with\n")
	b.WriteString("# \"k8scrypto encryption rotate\" (losing a key makes every value written with it unreadable).\n")
	b.Write(body)
	return b.Bytes(), nil
}

// Parse decodes a file strictly (unknown or duplicate fields are errors, as for the apiserver) and
// validates it with the apiserver's validation. Like the apiserver it also reads the old spelling
// "apiVersion: v1, kind: EncryptionConfig"; Marshal writes the current one. The result is the file's content without defaults, so
// writing it back changes only what the caller changed.
func Parse(data []byte) (*apiserverv1.EncryptionConfiguration, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("file is empty")
	}
	obj, gvk, err := apiserverScheme().codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding: %s", redactDecodeError(err, data))
	}
	cfg, ok := obj.(*apiserverv1.EncryptionConfiguration)
	if !ok {
		return nil, fmt.Errorf("holds a %s, not an apiserver.config.k8s.io/v1 EncryptionConfiguration", gvk)
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// redactDecodeError keeps decoding errors from quoting the file: YAML type errors quote the offending
// value in backticks, a missing kind or apiVersion quotes the whole document, and either may hold a key.
func redactDecodeError(err error, data []byte) string {
	switch {
	case runtime.IsMissingKind(err):
		return "kind is not set: the file must declare apiVersion: apiserver.config.k8s.io/v1 and kind: EncryptionConfiguration"
	case runtime.IsMissingVersion(err):
		return "apiVersion is not set: the file must declare apiVersion: apiserver.config.k8s.io/v1 and kind: EncryptionConfiguration"
	}
	msg := err.Error()
	if quotesInput(msg, data) {
		return "the file is not a valid EncryptionConfiguration (syntax error or wrong field types; the message is withheld because it may quote a key)"
	}
	return msg
}

// quotesInput reports whether a decoding error repeats a part of the file that may be a key: a value in
// backticks (YAML type errors), a dumped "secret" pair (YAML conversion errors print whole maps), a line of
// the file, or a run of 16 or more base64 characters from it.
func quotesInput(msg string, data []byte) bool {
	if strings.Contains(msg, "`") || len(msg) > 400 || strings.Contains(msg, `secret":`) || strings.Contains(msg, "secret:") {
		return true
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if l := bytes.TrimSpace(line); len(l) >= 16 && strings.Contains(msg, string(l)) {
			return true
		}
	}
	notBase64 := func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}
	for _, tok := range bytes.FieldsFunc(data, notBase64) {
		if len(tok) >= 16 && string(tok) != "EncryptionConfiguration" && strings.Contains(msg, string(tok)) {
			return true
		}
	}
	return false
}

// Validate applies the apiserver's defaults to a copy of cfg and runs the apiserver's validation
// (ValidateEncryptionConfiguration, as with --encryption-provider-config-automatic-reload=false). Error
// messages never include key material.
func Validate(cfg *apiserverv1.EncryptionConfiguration) error {
	if cfg == nil {
		return errors.New("no configuration")
	}
	c := cfg.DeepCopy()
	scheme := apiserverScheme().scheme
	scheme.Default(c)
	var internal apiserver.EncryptionConfiguration
	if err := scheme.Convert(c, &internal, nil); err != nil {
		return fmt.Errorf("converting: %w", err)
	}
	errs := validation.ValidateEncryptionConfiguration(&internal, false)
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, safeFieldError(e))
	}
	return errors.Join(out...)
}

// safeFieldError formats a validation error without its value unless the value is a plain name: the
// apiserver's messages can embed a whole provider, keys included.
func safeFieldError(e *field.Error) error {
	switch v := e.BadValue.(type) {
	case string:
		if v != "REDACTED" && !strings.HasSuffix(e.Field, ".secret") {
			return fmt.Errorf("%s: %s %q: %s", e.Field, e.Type, v, e.Detail)
		}
	case int, int32, int64:
		return fmt.Errorf("%s: %s %v: %s", e.Field, e.Type, v, e.Detail)
	}
	return fmt.Errorf("%s: %s: %s", e.Field, e.Type, e.Detail)
}

// Load reads and parses the file at path, and returns with it the FileHash of the bytes read: how
// kube-apiserver identifies the file it loaded. Errors name the path; a missing file is an error wrapping
// fs.ErrNotExist.
func Load(path string) (cfg *apiserverv1.EncryptionConfiguration, fileHash string, err error) {
	data, err := pki.ReadFile(path, pki.MaxConfigSize)
	if err != nil {
		return nil, "", err
	}
	if cfg, err = Parse(data); err != nil {
		return nil, "", fmt.Errorf("%s is not a valid encryption configuration (fix it by hand or restore it from a backup; k8scrypto never overwrites it): %w", path, err)
	}
	return cfg, FileHash(data), nil
}

// IsNotExist reports whether err says the file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// ProviderType names the provider of p ("" if none is set).
func ProviderType(p apiserverv1.ProviderConfiguration) string {
	switch {
	case p.Secretbox != nil:
		return Secretbox
	case p.AESCBC != nil:
		return AESCBC
	case p.AESGCM != nil:
		return AESGCM
	case p.KMS != nil:
		return KMS
	case p.Identity != nil:
		return Identity
	}
	return ""
}

// KeysOf returns the local keys of p (secretbox, aescbc, aesgcm; nil for kms and identity).
func KeysOf(p apiserverv1.ProviderConfiguration) []apiserverv1.Key {
	switch {
	case p.Secretbox != nil:
		return p.Secretbox.Keys
	case p.AESCBC != nil:
		return p.AESCBC.Keys
	case p.AESGCM != nil:
		return p.AESGCM.Keys
	}
	return nil
}

// setKeys replaces the local keys of p.
func setKeys(p *apiserverv1.ProviderConfiguration, keys []apiserverv1.Key) {
	switch {
	case p.Secretbox != nil:
		p.Secretbox.Keys = keys
	case p.AESCBC != nil:
		p.AESCBC.Keys = keys
	case p.AESGCM != nil:
		p.AESGCM.Keys = keys
	}
}

func forEachKey(cfg *apiserverv1.EncryptionConfiguration, fn func(provider string, k apiserverv1.Key)) {
	if cfg == nil {
		return
	}
	for _, rc := range cfg.Resources {
		for _, p := range rc.Providers {
			for _, k := range KeysOf(p) {
				fn(ProviderType(p), k)
			}
		}
	}
}

// GroupResources parses the resource names of an entry as the apiserver does ("deployments.apps",
// "*.apps", "*.", "*.*").
func GroupResources(names []string) []schema.GroupResource {
	out := make([]schema.GroupResource, len(names))
	for i, n := range names {
		out[i] = schema.ParseGroupResource(n)
	}
	return out
}
