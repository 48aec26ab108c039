package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// clusterAdminsBinding is what kubeadm's EnsureAdminClusterRoleBinding creates
// (cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go): cluster-admin for the group admin.conf carries.
func clusterAdminsBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "kubeadm:cluster-admins"}},
	}
}

// Test 2: super-admin.conf (system:masters) works as written, server URL included; admin.conf
// (kubeadm:cluster-admins) is authenticated but powerless until the kubeadm:cluster-admins binding exists,
// and works once it is created the way kubeadm creates it.
func TestAdminKubeconfigs(t *testing.T) {
	cp := sharedControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	superPath, adminPath := filepath.Join(cp.KubeconfigDir, "super-admin.conf"), filepath.Join(cp.KubeconfigDir, "admin.conf")
	for _, p := range []string{superPath, adminPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("k8scrypto init did not write %s (kubeconfig phase, issue 4): %v", p, err)
		}
	}

	super, superCfg := kubeconfigClient(t, superPath)
	if superCfg.Host != cp.URL {
		t.Errorf("super-admin.conf server %q, want the control plane endpoint %q", superCfg.Host, cp.URL)
	}
	u, err := whoami(ctx, super)
	if err != nil {
		t.Fatalf("super-admin.conf: %v", err)
	}
	if u.Username != "kubernetes-super-admin" || !slices.Contains(u.Groups, "system:masters") {
		t.Errorf("super-admin.conf authenticates as %+v, want kubernetes-super-admin in system:masters", u)
	}
	if _, err := super.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Fatalf("super-admin.conf cannot list secrets in kube-system: %v", err)
	}

	admin, _ := kubeconfigClient(t, adminPath)
	u, err = whoami(ctx, admin)
	if err != nil {
		t.Fatalf("admin.conf: %v", err)
	}
	if u.Username != "kubernetes-admin" || !slices.Contains(u.Groups, "kubeadm:cluster-admins") || slices.Contains(u.Groups, "system:masters") {
		t.Fatalf("admin.conf authenticates as %+v, want kubernetes-admin in kubeadm:cluster-admins and not system:masters", u)
	}

	// kubeadm tries admin.conf first and falls back to super-admin.conf when that is forbidden.
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, clusterAdminsBinding(), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("admin.conf creating the kubeadm:cluster-admins binding before it exists: %v, want Forbidden", err)
	}
	if _, err := super.RbacV1().ClusterRoleBindings().Create(ctx, clusterAdminsBinding(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("super-admin.conf creating the kubeadm:cluster-admins binding: %v", err)
	}

	// The RBAC authorizer sees the binding through an informer: allow it a moment.
	err = waitFor(ctx, "admin.conf to gain cluster-admin", 200*time.Millisecond, nil, func(ctx context.Context) error {
		return adminCanAdminister(ctx, admin)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// adminCanAdminister checks a cluster-scoped write and a secret read, both denied without cluster-admin.
func adminCanAdminister(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return err
	}
	return createAndDeleteNamespace(ctx, cs)
}
