package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/pki"
)

// Kinds of certificate that renewal and expiry checks know.
const (
	KindCertificate = "certificate"
	KindCA          = "certificate-authority"
	KindKubeconfig  = "kubeconfig"
)

// certTarget is one certificate renewal and expiry checks look at: a PKI leaf or CA, or the client
// certificate embedded in a kubeconfig.
type certTarget struct {
	Name     string // kubeadm's name: "apiserver", "etcd-ca", "admin.conf"
	Kind     string
	CAName   string // signing CA; "" for a CA
	CertPath string // PKI certificate, or the kubeconfig file
	KeyPath  string // PKI key; "" for kubeconfigs (the key is embedded)
	Spec     *pki.CertSpec
	KC       *pki.KubeconfigSpec
	// Optional entries are not expected on every control-plane node: super-admin.conf exists only where
	// "init" ran, and kubelet.conf belongs to the kubelet.
	Optional bool
}

// certTargets lists the leaves (PKI certificates and kubeconfigs) and the CAs this configuration has, each
// sorted by name as kubeadm's check-expiration and "renew all" list them.
func certTargets(cfg *pki.Config, kubeconfigDir string) (leaves, cas []certTarget) {
	for _, s := range cfg.Certs() {
		t := certTarget{Name: s.Name, Kind: KindCertificate, CAName: s.CAName,
			CertPath: s.CertPath(cfg.CertDir), KeyPath: s.KeyPath(cfg.CertDir), Spec: &s}
		if s.IsCA() {
			t.Kind = KindCA
			cas = append(cas, t)
		} else {
			leaves = append(leaves, t)
		}
	}
	for _, k := range pki.Kubeconfigs() {
		leaves = append(leaves, certTarget{Name: k.FileName, Kind: KindKubeconfig, CAName: pki.KubeconfigCAName,
			CertPath: k.Path(kubeconfigDir), KC: &k, Optional: k.FileName == "super-admin.conf" || !k.Renewable})
	}
	byName := func(a, b certTarget) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(leaves, byName)
	slices.SortFunc(cas, byName)
	return leaves, cas
}

// kubeconfigClient is what expiry checks need from a kubeconfig: the current context's client certificate,
// embedded or referenced. It is parsed with a plain YAML decoder rather than clientcmd (ParseKubeconfig),
// which costs several times more per file and matters for a check run every minute; renewal, which rewrites
// the file, uses ParseKubeconfig.
type kubeconfigClient struct {
	CertData []byte // embedded client-certificate-data
	CertFile string // client-certificate, resolved against the kubeconfig's directory
	KeyData  []byte // embedded client-key-data
	KeyFile  string // client-key, resolved likewise
}

type kubeconfigYAML struct {
	CurrentContext string `json:"current-context"`
	Contexts       []struct {
		Name    string `json:"name"`
		Context struct {
			User string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			CertData []byte `json:"client-certificate-data"`
			CertFile string `json:"client-certificate"`
			KeyData  []byte `json:"client-key-data"`
			KeyFile  string `json:"client-key"`
		} `json:"user"`
	} `json:"users"`
}

// parseKubeconfigClient finds the current context's client certificate; path is only for messages and for
// resolving a relative file reference.
func parseKubeconfigClient(path string, data []byte) (*kubeconfigClient, error) {
	var k kubeconfigYAML
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s: not a valid kubeconfig: %w", path, err)
	}
	user, found := "", false
	for _, c := range k.Contexts {
		if c.Name == k.CurrentContext && k.CurrentContext != "" {
			user, found = c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: current-context %q is not one of its contexts", path, k.CurrentContext)
	}
	for _, u := range k.Users {
		if u.Name != user {
			continue
		}
		kc := &kubeconfigClient{CertData: u.User.CertData, CertFile: resolveRelative(path, u.User.CertFile),
			KeyData: u.User.KeyData, KeyFile: resolveRelative(path, u.User.KeyFile)}
		if len(kc.CertData) == 0 && kc.CertFile == "" {
			return nil, fmt.Errorf("%s: user %q has no client certificate (token or exec credentials are not k8scrypto's)", path, user)
		}
		return kc, nil
	}
	return nil, fmt.Errorf("%s: the current context refers to user %q, which is not defined", path, user)
}

