// Package config loads kubeadm's own v1beta4 configuration (InitConfiguration and ClusterConfiguration),
// strictly and defaulted as kubeadm defaults it, applies command-line overrides, and resolves the values
// the PKI depends on.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	netutils "k8s.io/utils/net"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/internal/suggest"
	"k8scrypto.dev/k8scrypto/pki"
)

// KubernetesVersion is the version of the kubeadm types k8scrypto is built against (TestKubernetesVersionIsTheOneBuiltAgainst
// ties it to go.mod); the rendered kubeadm config defaults to it (kubeadm's own default, "stable-1", needs the
// network), and "k8scrypto version" reports it.
const KubernetesVersion = "v1.37.2"

const kubeadmGroup = "kubeadm.k8s.io"

// Overrides are command-line values; each non-empty one replaces the file's.
type Overrides struct {
	CertDir              string
	NodeName             string
	AdvertiseAddress     string
	ControlPlaneEndpoint string
	ServiceCIDR          string
	ServiceDNSDomain     string
	APIServerCertSANs    []string
	EncryptionAlgorithm  string
	CertValidity         time.Duration
	CAValidity           time.Duration
	StrictPermissions    bool
}

// Config is a loaded configuration.
type Config struct {
	// Init and Cluster are kubeadm's objects after defaulting and overrides.
	Init    *v1beta4.InitConfiguration
	Cluster *v1beta4.ClusterConfiguration
	// Join is set for a control plane joining an existing cluster: the file has a JoinConfiguration with
	// controlPlane and no InitConfiguration. The node's name and address come from it (into Init's fields,
	// which the PKI reads, and back), and the rendered config is a JoinConfiguration for "kubeadm join".
	Join *v1beta4.JoinConfiguration
	// Extra holds the file's other documents verbatim (KubeletConfiguration, KubeProxyConfiguration, kubeadm's
	// Join/Reset/UpgradeConfiguration, and any other with a warning), to carry them into the rendered config.
	Extra [][]byte
	// PKI is what the certificates are derived from.
	PKI *pki.Config
	// Warnings are about documents of the file that neither k8scrypto nor kubeadm uses; the command logs them.
	Warnings []string
	// Notices say what k8scrypto chose or changed itself: an advertise address it picked, a node name or SAN
	// it lower-cased, a node name taken from the host name. The command logs them (never silently).
	Notices []string
}

// InvalidError is a configuration that cannot be used as given, whichever its source (the file, a flag,
// a K8SCRYPTO_* variable or the settings file, which all reach Load as the same values): a file that does
// not decode or a value that does not validate. The same value gets the same message from every source,
// and the command exits 2 (a usage error).
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// fieldFlags are the flags that set a configuration field; an error about the field names both, so that the
// message is the same whether the value came from the file, the flag, its K8SCRYPTO_* variable or the
// settings file.
var fieldFlags = map[string]string{
	"certificatesDir":                   "--cert-dir",
	"nodeRegistration.name":             "--node-name",
	"localAPIEndpoint.advertiseAddress": "--advertise-address",
	"controlPlaneEndpoint":              "--control-plane-endpoint",
	"networking.serviceSubnet":          "--service-cidr",
	"networking.dnsDomain":              "--service-dns-domain",
	"apiServer.certSANs":                "--apiserver-cert-extra-sans",
	"encryptionAlgorithm":               "--encryption-algorithm",
}

// Invalid returns errs (nil ones dropped) as one *InvalidError, each *pki.FieldError naming the flag that
// also sets its field; nil when there is none.
func Invalid(errs ...error) error {
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		var list []error
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		} else {
			list = []error{err}
		}
		for _, e := range list {
			var fe *pki.FieldError
			if errors.As(e, &fe) {
				if flag, ok := fieldFlags[fe.Field]; ok {
					c := *fe
					c.Field += " (" + flag + ")"
					e = &c
				}
			}
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &InvalidError{errors.Join(out...)}
}

