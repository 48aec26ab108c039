package reencrypt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
)

// The fake clientset ignores limit and continue, so pagedClient wraps its Secrets().List with the
// apiserver's paging: items in key order, a continue token, remainingItemCount. It can expire a token.
type pagedClient struct {
	*fake.Clientset
	p *pager
}

type pager struct {
	mu      sync.Mutex
	lists   []metav1.ListOptions
	expire  map[string]bool // continue tokens answered once with 410 Gone
	reverse bool            // return pages out of key order
}

func (c *pagedClient) CoreV1() corev1client.CoreV1Interface {
	return &pagedCore{CoreV1Interface: c.Clientset.CoreV1(), p: c.p}
}

type pagedCore struct {
	corev1client.CoreV1Interface
	p *pager
}

func (c *pagedCore) Secrets(ns string) corev1client.SecretInterface {
	return &pagedSecrets{SecretInterface: c.CoreV1Interface.Secrets(ns), p: c.p}
}

type pagedSecrets struct {
	corev1client.SecretInterface
	p *pager
}

func (s *pagedSecrets) List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error) {
	s.p.mu.Lock()
	s.p.lists = append(s.p.lists, opts)
	expired := s.p.expire[opts.Continue]
	delete(s.p.expire, opts.Continue)
	s.p.mu.Unlock()
	if expired {
		return nil, apierrors.NewResourceExpired("The provided continue parameter is too old")
	}
	all, err := s.SecretInterface.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	items := all.Items
	sort.Slice(items, func(i, j int) bool {
		return objectKey(items[i].Namespace, items[i].Name) < objectKey(items[j].Namespace, items[j].Name)
	})
	start := 0
	if opts.Continue != "" {
		start = sort.Search(len(items), func(i int) bool { return objectKey(items[i].Namespace, items[i].Name) > opts.Continue })
	}
	end := len(items)
	if opts.Limit > 0 && start+int(opts.Limit) < end {
		end = start + int(opts.Limit)
	}
	out := &corev1.SecretList{Items: slices.Clone(items[start:end])}
	if end < len(items) {
		out.Continue = objectKey(items[end-1].Namespace, items[end-1].Name)
		rem := int64(len(items) - end)
		out.RemainingItemCount = &rem
	}
	if s.p.reverse {
		slices.Reverse(out.Items)
	}
	return out, nil
}

// clientFor adapts a clientset (fake or paged) to Client: the tests drive Run through client-go's fake
// clientset and its recorded actions.
func clientFor(cs kubernetes.Interface) Client {
	return Client{Secrets: typedSecrets{cs.CoreV1()}, Discovery: typedDiscovery{cs}}
}

type typedSecrets struct{ core corev1client.CoreV1Interface }

func (s typedSecrets) List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error) {
	return s.core.Secrets(metav1.NamespaceAll).List(ctx, opts)
}

func (s typedSecrets) Get(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s typedSecrets) Update(ctx context.Context, secret *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error) {
	return s.core.Secrets(secret.Namespace).Update(ctx, secret, opts)
}

type typedDiscovery struct{ cs kubernetes.Interface }

func (d typedDiscovery) ServerGroupsAndResources(context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return d.cs.Discovery().ServerGroupsAndResources()
}

func secretKey(i int) (ns, name string) {
	return fmt.Sprintf("ns-%02d", i%7), fmt.Sprintf("s-%04d", i)
}

func newCluster(t *testing.T, n int) (*pagedClient, []string) {
	t.Helper()
	var objs []runtime.Object
	var keys []string
	for i := range n {
		ns, name := secretKey(i)
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"}, Data: map[string][]byte{"k": []byte("v")}})
		keys = append(keys, objectKey(ns, name))
	}
	sort.Strings(keys)
	// NewClientset's field-managed tracker costs ~25ms per update; these tests make thousands.
	cs := fake.NewSimpleClientset(objs...)
	storedUnderOldKey(cs)
	return &pagedClient{Clientset: cs, p: &pager{expire: map[string]bool{}}}, keys
}