// loadedTarget is a target read from disk.
type loadedTarget struct {
	Cert    *x509.Certificate
	Key     crypto.Signer // nil when the key file is absent
	KeyErr  error         // the key exists but cannot be used
	Path    string        // where the certificate was read (a kubelet.conf may reference another file)
	KC      *Kubeconfig   // renewal only
	Managed bool          // a kubeconfig referencing a certificate file that someone else (the kubelet) rotates
	Missing bool
}

// loadTarget reads a target's certificate and its key (a missing key file leaves Key nil) and, for renewal
// (withKey), the whole kubeconfig. A missing certificate is not an error (Missing is set); an unreadable
// one is.
func loadTarget(t certTarget, withKey bool) (*loadedTarget, error) {
	lt := &loadedTarget{Path: t.CertPath}
	if t.Kind != KindKubeconfig {
		cert, _, err := LoadCert(t.CertPath)
		if errors.Is(err, fs.ErrNotExist) {
			lt.Missing = true
			return lt, nil
		}
		if err != nil {
			return lt, err
		}
		lt.Cert = cert
		lt.Key, lt.KeyErr = LoadKey(t.KeyPath)
		if errors.Is(lt.KeyErr, fs.ErrNotExist) {
			lt.Key, lt.KeyErr = nil, nil
		}
		return lt, nil
	}
	data, err := readRegular(t.CertPath)
	if errors.Is(err, fs.ErrNotExist) {
		lt.Missing = true
		return lt, nil
	}
	if err != nil {
		return lt, err
	}
	if withKey {
		kc, err := ParseKubeconfig(t.CertPath, data)
		if err != nil {
			return lt, err
		}
		lt.KC, lt.Cert, lt.Key, lt.Managed = kc, kc.ClientCert, kc.ClientKey, !kc.Embedded
		if !kc.Embedded {
			lt.Path = resolveRelative(t.CertPath, kc.Config.AuthInfos[kc.User].ClientCertificate)
		}
		return lt, nil
	}
	kc, err := parseKubeconfigClient(t.CertPath, data)
	if err != nil {
		return lt, err
	}
	certData := kc.CertData
	if len(certData) == 0 {
		// A referenced file: kubelet.conf after TLS bootstrap points at the kubelet's rotated certificate.
		lt.Path, lt.Managed = kc.CertFile, true
		if certData, err = readRegular(kc.CertFile); err != nil {
			return lt, fmt.Errorf("%s: client certificate: %w", t.CertPath, err)
		}
	}
	if lt.Cert, _, err = pki.ParseCertChain(certData); err != nil {
		return lt, fmt.Errorf("%s: client certificate: %w", lt.Path, err)
	}
	switch {
	case len(kc.KeyData) > 0:
		if lt.Key, err = pki.ParsePrivateKey(kc.KeyData); err != nil {
			lt.KeyErr = fmt.Errorf("%s: client-key-data: %w", t.CertPath, err)
		}
	case kc.KeyFile != "":
		lt.Key, lt.KeyErr = LoadKey(kc.KeyFile)
	}
	return lt, nil
}

func resolveRelative(kubeconfig, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(kubeconfig), p)
}

// ExpirationAPIVersion and ExpirationKind identify check-expiration's structured output, which has the
// fields of kubeadm's output.kubeadm.k8s.io/v1alpha3 CertificateExpirationInfo and a few more.
const ExpirationKind = "CertificateExpirationInfo"

