package phases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k8scrypto.dev/k8scrypto/pki/encryption"
)

// APIServer names a running kube-apiserver, through a kubeconfig, to ask which encryption config it has
// loaded. A rotation step or a re-encryption is safe only once the apiserver runs the file the previous
// step wrote; this is how k8scrypto knows, rather than assuming it from the file on disk.
type APIServer struct {
	Kubeconfig string
	// Timeout bounds each request.
	Timeout time.Duration
	// Wait, when positive, makes WaitRuns poll until the apiserver runs the file, up to this long.
	Wait time.Duration
	// PollInterval is how often WaitRuns asks again (5s when 0).
	PollInterval time.Duration
	// Connect maps an endpoint of the kubernetes Service, "ADDRESS:PORT" as its EndpointSlice lists it, to
	// the "HOST:PORT" this machine dials to reach that apiserver (a NAT, a tunnel, a test on loopback). The
	// serving certificate is still verified for the endpoint's ADDRESS. Without an entry the endpoint
	// itself is dialled.
	Connect map[string]string
}

// APIServerEncryption is whether the apiserver runs the encryption config file on disk. Server and the
// embedded view are the kubeconfig's server (one apiserver, or a load balancer's pick of one); with more
// than one apiserver behind the kubernetes Service, Endpoints has each of them, and RunsThisFile holds
// only when every one runs the file.
type APIServerEncryption struct {
	Server string `json:"server"`
	encryption.APIServerView
	FileHash string `json:"fileHash"`
	// RunsThisFile: the apiserver's last loaded configuration is byte for byte the file on disk (and so
	// is every endpoint's).
	RunsThisFile bool `json:"runsThisFile"`
	// Endpoints are the apiservers of the kubernetes Service, each asked directly.
	Endpoints []EndpointEncryption `json:"endpoints,omitempty"`
}

// EndpointEncryption is what one apiserver of the kubernetes Service has loaded.
type EndpointEncryption struct {
	// Endpoint is ADDRESS:PORT as the Service's EndpointSlice lists it; Dialed the HOST:PORT dialled in
	// its place (APIServer.Connect), when another.
	Endpoint string `json:"endpoint"`
	Dialed   string `json:"dialed,omitempty"`
	encryption.APIServerView
	RunsThisFile bool `json:"runsThisFile"`
}

// ReloadFailing reports whether the latest reload failed on the kubeconfig's server or on any endpoint.
func (a *APIServerEncryption) ReloadFailing() bool {
	if a.APIServerView.ReloadFailing() {
		return true
	}
	for _, e := range a.Endpoints {
		if e.ReloadFailing() {
			return true
		}
	}
	return false
}

// Disagree reports whether the apiservers of the Service run different configurations.
func (a *APIServerEncryption) Disagree() bool {
	for _, e := range a.Endpoints {
		if e.ConfigHash != a.Endpoints[0].ConfigHash {
			return true
		}
	}
	return false
}

