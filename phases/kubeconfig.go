package phases

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k8scrypto.dev/k8scrypto/pki"
)

// KubeconfigPhase writes kubeadm's five kubeconfig files, one sub-phase each, in kubeadm's order.
//
// INPUTS: the configuration (node name, endpoints, cluster name, key algorithm, validity); the "ca" certificate
// authority; existing kubeconfig files, which are reused only when they are fully valid.
// OUTPUTS: <kubeconfig-dir>/{admin,super-admin,kubelet,controller-manager,scheduler}.conf, mode 0600.
func KubeconfigPhase() Phase {
	p := Phase{
		Name:  "kubeconfig",
		Short: "Generate the kubeconfig files of the control plane and the admin",
		Long: `Generate admin.conf, super-admin.conf, kubelet.conf, controller-manager.conf and scheduler.conf, each with a
client certificate signed by the cluster CA, exactly as kubeadm does. An existing file is reused only if its CA data
is ca.crt, its client certificate verifies against that CA now, has the expected subject and matches its key, and it
points at the expected API server.`,
	}
	for _, spec := range pki.Kubeconfigs() {
		p.Phases = append(p.Phases, Phase{
			Name:  spec.Name,
			Short: fmt.Sprintf("Generate %s (client %s)", spec.FileName, kubeconfigWho(spec)),
			Run:   func(_ context.Context, d *Data) error { return ensureKubeconfig(d, spec) },
			RunIf: joiningSkips(spec.Name),
			KeysNeeded: func(d *Data) []string {
				if haveAny(d, spec.Path(d.KubeconfigDir)) {
					return nil
				}
				return []string{spec.KeyName()}
			},
			Outputs: func(d *Data) []string { return []string{spec.Path(d.KubeconfigDir)} },
		})
	}
	return p
}

// joiningSkips leaves out, on a joining control plane (a JoinConfiguration), the kubeconfigs kubeadm join
// does not expect: kubelet.conf, which the kubelet's TLS bootstrap writes (kubeadm join's preflight refuses
// an existing one), and super-admin.conf, which only the first node has.
func joiningSkips(name string) func(d *Data) (bool, string) {
	var reason string
	switch name {
	case "kubelet":
		reason = "a joining control plane: the kubelet's TLS bootstrap writes kubelet.conf during kubeadm join, whose preflight refuses an existing one"
	case "super-admin":
		reason = "a joining control plane: kubeadm join writes no super-admin.conf; only the first node has one"
	default:
		return nil
	}
	return func(d *Data) (bool, string) {
		if d.Kubeadm != nil && d.Kubeadm.Join != nil {
			return false, reason
		}
		return true, ""
	}
}

func kubeconfigWho(s pki.KubeconfigSpec) string {
	cn := s.CommonName
	if s.NodeUser {
		cn = "system:node:<node name>"
	}
	if len(s.Organization) > 0 {
		return cn + " in " + strings.Join(s.Organization, ",")
	}
	return cn
}

// ClusterName is the kubeconfig cluster entry's name: ClusterConfiguration.clusterName, kubeadm's default otherwise.
func (d *Data) ClusterName() string {
	if d.Kubeadm != nil && d.Kubeadm.Cluster != nil && d.Kubeadm.Cluster.ClusterName != "" {
		return d.Kubeadm.Cluster.ClusterName
	}
	return pki.DefaultClusterName
}

func ensureKubeconfig(d *Data, spec pki.KubeconfigSpec) error {
	if d.KubeconfigDir == "" {
		return errors.New("no kubeconfig directory set (--kubeconfig-dir)")
	}
	path := spec.Path(d.KubeconfigDir)
	server, err := spec.ServerURL(d.Cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.FileName, err)
	}
	ca, err := d.CA(pki.KubeconfigCAName)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.FileName, err)
	}
	req := spec.Request(d.Cfg, ca.Cert, d.Now)
	exists, err := d.Exists(path)
	if err != nil {
		return err
	}
	if exists {
		kc, err := LoadKubeconfig(path)
		if err != nil {
			return fmt.Errorf("%w; move it away and re-run \"k8scrypto init phase kubeconfig %s\" to write a new one", err, spec.Name)
		}
		if err := checkKubeconfig(d, spec, kc, ca, req, server); err != nil {
			return err
		}
		r := kubeconfigResult(kc.ClientCert)
		r.Path = path
		d.Reuse(r)
		return nil
	}

	if ca.external() {
		return fmt.Errorf("external CA mode: %s has no key, so %s must be provided with a client certificate signed by that CA (%s)",
			pki.KubeconfigCAName, path, kubeconfigWho(spec))
	}
	if req.NotAfter.After(ca.Cert.NotAfter) {
		return fmt.Errorf("certificateValidityPeriod: the %s client certificate would expire on %s, after its CA %s (%s); shorten the period or renew the CA",
			spec.FileName, req.NotAfter.Format("2006-01-02"), pki.KubeconfigCAName, ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	}
	mode := pki.ModeKey // the file embeds a private key
	if d.DryRun {
		r := requestResult(req)
		r.Type = "kubeconfig"
		d.Stage(pki.File{Path: path, Mode: mode}, r)
		return nil
	}
	key, err := d.Keys.Get(spec.KeyName())
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", spec.FileName, err)
	}
	cert, err := pki.NewSignedCert(req, key.Public(), ca.Cert, ca.Key, d.Rand)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.FileName, err)
	}
	data, err := EncodeKubeconfig(server, d.ClusterName(), spec.CN(d.Cfg), ca.Cert, cert, key)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.FileName, err)
	}
	d.Stage(pki.File{Path: path, Data: data, Mode: mode}, kubeconfigResult(cert))
	return nil
}