// Load reads path ("" for none), applies overrides, defaults and validates. hostname is injected for tests
// (nil means os.Hostname).
func Load(path string, o Overrides, hostname func() (string, error)) (*Config, error) {
	cfg := &Config{Init: &v1beta4.InitConfiguration{}, Cluster: &v1beta4.ClusterConfiguration{}}
	if path != "" {
		data, err := pki.ReadFile(path, pki.MaxConfigSize) // regular files only: a FIFO would hang the run
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := cfg.decode(data); err != nil {
			return nil, &InvalidError{fmt.Errorf("config %s: %w", path, err)}
		}
	}
	if hostname == nil {
		hostname = os.Hostname
	}
	if err := cfg.resolve(o, hostname); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse decodes a config document stream without resolving host-dependent defaults; for tests and fuzzing.
func Parse(data []byte) (*Config, error) {
	cfg := &Config{Init: &v1beta4.InitConfiguration{}, Cluster: &v1beta4.ClusterConfiguration{}}
	return cfg, cfg.decode(data)
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// componentConfigGroups are the groups kubeadm accepts next to its own documents and hands to the components;
// they are carried into the rendered kubeadm config verbatim.
var componentConfigGroups = []string{"kubelet.config.k8s.io", "kubeproxy.config.k8s.io"}

// kindAPIVersions maps each kind kubeadm knows in a config file to its apiVersion, to catch a misspelt group.
var kindAPIVersions = map[string]string{
	"InitConfiguration": kubeadmGroup + "/v1beta4", "ClusterConfiguration": kubeadmGroup + "/v1beta4",
	"JoinConfiguration": kubeadmGroup + "/v1beta4", "ResetConfiguration": kubeadmGroup + "/v1beta4",
	"UpgradeConfiguration": kubeadmGroup + "/v1beta4",
	"KubeletConfiguration": "kubelet.config.k8s.io/v1beta1", "KubeProxyConfiguration": "kubeproxy.config.k8s.io/v1alpha1",
}

func (c *Config) decode(data []byte) error {
	reader := utilyaml.NewYAMLReader(bufioReader(data))
	seenInit, seenCluster := false, false
	var others []string // the GVKs of documents that are not Init/ClusterConfiguration
	var join *v1beta4.JoinConfiguration
	joinAt := -1 // its index in c.Extra
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("document %d: not valid YAML (line numbers count from the document's start; fix the syntax there): %w", i, err)
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			return fmt.Errorf("document %d: apiVersion and kind must be set", i)
		}
		gvk := tm.APIVersion + ", Kind=" + tm.Kind
		group, version, _ := strings.Cut(tm.APIVersion, "/")
		if group != kubeadmGroup {
			if err := checkForeignGroup(group, tm); err != nil {
				return fmt.Errorf("document %d: %w", i, err)
			}
			if !slices.Contains(componentConfigGroups, group) {
				// kubeadm warns and ignores such a document; it is carried over all the same, so that the
				// rendered file holds everything the input did.
				c.Warnings = append(c.Warnings, fmt.Sprintf("document %d (%s) is neither a kubeadm nor a component configuration: kubeadm will ignore it; check its apiVersion and kind", i, gvk))
			}
			others = append(others, gvk)
			c.Extra = append(c.Extra, doc)
			continue
		}
		if version != "v1beta4" {
			hint := ""
			if version == "v1beta3" || version == "v1beta2" || version == "v1beta1" {
				hint = ` (removed in kubeadm v1.37; convert it with "kubeadm config migrate" from kubeadm v1.36)`
			}
			return fmt.Errorf("document %d: unsupported apiVersion %q%s: use kubeadm.k8s.io/v1beta4", i, tm.APIVersion, hint)
		}
		var other any
		switch tm.Kind {
		case "InitConfiguration":
			if seenInit {
				return fmt.Errorf("document %d: more than one InitConfiguration", i)
			}
			seenInit = true
			if err := decodeStrict(doc, c.Init); err != nil {
				return fmt.Errorf("InitConfiguration: %w", err)
			}
			continue
		case "ClusterConfiguration":
			if seenCluster {
				return fmt.Errorf("document %d: more than one ClusterConfiguration", i)
			}
			seenCluster = true
			if err := decodeStrict(doc, c.Cluster); err != nil {
				return fmt.Errorf("ClusterConfiguration: %w", err)
			}
			continue
		case "JoinConfiguration":
			if join != nil {
				return fmt.Errorf("document %d: more than one JoinConfiguration", i)
			}
			join = &v1beta4.JoinConfiguration{}
			joinAt = len(c.Extra)
			other = join
		case "ResetConfiguration":
			other = &v1beta4.ResetConfiguration{}
		case "UpgradeConfiguration":
			other = &v1beta4.UpgradeConfiguration{}
		default:
			return fmt.Errorf("document %d: unknown kind %q in %s", i, tm.Kind, tm.APIVersion)
		}
		// kubeadm init accepts the other kubeadm kinds in its file and does not use them; so does k8scrypto,
		// carrying them over. They are checked as strictly as "kubeadm config validate" would.
		if err := decodeStrict(doc, other); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		others = append(others, gvk)
		c.Extra = append(c.Extra, doc)
	}
	if join != nil && join.ControlPlane != nil && !seenInit {
		// A joining control plane. Its ClusterConfiguration is the cluster's (kubeadm join fetches it from
		// the kubeadm-config ConfigMap; k8scrypto signs the node's certificates offline and needs its SANs).
		if !seenCluster {
			return errors.New("a JoinConfiguration with controlPlane (a joining control-plane node) needs the cluster's ClusterConfiguration next to it: k8scrypto signs this node's certificates offline from its SANs and endpoints; copy it from the cluster (kubectl -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}') into this file")
		}
		c.Join = join
		c.Extra = slices.Delete(c.Extra, joinAt, joinAt+1)
		return nil
	}
	if !seenInit && !seenCluster {
		// As kubeadm: a file that configures nothing is a mistake (a misspelt group, the wrong file).
		found := "the file has no documents"
		if len(others) > 0 {
			found = "found only " + strings.Join(others, "; ")
		}
		return fmt.Errorf("no InitConfiguration or ClusterConfiguration of %s/v1beta4 was found (%s): add one, or omit --config to use kubeadm's defaults", kubeadmGroup, found)
	}
	return nil
}

