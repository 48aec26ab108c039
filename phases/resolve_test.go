package phases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
)

// valueCase is one field given one bad value: as a flag (the K8SCRYPTO_* variables and the settings file
// set the same flag values, cmd's bindSettings) and as the kubeadm configuration's field.
type valueCase struct {
	name string
	flag func(o *config.Overrides)
	// doc is the kind of document and field path of the configuration file; value its YAML value.
	kind, path string
	value      any
	// want are pieces of the message, which must name the field.
	want []string
	// flagOnly: a YAML file cannot hold the value (bytes that are not UTF-8), so only the flag gives it.
	flagOnly bool
}

func manySANs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("san-%d.example.com", i)
	}
	return out
}

func badValues(dir string) []valueCase {
	return []valueCase{
		{"advertise address not an IP", func(o *config.Overrides) { o.AdvertiseAddress = "10.0.0.300" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "10.0.0.300",
			[]string{"localAPIEndpoint.advertiseAddress (--advertise-address)", `"10.0.0.300"`, "not an IP address"}, false},
		{"advertise address unspecified", func(o *config.Overrides) { o.AdvertiseAddress = "0.0.0.0" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "0.0.0.0",
			[]string{"localAPIEndpoint.advertiseAddress (--advertise-address)", `"0.0.0.0"`, "unspecified address"}, false},
		{"advertise address unspecified IPv6", func(o *config.Overrides) { o.AdvertiseAddress = "::" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "::",
			[]string{"localAPIEndpoint.advertiseAddress", `"::"`, "unspecified address"}, false},
		{"advertise address multicast", func(o *config.Overrides) { o.AdvertiseAddress = "224.0.0.1" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "224.0.0.1",
			[]string{"localAPIEndpoint.advertiseAddress", "multicast"}, false},
		{"advertise address broadcast", func(o *config.Overrides) { o.AdvertiseAddress = "255.255.255.255" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "255.255.255.255",
			[]string{"localAPIEndpoint.advertiseAddress", "broadcast"}, false},
		{"advertise address loopback", func(o *config.Overrides) { o.AdvertiseAddress = "127.0.0.1" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "127.0.0.1",
			[]string{"localAPIEndpoint.advertiseAddress", "loopback"}, false},
		{"advertise address link-local", func(o *config.Overrides) { o.AdvertiseAddress = "169.254.1.1" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "169.254.1.1",
			[]string{"localAPIEndpoint.advertiseAddress", "link-local"}, false},
		{"advertise address with a newline", func(o *config.Overrides) { o.AdvertiseAddress = "10.0.0.5\n" }, "InitConfiguration", "localAPIEndpoint.advertiseAddress", "10.0.0.5\n",
			[]string{"localAPIEndpoint.advertiseAddress", `"10.0.0.5\n"`, "control character U+000A"}, false},
		{"node name not a DNS name", func(o *config.Overrides) { o.NodeName = "cp_1" }, "InitConfiguration", "nodeRegistration.name", "cp_1",
			[]string{"nodeRegistration.name (--node-name)", `"cp_1"`, "RFC 1123"}, false},
		{"node name with a newline", func(o *config.Overrides) { o.NodeName = "cp-1\n" }, "InitConfiguration", "nodeRegistration.name", "cp-1\n",
			[]string{"nodeRegistration.name (--node-name)", `"cp-1\n"`, "control character U+000A"}, false},
		{"node name with an escape", func(o *config.Overrides) { o.NodeName = "cp\x1b[31m" }, "InitConfiguration", "nodeRegistration.name", "cp\x1b[31m",
			[]string{"nodeRegistration.name", "control character U+001B"}, false},
		{"cert SAN not a name", func(o *config.Overrides) { o.APIServerCertSANs = []string{"bad_name!"} }, "ClusterConfiguration", "apiServer.certSANs", []string{"bad_name!"},
			[]string{"apiServer.certSANs (--apiserver-cert-extra-sans)", `"bad_name!"`, "not an IP address or an RFC 1123 DNS name"}, false},
		{"cert SAN unspecified", func(o *config.Overrides) { o.APIServerCertSANs = []string{"0.0.0.0"} }, "ClusterConfiguration", "apiServer.certSANs", []string{"0.0.0.0"},
			[]string{"apiServer.certSANs (--apiserver-cert-extra-sans)", `"0.0.0.0"`, "unspecified address"}, false},
		{"cert SAN multicast", func(o *config.Overrides) { o.APIServerCertSANs = []string{"ff02::1"} }, "ClusterConfiguration", "apiServer.certSANs", []string{"ff02::1"},
			[]string{"apiServer.certSANs", `"ff02::1"`, "multicast"}, false},
		{"cert SAN broadcast", func(o *config.Overrides) { o.APIServerCertSANs = []string{"255.255.255.255"} }, "ClusterConfiguration", "apiServer.certSANs", []string{"255.255.255.255"},
			[]string{"apiServer.certSANs", "broadcast"}, false},
		{"cert SAN with a tab", func(o *config.Overrides) { o.APIServerCertSANs = []string{"a\tb.example.com"} }, "ClusterConfiguration", "apiServer.certSANs", []string{"a\tb.example.com"},
			[]string{"apiServer.certSANs", `"a\tb.example.com"`, "control character U+0009"}, false},
		{"too many cert SANs", func(o *config.Overrides) { o.APIServerCertSANs = manySANs(pki.MaxSANs + 1) }, "ClusterConfiguration", "apiServer.certSANs", manySANs(pki.MaxSANs + 1),
			[]string{"apiServer.certSANs (--apiserver-cert-extra-sans)", fmt.Sprintf("%d entries, more than the %d allowed", pki.MaxSANs+1, pki.MaxSANs)}, false},
		{"pki dir with a newline", func(o *config.Overrides) { o.CertDir = filepath.Join(dir, "p\nki") }, "ClusterConfiguration", "certificatesDir", filepath.Join(dir, "p\nki"),
			[]string{"certificatesDir (--cert-dir)", `p\nki"`, "control character U+000A"}, false},
		{"pki dir with DEL", func(o *config.Overrides) { o.CertDir = filepath.Join(dir, "pki\x7f") }, "ClusterConfiguration", "certificatesDir", filepath.Join(dir, "pki\x7f"),
			[]string{"certificatesDir (--cert-dir)", "control character U+007F"}, false},
		{"pki dir not UTF-8", func(o *config.Overrides) { o.CertDir = filepath.Join(dir, "pki\xff") }, "ClusterConfiguration", "certificatesDir", filepath.Join(dir, "pki\xff"),
			[]string{"certificatesDir (--cert-dir)", "not UTF-8"}, true},
		{"service CIDR", func(o *config.Overrides) { o.ServiceCIDR = "10.96.0.0/33" }, "ClusterConfiguration", "networking.serviceSubnet", "10.96.0.0/33",
			[]string{"networking.serviceSubnet (--service-cidr)", `"10.96.0.0/33"`, "is not a CIDR"}, false},
		{"DNS domain", func(o *config.Overrides) { o.ServiceDNSDomain = "Cluster_Local" }, "ClusterConfiguration", "networking.dnsDomain", "Cluster_Local",
			[]string{"networking.dnsDomain (--service-dns-domain)", `"Cluster_Local"`}, false},
		{"control-plane endpoint unspecified", func(o *config.Overrides) { o.ControlPlaneEndpoint = "0.0.0.0:6443" }, "ClusterConfiguration", "controlPlaneEndpoint", "0.0.0.0:6443",
			[]string{"controlPlaneEndpoint (--control-plane-endpoint)", "unspecified address"}, false},
		{"algorithm", func(o *config.Overrides) { o.EncryptionAlgorithm = "DSA-1024" }, "ClusterConfiguration", "encryptionAlgorithm", "DSA-1024",
			[]string{"encryptionAlgorithm (--encryption-algorithm)", `"DSA-1024"`, "must be one of"}, false},
		{"validity longer than the CA's", func(o *config.Overrides) { o.CertValidity = 100000 * time.Hour }, "ClusterConfiguration", "certificateValidityPeriod", "100000h",
			[]string{"certificateValidityPeriod", `"100000h0m0s"`, "longer than caCertificateValidityPeriod"}, false},
	}
}

// configFile is a kubeadm configuration with one field set (path is dotted), the others kubeadm's defaults.
func configFile(t *testing.T, dir, kind, path string, value any) string {
	t.Helper()
	doc := map[string]any{"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": kind}
	m := doc
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next := map[string]any{}
		m[p] = next
		m = next
	}
	m[parts[len(parts)-1]] = value
	data, err := json.Marshal(doc) // JSON is YAML, with every control character escaped in a quoted scalar
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("\x7f"), []byte(`\u007f`)) // but DEL, which YAML wants escaped too
	f := filepath.Join(dir, "kubeadm.yaml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestValuesValidatedTheSameFromEverySource: each bad value, given as a flag or in the kubeadm configuration,
// is a usage error (exit 2) with the same message, naming the field and its flag, before anything is
// written. The K8SCRYPTO_* variables and the settings file reach this as the flag values (cmd's
// bindSettings); cmd's TestBadValueFromEachSource runs the four sources through the binary's entry point.
func TestValuesValidatedTheSameFromEverySource(t *testing.T) {
	host := func() (string, error) { return "cp-1", nil }
	for _, tc := range badValues("/srv") {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			base := config.Overrides{CertDir: filepath.Join(dir, "pki"), NodeName: "cp-1", AdvertiseAddress: "10.0.0.5"}
			tc := tc
			if tc.path == "certificatesDir" { // the directory must be where the test looks for writes
				tc = badValues(dir)[slices.IndexFunc(badValues(dir), func(c valueCase) bool { return c.name == tc.name })]
			}
			flags := base
			tc.flag(&flags)
			fileFlags := base
			switch tc.path { // the file's own field: the flag would override it
			case "localAPIEndpoint.advertiseAddress":
				fileFlags.AdvertiseAddress = ""
			case "nodeRegistration.name":
				fileFlags.NodeName = ""
			case "certificatesDir":
				fileFlags.CertDir = ""
			}
			sources := []ConfigSource{{Flags: flags, Hostname: host}}
			if !tc.flagOnly {
				sources = append(sources, ConfigSource{File: configFile(t, dir, tc.kind, tc.path, tc.value), Flags: fileFlags, Hostname: host})
			}
			var msgs []string
			for _, src := range sources {
				_, err := Init(t.Context(), &Runner{Phases: InitPhases()}, Selection{}, InitOptions{Config: src, KubeconfigDir: filepath.Join(dir, "kube"), Now: time.Unix(0, 0), AuditLog: filepath.Join(dir, "audit.log")})
				var ue *UsageError
				if !errors.As(err, &ue) {
					t.Fatalf("source %+v: %v (%T), want a *UsageError (exit 2)", src, err, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the message lacks %q:\n%s", w, err)
					}
				}
				msgs = append(msgs, err.Error())
			}
			if len(msgs) == 2 && msgs[0] != msgs[1] {
				t.Errorf("the flag and the configuration file give different messages:\nflag: %s\nfile: %s", msgs[0], msgs[1])
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "kubeadm.yaml" {
					t.Errorf("a refused run wrote %s", e.Name())
				}
			}
		})
	}
}

// TestControlCharactersRefusedBeforeAnyFile: a newline, tab, escape or DEL in any path or name that reaches
// a file k8scrypto writes (the certificate directory and so the encryption config's path, the kubeconfig
// directory, the kubeadm config's output and every value rendered into it, the audit log) is a usage error
// naming the field, for every phase and for a dry run, before anything is written.
func TestControlCharactersRefusedBeforeAnyFile(t *testing.T) {
	phaseSets := [][]string{nil, {"certs"}, {"encryption-config"}, {"kubeconfig"}, {"kubeadm-config"}}
	for _, cc := range []string{"\n", "\t", "\x1b", "\x7f", "\r", "\x00"} {
		for _, field := range []struct {
			name string
			set  func(dir string, o *InitOptions)
			want string
		}{
			{"cert dir", func(dir string, o *InitOptions) { o.Config.Flags.CertDir = filepath.Join(dir, "pki"+cc) }, "certificatesDir (--cert-dir)"},
			{"kubeconfig dir", func(dir string, o *InitOptions) { o.KubeconfigDir = filepath.Join(dir, "kube"+cc) }, "--kubeconfig-dir"},
			{"kubeadm config out", func(dir string, o *InitOptions) { o.KubeadmConfigOut = filepath.Join(dir, "kubeadm"+cc+".yaml") }, "--kubeadm-config-out"},
			{"audit log", func(dir string, o *InitOptions) { o.AuditLog = filepath.Join(dir, "audit"+cc+".log") }, "--audit-log"},
			{"node name", func(dir string, o *InitOptions) { o.Config.Flags.NodeName = "cp-1" + cc }, "nodeRegistration.name (--node-name)"},
			{"SAN", func(dir string, o *InitOptions) {
				o.Config.Flags.APIServerCertSANs = []string{"api" + cc + ".example.com"}
			}, "apiServer.certSANs"},
			{"control-plane endpoint", func(dir string, o *InitOptions) {
				o.Config.Flags.ControlPlaneEndpoint = "api" + cc + ".example.com:6443"
			}, "controlPlaneEndpoint (--control-plane-endpoint)"},
			{"DNS domain", func(dir string, o *InitOptions) { o.Config.Flags.ServiceDNSDomain = "cluster" + cc + ".local" }, "networking.dnsDomain (--service-dns-domain)"},
		} {
			for _, only := range phaseSets {
				for _, dry := range []bool{false, true} {
					dir := t.TempDir()
					o := InitOptions{
						Config:        ConfigSource{Flags: config.Overrides{CertDir: filepath.Join(dir, "pki"), NodeName: "cp-1", AdvertiseAddress: "10.0.0.5"}, Hostname: func() (string, error) { return "cp-1", nil }},
						KubeconfigDir: filepath.Join(dir, "kube"), AuditLog: filepath.Join(dir, "audit.log"), Now: time.Unix(0, 0), DryRun: dry,
					}
					field.set(dir, &o)
					_, err := Init(t.Context(), &Runner{Phases: InitPhases()}, Selection{Only: only}, o)
					var ue *UsageError
					if !errors.As(err, &ue) || !strings.Contains(err.Error(), field.want) || !strings.Contains(err.Error(), fmt.Sprintf("control character %U", []rune(cc)[0])) {
						t.Errorf("%q in the %s, phases %v, dry run %v: %v; want a usage error naming %s and the character", cc, field.name, only, dry, err, field.want)
					}
					if entries, _ := os.ReadDir(dir); len(entries) > 0 {
						t.Errorf("%q in the %s, phases %v: a refused run wrote %s", cc, field.name, only, entries[0].Name())
					}
				}
			}
		}
	}
	// The backup directory of the commands that take backups.
	_, err := OpenSession(context.Background(), SessionOptions{CertDir: t.TempDir(), BackupDir: "/var/lib/k8s\ncrypto", Backups: true})
	if ue := new(UsageError); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--backup-dir") {
		t.Errorf("a newline in --backup-dir: %v", err)
	}
}

// TestListInputsBounded: the resources to encrypt and to re-encrypt are bounded (pki.MaxListItems); past it,
// a usage error with the count, before anything is written or sent.
func TestListInputsBounded(t *testing.T) {
	many := make([]string, pki.MaxListItems+1)
	for i := range many {
		many[i] = fmt.Sprintf("r%d.example.com", i)
	}
	want := fmt.Sprintf("%d entries, more than the %d allowed", pki.MaxListItems+1, pki.MaxListItems)
	dir := t.TempDir()
	_, err := Init(t.Context(), &Runner{Phases: InitPhases()}, Selection{}, InitOptions{
		Config:        ConfigSource{Flags: config.Overrides{CertDir: filepath.Join(dir, "pki"), NodeName: "cp-1", AdvertiseAddress: "10.0.0.5"}},
		KubeconfigDir: filepath.Join(dir, "kube"), AuditLog: filepath.Join(dir, "audit.log"), Encryption: EncryptionOptions{Resources: many},
	})
	if ue := new(UsageError); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--encrypt-resources: "+want) {
		t.Errorf("init with %d resources: %v", len(many), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("a refused init wrote %s", entries[0].Name())
	}
	var o ReencryptOptions
	o.API.Kubeconfig, o.Workers, o.PageSize, o.Resources = filepath.Join(dir, "admin.conf"), 1, 1, many
	_, err = RunReencrypt(t.Context(), o)
	if ue := new(UsageError); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--resources: "+want) {
		t.Errorf("reencrypt with %d resources: %v", len(many), err)
	}
	// --etcd-endpoints, in every command that counts what etcd stores: refused before the configuration is
	// read (the certificate directory does not even exist) and before any endpoint is dialled.
	endpoints := make([]string, pki.MaxListItems+1)
	for i := range endpoints {
		endpoints[i] = fmt.Sprintf("https://127.0.0.1:%d", 2000+i)
	}
	etcd := Etcd{Endpoints: endpoints, Prefix: "/registry", PageSize: 1}
	missing := ConfigSource{Flags: config.Overrides{CertDir: filepath.Join(dir, "pki")}}
	o.Resources, o.Etcd = nil, etcd
	_, reencryptErr := RunReencrypt(t.Context(), o)
	_, statusErr := EncryptionStatus(t.Context(), ReadOptions{Config: missing}, APIServer{}, etcd)
	_, pruneErr := EncryptionRotate(t.Context(), "prune", EncryptionRotateOptions{Config: missing, Yes: true, Etcd: etcd})
	for name, err := range map[string]error{"reencrypt": reencryptErr, "encryption status": statusErr, "encryption rotate prune": pruneErr} {
		if ue := new(UsageError); !errors.As(err, &ue) || err.Error() != "--etcd-endpoints: "+want+": remove some" {
			t.Errorf("%s with %d etcd endpoints: %v", name, len(endpoints), err)
		}
	}
	etcd.Endpoints = []string{"https://127.0.0.1:2379\n"}
	if _, err := EncryptionStatus(t.Context(), ReadOptions{Config: missing}, APIServer{}, etcd); !strings.Contains(fmt.Sprint(err), "--etcd-endpoints: invalid value") {
		t.Errorf("an etcd endpoint with a newline: %v", err)
	}
}
