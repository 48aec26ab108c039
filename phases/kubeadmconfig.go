package phases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"k8scrypto.dev/k8scrypto/phases/config"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/encryption"
	"k8scrypto.dev/k8scrypto/pki/sakeys"
	"k8scrypto.dev/k8scrypto/templates"
)

// KubeadmConfigFileName is the rendered config's default name under the kubeconfig directory.
const KubeadmConfigFileName = "kubeadm-config.yaml"

// kubeadmAPIVersion is the only kubeadm config version kubeadm v1.37 accepts without --allow-experimental-api.
const kubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"

// KubeadmConfigPhase renders the kubeadm configuration for "kubeadm init --config": the input configuration
// and flags, with the API server wired to what k8scrypto generated.
//
// INPUTS: the loaded kubeadm configuration (and its other documents); which of sa.key, sa.pub and
// encryption-config.yaml exist or are staged by this run.
// OUTPUTS: --kubeadm-config-out (default <kubeconfig-dir>/kubeadm-config.yaml), mode 0600 (it may carry
// bootstrap tokens or a certificate key from the input).
func KubeadmConfigPhase() Phase {
	return Phase{
		Name:  "kubeadm-config",
		Short: "Render the kubeadm configuration that makes kubeadm reuse every generated file",
		Long: `Render an InitConfiguration and ClusterConfiguration (kubeadm.k8s.io/v1beta4) from the input configuration and
flags, with certificatesDir, kubernetesVersion, encryptionAlgorithm and the validity periods set, and the API server
given the encryption provider config. Other documents of the input (KubeletConfiguration, ...) are carried over
verbatim. "kubeadm init --config <file>" then finds every certificate, key and kubeconfig in place.
k8scrypto validates the fields it uses and carries the others over unchecked: run "kubeadm config validate
--config <file>" before "kubeadm init" (examples/bootstrap-control-plane.sh does) to check the rest.`,
		Run:     func(_ context.Context, d *Data) error { return ensureKubeadmConfig(d) },
		Outputs: func(d *Data) []string { return []string{d.KubeadmConfigPath()} },
	}
}

// KubeadmConfigPath is where the rendered kubeadm configuration goes.
func (d *Data) KubeadmConfigPath() string {
	if d.KubeadmConfigOut != "" {
		return d.KubeadmConfigOut
	}
	return filepath.Join(d.KubeconfigDir, KubeadmConfigFileName)
}

// kubeadmKubeconfigDir is where "kubeadm init" reads kubeconfigs: it has no --kubeconfig-dir (only its phase
// subcommands do).
const kubeadmKubeconfigDir = "/etc/kubernetes"

// KubeadmInitCommand is the command that continues from what k8scrypto wrote: kubeadm init, or kubeadm
// join for a node whose configuration is a JoinConfiguration.
func (d *Data) KubeadmInitCommand() string {
	if d.Kubeadm != nil && d.Kubeadm.Join != nil {
		return "kubeadm join --config " + pki.AbsPath(d.KubeadmConfigPath())
	}
	return "kubeadm init --config " + pki.AbsPath(d.KubeadmConfigPath())
}

// kubeconfigsElsewhere reports whether "kubeadm init" would miss the kubeconfigs and write its own.
func (d *Data) kubeconfigsElsewhere() bool {
	return pki.AbsPath(d.KubeconfigDir) != kubeadmKubeconfigDir
}

func ensureKubeadmConfig(d *Data) error {
	path := d.KubeadmConfigPath()
	data, err := RenderKubeadmConfig(d)
	if err != nil {
		return err
	}
	d.nextStep = d.KubeadmInitCommand()
	if d.kubeconfigsElsewhere() {
		d.Log.Warn("kubeadm init reads kubeconfig files only from "+kubeadmKubeconfigDir+"; use --kubeconfig-dir "+kubeadmKubeconfigDir+
			" on the node, or pass --kubeconfig-dir to kubeadm's phase commands", "kubeconfig-dir", pki.AbsPath(d.KubeconfigDir))
	}
	r := FileResult{Type: "kubeadm-config", Path: path}
	exists, err := d.Exists(path)
	if err != nil {
		return err
	}
	if exists {
		old, err := d.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Equal(old, data) {
			d.Reuse(r)
			return nil
		}
		// The file is derived from the inputs only, so a changed input replaces it rather than failing.
		r.Reason = "replaced: the configuration changed since it was rendered"
	}
	if d.DryRun {
		data = nil
	}
	d.Stage(pki.File{Path: path, Data: data, Mode: pki.ModeKey}, r)
	return nil
}