// checkForeignGroup rejects a document of another group whose kind or group shows a misspelt apiVersion:
// kubeadm would silently ignore it, and the settings in it would be lost.
func checkForeignGroup(group string, tm typeMeta) error {
	if want, ok := kindAPIVersions[tm.Kind]; ok && !strings.HasPrefix(want, group+"/") {
		wantGroup, _, _ := strings.Cut(want, "/")
		return fmt.Errorf("apiVersion %q: kind %s belongs to %s: use apiVersion %s", tm.APIVersion, tm.Kind, wantGroup, want)
	}
	for _, known := range append([]string{kubeadmGroup}, componentConfigGroups...) {
		if group != known && suggest.Distance(group, known) <= 2 {
			return fmt.Errorf("apiVersion %q: unknown group %q, did you mean %s?", tm.APIVersion, group, known)
		}
	}
	return nil
}

// decodeStrict decodes one document strictly. An unknown or duplicate field is reported with its path
// (yaml.UnmarshalStrict names only the last key) and what to do about it; a value of the wrong type with the
// path of its field (a type's own decoder, such as a duration's, names none).
func decodeStrict(doc []byte, obj any) error {
	err := yaml.UnmarshalStrict(doc, obj)
	if err == nil {
		return nil
	}
	js, jerr := yaml.YAMLToJSON(doc)
	if jerr != nil {
		return err
	}
	typ := reflect.TypeOf(obj).Elem()
	strict, nonStrict := sigsjson.UnmarshalStrict(js, reflect.New(typ).Interface())
	if len(strict) > 0 {
		return fmt.Errorf("%w: check the spelling and indentation against kubeadm's v1beta4 reference (https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/), or remove it", errors.Join(strict...))
	}
	if nonStrict == nil {
		return err
	}
	var tree any
	if json.Unmarshal(js, &tree) != nil {
		return err
	}
	fails := func(v any) bool {
		b, merr := json.Marshal(v)
		return merr != nil || sigsjson.UnmarshalCaseSensitivePreserveInts(b, reflect.New(typ).Interface()) != nil
	}
	if path, ok := badField(tree, "", func(v any) any { return v }, fails); ok && path != "" {
		return fmt.Errorf("%s: %w", path, nonStrict)
	}
	return err
}