// checkKubeconfig is the reuse rule: stricter than kubeadm's (which checks only the CA and merely warns about
// the server), because a stale client certificate or a wrong server breaks the component that uses the file.
func checkKubeconfig(d *Data, spec pki.KubeconfigSpec, kc *Kubeconfig, ca *CA, req pki.CertRequest, server string) error {
	var certProblems []string
	switch {
	case ca.Cert.Raw == nil: // the CA is being created in this (dry) run
		certProblems = append(certProblems, fmt.Sprintf("it cannot be signed by the %s CA this run creates", pki.KubeconfigCAName))
	case len(kc.CAs) == 0:
		certProblems = append(certProblems, "it has no certificate-authority data")
	case !kc.CAs[0].Equal(ca.Cert):
		caSpec, _ := pki.LookupCert(pki.KubeconfigCAName)
		certProblems = append(certProblems, fmt.Sprintf("its certificate-authority data is not %s", caSpec.CertPath(d.Cfg.CertDir)))
	}
	if ca.Cert.Raw != nil {
		if err := pki.VerifyChain(kc.ClientCert, kc.ClientChain, ca.Cert, d.Now); err != nil {
			certProblems = append(certProblems, fmt.Sprintf("its client certificate does not verify against %s: %v", pki.KubeconfigCAName, err))
		}
	}
	if kc.ClientCert.Subject.CommonName != req.CommonName || !sameStrings(kc.ClientCert.Subject.Organization, req.Organization) {
		certProblems = append(certProblems, fmt.Sprintf("its client certificate is for %q, not %q", subjectString(kc.ClientCert.Subject.CommonName, kc.ClientCert.Subject.Organization), subjectString(req.CommonName, req.Organization)))
	}
	if !slices.Contains(kc.ClientCert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(kc.ClientCert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		certProblems = append(certProblems, "its client certificate lacks the client-auth extended key usage")
	}
	if !pki.KeyMatchesCert(kc.ClientKey, kc.ClientCert) {
		certProblems = append(certProblems, "its client key does not match its client certificate")
	}
	var errs []string
	if len(certProblems) > 0 {
		errs = append(errs, strings.Join(certProblems, "; ")+
			fmt.Sprintf(" (run \"k8scrypto renew certs %s --force\" to re-issue it)", spec.FileName))
	}
	if kc.Server != server {
		errs = append(errs, fmt.Sprintf("it points at %s, not %s (set the cluster's server to %s, or move the file away and re-run \"k8scrypto init phase kubeconfig %s\")",
			kc.Server, server, server, spec.Name))
	}
	if len(errs) > 0 {
		return fmt.Errorf("existing kubeconfig %s cannot be reused: %s", kc.Path, strings.Join(errs, "; "))
	}
	return nil
}

func sameStrings(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func subjectString(cn string, org []string) string {
	if len(org) == 0 {
		return "CN=" + cn
	}
	return "CN=" + cn + ",O=" + strings.Join(org, "+")
}

func kubeconfigResult(cert *x509.Certificate) FileResult {
	r := certResult(cert)
	r.Type = "kubeconfig"
	return r
}

// EncodeKubeconfig builds a kubeconfig exactly as kubeadm's kubeconfigutil.CreateWithCerts and serialises it
// as clientcmd.WriteToFile does: cluster clusterName, user = the client CN, context "<user>@<cluster>",
// everything embedded.
func EncodeKubeconfig(server, clusterName, user string, ca, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding client key: %w", err)
	}
	ctx := pki.ContextName(user, clusterName)
	cfg := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{
			clusterName: {Server: server, CertificateAuthorityData: pki.EncodeCert(ca)},
		},
		Contexts: map[string]*clientcmdapi.Context{
			ctx: {Cluster: clusterName, AuthInfo: user},
		},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{
			user: {ClientCertificateData: pki.EncodeCert(cert), ClientKeyData: keyPEM},
		},
		CurrentContext: ctx,
	}
	return clientcmd.Write(cfg)
}

