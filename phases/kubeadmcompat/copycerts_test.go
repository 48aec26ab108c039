package kubeadmcompat

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/copycerts"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"

	"k8scrypto.dev/k8scrypto/phases"
	"k8scrypto.dev/k8scrypto/pki"
	"k8scrypto.dev/k8scrypto/pki/certshare"
	"k8scrypto.dev/k8scrypto/pki/pkitest"
)

const certificateKey = "8f5a6ea8d7a4e1c2b3f4a5d6c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"

// TestKubeadmDownloadsWhatK8scryptoUploads: the kubeadm-certs Secret data certshare seals from a real
// "k8scrypto init" is read by kubeadm's own copycerts.DownloadCerts (with a fake clientset), and every file it
// writes is byte-equal to ours; k8scrypto's encryption-config entry, sealed the same way, does not disturb it.
func TestKubeadmDownloadsWhatK8scryptoUploads(t *testing.T) {
	r := runInit(t, cases[0])
	l := certshare.Layout{CertDir: r.certDir}
	files, err := certshare.Collect(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(files[certshare.EntryEncryptionConfig]) == 0 {
		t.Fatal("init wrote no encryption config to share")
	}
	key, err := certshare.ParseKey(certificateKey)
	if err != nil {
		t.Fatal(err)
	}
	data, err := certshare.SealSecretData(files, key, pkitest.Rand(9))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-certs", Namespace: metav1.NamespaceSystem}, Data: data})
	cfg := kubeadmConfig(t, r.rendered)
	cfg.CertificatesDir = filepath.Join(t.TempDir(), "joined-pki")
	if _, err := captureStdout(func() error { return copycerts.DownloadCerts(client, cfg, certificateKey) }); err != nil {
		t.Fatalf("kubeadm's DownloadCerts: %v", err)
	}
	for name, path := range l.Paths() {
		if name == certshare.EntryEncryptionConfig {
			continue // k8scrypto's own entry: kubeadm ignores it
		}
		rel, _ := filepath.Rel(r.certDir, path)
		got, err := os.ReadFile(filepath.Join(cfg.CertificatesDir, rel))
		if err != nil || !bytes.Equal(got, files[name]) {
			t.Errorf("kubeadm wrote %s: %v, not byte-equal to ours", rel, err)
		}
	}
}

// TestK8scryptoOpensWhatKubeadmUploads: kubeadm's own copycerts.UploadCerts (bootstrap-token owner, RBAC and
// all, on a fake clientset) from a k8scrypto-written directory; certshare opens its Secret with the same key
// and gets every file byte for byte, and kubeadm's Secret has the owner, Role and RoleBinding k8scrypto must
// reproduce.
func TestK8scryptoOpensWhatKubeadmUploads(t *testing.T) {
	r := runInit(t, cases[0])
	cfg := kubeadmConfig(t, r.rendered)
	client := fake.NewClientset()
	if _, err := captureStdout(func() error { return copycerts.UploadCerts(client, cfg, certificateKey) }); err != nil {
		t.Fatalf("kubeadm's UploadCerts: %v", err)
	}
	secret, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), "kubeadm-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := certshare.ParseKey(certificateKey)
	got, err := certshare.OpenSecretData(secret.Data, key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := certshare.Collect(certshare.Layout{CertDir: r.certDir})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		if name == certshare.EntryEncryptionConfig {
			if _, ok := got[name]; ok {
				t.Error("kubeadm uploaded an encryption config entry")
			}
			continue
		}
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s from kubeadm's Secret differs from the file", name)
		}
	}
	if err := certshare.Check(got, certshare.Layout{CertDir: r.certDir}); err == nil || !strings.Contains(err.Error(), certshare.EntryEncryptionConfig+" is missing") {
		t.Errorf("a kubeadm Secret lacks the encryption config, and Check must say so: %v", err)
	}
	if len(secret.OwnerReferences) != 1 || secret.OwnerReferences[0].Kind != "Secret" || !strings.HasPrefix(secret.OwnerReferences[0].Name, "bootstrap-token-") {
		t.Errorf("kubeadm's owner references: %+v", secret.OwnerReferences)
	}
	role, err := client.RbacV1().Roles(metav1.NamespaceSystem).Get(context.Background(), "kubeadm:kubeadm-certs", metav1.GetOptions{})
	if err != nil || len(role.Rules) != 1 || role.Rules[0].ResourceNames[0] != "kubeadm-certs" {
		t.Errorf("kubeadm's Role: %+v %v", role, err)
	}
}