// storedUnderOldKey makes the fake clientset's updates behave as kube-apiserver's do for a no-op PUT:
// every Secret starts stored under an old key, so the first update stores it again under the write key
// (a new resourceVersion) and later ones change nothing (the same resourceVersion). It returns the
// function that marks Secrets as already under the write key.
func storedUnderOldKey(cs *fake.Clientset) (markCurrent func(keys ...string)) {
	var mu sync.Mutex
	current := map[string]bool{}
	rv := 1000
	gvr := corev1.SchemeGroupVersion.WithResource("secrets")
	cs.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret).DeepCopy()
		k := objectKey(s.Namespace, s.Name)
		mu.Lock()
		stale := !current[k]
		current[k] = true
		rv++
		next := fmt.Sprint(rv)
		mu.Unlock()
		stored, err := cs.Tracker().Get(gvr, s.Namespace, s.Name)
		if err != nil {
			return true, nil, err
		}
		if !stale {
			return true, stored, nil
		}
		s.ResourceVersion = next
		return true, s, cs.Tracker().Update(gvr, s, s.Namespace)
	})
	return func(keys ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			current[k] = true
		}
	}
}

// updates counts the update actions per secret key, successful or not.
func updates(cs *fake.Clientset) map[string]int {
	out := map[string]int{}
	for _, a := range cs.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetResource().Resource == "secrets" {
			s := u.GetObject().(*corev1.Secret)
			out[objectKey(s.Namespace, s.Name)]++
		}
	}
	return out
}

func failUpdates(cs *fake.Clientset, fail func(key string) error) {
	cs.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		if err := fail(objectKey(s.Namespace, s.Name)); err != nil {
			return true, nil, err
		}
		return false, nil, nil
	})
}