// View reads kube-apiserver's /metrics and compares the configuration it last loaded with fileHash, the
// file on disk (encryption.FileHash); nil when no kubeconfig is given. When the kubernetes Service lists
// more than one apiserver (its EndpointSlices in default), each is asked too, at its endpoint address or
// where Connect maps it: an HA control plane is safe to promote or prune only when all of them run the file.
// With one endpoint, the kubeconfig's server is that apiserver and is not asked twice (unless Connect
// names it).
func (a APIServer) View(ctx context.Context, fileHash string) (*APIServerEncryption, error) {
	if a.Kubeconfig == "" {
		return nil, nil
	}
	rc, err := a.restConfig()
	if err != nil {
		return nil, err
	}
	server, body, err := get(ctx, rc, "/metrics", "asking kube-apiserver which encryption config it runs")
	if err != nil {
		return nil, err
	}
	v, err := encryption.ParseAPIServerMetrics(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	out := &APIServerEncryption{Server: server, APIServerView: v, FileHash: fileHash, RunsThisFile: v.ConfigHash == fileHash}
	eps, err := serviceEndpoints(ctx, rc)
	if err != nil {
		return nil, err
	}
	for from := range a.Connect {
		if !slices.Contains(eps, from) {
			return nil, fmt.Errorf("--apiserver-endpoint %s=%s: the kubernetes Service has no endpoint %s (its EndpointSlices list %s)", from, a.Connect[from], from, orNone(eps))
		}
	}
	if len(eps) < 2 && len(a.Connect) == 0 {
		return out, nil
	}
	for _, ep := range eps {
		e := EndpointEncryption{Endpoint: ep, Dialed: a.Connect[ep]}
		erc := endpointConfig(rc, ep, e.Dialed, a.Timeout)
		_, body, err := get(ctx, erc, "/metrics", "asking the apiserver at endpoint "+ep+" of the kubernetes Service which encryption config it runs")
		if err != nil {
			if e.Dialed == "" {
				return nil, fmt.Errorf("%w (where this machine reaches that apiserver at another address, map it with --apiserver-endpoint %s=HOST:PORT)", err, ep)
			}
			return nil, err
		}
		if e.APIServerView, err = encryption.ParseAPIServerMetrics(body); err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", ep, err)
		}
		e.RunsThisFile = e.ConfigHash == fileHash
		out.RunsThisFile = out.RunsThisFile && e.RunsThisFile
		out.Endpoints = append(out.Endpoints, e)
	}
	return out, nil
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// restConfig is the kubeconfig's client configuration.
func (a APIServer) restConfig() (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", a.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", a.Kubeconfig, err)
	}
	rc.Timeout = a.Timeout
	rc.UserAgent = "k8scrypto"
	return rc, nil
}

// endpointConfig is rc aimed at one endpoint of the kubernetes Service, with the same credentials and CA:
// the URL names the endpoint, so its serving certificate is verified for the endpoint's address, and a
// connection goes to dial instead when that is set.
func endpointConfig(rc *rest.Config, endpoint, dial string, timeout time.Duration) *rest.Config {
	erc := rest.CopyConfig(rc)
	erc.Host = "https://" + endpoint
	erc.APIPath = ""
	erc.TLSClientConfig.ServerName = "" // the kubeconfig's may name the load balancer
	if dial != "" {
		d := &net.Dialer{Timeout: timeout}
		erc.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dial)
		}
	}
	return erc
}