// TestUploadCertsIsKubeadms: phases.UploadCerts (on a fake dynamic client) creates what kubeadm's
// UploadCerts creates (a Secret owned by a bootstrap token, the same Role and RoleBinding), and kubeadm's
// DownloadCerts reads its Secret back into byte-equal files.
func TestUploadCertsIsKubeadms(t *testing.T) {
	r := runInit(t, cases[0])
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "secrets"}:                                          "SecretList",
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}:        "RoleList",
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}: "RoleBindingList",
	})
	res, err := phases.UploadCerts(context.Background(), phases.UploadRequest{Layout: certshare.Layout{CertDir: r.certDir}, Client: dyn, Now: pkitest.Now, Rand: pkitest.Rand(3)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Key) != 64 || res.Expires != pkitest.Now.Add(2*time.Hour).UTC().Format(time.RFC3339) {
		t.Fatalf("result %+v", res)
	}
	typed := fake.NewClientset()
	for _, gvr := range []schema.GroupVersionResource{{Version: "v1", Resource: "secrets"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}} {
		list, err := dyn.Resource(gvr).Namespace(metav1.NamespaceSystem).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			var obj runtime.Object
			switch gvr.Resource {
			case "secrets":
				obj = &corev1.Secret{}
			case "roles":
				obj = &rbacv1.Role{}
			default:
				obj = &rbacv1.RoleBinding{}
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
				t.Fatal(err)
			}
			if err := typed.Tracker().Add(obj); err != nil {
				t.Fatal(err)
			}
		}
	}
	ours, err := typed.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), "kubeadm-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ours.OwnerReferences) != 1 || !strings.HasPrefix(ours.OwnerReferences[0].Name, "bootstrap-token-") || ours.OwnerReferences[0].Controller == nil || !*ours.OwnerReferences[0].Controller {
		t.Errorf("owner references %+v", ours.OwnerReferences)
	}
	token, err := typed.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), ours.OwnerReferences[0].Name, metav1.GetOptions{})
	if err != nil || string(token.Type) != "bootstrap.kubernetes.io/token" || token.StringData["expiration"] != res.Expires || len(token.StringData["token-id"]) != 6 || len(token.StringData["token-secret"]) != 16 {
		t.Errorf("bootstrap token %+v %v", token, err)
	}

	// kubeadm's own upload, for the Role and RoleBinding to compare with.
	theirs := fake.NewClientset()
	cfg := kubeadmConfig(t, r.rendered)
	if _, err := captureStdout(func() error { return copycerts.UploadCerts(theirs, cfg, res.Key) }); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubeadm:kubeadm-certs"} {
		a, _ := typed.RbacV1().Roles(metav1.NamespaceSystem).Get(context.Background(), name, metav1.GetOptions{})
		b, _ := theirs.RbacV1().Roles(metav1.NamespaceSystem).Get(context.Background(), name, metav1.GetOptions{})
		if a == nil || b == nil || !reflect.DeepEqual(a.Rules, b.Rules) {
			t.Errorf("Role %s: ours %+v, kubeadm's %+v", name, a, b)
		}
		ab, _ := typed.RbacV1().RoleBindings(metav1.NamespaceSystem).Get(context.Background(), name, metav1.GetOptions{})
		bb, _ := theirs.RbacV1().RoleBindings(metav1.NamespaceSystem).Get(context.Background(), name, metav1.GetOptions{})
		if ab == nil || bb == nil || !reflect.DeepEqual(ab.RoleRef, bb.RoleRef) || !reflect.DeepEqual(ab.Subjects, bb.Subjects) {
			t.Errorf("RoleBinding %s: ours %+v, kubeadm's %+v", name, ab, bb)
		}
	}

	cfg.CertificatesDir = filepath.Join(t.TempDir(), "joined")
	if _, err := captureStdout(func() error { return copycerts.DownloadCerts(typed, cfg, res.Key) }); err != nil {
		t.Fatalf("kubeadm's DownloadCerts of k8scrypto's upload: %v", err)
	}
	for _, rel := range []string{"ca.crt", "ca.key", "front-proxy-ca.key", "sa.key", "sa.pub", "etcd/ca.key"} {
		want, _ := os.ReadFile(filepath.Join(r.certDir, rel))
		got, err := os.ReadFile(filepath.Join(cfg.CertificatesDir, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, not byte-equal", rel, err)
		}
	}
}