// badField finds the path of the first value in tree that fails to decode on its own: it decodes the
// document cut down to one branch at a time (wrap rebuilds the document around a branch).
func badField(v any, path string, wrap func(any) any, fails func(any) bool) (string, bool) {
	if !fails(wrap(v)) {
		return "", false
	}
	switch t := v.(type) {
	case map[string]any:
		if fails(wrap(map[string]any{})) {
			return path, true // an object where the field takes another type
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub := path + "." + k
			if path == "" {
				sub = k
			}
			if p, ok := badField(t[k], sub, func(x any) any { return wrap(map[string]any{k: x}) }, fails); ok {
				return p, true
			}
		}
	case []any:
		if fails(wrap([]any{})) {
			return path, true
		}
		for i, e := range t {
			if p, ok := badField(e, fmt.Sprintf("%s[%d]", path, i), func(x any) any { return wrap([]any{x}) }, fails); ok {
				return p, true
			}
		}
	}
	return path, true
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || string(t) == "---" {
			continue
		}
		out = append(out, line...)
	}
	return out
}

func (c *Config) resolve(o Overrides, hostname func() (string, error)) error {
	in, cl := c.Init, c.Cluster
	in.APIVersion, in.Kind = kubeadmGroup+"/v1beta4", "InitConfiguration"
	cl.APIVersion, cl.Kind = kubeadmGroup+"/v1beta4", "ClusterConfiguration"
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if c.Join != nil {
		// A joining node's identity is its JoinConfiguration's; Init's fields carry it through the
		// resolution below and back.
		c.Join.APIVersion, c.Join.Kind = kubeadmGroup+"/v1beta4", "JoinConfiguration"
		in.NodeRegistration.Name = c.Join.NodeRegistration.Name
		if c.Join.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != "" {
			in.LocalAPIEndpoint.AdvertiseAddress = c.Join.ControlPlane.LocalAPIEndpoint.AdvertiseAddress
		}
		if c.Join.ControlPlane.LocalAPIEndpoint.BindPort != 0 {
			in.LocalAPIEndpoint.BindPort = c.Join.ControlPlane.LocalAPIEndpoint.BindPort
		}
	}
	set(&cl.CertificatesDir, o.CertDir)
	set(&in.NodeRegistration.Name, o.NodeName)
	set(&in.LocalAPIEndpoint.AdvertiseAddress, o.AdvertiseAddress)
	set(&cl.ControlPlaneEndpoint, o.ControlPlaneEndpoint)
	set(&cl.Networking.ServiceSubnet, o.ServiceCIDR)
	set(&cl.Networking.DNSDomain, o.ServiceDNSDomain)
	set((*string)(&cl.EncryptionAlgorithm), o.EncryptionAlgorithm)
	if len(o.APIServerCertSANs) > 0 {
		cl.APIServer.CertSANs = o.APIServerCertSANs
	}
	if o.CertValidity > 0 {
		cl.CertificateValidityPeriod = &metav1.Duration{Duration: o.CertValidity}
	}
	if o.CAValidity > 0 {
		cl.CACertificateValidityPeriod = &metav1.Duration{Duration: o.CAValidity}
	}
	if cl.KubernetesVersion == "" {
		cl.KubernetesVersion = KubernetesVersion
	}
	v1beta4.SetObjectDefaults_InitConfiguration(in)
	v1beta4.SetObjectDefaults_ClusterConfiguration(cl)

	// Host-dependent defaults, as kubeadm resolves them at run time. A control character is refused before
	// anything normalizes the value (a trailing newline would otherwise be trimmed away unseen).
	var errs []error
	if in.NodeRegistration.Name == "" {
		h, err := hostname()
		if err != nil {
			return fmt.Errorf("nodeRegistration.name is not set and the host name is unknown: %w", err)
		}
		in.NodeRegistration.Name = h
		c.Notices = append(c.Notices, fmt.Sprintf("nodeRegistration.name is not set: using the host name %q (set --node-name to choose)", h))
	}
	if err := pki.CheckText("nodeRegistration.name", in.NodeRegistration.Name); err != nil {
		return Invalid(err)
	}
	if n := strings.ToLower(strings.TrimSpace(in.NodeRegistration.Name)); n != in.NodeRegistration.Name {
		// kubeadm lower-cases the node name too (a Node's name must be lower case); the certificates carry it.
		c.Notices = append(c.Notices, fmt.Sprintf("nodeRegistration.name %q is used as %q: node names are lower case", in.NodeRegistration.Name, n))
		in.NodeRegistration.Name = n
	}
	// An empty address means "pick one", as kubeadm's SetAPIEndpointDynamicDefaults picks it: the address of
	// the default route's interface, which is said. Given explicitly, the unspecified address (0.0.0.0, ::) is
	// refused with the others no server can be reached at (pki.CheckServerAddress): kubeadm would pick one
	// silently, and the certificates would carry an address nobody chose.
	if in.LocalAPIEndpoint.AdvertiseAddress == "" {
		ip, err := utilnet.ChooseHostInterface()
		if err != nil {
			return fmt.Errorf("localAPIEndpoint.advertiseAddress is not set and no default interface was found (%v): set --advertise-address", err)
		}
		in.LocalAPIEndpoint.AdvertiseAddress = ip.String()
		c.Notices = append(c.Notices, fmt.Sprintf("localAPIEndpoint.advertiseAddress is not set: using %s, the address of the default route's interface, in the certificates (set --advertise-address to choose)", ip))
	}
	for i, s := range cl.APIServer.CertSANs {
		if l := strings.ToLower(s); l != s {
			c.Notices = append(c.Notices, fmt.Sprintf("apiServer.certSANs %q is used as %q: DNS names are case-insensitive and certificates carry them in lower case", s, l))
			cl.APIServer.CertSANs[i] = l
		}
	}

	// kubeadm requires an absolute certificatesDir; k8scrypto accepts a relative one (--cert-dir ./pki) and
	// resolves it once, so that every path it writes, journals and prints is absolute.
	certDir := cl.CertificatesDir
	if certDir != "" {
		abs, err := filepath.Abs(certDir)
		if err != nil {
			return fmt.Errorf("certificatesDir: %w", err)
		}
		certDir = abs
	}
	p := &pki.Config{
		CertDir:              certDir,
		NodeName:             in.NodeRegistration.Name,
		AdvertiseAddress:     netutils.ParseIPSloppy(in.LocalAPIEndpoint.AdvertiseAddress),
		BindPort:             in.LocalAPIEndpoint.BindPort,
		ServiceSubnet:        cl.Networking.ServiceSubnet,
		DNSDomain:            cl.Networking.DNSDomain,
		ControlPlaneEndpoint: cl.ControlPlaneEndpoint,
		APIServerCertSANs:    cl.APIServer.CertSANs,
		LocalEtcd:            cl.Etcd.Local != nil,
		Algorithm:            pki.Algorithm(cl.EncryptionAlgorithm),
		CertValidity:         cl.CertificateValidityPeriod.Duration,
		CAValidity:           cl.CACertificateValidityPeriod.Duration,
		StrictPermissions:    o.StrictPermissions,
	}
	if cl.Etcd.Local != nil {
		p.EtcdServerCertSANs = cl.Etcd.Local.ServerCertSANs
		p.EtcdPeerCertSANs = cl.Etcd.Local.PeerCertSANs
	}
	if p.AdvertiseAddress == nil {
		if err := pki.CheckText("localAPIEndpoint.advertiseAddress", in.LocalAPIEndpoint.AdvertiseAddress); err != nil {
			return Invalid(err)
		}
		return Invalid(&pki.FieldError{Field: "localAPIEndpoint.advertiseAddress", Value: in.LocalAPIEndpoint.AdvertiseAddress, Quote: true, Reason: "not an IP address"})
	}
	if cl.ControlPlaneEndpoint != strings.ToLower(cl.ControlPlaneEndpoint) {
		errs = append(errs, &pki.FieldError{Field: "controlPlaneEndpoint", Value: cl.ControlPlaneEndpoint, Quote: true, Reason: "must be lower case"})
	}
	if cl.Etcd.Local != nil && cl.Etcd.External != nil {
		errs = append(errs, errors.New("etcd: set either local or external, not both"))
	}
	if cl.Etcd.External != nil && len(cl.Etcd.External.Endpoints) == 0 {
		errs = append(errs, errors.New("etcd.external.endpoints: at least one endpoint must be specified"))
	}
	if cl.Etcd.External != nil {
		errs = append(errs, pki.CheckCount("etcd.external.endpoints", len(cl.Etcd.External.Endpoints), pki.MaxListItems))
		for _, f := range []struct{ field, value string }{
			{"etcd.external.caFile", cl.Etcd.External.CAFile}, {"etcd.external.certFile", cl.Etcd.External.CertFile},
			{"etcd.external.keyFile", cl.Etcd.External.KeyFile},
		} {
			errs = append(errs, pki.CheckText(f.field, f.value))
		}
		for _, ep := range cl.Etcd.External.Endpoints {
			errs = append(errs, pki.CheckText("etcd.external.endpoints", ep))
		}
	}
	errs = append(errs, p.Validate())
	if err := Invalid(errs...); err != nil {
		return err
	}
	if c.Join != nil {
		v1beta4.SetObjectDefaults_JoinConfiguration(c.Join)
		c.Join.NodeRegistration.Name = in.NodeRegistration.Name
		c.Join.ControlPlane.LocalAPIEndpoint.AdvertiseAddress = in.LocalAPIEndpoint.AdvertiseAddress
		c.Join.ControlPlane.LocalAPIEndpoint.BindPort = in.LocalAPIEndpoint.BindPort
		if err := checkJoinDiscovery(c.Join, cl); err != nil {
			return err
		}
	}
	c.PKI = p
	return nil
}

// checkJoinDiscovery: "kubeadm join --config" takes no --token or --discovery-token-ca-cert-hash beside the
// file, so the file must say how to find and trust the cluster.
func checkJoinDiscovery(j *v1beta4.JoinConfiguration, cl *v1beta4.ClusterConfiguration) error {
	d := j.Discovery
	switch {
	case d.File != nil:
		return nil
	case d.BootstrapToken == nil || d.BootstrapToken.Token == "":
		return errors.New("JoinConfiguration.discovery: set bootstrapToken.token (a bootstrap token, as kubeadm join --token; \"kubeadm join --config\" takes no --token beside the file) or discovery.file")
	case d.BootstrapToken.APIServerEndpoint == "" && cl.ControlPlaneEndpoint == "":
		return errors.New("JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint: not set, and the ClusterConfiguration has no controlPlaneEndpoint to default it to")
	}
	return nil
}