// Kubeconfig is the current context of a kubeconfig file, with its credentials parsed: what k8scrypto checks
// on reuse and replaces on renewal. It never prints key material.
type Kubeconfig struct {
	Path   string
	Config *clientcmdapi.Config
	// Context, Cluster and User name the current context and the entries it refers to.
	Context, Cluster, User string
	Server                 string
	// CAs is the cluster's certificate-authority data (or file), in order; kubeadm trusts the first.
	CAs []*x509.Certificate
	// ClientCert and ClientChain come from client-certificate-data, or from the client-certificate file a
	// bootstrapped kubelet.conf refers to (then Embedded is false).
	ClientCert  *x509.Certificate
	ClientChain []*x509.Certificate
	ClientKey   crypto.Signer
	Embedded    bool
}

// LoadKubeconfig reads a kubeconfig file and parses its current context's CA, client certificate and key.
// Relative file references are resolved against the file's directory, as kubectl does.
func LoadKubeconfig(path string) (*Kubeconfig, error) {
	data, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	return ParseKubeconfig(path, data)
}

// ParseKubeconfig is LoadKubeconfig for content already read; path names the file in errors and anchors
// relative references.
func ParseKubeconfig(path string, data []byte) (*Kubeconfig, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid kubeconfig: %w", path, err)
	}
	kc := &Kubeconfig{Path: path, Config: cfg, Context: cfg.CurrentContext}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if cfg.CurrentContext == "" || ctx == nil {
		return nil, fmt.Errorf("%s: current-context %q is not one of its contexts", path, cfg.CurrentContext)
	}
	kc.Cluster, kc.User = ctx.Cluster, ctx.AuthInfo
	cluster, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cluster == nil {
		return nil, fmt.Errorf("%s: context %q refers to cluster %q, which is not defined", path, kc.Context, ctx.Cluster)
	}
	if user == nil {
		return nil, fmt.Errorf("%s: context %q refers to user %q, which is not defined", path, kc.Context, ctx.AuthInfo)
	}
	kc.Server = cluster.Server
	dir := filepath.Dir(path)
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}

	caData := bytes.TrimSpace(cluster.CertificateAuthorityData)
	if len(caData) == 0 && cluster.CertificateAuthority != "" {
		if caData, err = pki.ReadFile(resolve(cluster.CertificateAuthority), pki.MaxPEMSize); err != nil {
			return nil, fmt.Errorf("%s: cluster %q: reading certificate-authority: %w", path, kc.Cluster, err)
		}
	}
	if len(caData) > 0 {
		first, rest, err := pki.ParseCertChain(caData)
		if err != nil {
			return nil, fmt.Errorf("%s: cluster %q: certificate-authority: %w", path, kc.Cluster, err)
		}
		kc.CAs = append([]*x509.Certificate{first}, rest...)
	}

	certData, keyData := user.ClientCertificateData, user.ClientKeyData
	kc.Embedded = len(certData) > 0
	if len(certData) == 0 && user.ClientCertificate != "" {
		if certData, err = pki.ReadFile(resolve(user.ClientCertificate), pki.MaxPEMSize); err != nil {
			return nil, fmt.Errorf("%s: user %q: reading client-certificate: %w", path, kc.User, err)
		}
	}
	if len(keyData) == 0 && user.ClientKey != "" {
		if keyData, err = pki.ReadFile(resolve(user.ClientKey), pki.MaxPEMSize); err != nil {
			return nil, fmt.Errorf("%s: user %q: reading client-key: %w", path, kc.User, err)
		}
	}
	if len(certData) == 0 || len(keyData) == 0 {
		return nil, fmt.Errorf("%s: user %q has no client certificate and key (token or exec credentials are not k8scrypto's)", path, kc.User)
	}
	if kc.ClientCert, kc.ClientChain, err = pki.ParseCertChain(certData); err != nil {
		return nil, fmt.Errorf("%s: user %q: client certificate: %w", path, kc.User, err)
	}
	if kc.ClientKey, err = pki.ParsePrivateKey(keyData); err != nil {
		return nil, fmt.Errorf("%s: user %q: client key: %w", path, kc.User, err)
	}
	return kc, nil
}
