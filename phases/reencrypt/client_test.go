package reencrypt

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

const protobufAccept = "application/vnd.kubernetes.protobuf,application/json"

// apiServer answers what NewClient's client asks: the legacy discovery documents as JSON, with one
// aggregated group version down (503), and Secrets as protobuf, as a real apiserver answers a client
// that prefers protobuf.
type apiServer struct {
	t      *testing.T
	enc    runtime.Encoder
	dec    runtime.Decoder
	mu     sync.Mutex
	reqs   []string // "METHOD path?query"
	accept map[string]string
	agents map[string]bool
	puts   []*corev1.Secret
	ctypes []string
}

func newAPIServer(t *testing.T) *apiServer {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	codecs := serializer.NewCodecFactory(s)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	return &apiServer{t: t, enc: codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), dec: codecs.UniversalDeserializer(), accept: map[string]string{}, agents: map[string]bool{}}
}

func testSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "42", Labels: map[string]string{"app": name}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"key": []byte("value of " + name), "bin": {0, 1, 2, 255}},
	}
}

func (a *apiServer) protobuf(w http.ResponseWriter, code int, obj runtime.Object) {
	var buf bytes.Buffer
	if err := a.enc.Encode(obj, &buf); err != nil {
		a.t.Errorf("encoding %T: %v", obj, err)
	}
	w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, obj any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(obj)
}

func (a *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	req := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		req += "?" + r.URL.RawQuery
	}
	a.reqs = append(a.reqs, req)
	a.accept[r.URL.Path] = r.Header.Get("Accept")
	a.agents[r.UserAgent()+" "+r.Proto] = true
	verbs := []string{"get", "list", "update", "create", "delete"}
	q := r.URL.Query()
	switch p := r.URL.Path; {
	case r.Method == http.MethodGet && p == "/api":
		writeJSON(w, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	case r.Method == http.MethodGet && p == "/api/v1":
		writeJSON(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "secrets", Namespaced: true, Kind: "Secret", Verbs: verbs},
			{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: verbs},
			{Name: "secrets/status", Namespaced: true, Kind: "Secret", Verbs: []string{"get", "update"}},
		}})
	case r.Method == http.MethodGet && p == "/apis":
		gv := func(g, v string) metav1.GroupVersionForDiscovery {
			return metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v}
		}
		writeJSON(w, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{
			{Name: "apps", Versions: []metav1.GroupVersionForDiscovery{gv("apps", "v1")}, PreferredVersion: gv("apps", "v1")},
			{Name: "metrics.k8s.io", Versions: []metav1.GroupVersionForDiscovery{gv("metrics.k8s.io", "v1beta1")}, PreferredVersion: gv("metrics.k8s.io", "v1beta1")},
			{Name: "bears.example", Versions: []metav1.GroupVersionForDiscovery{gv("bears.example", "v2"), gv("bears.example", "v1")}, PreferredVersion: gv("bears.example", "v2")},
		}})
	case r.Method == http.MethodGet && p == "/apis/apps/v1":
		writeJSON(w, metav1.APIResourceList{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{{Name: "deployments", Namespaced: true, Kind: "Deployment", Verbs: verbs}}})
	case r.Method == http.MethodGet && p == "/apis/bears.example/v2":
		writeJSON(w, metav1.APIResourceList{GroupVersion: "bears.example/v2", APIResources: []metav1.APIResource{{Name: "pandas", Kind: "Panda", Verbs: verbs}}})
	case r.Method == http.MethodGet && p == "/apis/metrics.k8s.io/v1beta1":
		// What kube-aggregator answers for an APIService whose backend is down.
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)

	case r.Method == http.MethodGet && p == "/api/v1/secrets":
		list := &corev1.SecretList{}
		switch c := q.Get("continue"); c {
		case "":
			list.Items = []corev1.Secret{*testSecret("a", "s1"), *testSecret("a", "s2")}
			list.Continue = "page-2"
			remaining := int64(1)
			list.RemainingItemCount = &remaining
		case "page-2":
			list.Items = []corev1.Secret{*testSecret("b", "s3")}
		default:
			a.protobuf(w, http.StatusGone, &apierrors.NewResourceExpired("unknown continue token "+c).ErrStatus)
			return
		}
		a.protobuf(w, http.StatusOK, list)
	case r.Method == http.MethodGet && p == "/api/v1/namespaces/a/secrets/s1":
		a.protobuf(w, http.StatusOK, testSecret("a", "s1"))
	case r.Method == http.MethodGet && p == "/api/v1/namespaces/a/secrets/missing":
		// A Status as JSON: the client must decode errors in either format.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "missing").ErrStatus)
	case r.Method == http.MethodPut && strings.HasPrefix(p, "/api/v1/namespaces/"):
		a.ctypes = append(a.ctypes, r.Header.Get("Content-Type"))
		body, _ := io.ReadAll(r.Body)
		obj, _, err := a.dec.Decode(body, nil, nil)
		s, ok := obj.(*corev1.Secret)
		if err != nil || !ok {
			http.Error(w, fmt.Sprintf("bad body %T: %v", obj, err), http.StatusBadRequest)
			return
		}
		a.puts = append(a.puts, s)
		if p != "/api/v1/namespaces/"+s.Namespace+"/secrets/"+s.Name {
			http.Error(w, "path and body disagree", http.StatusBadRequest)
			return
		}
		if s.Name == "busy" {
			a.protobuf(w, http.StatusConflict, &apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, s.Name, errors.New("the object has been modified; please apply your changes to the latest version and try again")).ErrStatus)
			return
		}
		a.protobuf(w, http.StatusOK, s)
	default:
		http.Error(w, r.Method+" "+p+" not served", http.StatusNotFound)
	}
}

