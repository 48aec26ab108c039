package phases

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
)

// What kubeadm's copycerts phase creates, by the same names, so that "kubeadm join --control-plane
// --certificate-key" finds it (kubeadm's constants KubeadmCertsSecret, KubeadmCertsClusterRoleName,
// NodeBootstrapTokenAuthGroup and DefaultCertTokenDuration).
const (
	KubeadmCertsSecret = "kubeadm-certs" // #nosec G101 -- a Secret's name, not a credential
	kubeadmCertsRole   = "kubeadm:kubeadm-certs"
	bootstrapperGroup  = "system:bootstrappers:kubeadm:default-node-token"
	// CertsTTL is how long the uploaded Secret lives: it is owned by a bootstrap token that expires then,
	// and the garbage collector deletes it with the token.
	CertsTTL         = 2 * time.Hour
	kubeSystem       = metav1.NamespaceSystem
	tokenDescription = "Proxy for managing TTL for the kubeadm-certs secret"
)

var (
	secretsGVR      = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	rolesGVR        = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	roleBindingsGVR = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
)

// UploadRequest is "init phase upload-certs".
type UploadRequest struct {
	Layout certshare.Layout
	// Key is the certificate key (64 hex digits); "" makes one, which the result carries once.
	Key    string
	Client dynamic.Interface
	Now    time.Time
	Rand   io.Reader // token and key bytes; nil means crypto/rand
	// DryRun collects, checks and seals the files as the upload would, and stores nothing in the cluster.
	DryRun bool
}

// UploadResult says what was uploaded; Key is set only when the run made the key.
type UploadResult struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	DryRun     bool     `json:"dryRun"`
	Secret     string   `json:"secret"`
	Entries    []string `json:"entries"`
	Expires    string   `json:"expires"`
	// Key is printed once, on stdout, when k8scrypto made it: the joining nodes need it.
	Key string `json:"certificateKey,omitempty"`
}

// UploadCerts stores the shared files in kube-system/kubeadm-certs exactly as kubeadm's copycerts does
// (every entry sealed with the certificate key, the Secret owned by a bootstrap token that expires after
// CertsTTL, a Role and RoleBinding that let the bootstrapping node read it), with k8scrypto's
// encryption-config entry added. The files are checked as a set first: nothing is uploaded from a
// directory whose CA keys do not match their certificates.
func UploadCerts(ctx context.Context, req UploadRequest) (UploadResult, error) {
	res := UploadResult{APIVersion: ResultAPIVersion, Kind: "UploadCertsResult", Secret: kubeSystem + "/" + KubeadmCertsSecret}
	rnd := req.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	files, err := certshare.Collect(req.Layout)
	if err != nil {
		return res, err
	}
	if err := certshare.Check(files, req.Layout); err != nil {
		return res, err
	}
	keyHex := req.Key
	if keyHex == "" {
		k := make([]byte, certshare.KeySize)
		if _, err := io.ReadFull(rnd, k); err != nil {
			return res, err
		}
		keyHex = hex.EncodeToString(k)
		res.Key = keyHex
	}
	key, err := certshare.ParseKey(keyHex)
	if err != nil {
		return res, fmt.Errorf("--certificate-key: %w", err)
	}
	data, err := certshare.SealSecretData(files, key, rnd)
	if err != nil {
		return res, err
	}
	if req.DryRun {
		// Everything up to the cluster: the Secret, its bootstrap token, Role and RoleBinding are not made, so
		// a key made here would open nothing and is not printed.
		res.DryRun, res.Key = true, ""
		res.Entries = files.Names()
		res.Expires = req.Now.Add(CertsTTL).UTC().Format(time.RFC3339)
		return res, nil
	}
	owner, expires, err := createCertsToken(ctx, req.Client, req.Now, rnd)
	if err != nil {
		return res, err
	}
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": KubeadmCertsSecret, "namespace": kubeSystem, "ownerReferences": []any{owner}},
		"type":     "Opaque",
		"data":     encodeData(data),
	}}
	if err := createOrUpdate(ctx, req.Client.Resource(secretsGVR).Namespace(kubeSystem), secret); err != nil {
		return res, fmt.Errorf("storing %s: %w", res.Secret, err)
	}
	role := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
		"metadata": map[string]any{"name": kubeadmCertsRole, "namespace": kubeSystem},
		"rules":    []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "resourceNames": []any{KubeadmCertsSecret}, "verbs": []any{"get"}}},
	}}
	binding := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
		"metadata": map[string]any{"name": kubeadmCertsRole, "namespace": kubeSystem},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": kubeadmCertsRole},
		"subjects": []any{map[string]any{"kind": "Group", "name": bootstrapperGroup}},
	}}
	if err := createOrUpdate(ctx, req.Client.Resource(rolesGVR).Namespace(kubeSystem), role); err != nil {
		return res, fmt.Errorf("role %s: %w", kubeadmCertsRole, err)
	}
	if err := createOrUpdate(ctx, req.Client.Resource(roleBindingsGVR).Namespace(kubeSystem), binding); err != nil {
		return res, fmt.Errorf("role binding %s: %w", kubeadmCertsRole, err)
	}
	res.Entries = files.Names()
	res.Expires = expires.Format(time.RFC3339)
	return res, nil
}

