package reencrypt

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Client is what Run needs of the apiserver: the Secrets it rewrites, discovery to resolve other resource
// names, and the dynamic client that rewrites those. NewClient builds one over REST; it does not use
// client-go's typed clientset or discovery client, which would link every API group of k8s.io/api into the
// binary.
type Client struct {
	Secrets   SecretsClient
	Discovery Discoverer
	// Dynamic serves every resource but Secrets; required when Run is asked for others.
	Dynamic dynamic.Interface
}

// SecretsClient reads and writes core/v1 Secrets.
type SecretsClient interface {
	// List lists Secrets of all namespaces.
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error)
	Get(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	Update(ctx context.Context, s *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error)
}

// Discoverer lists the API groups and resources the apiserver serves, as client-go's
// ServerGroupsAndResources: when some group versions fail it returns what the others gave and an error
// naming the failed ones (a *GroupDiscoveryFailedError).
type Discoverer interface {
	ServerGroupsAndResources(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error)
}

// GroupDiscoveryFailedError names the group versions whose resources could not be listed; the other
// results are valid. It reads like client-go's discovery.ErrGroupDiscoveryFailed.
type GroupDiscoveryFailedError struct {
	Groups map[schema.GroupVersion]error
}

func (e *GroupDiscoveryFailedError) Error() string {
	var groups []string
	for gv, err := range e.Groups {
		groups = append(groups, fmt.Sprintf("%s: %v", gv, err))
	}
	sort.Strings(groups)
	return "unable to retrieve the complete list of server APIs: " + strings.Join(groups, ", ")
}

const (
	protobufContentType = "application/vnd.kubernetes.protobuf"
	// discoveryTimeout bounds each discovery request, as client-go's discovery client does when the
	// config sets no timeout, so that a hung aggregated API cannot stall a run.
	discoveryTimeout = 32 * time.Second
	// discoveryAttempts: client-go repeats a partial discovery once, for a group that went away meanwhile.
	discoveryAttempts = 2
)

// coreScheme holds core/v1 and the meta/v1 types registered with it (options, Status, the unversioned
// discovery types) and nothing else; built on first use so that commands that never talk to an apiserver
// do not pay for it.
var coreScheme = sync.OnceValues(func() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	// corev1.AddToScheme also calls metav1.AddToGroupVersion for core/v1: ListOptions, UpdateOptions,
	// GetOptions, and Status for decoding errors.
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
})

// NewClient returns a Client for rc: Secrets over protobuf (accepting JSON too), discovery over the
// legacy JSON endpoints. Rate limits, user agent and TLS come from rc.
func NewClient(rc *rest.Config) (Client, error) {
	scheme, err := coreScheme()
	if err != nil {
		return Client{}, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return Client{}, err
	}
	c := rest.CopyConfig(rc)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c.ContentType = protobufContentType
	c.AcceptContentTypes = protobufContentType + ",application/json"
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return Client{}, err
	}
	rcl, err := rest.RESTClientForConfigAndClient(c, hc)
	if err != nil {
		return Client{}, err
	}
	timeout := rc.Timeout
	if timeout == 0 {
		timeout = discoveryTimeout
	}
	return Client{
		Secrets:   &restSecrets{c: rcl, params: runtime.NewParameterCodec(scheme)},
		Discovery: &restDiscovery{c: rcl, timeout: timeout},
		Dynamic:   dyn,
	}, nil
}

type restSecrets struct {
	c      *rest.RESTClient
	params runtime.ParameterCodec
}

// List GETs /api/v1/secrets.
func (s *restSecrets) List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error) {
	out := &corev1.SecretList{}
	err := s.c.Get().Resource("secrets").VersionedParams(&opts, s.params).Do(ctx).Into(out)
	return out, err
}

// Get GETs /api/v1/namespaces/NS/secrets/NAME.
func (s *restSecrets) Get(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	err := s.c.Get().Namespace(namespace).Resource("secrets").Name(name).Do(ctx).Into(out)
	return out, err
}

// Update PUTs to /api/v1/namespaces/NS/secrets/NAME.
func (s *restSecrets) Update(ctx context.Context, secret *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	err := s.c.Put().Namespace(secret.Namespace).Resource("secrets").Name(secret.Name).
		VersionedParams(&opts, s.params).Body(secret).Do(ctx).Into(out)
	return out, err
}

// restDiscovery reads the legacy discovery documents as JSON: /api, /apis, then the resources of each
// group's preferred version (the only version Run uses), concurrently. It never asks for aggregated
// discovery.
type restDiscovery struct {
	c       *rest.RESTClient
	timeout time.Duration
}

func (d *restDiscovery) ServerGroupsAndResources(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	var (
		groups []*metav1.APIGroup
		lists  []*metav1.APIResourceList
		err    error
	)
	for range discoveryAttempts {
		groups, lists, err = d.discover(ctx)
		if _, partial := err.(*GroupDiscoveryFailedError); !partial || ctx.Err() != nil {
			break
		}
	}
	return groups, lists, err
}

func (d *restDiscovery) discover(ctx context.Context) ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	var (
		versions metav1.APIVersions
		apis     metav1.APIGroupList
		errs     [2]error
		wg       sync.WaitGroup
	)
	wg.Go(func() { errs[0] = d.get(ctx, "/api", &versions) })
	wg.Go(func() { errs[1] = d.get(ctx, "/apis", &apis) })
	wg.Wait()
	// As client-go: a server without /api or /apis (404) or that hides it (403) serves no such groups.
	for i, err := range errs {
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			return nil, nil, err
		}
		if err != nil && i == 1 {
			apis = metav1.APIGroupList{}
		}
	}
	var all []metav1.APIGroup
	if errs[0] == nil && len(versions.Versions) > 0 {
		core := metav1.APIGroup{Name: ""}
		for _, v := range versions.Versions {
			core.Versions = append(core.Versions, metav1.GroupVersionForDiscovery{GroupVersion: v, Version: v})
		}
		core.PreferredVersion = core.Versions[0]
		all = append(all, core)
	}
	all = append(all, apis.Groups...)

	groups := make([]*metav1.APIGroup, len(all))
	lists := make([]*metav1.APIResourceList, len(all))
	failed := make([]error, len(all))
	for i := range all {
		g := &all[i]
		groups[i] = g
		gv := schema.GroupVersion{Group: g.Name, Version: g.PreferredVersion.Version}
		if gv.Version == "" {
			continue
		}
		path := "/apis/" + gv.String()
		if gv.Group == "" {
			path = "/api/" + gv.Version
		}
		wg.Go(func() {
			l := &metav1.APIResourceList{GroupVersion: gv.String()}
			if err := d.get(ctx, path, l); err != nil {
				failed[i] = err
				return
			}
			lists[i] = l
		})
	}
	wg.Wait()

	var out []*metav1.APIResourceList
	failedGroups := map[schema.GroupVersion]error{}
	for i, l := range lists {
		if l != nil {
			out = append(out, l)
		}
		if failed[i] != nil {
			failedGroups[schema.GroupVersion{Group: all[i].Name, Version: all[i].PreferredVersion.Version}] = failed[i]
		}
	}
	if len(failedGroups) > 0 {
		return groups, out, &GroupDiscoveryFailedError{Groups: failedGroups}
	}
	return groups, out, nil
}

// get reads one discovery document as JSON into v; a failure is an apierrors error.
func (d *restDiscovery) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res := d.c.Get().AbsPath(path).SetHeader("Accept", "application/json").Do(ctx)
	if err := res.Error(); err != nil {
		return err
	}
	body, _ := res.Raw()
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decoding the discovery document: %w", path, err)
	}
	return nil
}