// CertificateExpiration is one row of check-expiration.
type CertificateExpiration struct {
	Name           string    `json:"name"`
	ExpirationDate time.Time `json:"expirationDate,omitzero"`
	// ResidualTime is the time left until ExpirationDate, in seconds (negative once expired).
	ResidualTime      int64  `json:"residualTime"`
	ExternallyManaged bool   `json:"externallyManaged"`
	CAName            string `json:"caName,omitempty"`
	Missing           bool   `json:"missing"`

	Kind      string    `json:"kind"`
	Path      string    `json:"path"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	Serial    string    `json:"serial,omitempty"`
	SHA256    string    `json:"sha256,omitempty"`
	// ManagedBy names who renews a certificate k8scrypto does not: "kubelet" for a kubelet.conf that
	// references the kubelet's rotated client certificate.
	ManagedBy string `json:"managedBy,omitempty"`
	// Optional entries (super-admin.conf, kubelet.conf) may legitimately be absent on a node.
	Optional bool   `json:"optional,omitempty"`
	Error    string `json:"error,omitempty"`
	// Problem is what a peer would reject apart from expiry: a certificate its CA on disk did not sign, a
	// key that is not the certificate's, a CA key that matches no certificate of the CA file.
	Problem string `json:"problem,omitempty"`
}

// ExpirationInfo is the result of check-expiration.
type ExpirationInfo struct {
	APIVersion             string                  `json:"apiVersion"`
	Kind                   string                  `json:"kind"`
	CheckTime              time.Time               `json:"checkTime"`
	CertificatesDir        string                  `json:"certificatesDir"`
	KubeconfigDir          string                  `json:"kubeconfigDir"`
	Certificates           []CertificateExpiration `json:"certificates"`
	CertificateAuthorities []CertificateExpiration `json:"certificateAuthorities"`
	// Warnings name CAs that expire before the certificates they sign today would.
	Warnings []string `json:"warnings,omitempty"`
}

// CheckExpiration reads every certificate, kubeconfig client certificate and CA the configuration has and
// reports its expiry at now. It writes nothing and never fails as a whole: an unreadable file is reported
// in its row's Error.
func CheckExpiration(cfg *pki.Config, kubeconfigDir string, now time.Time) ExpirationInfo {
	leaves, cas := certTargets(cfg, kubeconfigDir)
	info := ExpirationInfo{
		APIVersion:             ResultAPIVersion,
		Kind:                   ExpirationKind,
		CheckTime:              now.UTC(),
		CertificatesDir:        cfg.CertDir,
		KubeconfigDir:          kubeconfigDir,
		Certificates:           []CertificateExpiration{},
		CertificateAuthorities: []CertificateExpiration{},
	}
	// A CA is externally managed when its key is absent (kubeadm's IsExternallyManaged).
	external := map[string]bool{}
	onDisk := map[string]caOnDisk{}
	for _, t := range cas {
		if _, err := os.Lstat(t.KeyPath); errors.Is(err, fs.ErrNotExist) {
			external[t.Name] = true
		}
		if _, err := os.Lstat(t.CertPath); err == nil {
			onDisk[t.Name] = loadCAOnDisk(t)
		}
	}
	row := func(t certTarget) CertificateExpiration {
		r := CertificateExpiration{Name: t.Name, Kind: t.Kind, CAName: t.CAName, Path: t.CertPath, Optional: t.Optional}
		if t.Kind == KindCA {
			r.ExternallyManaged = external[t.Name]
		} else {
			r.ExternallyManaged = external[t.CAName]
		}
		lt, err := loadTarget(t, false)
		switch {
		case err != nil:
			r.Error = err.Error()
		case lt.Missing:
			r.Missing = true
		default:
			r.Path = lt.Path
			if lt.Managed {
				r.ManagedBy = "kubelet"
			}
			r.ExpirationDate = lt.Cert.NotAfter.UTC()
			r.NotBefore = lt.Cert.NotBefore.UTC()
			r.ResidualTime = int64(lt.Cert.NotAfter.Sub(now) / time.Second)
			r.Serial = lt.Cert.SerialNumber.String()
			r.SHA256 = pki.Fingerprint(lt.Cert.Raw)
			if t.Kind == KindCA {
				r.Problem = onDisk[t.Name].problem
			} else {
				r.Problem = chainProblem(lt.Cert, lt.Key, lt.KeyErr, onDisk[t.CAName], t.CAName)
			}
		}
		return r
	}
	for _, t := range leaves {
		info.Certificates = append(info.Certificates, row(t))
	}
	for _, t := range cas {
		r := row(t)
		info.CertificateAuthorities = append(info.CertificateAuthorities, r)
		if w := caEndOfLife(r, now, cfg.CertValidity); w != "" {
			info.Warnings = append(info.Warnings, w)
		}
	}
	return info
}

// ExpiringWithin lists the problems a monitoring check should fail on: certificates and CAs that expire
// sooner than within from the check time (or have expired), files that cannot be read, and missing files
// that every control-plane node must have.
func (info ExpirationInfo) ExpiringWithin(within time.Duration) []string {
	var out []string
	deadline := info.CheckTime.Add(within)
	for _, r := range slices.Concat(info.Certificates, info.CertificateAuthorities) {
		switch {
		case r.Error != "":
			out = append(out, fmt.Sprintf("%s: %s", r.Name, r.Error))
		case r.Problem != "":
			out = append(out, fmt.Sprintf("%s: %s", r.Name, r.Problem))
		case r.Missing && !r.Optional:
			out = append(out, fmt.Sprintf("%s: missing (%s)", r.Name, r.Path))
		case r.Missing:
		case !r.ExpirationDate.After(info.CheckTime):
			out = append(out, fmt.Sprintf("%s: expired on %s", r.Name, r.ExpirationDate.Format(time.RFC3339)))
		case r.ExpirationDate.Before(deadline):
			out = append(out, fmt.Sprintf("%s: expires on %s", r.Name, r.ExpirationDate.Format(time.RFC3339)))
		}
	}
	return out
}

// Metric names of the Prometheus text exposition (for node-exporter's textfile collector).
const (
	MetricExpiration        = "k8scrypto_certificate_expiration_timestamp_seconds"
	MetricNotBefore         = "k8scrypto_certificate_not_before_timestamp_seconds"
	MetricMissing           = "k8scrypto_certificate_missing"
	MetricReadError         = "k8scrypto_certificate_read_error"
	MetricExternallyManaged = "k8scrypto_certificate_externally_managed"
	MetricChainProblem      = "k8scrypto_certificate_chain_problem"
	MetricCheckTime         = "k8scrypto_check_timestamp_seconds"
)

// WritePrometheus renders info in the Prometheus text exposition format 0.0.4. Every row gets the missing,
// read-error and externally-managed gauges; rows with a certificate also get its validity bounds.
func (info ExpirationInfo) WritePrometheus(w io.Writer) error {
	rows := slices.Concat(info.Certificates, info.CertificateAuthorities)
	var b strings.Builder
	family := func(name, help string, value func(CertificateExpiration) (int64, bool)) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for _, r := range rows {
			if v, ok := value(r); ok {
				fmt.Fprintf(&b, "%s{%s} %d\n", name, metricLabels(r), v)
			}
		}
	}
	present := func(r CertificateExpiration) bool { return !r.Missing && r.Error == "" }
	family(MetricExpiration, "Time the certificate expires (NotAfter), in seconds since the Unix epoch.",
		func(r CertificateExpiration) (int64, bool) { return r.ExpirationDate.Unix(), present(r) })
	family(MetricNotBefore, "Time the certificate becomes valid (NotBefore), in seconds since the Unix epoch.",
		func(r CertificateExpiration) (int64, bool) { return r.NotBefore.Unix(), present(r) })
	family(MetricMissing, "1 when the certificate file (or kubeconfig) does not exist.",
		func(r CertificateExpiration) (int64, bool) { return boolInt(r.Missing), true })
	family(MetricReadError, "1 when the file exists but its certificate cannot be read.",
		func(r CertificateExpiration) (int64, bool) { return boolInt(r.Error != ""), true })
	family(MetricExternallyManaged, "1 when the signing CA's key is absent, so k8scrypto cannot renew the certificate.",
		func(r CertificateExpiration) (int64, bool) { return boolInt(r.ExternallyManaged), true })
	family(MetricChainProblem, "1 when a peer would reject the certificate whatever its dates: not signed by its CA on disk, or a key that does not match.",
		func(r CertificateExpiration) (int64, bool) { return boolInt(r.Problem != ""), present(r) })
	fmt.Fprintf(&b, "# HELP %s Time of the check, in seconds since the Unix epoch.\n# TYPE %s gauge\n%s %d\n",
		MetricCheckTime, MetricCheckTime, MetricCheckTime, info.CheckTime.Unix())
	_, err := io.WriteString(w, b.String())
	return err
}

func metricLabels(r CertificateExpiration) string {
	labels := [][2]string{{"name", r.Name}, {"kind", r.Kind}, {"ca", r.CAName}, {"path", r.Path}}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		if l[1] != "" {
			parts = append(parts, l[0]+`="`+labelEscaper.Replace(l[1])+`"`)
		}
	}
	return strings.Join(parts, ",")
}

// labelEscaper escapes a label value as the text format requires (only backslash, quote and newline).
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