// createCertsToken creates the short-lived bootstrap token kubeadm makes the Secret's owner, and returns the
// owner reference to it and its expiry.
func createCertsToken(ctx context.Context, client dynamic.Interface, now time.Time, rnd io.Reader) (map[string]any, time.Time, error) {
	id, err := tokenChars(rnd, 6)
	if err != nil {
		return nil, time.Time{}, err
	}
	tokenSecret, err := tokenChars(rnd, 16)
	if err != nil {
		return nil, time.Time{}, err
	}
	expires := now.Add(CertsTTL).UTC()
	token := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "bootstrap-token-" + id, "namespace": kubeSystem},
		"type":     "bootstrap.kubernetes.io/token",
		"stringData": map[string]any{
			"token-id": id, "token-secret": tokenSecret, "description": tokenDescription, "expiration": expires.Format(time.RFC3339),
		},
	}}
	created, err := client.Resource(secretsGVR).Namespace(kubeSystem).Create(ctx, token, metav1.CreateOptions{})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("creating the bootstrap token that owns %s: %w", KubeadmCertsSecret, err)
	}
	owner := map[string]any{"apiVersion": "v1", "kind": "Secret", "name": created.GetName(), "uid": string(created.GetUID()),
		"controller": true, "blockOwnerDeletion": true}
	return owner, expires, nil
}

// tokenChars draws n characters of a bootstrap token ([a-z0-9]) without modulo bias.
func tokenChars(rnd io.Reader, n int) (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < n {
		if _, err := io.ReadFull(rnd, b); err != nil {
			return "", err
		}
		if int(b[0]) < 252 { // 7 × 36
			out = append(out, alphabet[int(b[0])%36])
		}
	}
	return string(out), nil
}

func encodeData(data map[string][]byte) map[string]any {
	out := map[string]any{}
	for k, v := range data {
		out[k] = base64.StdEncoding.EncodeToString(v)
	}
	return out
}

func createOrUpdate(ctx context.Context, ri dynamic.ResourceInterface, obj *unstructured.Unstructured) error {
	_, err := ri.Create(ctx, obj, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	_, err = ri.Update(ctx, obj, metav1.UpdateOptions{})
	return err
}

// ExportRequest is "certs export".
type ExportRequest struct {
	Layout certshare.Layout
	Out    string
	Secret certshare.BundleSecret
	Rand   io.Reader
}

// ExportResult says what the bundle holds (names only).
type ExportResult struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	File       string   `json:"file"`
	Entries    []string `json:"entries"`
	Format     int      `json:"formatVersion"`
}

