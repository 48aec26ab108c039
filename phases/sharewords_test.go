package phases

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"k8scrypto.dev/k8scrypto/pki/certshare"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

// TestShareErrorsNameTheFlags: pki/certshare reports a bundle or Secret that does not open as data; the
// flags and command that concern it are named here.
func TestShareErrorsNameTheFlags(t *testing.T) {
	files := certshare.Files{"ca.crt": []byte("cert")}
	key := bytes.Repeat([]byte{7}, certshare.KeySize)
	keyed, err := certshare.SealBundle(files, certshare.BundleSecret{Key: key}, pkitest.Rand(1))
	if err != nil {
		t.Fatal(err)
	}
	pp, err := certshare.SealBundle(files, certshare.BundleSecret{Passphrase: []byte("p")}, pkitest.Rand(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		secret certshare.BundleSecret
		want   string
	}{
		{"not a bundle", []byte("apiVersion: v1\n"), certshare.BundleSecret{Key: key}, `not a usable k8scrypto bundle: it does not start with K8SCRYPTO-BUNDLE (not a bundle written by "k8scrypto certs export")`},
		{"passphrase for a keyed bundle", keyed, certshare.BundleSecret{Passphrase: []byte("p")}, "not a usable k8scrypto bundle: it was sealed with a raw key: open it with --key-file, not --passphrase-file"},
		{"key for a passphrase bundle", pp, certshare.BundleSecret{Key: key}, "not a usable k8scrypto bundle: it was sealed with a passphrase: open it with --passphrase-file, not --key-file"},
	} {
		_, err := certshare.OpenBundle(tc.data, tc.secret)
		if err = bundleError(err); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v\nwant %s", tc.name, err, tc.want)
		}
	}
	sealed, err := certshare.SealSecretData(files, key, pkitest.Rand(3))
	if err != nil {
		t.Fatal(err)
	}
	_, err = certshare.OpenSecretData(sealed, bytes.Repeat([]byte{8}, certshare.KeySize))
	if err = wrongKeyError(err); !errors.Is(err, certshare.ErrWrongKey) || !strings.HasSuffix(err.Error(), "the data does not decrypt with this key (a wrong --certificate-key, or data altered or uploaded with another key)") {
		t.Errorf("wrong certificate key: %v", err)
	}
}

// TestKMSOptionErrorsNameTheFlags: a KMS option without the kms provider, and kms without its options, are
// refused by Build as data and worded with init's flags.
func TestKMSOptionErrorsNameTheFlags(t *testing.T) {
	for _, tc := range []struct {
		o    encryption.Options
		want string
	}{
		{encryption.Options{Provider: encryption.AESGCM, KMSName: "x"}, "--kms-name and --kms-endpoint apply only to --encryption-provider kms, not aesgcm"},
		{encryption.Options{Provider: encryption.KMS, KMSName: "x"}, "--encryption-provider kms needs --kms-name and --kms-endpoint unix:///path/to/plugin.sock"},
	} {
		_, err := encryption.Build(tc.o, pkitest.Now, pkitest.Rand(1))
		ke := new(encryption.KMSOptionsError)
		if !errors.As(err, &ke) || kmsFlagsError(ke).Error() != tc.want {
			t.Errorf("%+v: %v", tc.o, err)
		}
	}
}