// RenderKubeadmConfig renders the kubeadm configuration for this run.
func RenderKubeadmConfig(d *Data) ([]byte, error) {
	if d.Kubeadm == nil || d.Kubeadm.Init == nil || d.Kubeadm.Cluster == nil {
		return nil, errors.New("kubeadm-config: no kubeadm configuration was loaded")
	}
	in, cl := d.Kubeadm.Init.DeepCopy(), d.Kubeadm.Cluster.DeepCopy()
	certDir := pki.AbsPath(d.Cfg.CertDir)
	cl.CertificatesDir = certDir
	if cl.KubernetesVersion == "" {
		cl.KubernetesVersion = config.KubernetesVersion
	}
	cl.EncryptionAlgorithm = v1beta4.EncryptionAlgorithmType(d.Cfg.Algorithm)
	cl.CertificateValidityPeriod = &metav1.Duration{Duration: d.Cfg.CertValidity}
	cl.CACertificateValidityPeriod = &metav1.Duration{Duration: d.Cfg.CAValidity}
	// The PKI was made for this node name and address: pin them so kubeadm cannot detect different ones.
	in.NodeRegistration.Name = d.Cfg.NodeName
	in.LocalAPIEndpoint.AdvertiseAddress = d.Cfg.AdvertiseAddress.String()
	if err := wireAPIServer(d, certDir, &cl.APIServer); err != nil {
		return nil, err
	}

	var initBody []byte
	var err error
	if d.Kubeadm.Join != nil {
		initBody, err = renderJoin(d, certDir, cl)
	} else {
		initBody, err = minimalYAML(in, normalizeInit,
			[]string{"nodeRegistration", "name"}, []string{"localAPIEndpoint", "advertiseAddress"})
		if err != nil {
			err = fmt.Errorf("kubeadm-config: InitConfiguration: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	clusterBody, err := minimalYAML(cl, normalizeCluster,
		[]string{"certificatesDir"}, []string{"kubernetesVersion"}, []string{"encryptionAlgorithm"},
		[]string{"certificateValidityPeriod"}, []string{"caCertificateValidityPeriod"})
	if err != nil {
		return nil, fmt.Errorf("kubeadm-config: ClusterConfiguration: %w", err)
	}
	td := templates.KubeadmConfigData{
		NodeName:      d.Cfg.NodeName,
		NextCommand:   d.KubeadmInitCommand(),
		CertDir:       certDir,
		KubeconfigDir: pki.AbsPath(d.KubeconfigDir),
		Elsewhere:     d.kubeconfigsElsewhere(),
		APIVersion:    kubeadmAPIVersion,
		Join:          d.Kubeadm.Join != nil,
		Init:          string(initBody),
		Cluster:       string(clusterBody),
	}
	for _, doc := range d.Kubeadm.Extra {
		td.Extra = append(td.Extra, strings.TrimRight(string(doc), "\n\t ")+"\n")
	}
	var buf bytes.Buffer
	if err := templates.KubeadmConfig().Execute(&buf, td); err != nil {
		return nil, fmt.Errorf("kubeadm-config: rendering: %w", err)
	}
	return buf.Bytes(), nil
}

// renderJoin is the body of a joining control plane's JoinConfiguration: its name and address pinned as
// the PKI was made for them; no certificateKey, since the shared files are on the node already (kubeadm
// would download them again, without the encryption config); bootstrap-token discovery at the
// controlPlaneEndpoint unless given, pinned to the ca.crt on the node.
func renderJoin(d *Data, certDir string, cl *v1beta4.ClusterConfiguration) ([]byte, error) {
	j := d.Kubeadm.Join.DeepCopy()
	j.NodeRegistration.Name = d.Cfg.NodeName
	j.ControlPlane.LocalAPIEndpoint.AdvertiseAddress = d.Cfg.AdvertiseAddress.String()
	if j.ControlPlane.CertificateKey != "" {
		d.Log.Info("the rendered JoinConfiguration leaves out controlPlane.certificateKey: the shared keys are on the node already")
		j.ControlPlane.CertificateKey = ""
	}
	if bt := j.Discovery.BootstrapToken; bt != nil {
		if bt.APIServerEndpoint == "" {
			bt.APIServerEndpoint = cl.ControlPlaneEndpoint
		}
		caPath := filepath.Join(certDir, "ca.crt")
		data, err := d.ReadFile(caPath)
		if err != nil {
			return nil, fmt.Errorf("kubeadm-config: JoinConfiguration: the discovery pin: %w", err)
		}
		if len(data) > 0 { // a dry run stages no content
			ca, _, err := pki.ParseCertChain(data)
			if err != nil {
				return nil, fmt.Errorf("kubeadm-config: %s: %w", caPath, err)
			}
			pin := CAPin(ca)
			if len(bt.CACertHashes) > 0 && !slices.Contains(bt.CACertHashes, pin) {
				return nil, fmt.Errorf("kubeadm-config: JoinConfiguration.discovery.bootstrapToken.caCertHashes %s does not pin %s (%s): the shared keys on this node are of another cluster, or the pin is; correct the pin, or install the cluster's keys (k8scrypto join phase download-certs)",
					strings.Join(bt.CACertHashes, ","), caPath, pin)
			}
			if !slices.Contains(bt.CACertHashes, pin) {
				bt.CACertHashes = append(bt.CACertHashes, pin)
			}
		}
	}
	body, err := minimalYAML(j, normalizeJoin,
		[]string{"nodeRegistration", "name"}, []string{"controlPlane", "localAPIEndpoint", "advertiseAddress"},
		[]string{"discovery", "bootstrapToken", "apiServerEndpoint"}, []string{"discovery", "bootstrapToken", "caCertHashes"})
	if err != nil {
		return nil, fmt.Errorf("kubeadm-config: JoinConfiguration: %w", err)
	}
	return body, nil
}

func normalizeJoin(c *v1beta4.JoinConfiguration) {
	v1beta4.SetObjectDefaults_JoinConfiguration(c)
	c.TypeMeta = metav1.TypeMeta{}
}

// wireAPIServer points the API server at the encryption config and keeps it on the service-account keys
// k8scrypto wrote. kubeadm passes extraArgs by replacing its own argument of the same name, so a user's
// service-account-key-file would drop kubeadm's sa.pub: ours is added next to it.
func wireAPIServer(d *Data, certDir string, api *v1beta4.APIServer) error {
	var errs []error
	encPath := filepath.Join(certDir, encryption.FileName)
	if ok, err := d.Exists(encPath); err != nil {
		return err
	} else if ok {
		// The file lives in certificatesDir, which kubeadm mounts into the API server's pod; a KMS plugin's
		// socket usually does not.
		vols, err := kmsSocketMounts(d, encPath, certDir)
		if err != nil {
			return err
		}
		for _, v := range vols {
			if !slices.ContainsFunc(api.ExtraVolumes, func(h v1beta4.HostPathMount) bool { return h.Name == v.Name || h.HostPath == v.HostPath }) {
				api.ExtraVolumes = append(api.ExtraVolumes, v)
			}
		}
		switch v, set := argValues(api.ExtraArgs, "encryption-provider-config"); {
		case !set:
			api.ExtraArgs = append(api.ExtraArgs, v1beta4.Arg{Name: "encryption-provider-config", Value: encPath})
		case len(v) != 1 || v[0] != encPath:
			errs = append(errs, fmt.Errorf("apiServer.extraArgs: encryption-provider-config is %q but k8scrypto manages %s; remove the argument, or skip the encryption-config phase (--skip-phases encryption-config) to keep yours",
				strings.Join(v, ","), encPath))
		}
		// Without the reload the API server needs a restart at every key rotation step; a user's explicit
		// value is kept.
		if _, set := argValues(api.ExtraArgs, "encryption-provider-config-automatic-reload"); !set {
			api.ExtraArgs = append(api.ExtraArgs, v1beta4.Arg{Name: "encryption-provider-config-automatic-reload", Value: "true"})
		}
	}
	saPub, saKey := filepath.Join(certDir, sakeys.PubName), filepath.Join(certDir, sakeys.KeyName)
	if v, set := argValues(api.ExtraArgs, "service-account-key-file"); set && !slices.Contains(v, saPub) {
		if ok, _ := d.Exists(saPub); ok {
			api.ExtraArgs = append(api.ExtraArgs, v1beta4.Arg{Name: "service-account-key-file", Value: saPub})
		}
	}
	if v, set := argValues(api.ExtraArgs, "service-account-signing-key-file"); set && (len(v) != 1 || v[0] != saKey) {
		if ok, _ := d.Exists(saKey); ok {
			errs = append(errs, fmt.Errorf("apiServer.extraArgs: service-account-signing-key-file is %q but k8scrypto manages %s; remove the argument (kubeadm sets it to %s)",
				strings.Join(v, ","), saKey, saKey))
		}
	}
	return errors.Join(errs...)
}

// kmsSocketMounts returns a read-only hostPath mount for the directory of every KMS plugin socket the
// encryption config names outside certDir (connecting to a unix socket needs no write access to its mount).
func kmsSocketMounts(d *Data, encPath, certDir string) ([]v1beta4.HostPathMount, error) {
	data, err := d.ReadFile(encPath)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 { // a dry run stages no content
		return nil, nil
	}
	cfg, err := encryption.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", encPath, err)
	}
	var out []v1beta4.HostPathMount
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.KMS == nil {
				continue
			}
			u, err := url.Parse(p.KMS.Endpoint)
			if err != nil || u.Scheme != "unix" || u.Path == "" {
				return nil, fmt.Errorf("%s: kms provider %q: endpoint %q is not unix:///path/to/socket", encPath, p.KMS.Name, p.KMS.Endpoint)
			}
			dir := filepath.Dir(u.Path)
			if within(dir, certDir) || slices.ContainsFunc(out, func(h v1beta4.HostPathMount) bool { return h.HostPath == dir }) {
				continue
			}
			out = append(out, v1beta4.HostPathMount{
				Name:     fmt.Sprintf("k8scrypto-kms-%d", len(out)+1),
				HostPath: dir, MountPath: dir, ReadOnly: true, PathType: corev1.HostPathDirectoryOrCreate,
			})
		}
	}
	return out, nil
}