func (a *apiServer) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// newTestClient starts a TLS (HTTP/2) server for a and returns NewClient's client for it.
func newTestClient(t *testing.T, a *apiServer) Client {
	t.Helper()
	srv := httptest.NewUnstartedServer(a)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rc := &rest.Config{
		Host:            srv.URL,
		BearerToken:     "token",
		UserAgent:       "k8scrypto-test",
		QPS:             -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
	}
	c, err := NewClient(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClientSecrets(t *testing.T) {
	a := newAPIServer(t)
	c := newTestClient(t, a)
	ctx := context.Background()

	// Two pages: the second request carries the continue token of the first.
	var names []string
	opts := metav1.ListOptions{Limit: 2}
	for page := 0; ; page++ {
		l, err := c.Secrets.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if page == 0 && (l.RemainingItemCount == nil || *l.RemainingItemCount != 1) {
			t.Errorf("remainingItemCount = %v, want 1", l.RemainingItemCount)
		}
		for _, s := range l.Items {
			names = append(names, objectKey(s.Namespace, s.Name))
			if want := testSecret(s.Namespace, s.Name); !reflect.DeepEqual(s.Data, want.Data) || !reflect.DeepEqual(s.Labels, want.Labels) || s.ResourceVersion != "42" {
				t.Errorf("listed %s = %+v", s.Name, s)
			}
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if strings.Join(names, " ") != "a/s1 a/s2 b/s3" {
		t.Errorf("listed %v", names)
	}
	if got := strings.Join(a.requests(), "\n"); got != "GET /api/v1/secrets?limit=2\nGET /api/v1/secrets?continue=page-2&limit=2" {
		t.Errorf("list requests:\n%s", got)
	}
	if got := a.accept["/api/v1/secrets"]; got != protobufAccept {
		t.Errorf("list Accept = %q, want %q", got, protobufAccept)
	}
	// An unknown token is a 410 Gone, which Run restarts the list on.
	if _, err := c.Secrets.List(ctx, metav1.ListOptions{Limit: 2, Continue: "stale"}); !apierrors.IsResourceExpired(err) {
		t.Errorf("expired continue: err = %v, want a ResourceExpired error", err)
	}

	s, err := c.Secrets.Get(ctx, "a", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if want := testSecret("a", "s1"); s.Name != "s1" || s.Namespace != "a" || !reflect.DeepEqual(s.Data, want.Data) {
		t.Errorf("get = %+v", s)
	}
	if got := a.accept["/api/v1/namespaces/a/secrets/s1"]; got != protobufAccept {
		t.Errorf("get Accept = %q", got)
	}
	if _, err := c.Secrets.Get(ctx, "a", "missing"); !apierrors.IsNotFound(err) {
		t.Errorf("get missing: err = %v, want NotFound", err)
	}

	// The PUT carries the object as listed, as protobuf, with the field manager.
	orig := testSecret("a", "s1")
	sent := orig.DeepCopy()
	out, err := c.Secrets.Update(ctx, sent, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		t.Fatal(err)
	}
	if out.Name != "s1" || out.ResourceVersion != "42" {
		t.Errorf("update returned %+v", out)
	}
	reqs := a.requests()
	if last := reqs[len(reqs)-1]; last != "PUT /api/v1/namespaces/a/secrets/s1?fieldManager=k8scrypto-reencrypt" {
		t.Errorf("update request = %s", last)
	}
	a.mu.Lock()
	got, ctype := a.puts[0], a.ctypes[0]
	a.mu.Unlock()
	if ctype != runtime.ContentTypeProtobuf {
		t.Errorf("update Content-Type = %q, want protobuf", ctype)
	}
	if got.Kind != "Secret" || got.APIVersion != "v1" {
		t.Errorf("update body type meta = %+v", got.TypeMeta)
	}
	got.TypeMeta = metav1.TypeMeta{}
	if !reflect.DeepEqual(got, orig) {
		t.Errorf("update body decodes to\n%+v\nwant\n%+v", got, orig)
	}

	_, err = c.Secrets.Update(ctx, testSecret("b", "busy"), metav1.UpdateOptions{FieldManager: FieldManager})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "has been modified") {
		t.Errorf("update of a changed object: err = %v, want a Conflict", err)
	}
	if !reflect.DeepEqual(a.agents, map[string]bool{"k8scrypto-test HTTP/2.0": true}) {
		t.Errorf("user agents and protocols = %v, want the config's user agent over HTTP/2", a.agents)
	}
}

func TestNewClientDiscoveryIsPartialWhenAGroupIsDown(t *testing.T) {
	a := newAPIServer(t)
	c := newTestClient(t, a)
	groups, lists, err := c.Discovery.ServerGroupsAndResources(context.Background())
	var gerr *GroupDiscoveryFailedError
	if !errors.As(err, &gerr) || len(gerr.Groups) != 1 || gerr.Groups[schema.GroupVersion{Group: "metrics.k8s.io", Version: "v1beta1"}] == nil {
		t.Fatalf("err = %v, want a partial failure of metrics.k8s.io/v1beta1 only", err)
	}
	if !strings.Contains(err.Error(), "metrics.k8s.io/v1beta1: the server is currently unable to handle the request") {
		t.Errorf("err = %q does not name the failed group version", err)
	}
	var gs, ls []string
	for _, g := range groups {
		gs = append(gs, g.Name+"="+g.PreferredVersion.Version)
	}
	for _, l := range lists {
		var rs []string
		for _, r := range l.APIResources {
			rs = append(rs, r.Name)
		}
		ls = append(ls, l.GroupVersion+":"+strings.Join(rs, ","))
	}
	if got := strings.Join(gs, " "); got != "=v1 apps=v1 metrics.k8s.io=v1beta1 bears.example=v2" {
		t.Errorf("groups = %s", got)
	}
	if got := strings.Join(ls, " "); got != "v1:secrets,configmaps,secrets/status apps/v1:deployments bears.example/v2:pandas" {
		t.Errorf("resource lists = %s", got)
	}
	// Plain JSON, no aggregated discovery; only preferred versions; the partial result is tried twice.
	for _, p := range []string{"/api", "/api/v1", "/apis", "/apis/apps/v1", "/apis/bears.example/v2", "/apis/metrics.k8s.io/v1beta1"} {
		if got := a.accept[p]; got != "application/json" {
			t.Errorf("GET %s Accept = %q, want application/json", p, got)
		}
	}
	count := map[string]int{}
	for _, r := range a.requests() {
		count[r]++
	}
	if count["GET /apis/bears.example/v1"] != 0 {
		t.Error("discovery fetched a version that is not preferred")
	}
	if count["GET /apis/metrics.k8s.io/v1beta1"] != 2 || count["GET /apis"] != 2 {
		t.Errorf("requests = %v, want the partial discovery repeated once", count)
	}

	// resolve goes on with what was discovered.
	var logs bytes.Buffer
	res, notServed, _, err := resolve(context.Background(), c, Options{Resources: []string{"*.*", "podmetrics.metrics.k8s.io"}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res {
		names = append(names, r.name()+"/"+r.version)
	}
	if got := strings.Join(names, " "); got != "secrets/v1 configmaps/v1 deployments.apps/v1 pandas.bears.example/v2" {
		t.Errorf("resolved %s", got)
	}
	if !slices.Equal(notServed, []string{"podmetrics.metrics.k8s.io"}) {
		t.Errorf("not served = %v", notServed)
	}
	if !strings.Contains(logs.String(), "discovery was partial") || !strings.Contains(logs.String(), "metrics.k8s.io/v1beta1") {
		t.Errorf("no warning naming the failed group: %s", logs.String())
	}
}

func TestNewClientDiscoveryFailsWhenTheServerDoes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "etcd is down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	groups, lists, err := c.Discovery.ServerGroupsAndResources(context.Background())
	if err == nil || groups != nil || lists != nil || !apierrors.IsInternalError(err) {
		t.Fatalf("groups %v, lists %v, err %v: want no results and the server's error", groups, lists, err)
	}
	if _, _, _, err := resolve(context.Background(), c, Options{Resources: []string{"configmaps"}, Log: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "discovering the apiserver's resources") {
		t.Errorf("resolve: err = %v", err)
	}
}

// Run end to end over NewClient: every Secret is listed page by page and sent back once.
func TestRunOverNewClient(t *testing.T) {
	a := newAPIServer(t)
	c := newTestClient(t, a)
	sum, err := Run(context.Background(), c, Options{PageSize: 2, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unchanged != 3 || sum.Rewritten != 0 || sum.Resources[0].Listed != 3 {
		t.Fatalf("summary = %+v", sum)
	}
	var puts []string
	for _, r := range a.requests() {
		if strings.HasPrefix(r, "PUT ") {
			puts = append(puts, r)
		}
	}
	slices.Sort(puts)
	want := []string{
		"PUT /api/v1/namespaces/a/secrets/s1?fieldManager=k8scrypto-reencrypt",
		"PUT /api/v1/namespaces/a/secrets/s2?fieldManager=k8scrypto-reencrypt",
		"PUT /api/v1/namespaces/b/secrets/s3?fieldManager=k8scrypto-reencrypt",
	}
	if !slices.Equal(puts, want) {
		t.Errorf("puts = %v", puts)
	}
}