func TestPaginatesAndRewritesEverySecretOnce(t *testing.T) {
	cs, keys := newCluster(t, 1234)
	var mu sync.Mutex
	var progress []Progress
	cp := filepath.Join(t.TempDir(), "state", CheckpointFile)
	sum, err := Run(context.Background(), clientFor(cs), Options{PageSize: 100, Workers: 8, Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-b",
		Progress: func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rewritten != 1234 || sum.Errors != 0 || sum.Skipped != 0 || len(sum.Resources) != 1 || sum.Resources[0].Listed != 1234 || sum.Resources[0].Resource != "secrets" {
		t.Fatalf("summary = %+v", sum)
	}
	if len(cs.p.lists) != 13 {
		t.Errorf("%d list calls for 1234 secrets in pages of 100, want 13", len(cs.p.lists))
	}
	for i, l := range cs.p.lists {
		if l.Limit != 100 || (i == 0) != (l.Continue == "") {
			t.Errorf("list %d: limit %d continue %q", i, l.Limit, l.Continue)
		}
	}
	up := updates(cs.Clientset)
	for _, k := range keys {
		if up[k] != 1 {
			t.Fatalf("%s updated %d times, want once", k, up[k])
		}
	}
	last := progress[len(progress)-1]
	if last.Done != 1234 || last.Total != 1234 || last.Rewritten != 1234 {
		t.Errorf("final progress = %+v", last)
	}
	if _, err := os.Stat(cp); !errors.Is(err, os.ErrNotExist) {
		t.Error("the checkpoint is left after a complete run")
	}
	// The update is a no-op: the object sent back is the one listed.
	for _, a := range cs.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok {
			if s := u.GetObject().(*corev1.Secret); string(s.Data["k"]) != "v" || s.ResourceVersion != "1" {
				t.Fatalf("update changed the object: %+v", s)
			}
		}
	}
	// A second run finds every Secret under the write key: nothing is stored again, and it says so.
	cs.ClearActions()
	again, err := Run(context.Background(), clientFor(cs), Options{PageSize: 100, Workers: 8})
	if err != nil || again.Rewritten != 0 || again.Unchanged != 1234 || again.Listed != 1234 {
		t.Fatalf("second run: err %v, summary %+v: want 0 rewritten, 1234 unchanged", err, again)
	}
}

func TestConflictIsRetriedWithAFreshGet(t *testing.T) {
	cs, _ := newCluster(t, 20)
	ns, name := secretKey(5)
	target := objectKey(ns, name)
	ns2, name2 := secretKey(6)
	stubborn := objectKey(ns2, name2)
	var mu sync.Mutex
	left := 2
	failUpdates(cs.Clientset, func(key string) error {
		mu.Lock()
		defer mu.Unlock()
		gr := schema.GroupResource{Resource: "secrets"}
		switch {
		case key == target && left > 0:
			left--
			return apierrors.NewConflict(gr, name, errors.New("the object has been modified"))
		case key == stubborn:
			return apierrors.NewConflict(gr, name2, errors.New("the object has been modified"))
		}
		return nil
	})
	sum, err := Run(context.Background(), clientFor(cs), Options{PageSize: 7, Workers: 3, ConflictRetries: 4})
	if err == nil || !strings.Contains(err.Error(), stubborn) {
		t.Fatalf("err = %v, want a failure naming %s", err, stubborn)
	}
	if sum.Rewritten != 19 || sum.Errors != 1 || sum.Conflicts != 2+4 {
		t.Fatalf("summary = %+v", sum)
	}
	// The retried secret went: update (conflict), get, update (conflict), get, update.
	var verbs []string
	for _, a := range cs.Actions() {
		if a.GetResource().Resource != "secrets" || a.GetNamespace() != ns {
			continue
		}
		switch act := a.(type) {
		case k8stesting.UpdateAction:
			if act.GetObject().(*corev1.Secret).Name == name {
				verbs = append(verbs, "update")
			}
		case k8stesting.GetAction:
			if act.GetName() == name {
				verbs = append(verbs, "get")
			}
		}
	}
	if got := strings.Join(verbs, ","); got != "update,get,update,get,update" {
		t.Errorf("actions on %s: %s", target, got)
	}
	if up := updates(cs.Clientset); up[stubborn] != 5 {
		t.Errorf("the stubborn secret was tried %d times, want 1+4", up[stubborn])
	}
}

func TestDeletedObjectsAreCountedNotFailed(t *testing.T) {
	cs, _ := newCluster(t, 10)
	ns, name := secretKey(3)
	failUpdates(cs.Clientset, func(key string) error {
		if key == objectKey(ns, name) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
		}
		return nil
	})
	sum, err := Run(context.Background(), clientFor(cs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Gone != 1 || sum.Rewritten != 9 || sum.Errors != 0 {
		t.Fatalf("summary = %+v", sum)
	}
}

func readCheckpoint(t *testing.T, path string) *Checkpoint {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestResumesAfterTheLastCompletedObject(t *testing.T) {
	cs, keys := newCluster(t, 300)
	bad := keys[137]
	failUpdates(cs.Clientset, func(key string) error {
		if key == bad {
			return apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
		}
		return nil
	})
	cp := filepath.Join(t.TempDir(), CheckpointFile)
	opts := Options{PageSize: 50, Workers: 6, Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-b", ConfigHash: "sha256:b"}
	sum, err := Run(context.Background(), clientFor(cs), opts)
	if err == nil || sum.Errors != 1 || sum.Rewritten != 299 {
		t.Fatalf("first run: err %v, summary %+v", err, sum)
	}
	c := readCheckpoint(t, cp)
	if got := c.Resources["secrets"]; got.After != keys[136] || got.Done {
		t.Fatalf("checkpoint = %+v, want after %s (the object before the failure)", got, keys[136])
	}
	info, _ := os.Stat(cp)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode %04o", info.Mode().Perm())
	}

	// The failure is gone; a second run resumes at the failed object.
	cs.Clientset.ReactionChain = cs.Clientset.ReactionChain[1:]
	cs.Clientset.ClearActions()
	sum, err = Run(context.Background(), clientFor(cs), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Resumed || sum.Skipped != 137 || sum.Rewritten != 1 || sum.Unchanged != 162 { // only the failed one was still under the old key
		t.Fatalf("second run: %+v", sum)
	}
	up := updates(cs.Clientset)
	for i, k := range keys {
		want := map[bool]int{true: 0, false: 1}[i < 137]
		if i < checkpointSample || i == 136 {
			want = 1 // sent again to verify the checkpoint: the first few and the one at its mark
		}
		if up[k] != want {
			t.Fatalf("second run updated %s %d times, want %d", k, up[k], want)
		}
	}
	if _, err := os.Stat(cp); !errors.Is(err, os.ErrNotExist) {
		t.Error("checkpoint left after the run completed")
	}
}

func TestCheckpointOfAnotherRotationIsIgnored(t *testing.T) {
	cs, _ := newCluster(t, 40)
	cp := filepath.Join(t.TempDir(), CheckpointFile)
	old := newCheckpoint("https://cp:6443", "secretbox:key-a", "sha256:a")
	old.Resources["secrets"] = ResourceState{After: "ns-06/s-9999"}
	old.Updated = time.Now().Add(-time.Hour)
	stale := *old
	stale.Updated = time.Now().Add(-25 * time.Hour)
	unverified := *old
	unverified.ConfigHash = "" // as k8scrypto wrote it before it verified what the apiserver runs
	if err := writeCheckpoint(cp, old.marshal()); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"other target":       {Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-b", ConfigHash: "sha256:a"},
		"other config":       {Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-a", ConfigHash: "sha256:b"},
		"other server":       {Checkpoint: cp, Server: "https://other:6443", Target: "secretbox:key-a", ConfigHash: "sha256:a"},
		"restart":            {Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-a", ConfigHash: "sha256:a", Restart: true},
		"stale":              {Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-a", ConfigHash: "sha256:a"},
		"unverified (older)": {Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-a", ConfigHash: "sha256:a"},
	} {
		t.Run(name, func(t *testing.T) {
			switch name {
			case "stale":
				writeCheckpoint(cp, stale.marshal())
			case "unverified (older)":
				writeCheckpoint(cp, unverified.marshal())
			default:
				writeCheckpoint(cp, old.marshal())
			}
			sum, err := Run(context.Background(), clientFor(cs), o)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Resumed || sum.Skipped != 0 || sum.Rewritten+sum.Unchanged != 40 {
				t.Fatalf("summary = %+v", sum)
			}
			if (name == "restart") != (sum.CheckpointDiscarded == "") {
				t.Errorf("checkpoint discarded because %q", sum.CheckpointDiscarded)
			}
		})
	}
	t.Run("same rotation resumes", func(t *testing.T) {
		writeCheckpoint(cp, old.marshal())
		sum, err := Run(context.Background(), clientFor(cs), Options{Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-a", ConfigHash: "sha256:a"})
		if err != nil || !sum.Resumed || sum.Skipped != 40 || sum.Rewritten != 0 || sum.CheckpointDiscarded != "" {
			t.Fatalf("summary = %+v, err %v", sum, err)
		}
	})
	t.Run("a corrupt checkpoint is an error", func(t *testing.T) {
		os.WriteFile(cp, []byte("{"), 0o600)
		if _, err := Run(context.Background(), clientFor(cs), Options{Checkpoint: cp}); err == nil || !strings.Contains(err.Error(), "--restart") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestCheckpointTheStoreContradictsIsDiscarded: a checkpoint that names this server and configuration but
// says objects are done that the apiserver still stores under another key (written by a run that rewrote
// nothing, as a reencrypt before the apiserver's reload did) is found out by its verification sample and
// discarded: every object is rewritten, none skipped.
func TestCheckpointTheStoreContradictsIsDiscarded(t *testing.T) {
	cs, keys := newCluster(t, 60)
	cp := filepath.Join(t.TempDir(), CheckpointFile)
	lying := newCheckpoint("https://cp:6443", "secretbox:key-b", "sha256:b")
	lying.Resources["secrets"] = ResourceState{After: keys[40]}
	lying.Updated = time.Now()
	if err := writeCheckpoint(cp, lying.marshal()); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), clientFor(cs), Options{Checkpoint: cp, Server: "https://cp:6443", Target: "secretbox:key-b", ConfigHash: "sha256:b"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Resumed || sum.Skipped != 0 || sum.Rewritten+sum.Unchanged != 60 || sum.Rewritten < 59 || !strings.Contains(sum.CheckpointDiscarded, "stored secrets "+keys[0]+" again") {
		t.Fatalf("summary = %+v: want the checkpoint discarded and every Secret rewritten", sum)
	}
	for _, k := range keys {
		if updates(cs.Clientset)[k] == 0 {
			t.Fatalf("%s was never sent back", k)
		}
	}
}

// TestResourcesTheAPIServerDoesNotServe: with RequireServed (names an operator typed), a name the
// apiserver does not serve is an error naming it and the served name it may have meant, and nothing is
// written.
func TestResourcesTheAPIServerDoesNotServe(t *testing.T) {
	cs, _ := newCluster(t, 3)
	cs.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "secrets", Namespaced: true, Verbs: []string{"get", "list", "update"}},
		{Name: "configmaps", Namespaced: true, Verbs: []string{"get", "list", "update"}},
	}}}
	for _, name := range []string{"secret", "Secrets", "scerets"} {
		_, err := Run(context.Background(), clientFor(cs), Options{Resources: []string{name}, RequireServed: true})
		var ns *NotServedError
		if !errors.As(err, &ns) || !strings.Contains(err.Error(), `"`+name+`"`) || !strings.Contains(err.Error(), "did you mean secrets") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if n := len(updates(cs.Clientset)); n != 0 {
		t.Errorf("%d Secrets written by refused runs", n)
	}
	// From the encryption config (not RequireServed) it stays a warning: a CRD may not be installed yet.
	sum, err := Run(context.Background(), clientFor(cs), Options{Resources: []string{"secrets", "widgets.example.com"}})
	if err != nil || !slices.Equal(sum.NotServed, []string{"widgets.example.com"}) || sum.Rewritten != 3 {
		t.Errorf("err %v, summary %+v", err, sum)
	}
}

func TestExpiredContinueTokenRelists(t *testing.T) {
	cs, keys := newCluster(t, 95)
	cs.p.expire[keys[59]] = true // the token for the page after the 60th object
	sum, err := Run(context.Background(), clientFor(cs), Options{PageSize: 20, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rewritten != 95 || sum.Resources[0].Listed != 95 || sum.Skipped != 0 {
		t.Fatalf("summary = %+v", sum)
	}
	for _, k := range keys {
		if n := updates(cs.Clientset)[k]; n != 1 {
			t.Fatalf("%s updated %d times", k, n)
		}
	}
}

func TestInterruptedRunKeepsAConsistentCheckpoint(t *testing.T) {
	cs, keys := newCluster(t, 400)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	n := 0
	failUpdates(cs.Clientset, func(string) error {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 150 {
			cancel()
		}
		return nil
	})
	cp := filepath.Join(t.TempDir(), CheckpointFile)
	opts := Options{PageSize: 50, Workers: 8, Checkpoint: cp, Server: "s", Target: "t", ConfigHash: "sha256:t"}
	if _, err := Run(ctx, clientFor(cs), opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	after := readCheckpoint(t, cp).Resources["secrets"].After
	first := updates(cs.Clientset)
	for _, k := range keys {
		if k <= after && first[k] == 0 {
			t.Fatalf("checkpoint says up to %s is done but %s was never updated", after, k)
		}
	}
	cs.Clientset.ReactionChain = cs.Clientset.ReactionChain[1:]
	cs.Clientset.ClearActions()
	sum, err := Run(context.Background(), clientFor(cs), opts)
	if err != nil {
		t.Fatal(err)
	}
	second := updates(cs.Clientset)
	for i, k := range keys {
		if first[k]+second[k] == 0 {
			t.Fatalf("%s never rewritten", k)
		}
		if k <= after && second[k] != 0 && i >= checkpointSample && k != after {
			t.Fatalf("%s sent again after resume (not one of the checkpoint's verification sample)", k)
		}
	}
	if sum.Skipped == 0 || sum.Skipped+sum.Rewritten+sum.Unchanged != 400 {
		t.Errorf("resume summary = %+v", sum)
	}
}

func TestOtherResourcesThroughDiscoveryAndTheDynamicClient(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s"}})
	cs.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "secrets", Namespaced: true, Verbs: []string{"get", "list", "update"}},
			{Name: "configmaps", Namespaced: true, Verbs: []string{"get", "list", "update"}},
			{Name: "events", Namespaced: true, Verbs: []string{"get", "list", "update"}},
			{Name: "componentstatuses", Verbs: []string{"get", "list"}},
			{Name: "pods/status", Namespaced: true, Verbs: []string{"get", "update"}},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{{Name: "deployments", Namespaced: true, Verbs: []string{"get", "list", "update"}}}},
		{GroupVersion: "events.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "events", Namespaced: true, Verbs: []string{"get", "list", "update"}}}},
		{GroupVersion: "bears.example/v1", APIResources: []metav1.APIResource{{Name: "pandas", Verbs: []string{"get", "list", "update"}}}},
	}
	obj := func(apiVersion, kind, ns, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	gvrs := map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "configmaps"}:                     "ConfigMapList",
		{Version: "v1", Resource: "events"}:                         "EventList",
		{Group: "apps", Version: "v1", Resource: "deployments"}:     "DeploymentList",
		{Group: "bears.example", Version: "v1", Resource: "pandas"}: "PandaList",
		{Group: "events.k8s.io", Version: "v1", Resource: "events"}: "EventList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs,
		obj("v1", "ConfigMap", "a", "c1"), obj("v1", "ConfigMap", "b", "c2"),
		obj("apps/v1", "Deployment", "a", "d1"), obj("bears.example/v1", "Panda", "", "p1"), obj("v1", "Event", "a", "e1"))

	client := clientFor(cs)
	client.Dynamic = dyn
	sum, err := Run(context.Background(), client, Options{Resources: []string{"configmaps", "secrets", "*.apps", "pandas.bears.example", "foxes.bears.example"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range sum.Resources {
		got = append(got, fmt.Sprintf("%s/%s=%d", r.Resource, r.Version, r.Rewritten+r.Unchanged))
	}
	if strings.Join(got, " ") != "secrets/v1=1 configmaps/v1=2 deployments.apps/v1=1 pandas.bears.example/v1=1" {
		t.Errorf("resources = %v", got)
	}
	if !slices.Equal(sum.NotServed, []string{"foxes.bears.example"}) {
		t.Errorf("not served = %v", sum.NotServed)
	}
	var dynUpdates []string
	for _, a := range dyn.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok {
			o := u.GetObject().(*unstructured.Unstructured)
			dynUpdates = append(dynUpdates, a.GetResource().Resource+":"+objectKey(o.GetNamespace(), o.GetName()))
		}
	}
	sort.Strings(dynUpdates)
	if strings.Join(dynUpdates, " ") != "configmaps:a/c1 configmaps:b/c2 deployments:a/d1 pandas:p1" {
		t.Errorf("dynamic updates = %v", dynUpdates)
	}

	// "*.*" takes every listable, updatable resource once; events.k8s.io events are core events in etcd.
	dyn.ClearActions()
	sum, err = Run(context.Background(), client, Options{Resources: []string{"*.*"}})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, r := range sum.Resources {
		got = append(got, r.Resource)
	}
	if strings.Join(got, " ") != "secrets configmaps events deployments.apps pandas.bears.example" {
		t.Errorf("*.* resources = %v", got)
	}

	if _, err := Run(context.Background(), clientFor(cs), Options{Resources: []string{"configmaps"}}); err == nil || !strings.Contains(err.Error(), "dynamic client") {
		t.Errorf("without a dynamic client: err = %v", err)
	}
}

func TestTracker(t *testing.T) {
	var marks []string
	tr := newTracker(func(k string) { marks = append(marks, k) })
	for i, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		tr.add(i, k)
	}
	tr.complete(1, true)
	tr.complete(0, true) // a and b done
	tr.complete(4, false)
	tr.complete(5, true)
	tr.complete(3, true)
	tr.complete(2, true) // c and d: the failure after them does not hold them back
	tr.complete(6, true)
	if strings.Join(marks, ",") != "b,d" {
		t.Errorf("marks = %v, want b,d (and never past the failed e)", marks)
	}
	if len(tr.keys) != 0 || len(tr.done) != 0 {
		t.Errorf("tracker keeps %d keys and %d done entries after everything completed", len(tr.keys), len(tr.done))
	}
}

var _ kubernetes.Interface = (*pagedClient)(nil)
