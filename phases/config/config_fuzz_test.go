package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/pki"
)

// FuzzLoad feeds arbitrary bytes through the whole of config loading: strict decoding, kubeadm's defaults and
// k8scrypto's validation. It must never panic or hang, and whatever it accepts must be usable: every
// certificate of the catalogue gets a request without error, so a file that passes Load cannot fail later
// in a phase for a reason validation should have caught.
//
// Seeds: the testdata files here (good and bad) and testdata/fuzz/FuzzLoad. Run: hack/fuzz.sh.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: 10.96.0.0/12,fd00::/108\n"))
	hostname := func() (string, error) { return "fuzz-host", nil }
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// Without an address, resolve would probe the host's interfaces: give one, as --advertise-address does.
		o := Overrides{}
		if c.Init.LocalAPIEndpoint.AdvertiseAddress == "" {
			o.AdvertiseAddress = "10.0.0.1"
		}
		if err := c.resolve(o, hostname); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := c.PKI.Validate(); err != nil {
			t.Fatalf("resolve accepted a configuration Validate rejects: %v", err)
		}
		for _, spec := range c.PKI.Certs() {
			req, err := spec.Request(c.PKI, now)
			if err != nil {
				t.Fatalf("accepted configuration, but %s cannot be requested: %v", spec.Name, err)
			}
			if req.CommonName == "" || !req.NotAfter.After(req.NotBefore) {
				t.Fatalf("%s: request %+v", spec.Name, req)
			}
		}
		for _, k := range pki.Kubeconfigs() {
			if _, err := k.ServerURL(c.PKI); err != nil {
				t.Fatalf("accepted configuration, but %s has no server URL: %v", k.FileName, err)
			}
		}
	})
}