func argValues(args []v1beta4.Arg, name string) ([]string, bool) {
	var out []string
	for _, a := range args {
		if a.Name == name {
			out = append(out, a.Value)
		}
	}
	return out, len(out) > 0
}

// within reports whether path lies under dir.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// minimalYAML marshals obj without the fields kubeadm would set to the same value itself: each field is
// dropped only if decoding and normalising (defaulting) the remainder gives back exactly obj normalised. keep
// lists fields (JSON paths) that stay regardless. apiVersion and kind are left to the template, so normalise
// must clear them.
func minimalYAML[T any](obj *T, normalize func(*T), keep ...[]string) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var target T
	if err := json.Unmarshal(raw, &target); err != nil {
		return nil, err
	}
	normalize(&target)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "apiVersion")
	delete(m, "kind")
	same := func() bool {
		b, err := json.Marshal(m)
		if err != nil {
			return false
		}
		var back T
		if err := json.Unmarshal(b, &back); err != nil {
			return false
		}
		normalize(&back)
		return reflect.DeepEqual(&back, &target)
	}
	if !same() {
		return nil, errors.New("internal error: the object does not survive a JSON round trip")
	}
	prune(m, nil, keep, same)
	return yaml.Marshal(m)
}

func normalizeInit(c *v1beta4.InitConfiguration) {
	v1beta4.SetObjectDefaults_InitConfiguration(c)
	c.TypeMeta = metav1.TypeMeta{}
}