// ExportBundle seals the shared files into a new bundle file (0600). It refuses to replace an existing
// file: a bundle holds every CA key of the cluster, and overwriting one by mistake is not undoable.
func ExportBundle(req ExportRequest) (ExportResult, error) {
	res := ExportResult{APIVersion: ResultAPIVersion, Kind: "CertsExportResult", File: pki.AbsPath(req.Out), Format: certshare.BundleVersion}
	if _, err := os.Lstat(req.Out); err == nil {
		return res, fmt.Errorf("--out %s exists: k8scrypto does not overwrite a bundle; choose another name or remove it", req.Out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	files, err := certshare.Collect(req.Layout)
	if err != nil {
		return res, err
	}
	if err := certshare.Check(files, req.Layout); err != nil {
		return res, err
	}
	rnd := req.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	data, err := certshare.SealBundle(files, req.Secret, rnd)
	if err != nil {
		return res, err
	}
	if err := pki.EnsureDir(filepath.Dir(req.Out), pki.ModeStrictDir, false); err != nil {
		return res, fmt.Errorf("--out: %w", err)
	}
	if err := pki.WriteFileAtomic(req.Out, data, pki.ModeKey); err != nil {
		return res, err
	}
	res.Entries = files.Names()
	return res, nil
}

// CAPin is kubeadm's --discovery-token-ca-cert-hash of a CA certificate: "sha256:" and the hex SHA-256 of
// its SubjectPublicKeyInfo.
func CAPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CheckCAPin verifies that the cluster CA among files is the one pins name (any of them matches): a
// joining node must not take keys from a cluster it did not mean to join.
func CheckCAPin(files certshare.Files, pins []string) error {
	if len(pins) == 0 {
		return errors.New("--ca-cert-hash is required: the sha256: pin of the cluster CA (kubeadm's --discovery-token-ca-cert-hash), so that a node never installs another cluster's keys")
	}
	cert, rest, err := pki.ParseCertChain(files["ca.crt"])
	if err != nil {
		return fmt.Errorf("ca.crt in the shared files: %w", err)
	}
	var got []string
	for _, c := range append([]*x509.Certificate{cert}, rest...) {
		pin := CAPin(c)
		got = append(got, pin)
		for _, want := range pins {
			if strings.EqualFold(strings.TrimSpace(want), pin) {
				return nil
			}
		}
	}
	return fmt.Errorf("the cluster CA in the shared files is %s, not the pinned %s: refusing to install another cluster's keys (check the pin with \"openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | sha256sum\" on a control-plane node)", strings.Join(got, ", "), strings.Join(pins, ", "))
}

// FetchCerts reads kube-system/kubeadm-certs (uploaded by kubeadm or by k8scrypto) and opens it with the
// certificate key. It returns every entry or none.
func FetchCerts(ctx context.Context, client dynamic.Interface, keyHex string) (certshare.Files, error) {
	key, err := certshare.ParseKey(keyHex)
	if err != nil {
		return nil, fmt.Errorf("--certificate-key: %w", err)
	}
	u, err := client.Resource(secretsGVR).Namespace(kubeSystem).Get(ctx, KubeadmCertsSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("kube-system/%s does not exist: it expires %s after its upload; run \"k8scrypto init phase upload-certs\" (or \"kubeadm init phase upload-certs --upload-certs\") on a control-plane node and use the key it prints", KubeadmCertsSecret, CertsTTL)
	}
	if err != nil {
		return nil, fmt.Errorf("reading kube-system/%s: %w", KubeadmCertsSecret, err)
	}
	raw, _, err := unstructured.NestedStringMap(u.Object, "data")
	if err != nil {
		return nil, fmt.Errorf("kube-system/%s: %w", KubeadmCertsSecret, err)
	}
	data := map[string][]byte{}
	for name, v := range raw {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("kube-system/%s entry %s: %w", KubeadmCertsSecret, name, err)
		}
		data[name] = b
	}
	files, err := certshare.OpenSecretData(data, key)
	return files, wrongKeyError(err)
}

// SharedConflictError refuses to install shared files over different ones already on the node: a
// control plane with another CA than its cluster's would sign certificates nobody trusts.
type SharedConflictError struct{ Paths []string }

func (e *SharedConflictError) Error() string {
	return fmt.Sprintf("refusing to replace %s: this node already has different files there (another cluster's, or an earlier init of its own). If this node is to join the cluster the shared files come from, move its certificate directory away (or run \"kubeadm reset\") and run the command again; if these are the right files, remove the shared ones from the source instead",
		strings.Join(e.Paths, ", "))
}

// ExitCode: the state of the node refuses the step.
func (e *SharedConflictError) ExitCode() int { return 3 }

// PlanInstallShared stages the shared files for a joining node: each absent file is written (keys and the
// encryption config 0600, certificates 0644), each identical one kept, and any different one refuses the
// whole install. source names where the files came from, for the audit lines.
func PlanInstallShared(files certshare.Files, l certshare.Layout, now time.Time, source string) ([]pki.File, []pki.AuditEvent, error) {
	var out []pki.File
	var events []pki.AuditEvent
	var conflicts []string
	for _, name := range files.Names() {
		data := files[name]
		path, ok := l.Paths()[name]
		if !ok || len(data) == 0 {
			continue // not a file this layout shares (an external etcd's), or absent at the source
		}
		cur, err := pki.ReadFile(path, pki.MaxConfigSize)
		switch {
		case err == nil && bytes.Equal(cur, data):
			continue
		case err == nil:
			conflicts = append(conflicts, path)
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return nil, nil, err
		}
		mode := pki.ModeKey
		if strings.HasSuffix(name, ".crt") || name == "sa.pub" {
			mode = pki.ModeCert
		}
		out = append(out, pki.File{Path: path, Data: data, Mode: mode})
		ev := pki.AuditEvent{Time: now, Operation: pki.AuditCreate, File: path, Detail: "installed from " + source}
		if c, _, err := pki.ParseCertChain(data); err == nil && strings.HasSuffix(name, ".crt") {
			ev.Serial, ev.SHA256 = c.SerialNumber.String(), pki.Fingerprint(c.Raw)
		}
		events = append(events, ev)
	}
	if len(conflicts) > 0 {
		return nil, nil, &SharedConflictError{Paths: conflicts}
	}
	return out, events, nil
}