// TestFetchCertsReadsKubeadmsUpload: what kubeadm's UploadCerts stored is read back by phases.FetchCerts
// (dynamic client), pinned to the CA by kubeadm's own pubkeypin hash; another pin and another key refuse.
func TestFetchCertsReadsKubeadmsUpload(t *testing.T) {
	r := runInit(t, cases[0])
	cfg := kubeadmConfig(t, r.rendered)
	typed := fake.NewClientset()
	if _, err := captureStdout(func() error { return copycerts.UploadCerts(typed, cfg, certificateKey) }); err != nil {
		t.Fatal(err)
	}
	secret, err := typed.CoreV1().Secrets(metav1.NamespaceSystem).Get(context.Background(), "kubeadm-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: u}
	obj.SetAPIVersion("v1")
	obj.SetKind("Secret")
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), obj)
	files, err := phases.FetchCerts(context.Background(), dyn, certificateKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(r.certDir, "ca.crt"))
	if pin := phases.CAPin(ca); pin != pubkeypin.Hash(ca) {
		t.Fatalf("CAPin %s, kubeadm's pubkeypin %s", pin, pubkeypin.Hash(ca))
	}
	if err := phases.CheckCAPin(files, []string{strings.ToUpper(pubkeypin.Hash(ca))}); err != nil {
		t.Errorf("the right pin (any case): %v", err)
	}
	if err := phases.CheckCAPin(files, []string{"sha256:" + strings.Repeat("0", 64)}); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("a wrong pin: %v", err)
	}
	if err := phases.CheckCAPin(files, nil); err == nil || !strings.Contains(err.Error(), "--ca-cert-hash is required") {
		t.Errorf("no pin: %v", err)
	}
	if _, err := phases.FetchCerts(context.Background(), dyn, strings.Repeat("1", 64)); !errors.Is(err, certshare.ErrWrongKey) {
		t.Errorf("a wrong key: %v", err)
	}
	if _, err := phases.FetchCerts(context.Background(), dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), certificateKey); err == nil || !strings.Contains(err.Error(), "upload-certs") {
		t.Errorf("no Secret: %v", err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := pki.ParseCertChain(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestUploadCertsDryRun: "init phase upload-certs --dry-run" collects, checks and seals what the upload
// would store, and sends nothing to the cluster (no request at all on the fake client); it lists the entries
// the real upload then stores, and prints no certificate key (none was stored for it to open).
func TestUploadCertsDryRun(t *testing.T) {
	r := runInit(t, cases[0])
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "secrets"}:                                          "SecretList",
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}:        "RoleList",
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}: "RoleBindingList",
	})
	req := phases.UploadRequest{Layout: certshare.Layout{CertDir: r.certDir}, Client: dyn, Now: pkitest.Now, Rand: pkitest.Rand(3), DryRun: true}
	dry, err := phases.UploadCerts(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if a := dyn.Actions(); len(a) != 0 {
		t.Fatalf("the dry run sent %d request(s) to the cluster: %v", len(a), a)
	}
	if !dry.DryRun || dry.Key != "" {
		t.Errorf("dry run result %+v: want dryRun and no certificate key", dry)
	}
	req.DryRun = false
	real, err := phases.UploadCerts(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dry.Entries, real.Entries) || dry.Expires != real.Expires || dry.Secret != real.Secret || len(real.Entries) == 0 {
		t.Errorf("the dry run predicted %+v, the upload did %+v", dry, real)
	}
}