func normalizeCluster(c *v1beta4.ClusterConfiguration) {
	v1beta4.SetObjectDefaults_ClusterConfiguration(c)
	c.TypeMeta = metav1.TypeMeta{}
}

// prune removes every key of m (depth first, in sorted order) whose removal keeps same() true.
func prune(m map[string]any, path []string, keep [][]string, same func() bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := append(slices.Clone(path), k)
		exact, under := keepStatus(p, keep)
		if exact {
			continue
		}
		v := m[k]
		if !under {
			delete(m, k)
			if same() {
				continue
			}
			m[k] = v
		}
		switch child := v.(type) {
		case map[string]any:
			prune(child, p, keep, same)
			if len(child) == 0 && !under {
				delete(m, k)
				if !same() {
					m[k] = child
				}
			}
		case []any: // e.g. a user's bootstrap token: keep it, without the fields kubeadm defaults
			for _, elem := range child {
				if em, ok := elem.(map[string]any); ok {
					prune(em, nil, nil, same)
				}
			}
		}
	}
}

// keepStatus says whether p is a kept path, or an ancestor of one.
func keepStatus(p []string, keep [][]string) (exact, ancestor bool) {
	for _, k := range keep {
		if slices.Equal(k, p) {
			exact = true
		} else if len(k) > len(p) && slices.Equal(k[:len(p)], p) {
			ancestor = true
		}
	}
	return exact, ancestor
}