// serviceEndpoints lists the ready ADDRESS:PORT endpoints of default/kubernetes from its EndpointSlices
// (kube-apiserver writes them itself: one address per apiserver holding a lease, the port named https),
// sorted. An apiserver that serves no EndpointSlices (404) has none to list.
func serviceEndpoints(ctx context.Context, rc *rest.Config) ([]string, error) {
	server, body, err := get(ctx, rc, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector="+url.QueryEscape(discoveryv1.LabelServiceName+"=kubernetes"),
		"listing the apiservers of the kubernetes Service")
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list discoveryv1.EndpointSliceList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%s: the kubernetes Service's EndpointSlices: %w", server, err)
	}
	var out []string
	for _, sl := range list.Items {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, p := range sl.Ports {
			if p.Port != nil && (port == 0 || (p.Name != nil && *p.Name == "https")) {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				hp := net.JoinHostPort(addr, strconv.Itoa(int(port)))
				if !slices.Contains(out, hp) {
					out = append(out, hp)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// statusError is a non-200 answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// get reads path from the server of rc with its credentials; why says what the request is for, in errors.
func get(ctx context.Context, rc *rest.Config, path, why string) (server string, body []byte, err error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", rc.Host, err)
	}
	defer hc.CloseIdleConnections()
	server = strings.TrimRight(rc.Host, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", why, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", nil, fmt.Errorf("reading %s%s: %w", server, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		p, _, _ := strings.Cut(path, "?")
		need := "get on the non-resource URL " + p
		if strings.HasPrefix(p, "/apis/") {
			need = "list on endpointslices.discovery.k8s.io in default"
		}
		return "", nil, &statusError{code: resp.StatusCode, msg: fmt.Sprintf("GET %s%s: %s (the --kubeconfig user needs %s, as admin.conf has)", server, p, resp.Status, need)}
	}
	return server, body, nil
}

// get reads path from the kubeconfig's server.
func (a APIServer) get(ctx context.Context, path, why string) (server string, body []byte, err error) {
	rc, err := a.restConfig()
	if err != nil {
		return "", nil, err
	}
	return get(ctx, rc, path, why)
}

// ServedKeys are the service-account verification keys an apiserver publishes at /openid/v1/jwks.
type ServedKeys struct {
	Server string   `json:"server"`
	KeyIDs []string `json:"keyIDs"`
	// Missing lists key IDs of sa.pub the apiserver does not serve (it has not been restarted since the
	// file changed), Extra those it serves that sa.pub lacks.
	Missing []string `json:"missing,omitempty"`
	Extra   []string `json:"extra,omitempty"`
}

// ServiceAccountKeys asks the apiserver which keys it verifies service-account tokens with, and compares
// them with local, the key IDs of sa.pub; nil when no kubeconfig is given.
func (a APIServer) ServiceAccountKeys(ctx context.Context, local []string) (*ServedKeys, error) {
	if a.Kubeconfig == "" {
		return nil, nil
	}
	server, body, err := a.get(ctx, "/openid/v1/jwks", "asking kube-apiserver which service-account keys it serves")
	if err != nil {
		return nil, err
	}
	var jwks struct {
		Keys []struct {
			KeyID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &jwks); err != nil {
		return nil, fmt.Errorf("%s/openid/v1/jwks: %w", server, err)
	}
	out := &ServedKeys{Server: server}
	for _, k := range jwks.Keys {
		out.KeyIDs = append(out.KeyIDs, k.KeyID)
		if !slices.Contains(local, k.KeyID) {
			out.Extra = append(out.Extra, k.KeyID)
		}
	}
	for _, id := range local {
		if !slices.Contains(out.KeyIDs, id) {
			out.Missing = append(out.Missing, id)
		}
	}
	return out, nil
}

// NotLoadedError refuses a step because the apiserver does not run the file yet (exit status 3): the
// previous step has not reached it, so this one is not safe.
type NotLoadedError struct {
	Step string
	File string
	View *APIServerEncryption
	// Retry is the command line that waits for the reload and then runs the step.
	Retry string
}

func (e *NotLoadedError) Error() string {
	return fmt.Sprintf("%s refused: %s; it is safe once the apiserver runs %s: run %q, which waits for the reload (or check with \"k8scrypto encryption status --kubeconfig ...\")", e.Step, e.View.Describe(), e.File, e.Retry)
}

// ExitCode is the process exit status for a step the current state refuses.
func (e *NotLoadedError) ExitCode() int { return 3 }

// WaitRuns asks the apiserver which file it runs and, with Wait set, keeps asking until it runs fileHash or
// Wait has passed. It returns the last view; a view that does not run the file is a *NotLoadedError (with
// no kubeconfig, nil and nil: the caller decides whether that is allowed). A reload the apiserver reports
// as failed ends the wait at once: it keeps the previous file until someone fixes this one.
func (a APIServer) WaitRuns(ctx context.Context, step, file, fileHash, retry string) (*APIServerEncryption, error) {
	if a.Kubeconfig == "" {
		return nil, nil
	}
	poll := a.PollInterval
	if poll <= 0 {
		poll = 5 * time.Second
	}
	deadline := time.Now().Add(a.Wait)
	for {
		v, err := a.View(ctx, fileHash)
		if err != nil {
			return nil, err
		}
		if v.RunsThisFile {
			return v, nil
		}
		if a.Wait <= 0 || v.ReloadFailing() || time.Now().Add(poll).After(deadline) {
			return v, &NotLoadedError{Step: step, File: file, View: v, Retry: retry}
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// Describe says in one line what the apiserver runs, for status texts and refusals.
func (a *APIServerEncryption) Describe() string {
	var b strings.Builder
	if a.RunsThisFile {
		fmt.Fprintf(&b, "%s runs this file", a.Server)
	} else {
		fmt.Fprintf(&b, "%s runs another version of the file (%s, not %s): it reloads a changed file within about a minute with --encryption-provider-config-automatic-reload, otherwise on restart", a.Server, shortHash(a.ConfigHash), shortHash(a.FileHash))
	}
	if len(a.Endpoints) > 0 {
		b.Reset()
		fmt.Fprintf(&b, "%d apiservers behind the kubernetes Service:", len(a.Endpoints))
		for _, e := range a.Endpoints {
			fmt.Fprintf(&b, " %s", e.Endpoint)
			if e.Dialed != "" {
				fmt.Fprintf(&b, " (dialled at %s)", e.Dialed)
			}
			if e.RunsThisFile {
				b.WriteString(" runs this file")
			} else {
				fmt.Fprintf(&b, " runs %s, not this file (%s)", shortHash(e.ConfigHash), shortHash(a.FileHash))
			}
			if e.APIServerView.ReloadFailing() {
				fmt.Fprintf(&b, " and its latest reload FAILED at %s", e.LastFailedReload.Format(time.RFC3339))
			}
			b.WriteString(";")
		}
		if !a.RunsThisFile {
			b.WriteString(" each reloads a changed file within about a minute with --encryption-provider-config-automatic-reload, otherwise on restart; copy the file to every control-plane node")
		}
		return strings.TrimSuffix(b.String(), ";")
	}
	if a.LastReload != nil {
		fmt.Fprintf(&b, "; last automatic reload %s", a.LastReload.Format(time.RFC3339))
	}
	if a.APIServerView.ReloadFailing() {
		fmt.Fprintf(&b, "; its latest reload FAILED at %s, so it keeps the previous config (see its log)", a.LastFailedReload.Format(time.RFC3339))
	}
	return b.String()
}

// shortHash abbreviates a "sha256:<hex>" hash for humans; -o json prints it whole.
func shortHash(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}

// Etcd locates etcd to count stored values by the key that encrypted them.
type Etcd struct {
	Endpoints []string
	// CACert, Cert and Key default to the etcd CA and the apiserver's etcd client pair in the
	// certificate directory.
	CACert, Cert, Key string
	// Prefix is kube-apiserver's --etcd-prefix.
	Prefix   string
	PageSize int64
}

// EtcdCounts is what etcd stores for the resources of an encryption config.
type EtcdCounts struct {
	Endpoints []string           `json:"endpoints"`
	Counts    []encryption.Count `json:"counts"`
	// Unreadable counts values no apiserver with this file can read; UnreadablePlaintext the part of
	// them stored in plaintext for a resource without an identity provider.
	Unreadable          int `json:"unreadable"`
	UnreadablePlaintext int `json:"unreadablePlaintext"`
	// NotUnderWriteKey counts readable values not yet under their resource's write key.
	NotUnderWriteKey int `json:"notUnderWriteKey"`
}

// Check bounds the endpoints as the other list inputs are (pki.MaxListItems) and refuses control characters
// in them: a usage error naming --etcd-endpoints, before anything is read, written or dialled.
func (e Etcd) Check() error {
	return checkList("--etcd-endpoints", e.Endpoints)
}

// Count counts the stored values of resources (nil: every resource of cfg) by label, each against the
// labels of its own entry in cfg; nil when no endpoint is given.
func (e Etcd) Count(ctx context.Context, certDir string, cfg *encryption.Config, resources []string) (*EtcdCounts, error) {
	if len(e.Endpoints) == 0 {
		return nil, nil
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return filepath.Join(certDir, def)
	}
	rng, closeFn, err := encryption.DialEtcd(encryption.EtcdOptions{
		Endpoints: e.Endpoints,
		CACert:    or(e.CACert, "etcd/ca.crt"),
		Cert:      or(e.Cert, "apiserver-etcd-client.crt"),
		Key:       or(e.Key, "apiserver-etcd-client.key"),
	})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	if resources == nil {
		resources = encryption.AllResources(cfg)
	}
	prefix, pageSize := e.Prefix, e.PageSize
	if prefix == "" {
		prefix = "/registry"
	}
	if pageSize <= 0 {
		pageSize = 500
	}
	out := &EtcdCounts{Endpoints: e.Endpoints}
	for _, rp := range encryption.EtcdPrefixes(prefix, resources) {
		c, err := encryption.CountPrefix(ctx, rng, rp[0], rp[1], pageSize, encryption.LabelsFor(cfg, rp[0]))
		if err != nil {
			return nil, err
		}
		out.Counts = append(out.Counts, c)
		out.Unreadable += c.Unreadable
		out.UnreadablePlaintext += c.UnreadablePlaintext
		out.NotUnderWriteKey += c.NotUnderWriteKey
	}
	return out, nil
}

// StepArgs are the flags, rendered for a shell, that a suggested command line repeats so that it can be
// run as printed: --cert-dir when not the default, --kubeconfig, and the etcd flags.
type StepArgs struct {
	Cluster, Kubeconfig, Etcd string
}

// EncryptionAdvice is the measured state of a rotation: what is wrong now, and the next step that is safe.
type EncryptionAdvice struct {
	Next string `json:"next"`
	// Problems are states that need the operator: values no apiserver can read, a failed reload, an
	// apiserver running another file. Any of them makes "encryption status" exit 1.
	Problems []string `json:"problems,omitempty"`
}

// AdviseEncryption says what to do next from what was measured: the file's stage, which file the
// apiserver runs (nil: not asked) and what etcd stores (nil: not counted).
func AdviseEncryption(st encryption.Status, api *APIServerEncryption, etcd *EtcdCounts, a StepArgs) EncryptionAdvice {
	var adv EncryptionAdvice
	cmd := func(s string, extra ...string) string {
		return strings.Join(append([]string{"k8scrypto " + s + a.Cluster}, extra...), "")
	}
	for _, e := range st.Entries {
		if len(e.Providers) > 0 && e.Providers[0].Type == encryption.Identity {
			fix := fmt.Sprintf("run %q (it adds a new key after identity), then %q (it puts that key's provider first; identity stays after it, so what is stored stays readable), then %q",
				cmd("encryption rotate prepare"), cmd("encryption rotate promote", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"),
				cmd("encryption reencrypt", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"))
			if e.Stage == encryption.StagePrepared {
				fix = fmt.Sprintf("the new key is prepared after identity: run %q (it puts that key's provider first), then %q",
					cmd("encryption rotate promote", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"),
					cmd("encryption reencrypt", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"))
			}
			adv.Problems = append(adv.Problems, fmt.Sprintf("PLAINTEXT: %s are written unencrypted (identity is the first provider of their entry): %s", strings.Join(e.Resources, ","), fix))
		}
	}
	if etcd != nil && etcd.Unreadable > 0 {
		if etcd.UnreadablePlaintext > 0 {
			adv.Problems = append(adv.Problems, fmt.Sprintf("%d value(s) are stored in plaintext for a resource whose entry has no identity provider, so no apiserver using this file can read them: add \"identity: {}\" as that entry's last provider (written by \"k8scrypto init phase encryption-config --allow-plaintext-reads\"), wait for the reload, then run %q", etcd.UnreadablePlaintext, cmd("encryption reencrypt", a.Kubeconfig, " --wait")))
		}
		if n := etcd.Unreadable - etcd.UnreadablePlaintext; n > 0 {
			adv.Problems = append(adv.Problems, fmt.Sprintf("%d value(s) are stored under keys this file does not have: no apiserver using it can read them; restore the file that has those keys from the backups under <backup-dir>/key-rotations/ and copy it to every control-plane node", n))
		}
	}
	if api != nil && api.ReloadFailing() {
		adv.Problems = append(adv.Problems, "the apiserver's latest reload of its encryption config failed; it keeps running the previous file (its log says why)")
	}
	if api != nil && api.Disagree() {
		var runs []string
		for _, e := range api.Endpoints {
			runs = append(runs, e.Endpoint+" runs "+shortHash(e.ConfigHash))
		}
		adv.Problems = append(adv.Problems, "the apiservers run different encryption configs ("+strings.Join(runs, ", ")+"): one that lacks a key another writes with cannot read those values; copy the same file to every control-plane node and wait for the reloads")
	}
	if api != nil && !api.RunsThisFile {
		stale := 0
		for _, e := range api.Endpoints {
			if !e.RunsThisFile {
				stale++
			}
		}
		if stale > 0 {
			adv.Problems = append(adv.Problems, fmt.Sprintf("%d of the %d apiservers run another version of this file", stale, len(api.Endpoints)))
		} else {
			adv.Problems = append(adv.Problems, "the apiserver runs another version of this file")
		}
		switch st.Stage {
		case encryption.StagePrepared:
			adv.Next = fmt.Sprintf("wait until every apiserver has loaded this file (about a minute with automatic reload, else restart them); %q waits for it", cmd("encryption rotate promote", a.Kubeconfig, " --wait"))
		case encryption.StagePromoted:
			adv.Next = fmt.Sprintf("wait until every apiserver has loaded this file (about a minute with automatic reload, else restart them); %q waits for it", cmd("encryption reencrypt", a.Kubeconfig, " --wait"))
		default:
			adv.Next = fmt.Sprintf("wait until every apiserver has loaded this file (about a minute with automatic reload, else restart them), then check again with %q", cmd("encryption status", a.Kubeconfig, a.Etcd))
		}
		return adv
	}
	switch {
	case st.Stage == encryption.StagePrepared:
		adv.Next = fmt.Sprintf("%q once every apiserver has loaded this file", cmd("encryption rotate promote", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"))
	case st.Stage == encryption.StagePromoted && etcd == nil:
		adv.Next = fmt.Sprintf("%q, then count what is left under the old keys with %q", cmd("encryption reencrypt", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"), cmd("encryption status", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --etcd-endpoints URL"))
	case st.Stage == encryption.StagePromoted && etcd.NotUnderWriteKey > 0:
		adv.Next = fmt.Sprintf("%d value(s) are still under older keys: %q", etcd.NotUnderWriteKey, cmd("encryption reencrypt", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"))
	case st.Stage == encryption.StagePromoted && etcd.Unreadable == 0:
		adv.Next = fmt.Sprintf("every value is under the write key: %q", cmd("encryption rotate prune --yes", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), a.Etcd))
	case st.Stage == encryption.StagePlaintext:
		// Before the reencrypt counts below: rewriting now would store everything in plaintext again.
		adv.Next = fmt.Sprintf("%q (it adds a key after identity), then %q once every apiserver has loaded the prepared file (it puts that key's provider first)",
			cmd("encryption rotate prepare"), cmd("encryption rotate promote", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF"), " --wait"))
	case etcd != nil && etcd.NotUnderWriteKey > 0 && st.Stage != encryption.StagePromoted:
		adv.Next = fmt.Sprintf("%d value(s) are not under the write key (stored before encryption was turned on, or under a read-only key): %q", etcd.NotUnderWriteKey, cmd("encryption reencrypt", orPlaceholder(a.Kubeconfig, " --kubeconfig ADMIN.CONF")))
	default:
		adv.Next = st.Next
	}
	return adv
}

func orPlaceholder(v, placeholder string) string {
	if v != "" {
		return v
	}
	return placeholder
}

// StatusProblemsError makes "encryption status" exit 1 after printing its report: something needs the
// operator.
type StatusProblemsError struct{ Problems []string }

func (e *StatusProblemsError) Error() string { return strings.Join(e.Problems, "; ") }

// PruneProof is what a prune must be shown before it removes keys: every apiserver writes with the
// first key (it runs the promoted file), and, counted after that, no stored value needs a key the pruned
// file lacks.
type PruneProof struct {
	API  APIServer
	Etcd Etcd
	// Unsafe skips both proofs (a cluster whose etcd cannot be reached); values not yet rewritten are
	// lost.
	Unsafe bool
}

// PruneRefusedError refuses a prune that would, or might, make stored values unreadable (exit 3).
type PruneRefusedError struct{ Reason string }

func (e *PruneRefusedError) Error() string { return "prune refused: " + e.Reason }

// ExitCode is the process exit status for a step the current state refuses.
func (e *PruneRefusedError) ExitCode() int { return 3 }

// UnsafePruneFlag is the override that skips the proofs.
const UnsafePruneFlag = "--unsafe-skip-etcd-check"

// Check proves a prune safe, or refuses it. path and fileHash are the promoted file on disk, next the
// pruned configuration, removed the names of the keys it drops.
func (p PruneProof) Check(ctx context.Context, certDir, path, fileHash string, next *encryption.Config, removed []string, a StepArgs, log interface{ Warn(string, ...any) }) error {
	keys := strings.Join(removed, ", ")
	if p.Unsafe {
		log.Warn("PRUNING WITHOUT PROOF ("+UnsafePruneFlag+"): values still stored under the removed keys become unreadable for good", "keys", keys)
		return nil
	}
	if p.API.Kubeconfig == "" || len(p.Etcd.Endpoints) == 0 {
		return &PruneRefusedError{Reason: fmt.Sprintf("removing key(s) %s needs proof that nothing still uses them: --kubeconfig (every apiserver runs the promoted file, so none writes with the old keys any more) and --etcd-endpoints (no stored value is under them), e.g. %q; only where etcd cannot be reached, %s prunes without that proof and loses what was not rewritten",
			keys, "k8scrypto encryption rotate prune --yes"+a.Cluster+orPlaceholder(a.Kubeconfig, " --kubeconfig /etc/kubernetes/admin.conf")+orPlaceholder(a.Etcd, " --etcd-endpoints https://127.0.0.1:2379"), UnsafePruneFlag)}
	}
	if _, err := p.API.WaitRuns(ctx, "prune", path, fileHash, "k8scrypto encryption rotate prune --yes"+a.Cluster+a.Kubeconfig+a.Etcd+" --wait"); err != nil {
		return err
	}
	counts, err := p.Etcd.Count(ctx, certDir, next, nil)
	if err != nil {
		return err
	}
	if counts.Unreadable > 0 {
		return &PruneRefusedError{Reason: fmt.Sprintf("%d stored value(s) would be unreadable without key(s) %s; run %q and check with %q", counts.Unreadable, keys,
			"k8scrypto encryption reencrypt"+a.Cluster+a.Kubeconfig+" --wait", "k8scrypto encryption status"+a.Cluster+a.Kubeconfig+a.Etcd)}
	}
	return nil
}

// ParseEndpointMappings reads --apiserver-endpoint values, ENDPOINT=HOST:PORT each, into APIServer.Connect.
// They need a kubeconfig: the endpoints are those of the cluster it names.
func ParseEndpointMappings(mappings []string, kubeconfig string) (map[string]string, error) {
	if len(mappings) == 0 {
		return nil, nil
	}
	if kubeconfig == "" {
		return nil, &UsageError{errors.New("--apiserver-endpoint needs --kubeconfig: the endpoints are those of the cluster it names")}
	}
	connect := map[string]string{}
	for _, m := range mappings {
		from, to, ok := strings.Cut(m, "=")
		if !ok || !isHostPort(from) || !isHostPort(to) {
			return nil, &UsageError{fmt.Errorf("--apiserver-endpoint %q: want ENDPOINT=HOST:PORT, both host:port, e.g. 10.0.0.5:6443=127.0.0.1:6443", m)}
		}
		if _, dup := connect[from]; dup {
			return nil, &UsageError{fmt.Errorf("--apiserver-endpoint %s is given twice", from)}
		}
		connect[from] = to
	}
	return connect, nil
}

// isHostPort: a host (an IP address is what an EndpointSlice lists) and a numeric port 1-65535.
func isHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}
