// Package reencrypt rewrites stored objects through the API so that each is stored again with the
// current write key of the encryption configuration: step 6 of the Kubernetes key-rotation procedure
// ("kubectl get secrets -A -o json | kubectl replace -f -"), done as a library.
//
// Every object is listed page by page (limit PageSize, in etcd key order) and sent back unchanged with a
// PUT. The apiserver writes such a no-op update to etcd only when the stored value was read with a key or
// provider other than the first (it is "stale"); objects already under the write key cost a read and no
// write, so a repeated run is cheap. Updates run on a bounded number of workers while the next page is
// listed; a conflict (the object changed since it was listed) is retried with a fresh GET, an object
// deleted meanwhile is counted and skipped.
//
// Counts tell what the apiserver did, not what was sent: an object whose PUT came back with a new
// resourceVersion was stored again (Rewritten); one that came back unchanged was already stored under the
// write key of the configuration the apiserver runs (Unchanged). The caller must have verified which
// configuration that is (Options.ConfigHash): a PUT says nothing about the key the apiserver wrote with.
//
// Progress is recorded in a checkpoint file: for each resource, the key (namespace/name) up to which every
// object has been rewritten. A run that is interrupted, or that fails on some objects, resumes after that
// key; objects at or before it are skipped without a PUT. The checkpoint names the server and the
// configuration the apiserver was verified to run, so a checkpoint from another cluster, another rotation
// or an apiserver that has since reloaded is discarded. Before a checkpoint is trusted, a sample of the
// objects it says are done (the first ones and the one at its mark) is sent again: if the apiserver stores
// any of them again, they were not under its write key, and the checkpoint is discarded. It is removed
// when a run completes without errors.
package reencrypt

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"k8scrypto.dev/k8scrypto/internal/suggest"
)

// Defaults.
const (
	// DefaultPageSize bounds what a run holds: a page and the next one being listed. 100 against kubectl's
	// 500 kept a 10,000-Secret rewrite under 40 MiB (500: 41 MiB) at the same rate, and bounds memory when
	// Secrets are large (Helm keeps releases in Secrets of up to 1 MiB).
	DefaultPageSize = 100
	// DefaultWorkers: etcd batches concurrent writes into one raft round, so throughput grows with
	// concurrency; on a 3-member etcd and 2 cores, 64 doubled the rate of 16 and 256 gained nothing more.
	DefaultWorkers = 64
	// DefaultConflictRetries bounds the re-GET and PUT rounds for one object that keeps changing.
	DefaultConflictRetries = 5
	// DefaultMaxCheckpointAge bounds how long an interrupted run can be resumed.
	DefaultMaxCheckpointAge = 24 * time.Hour
	// FieldManager names k8scrypto in managedFields (a no-op update changes none).
	FieldManager = "k8scrypto-reencrypt"
)

// Options tune a run. The zero value rewrites Secrets with the defaults and no checkpoint.
type Options struct {
	// Resources are resource names as the encryption configuration spells them ("secrets", "configmaps",
	// "deployments.apps", "*.apps", "*.", "*.*"). Empty means secrets.
	Resources []string
	// Workers is the number of concurrent updates (DefaultWorkers when 0).
	Workers int
	// PageSize is the list limit (DefaultPageSize when 0).
	PageSize int64
	// ConflictRetries bounds retries per object (DefaultConflictRetries when 0).
	ConflictRetries int
	// Checkpoint is the progress file; "" disables resuming.
	Checkpoint string
	// Server identifies the cluster, Target the write key (encryption.WriteKey) and ConfigHash the
	// configuration the apiserver was verified to run (encryption.FileHash of the file it loaded); a
	// checkpoint recorded for other values is discarded.
	Server     string
	Target     string
	ConfigHash string
	// RequireServed makes a resource name the apiserver does not serve an error (*NotServedError) instead
	// of a warning: for names the operator typed, where a typo would otherwise rewrite nothing.
	RequireServed bool
	// Restart ignores an existing checkpoint.
	Restart bool
	// MaxAge is how old a checkpoint may be and still be resumed (DefaultMaxCheckpointAge when 0): skipping
	// objects on the word of a stale checkpoint could leave some under a key about to be pruned, while
	// rewriting everything is always safe.
	MaxAge time.Duration
	// Progress, when set, is called about every ProgressInterval (default 250ms) and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Now is the clock for durations and rates; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Progress is a snapshot of a running rewrite.
type Progress struct {
	Resource string
	// Done counts objects handled (updated, skipped, gone or failed) across all resources; Total is an
	// estimate from the apiserver's remainingItemCount, or -1 when unknown.
	Done, Total int
	Rewritten   int
	Errors      int
	Elapsed     time.Duration
}

// ResourceSummary counts the objects of one resource.
type ResourceSummary struct {
	Resource string `json:"resource"`
	Version  string `json:"version"`
	Listed   int    `json:"listed"`
	// Rewritten objects were stored again by the apiserver (their PUT returned a new resourceVersion): they
	// were read with another key or provider and are now under the write key.
	Rewritten int `json:"rewritten"`
	// Unchanged objects were sent back and not stored again: the apiserver read them with its write key.
	Unchanged int `json:"unchanged"`
	// Skipped objects were rewritten by an earlier, interrupted run (before the checkpoint).
	Skipped int `json:"skipped"`
	// Gone objects were deleted between the list and the update.
	Gone int `json:"gone"`
	// Conflicts counts retries after a conflict.
	Conflicts int `json:"conflicts"`
	Errors    int `json:"errors"`
}

// Summary is the outcome of a run.
type Summary struct {
	Resources []ResourceSummary `json:"resources"`
	// NotServed lists configured resource names the apiserver does not serve (a CRD not installed).
	NotServed []string      `json:"notServed,omitempty"`
	Listed    int           `json:"listed"`
	Rewritten int           `json:"rewritten"`
	Unchanged int           `json:"unchanged"`
	Skipped   int           `json:"skipped"`
	Gone      int           `json:"gone"`
	Conflicts int           `json:"conflicts"`
	Errors    int           `json:"errors"`
	Duration  time.Duration `json:"duration"`
	// PerSecond is objects sent back per second of the run.
	PerSecond float64 `json:"perSecond"`
	// Resumed is true when a checkpoint was used.
	Resumed bool `json:"resumed"`
	// CheckpointDiscarded says why an existing checkpoint was not used ("" when there was none or it was).
	CheckpointDiscarded string `json:"checkpointDiscarded,omitempty"`
	// ErrorSamples holds the first few failures ("namespace/name: error").
	ErrorSamples []string `json:"errorSamples,omitempty"`
}

// item is one object to rewrite.
type item struct {
	seq       int
	namespace string
	name      string
	obj       any // *corev1.Secret or *unstructured.Unstructured
}

func (it item) key() string { return objectKey(it.namespace, it.name) }

// objectKey orders objects as their etcd keys (<prefix>/<namespace>/<name>) are ordered.
func objectKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// resource lists, gets and updates objects of one kind.
type resource struct {
	gr      schema.GroupResource
	version string
	list    func(ctx context.Context, opts metav1.ListOptions) (items []item, cont string, remaining *int64, err error)
	get     func(ctx context.Context, namespace, name string) (any, error)
	// update sends obj back unchanged and returns the resourceVersion the apiserver answered with.
	update func(ctx context.Context, obj any) (string, error)
	// version is obj's resourceVersion before the update.
	rv func(obj any) string
}

func (r resource) name() string {
	if r.gr.Group == "" {
		return r.gr.Resource
	}
	return r.gr.Resource + "." + r.gr.Group
}

func secretsResource(api SecretsClient) resource {
	return resource{
		gr:      schema.GroupResource{Resource: "secrets"},
		version: "v1",
		list: func(ctx context.Context, opts metav1.ListOptions) ([]item, string, *int64, error) {
			l, err := api.List(ctx, opts)
			if err != nil {
				return nil, "", nil, err
			}
			out := make([]item, len(l.Items))
			for i := range l.Items {
				s := &l.Items[i]
				out[i] = item{namespace: s.Namespace, name: s.Name, obj: s}
			}
			return out, l.Continue, l.RemainingItemCount, nil
		},
		get: func(ctx context.Context, ns, name string) (any, error) {
			return api.Get(ctx, ns, name)
		},
		update: func(ctx context.Context, obj any) (string, error) {
			out, err := api.Update(ctx, obj.(*corev1.Secret), metav1.UpdateOptions{FieldManager: FieldManager})
			if err != nil {
				return "", err
			}
			return out.ResourceVersion, nil
		},
		rv: func(obj any) string { return obj.(*corev1.Secret).ResourceVersion },
	}
}

func dynamicResource(client dynamic.Interface, gvr schema.GroupVersionResource, namespaced bool) resource {
	ri := client.Resource(gvr)
	scoped := func(ns string) dynamic.ResourceInterface {
		if namespaced {
			return ri.Namespace(ns)
		}
		return ri
	}
	return resource{
		gr:      gvr.GroupResource(),
		version: gvr.Version,
		list: func(ctx context.Context, opts metav1.ListOptions) ([]item, string, *int64, error) {
			l, err := ri.List(ctx, opts)
			if err != nil {
				return nil, "", nil, err
			}
			out := make([]item, len(l.Items))
			for i := range l.Items {
				u := &l.Items[i]
				out[i] = item{namespace: u.GetNamespace(), name: u.GetName(), obj: u}
			}
			return out, l.GetContinue(), l.GetRemainingItemCount(), nil
		},
		get: func(ctx context.Context, ns, name string) (any, error) {
			return scoped(ns).Get(ctx, name, metav1.GetOptions{})
		},
		update: func(ctx context.Context, obj any) (string, error) {
			u := obj.(*unstructured.Unstructured)
			out, err := scoped(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{FieldManager: FieldManager})
			if err != nil {
				return "", err
			}
			return out.GetResourceVersion(), nil
		},
		rv: func(obj any) string { return obj.(*unstructured.Unstructured).GetResourceVersion() },
	}
}

// Run rewrites every object of the configured resources. It returns an error when a list fails or any
// object could not be rewritten; the summary is filled in either way.
func Run(ctx context.Context, client Client, o Options) (Summary, error) {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.ConflictRetries <= 0 {
		o.ConflictRetries = DefaultConflictRetries
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxCheckpointAge
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Resources) == 0 {
		o.Resources = []string{"secrets"}
	}
	var sum Summary
	resources, notServed, all, err := resolve(ctx, client, o)
	if err != nil {
		return sum, err
	}
	if len(notServed) > 0 && o.RequireServed {
		return sum, notServedError(notServed, all)
	}
	sum.NotServed = notServed
	for _, n := range notServed {
		o.Log.Warn("the encryption config names a resource the apiserver does not serve; skipping it", "resource", n)
	}

	cp := newCheckpoint(o.Server, o.Target, o.ConfigHash)
	if o.Checkpoint != "" && !o.Restart {
		prev, err := loadCheckpoint(o.Checkpoint)
		if err != nil {
			return sum, err
		}
		if prev != nil {
			why := prev.mismatch(o)
			if why == "" {
				why, err = verifyCheckpoint(ctx, resources, prev)
				if err != nil {
					return sum, err
				}
			}
			if why == "" {
				cp, sum.Resumed = prev, true
				o.Log.Info("resuming from checkpoint", "checkpoint", o.Checkpoint)
			} else {
				sum.CheckpointDiscarded = why
				o.Log.Warn("discarding the checkpoint; rewriting everything", "checkpoint", o.Checkpoint, "reason", why)
			}
		}
	}

	r := &run{o: o, cp: cp, start: o.Now()}
	stopProgress := r.startProgress()
	var runErr error
	for _, res := range resources {
		rs, err := r.resource(ctx, res)
		sum.Resources = append(sum.Resources, rs)
		if err != nil {
			runErr = err
			break
		}
	}
	stopProgress()
	if err := r.saveCheckpoint(true); err != nil && runErr == nil {
		runErr = err
	}

	for _, rs := range sum.Resources {
		sum.Listed += rs.Listed
		sum.Rewritten += rs.Rewritten
		sum.Unchanged += rs.Unchanged
		sum.Skipped += rs.Skipped
		sum.Gone += rs.Gone
		sum.Conflicts += rs.Conflicts
		sum.Errors += rs.Errors
	}
	sum.Duration = o.Now().Sub(r.start)
	if s := sum.Duration.Seconds(); s > 0 {
		sum.PerSecond = float64(sum.Rewritten+sum.Unchanged) / s
	}
	r.mu.Lock()
	sum.ErrorSamples = r.samples
	r.mu.Unlock()
	if runErr == nil && sum.Errors > 0 {
		runErr = fmt.Errorf("%d object(s) could not be rewritten (first: %s); run again to retry them (it resumes from the checkpoint)", sum.Errors, sum.ErrorSamples[0])
	}
	if runErr == nil && o.Checkpoint != "" {
		if err := removeCheckpoint(o.Checkpoint); err != nil {
			return sum, err
		}
	}
	return sum, runErr
}

// run is the state of one Run.
type run struct {
	o     Options
	start time.Time

	mu      sync.Mutex
	cp      *Checkpoint
	dirty   bool
	saved   time.Time
	samples []string

	current   atomic.Value // resource name
	done      atomic.Int64
	rewritten atomic.Int64
	errs      atomic.Int64
	total     atomic.Int64 // estimate; 0 unknown
}

const maxSamples = 10

func (r *run) startProgress() (stop func()) {
	if r.o.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.o.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				r.o.Progress(r.snapshot())
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		r.o.Progress(r.snapshot())
	}
}

func (r *run) snapshot() Progress {
	name, _ := r.current.Load().(string)
	total := int(r.total.Load())
	if total == 0 {
		total = -1
	}
	return Progress{Resource: name, Done: int(r.done.Load()), Total: total, Rewritten: int(r.rewritten.Load()), Errors: int(r.errs.Load()), Elapsed: r.o.Now().Sub(r.start)}
}

// resource rewrites every object of one resource.
func (r *run) resource(ctx context.Context, res resource) (ResourceSummary, error) {
	rs := ResourceSummary{Resource: res.name(), Version: res.version}
	r.current.Store(rs.Resource)
	r.mu.Lock()
	state := r.cp.Resources[rs.Resource]
	r.mu.Unlock()
	if state.Done {
		r.o.Log.Info("already rewritten by an earlier run", "resource", rs.Resource)
		return rs, nil
	}
	after := state.After
	tr := newTracker(func(key string) { r.advance(rs.Resource, key) })

	var mu sync.Mutex // guards rs counters updated by workers
	jobs := make(chan item, r.o.PageSize)
	var wg sync.WaitGroup
	for range r.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range jobs {
				if ctx.Err() != nil {
					continue // interrupted: left for the next run, the mark stays before it
				}
				out, err := r.rewrite(ctx, res, it)
				if err != nil && ctx.Err() != nil {
					continue
				}
				mu.Lock()
				rs.Conflicts += out.conflicts
				switch {
				case err != nil:
					rs.Errors++
				case out.gone:
					rs.Gone++
				case out.stored:
					rs.Rewritten++
				default:
					rs.Unchanged++
				}
				mu.Unlock()
				if err != nil {
					r.errs.Add(1)
					r.sample(fmt.Sprintf("%s %s: %v", rs.Resource, it.key(), err))
				} else if out.stored {
					r.rewritten.Add(1)
				}
				r.done.Add(1)
				tr.complete(it.seq, err == nil)
			}
		}()
	}

	listErr := r.produce(ctx, res, after, jobs, tr, &rs, &mu)
	close(jobs)
	wg.Wait()
	if listErr == nil && ctx.Err() != nil {
		listErr = ctx.Err()
	}
	if listErr == nil && rs.Errors == 0 {
		r.mu.Lock()
		r.cp.Resources[rs.Resource] = ResourceState{Done: true}
		r.dirty = true
		r.mu.Unlock()
	}
	return rs, listErr
}

// produce lists every page and queues the objects after the checkpoint key. A continue token that
// expired (a long run outlived etcd's compaction) restarts the list, skipping what was already seen.
func (r *run) produce(ctx context.Context, res resource, after string, jobs chan<- item, tr *tracker, rs *ResourceSummary, mu *sync.Mutex) error {
	cont, seen, prev, seq := "", "", "", 0
	relisting, warned := false, false
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		items, next, remaining, err := res.list(ctx, metav1.ListOptions{Limit: r.o.PageSize, Continue: cont})
		if apierrors.IsResourceExpired(err) && cont != "" {
			r.o.Log.Warn("list continuation expired; listing again after the last object seen", "resource", rs.Resource, "after", seen)
			cont, relisting, prev = "", true, ""
			continue
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", rs.Resource, err)
		}
		if page == 0 && remaining != nil {
			r.total.Add(int64(len(items)) + *remaining)
		}
		for _, it := range items {
			k := it.key()
			if k < prev && !warned {
				warned = true
				r.o.Log.Warn("the apiserver listed objects out of key order; resuming from a checkpoint may skip or repeat some", "resource", rs.Resource)
			}
			prev = k
			if relisting && k <= seen {
				continue // queued or skipped before the list restarted
			}
			if k > seen {
				seen = k
			}
			mu.Lock()
			rs.Listed++
			if after != "" && k <= after {
				rs.Skipped++
				mu.Unlock()
				r.done.Add(1)
				continue
			}
			mu.Unlock()
			it.seq = seq
			seq++
			tr.add(it.seq, k)
			select {
			case jobs <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.maybeSave()
		if next == "" {
			return nil
		}
		cont = next
	}
}

// outcome is what the apiserver did with one object.
type outcome struct {
	conflicts int
	gone      bool
	// stored: the apiserver wrote the object again (new resourceVersion).
	stored bool
}

// rewrite PUTs one object back, re-reading it after a conflict.
func rewrite(ctx context.Context, res resource, obj any, namespace, name string, retries int) (outcome, error) {
	var o outcome
	for {
		before := res.rv(obj)
		after, err := res.update(ctx, obj)
		switch {
		case err == nil:
			o.stored = after != before
			return o, nil
		case apierrors.IsNotFound(err):
			o.gone = true
			return o, nil
		case !apierrors.IsConflict(err) || o.conflicts >= retries:
			return o, err
		}
		o.conflicts++
		obj, err = res.get(ctx, namespace, name)
		if apierrors.IsNotFound(err) {
			o.gone = true
			return o, nil
		}
		if err != nil {
			return o, err
		}
	}
}

func (r *run) rewrite(ctx context.Context, res resource, it item) (outcome, error) {
	return rewrite(ctx, res, it.obj, it.namespace, it.name, r.o.ConflictRetries)
}

func (r *run) sample(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < maxSamples {
		r.samples = append(r.samples, s)
	}
}

// advance records that every object of resource up to key is rewritten.
func (r *run) advance(resource, key string) {
	r.mu.Lock()
	r.cp.Resources[resource] = ResourceState{After: key}
	r.dirty = true
	r.mu.Unlock()
}

// maybeSave writes the checkpoint at most once a second while running.
func (r *run) maybeSave() {
	if err := r.saveCheckpoint(false); err != nil {
		r.o.Log.Warn("could not write the checkpoint", "checkpoint", r.o.Checkpoint, "error", err)
	}
}

func (r *run) saveCheckpoint(force bool) error {
	if r.o.Checkpoint == "" {
		return nil
	}
	r.mu.Lock()
	if !r.dirty || (!force && time.Since(r.saved) < time.Second) {
		r.mu.Unlock()
		return nil
	}
	r.cp.Updated = r.o.Now().UTC()
	data := r.cp.marshal()
	r.dirty = false
	r.saved = time.Now()
	r.mu.Unlock()
	return writeCheckpoint(r.o.Checkpoint, data)
}

// tracker computes the low-water mark of completed objects: the key of the last object such that it and
// every object queued before it were rewritten. A failed object holds the mark before it for the rest of
// the run, so a rerun retries it.
type tracker struct {
	mu        sync.Mutex
	keys      map[int]string
	done      map[int]bool
	next      int
	failedAt  int // lowest failed seq, -1 when none
	onAdvance func(key string)
}

func newTracker(onAdvance func(string)) *tracker {
	return &tracker{keys: map[int]string{}, done: map[int]bool{}, failedAt: -1, onAdvance: onAdvance}
}

func (t *tracker) add(seq int, key string) {
	t.mu.Lock()
	t.keys[seq] = key
	t.mu.Unlock()
}

func (t *tracker) complete(seq int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok && (t.failedAt < 0 || seq < t.failedAt) {
		t.failedAt = seq
		// Nothing after the failure can become the mark in this run: forget it.
		for s := range t.keys {
			if s > seq {
				delete(t.keys, s)
				delete(t.done, s)
			}
		}
	}
	if !ok || (t.failedAt >= 0 && seq > t.failedAt) {
		delete(t.keys, seq)
		return
	}
	t.done[seq] = true
	advanced := ""
	for t.done[t.next] {
		advanced = t.keys[t.next]
		delete(t.done, t.next)
		delete(t.keys, t.next)
		t.next++
	}
	if advanced != "" {
		t.onAdvance(advanced)
	}
}

// resolve maps configured resource names to what the apiserver serves: Secrets through client.Secrets,
// everything else through the dynamic client, in the preferred version of its group, when it can be
// listed and updated.
// It also returns the names of every resource it could rewrite, for suggestions.
func resolve(ctx context.Context, client Client, o Options) (out []resource, notServed, names []string, err error) {
	if len(o.Resources) == 1 && o.Resources[0] == "secrets" {
		return []resource{secretsResource(client.Secrets)}, nil, nil, nil
	}
	if client.Discovery == nil {
		return nil, nil, nil, fmt.Errorf("rewriting %s needs a discovery client", strings.Join(o.Resources, ","))
	}
	groups, lists, err := client.Discovery.ServerGroupsAndResources(ctx)
	if err != nil && len(lists) == 0 {
		return nil, nil, nil, fmt.Errorf("discovering the apiserver's resources: %w", err)
	}
	if err != nil {
		// Typically an aggregated API that is down; its resources are not rewritten.
		o.Log.Warn("discovery was partial; resources of the failing API groups are not rewritten", "error", err)
	}
	preferred := map[string]string{}
	for _, g := range groups {
		preferred[g.Name] = g.PreferredVersion.Version
	}
	type served struct {
		gvr        schema.GroupVersionResource
		namespaced bool
	}
	var all []served
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil || (preferred[gv.Group] != "" && preferred[gv.Group] != gv.Version) {
			continue
		}
		for _, ar := range l.APIResources {
			if strings.Contains(ar.Name, "/") || !slices.Contains(ar.Verbs, "list") || !slices.Contains(ar.Verbs, "update") || !slices.Contains(ar.Verbs, "get") {
				continue
			}
			all = append(all, served{gvr: gv.WithResource(ar.Name), namespaced: ar.Namespaced})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].gvr, all[j].gvr
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Resource < b.Resource
	})
	for _, s := range all {
		names = append(names, resource{gr: s.gvr.GroupResource()}.name())
	}
	seen := map[schema.GroupResource]bool{}
	for _, name := range o.Resources {
		want := schema.ParseGroupResource(name)
		matched := false
		for _, s := range all {
			gr := s.gvr.GroupResource()
			if !matches(want, gr) {
				continue
			}
			matched = true
			// events.k8s.io events are stored with core events; rewriting one rewrites the other.
			if seen[gr] || (gr.Group == "events.k8s.io" && gr.Resource == "events") {
				continue
			}
			seen[gr] = true
			if gr == (schema.GroupResource{Resource: "secrets"}) {
				out = append(out, secretsResource(client.Secrets))
				continue
			}
			if client.Dynamic == nil {
				return nil, nil, nil, fmt.Errorf("rewriting %s needs a dynamic client", gr)
			}
			out = append(out, dynamicResource(client.Dynamic, s.gvr, s.namespaced))
		}
		if !matched && want.Resource != "*" {
			notServed = append(notServed, name)
		}
	}
	// Secrets first: they are why the rotation is done.
	isSecrets := func(r resource) bool { return r.gr == schema.GroupResource{Resource: "secrets"} }
	sort.SliceStable(out, func(i, j int) bool { return isSecrets(out[i]) && !isSecrets(out[j]) })
	return out, notServed, names, nil
}

// NotServedError names resources the apiserver does not serve, with the served names closest to each.
type NotServedError struct {
	Names []string
	// Suggestions maps a name to the served names it may have meant.
	Suggestions map[string][]string
}

func (e *NotServedError) Error() string {
	var parts []string
	for _, n := range e.Names {
		p := fmt.Sprintf("%q", n)
		if s := e.Suggestions[n]; len(s) > 0 {
			p += " (did you mean " + strings.Join(s, " or ") + "?)"
		}
		parts = append(parts, p)
	}
	return "the apiserver serves no resource named " + strings.Join(parts, ", ") + `: name resources as the encryption config does, lower-case and plural, with their group ("secrets", "configmaps", "deployments.apps", "*.apps")`
}

func notServedError(names, served []string) *NotServedError {
	if len(served) == 0 {
		served = []string{"secrets"}
	}
	e := &NotServedError{Names: names, Suggestions: map[string][]string{}}
	for _, n := range names {
		e.Suggestions[n] = suggest.Nearest(n, served)
	}
	return e
}

// checkpointSample is how many of the first objects of a resource verifyCheckpoint sends again.
const checkpointSample = 5

// verifyCheckpoint sends again a sample of the objects cp says are rewritten: the first few of each
// resource and the one at its mark. Each costs the apiserver a read and no write when the object is under
// its write key; if the apiserver stores any of them again, the checkpoint recorded objects as done that
// were not, and it must not be trusted. It returns why, or "" when every sampled object was in place.
func verifyCheckpoint(ctx context.Context, resources []resource, cp *Checkpoint) (string, error) {
	for _, res := range resources {
		state, ok := cp.Resources[res.name()]
		if !ok || (!state.Done && state.After == "") {
			continue
		}
		items, _, _, err := res.list(ctx, metav1.ListOptions{Limit: checkpointSample})
		if err != nil {
			return "", fmt.Errorf("listing %s to verify the checkpoint: %w", res.name(), err)
		}
		for _, it := range items {
			if !state.Done && it.key() > state.After {
				break
			}
			out, err := rewrite(ctx, res, it.obj, it.namespace, it.name, DefaultConflictRetries)
			if err != nil {
				return "", fmt.Errorf("verifying the checkpoint with %s %s: %w", res.name(), it.key(), err)
			}
			if out.stored {
				return fmt.Sprintf("the apiserver stored %s %s again, which the checkpoint said was already under %s", res.name(), it.key(), cp.Target), nil
			}
		}
		if state.Done || state.After == "" {
			continue
		}
		ns, name := splitKey(state.After)
		obj, err := res.get(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("verifying the checkpoint with %s %s: %w", res.name(), state.After, err)
		}
		out, err := rewrite(ctx, res, obj, ns, name, DefaultConflictRetries)
		if err != nil {
			return "", fmt.Errorf("verifying the checkpoint with %s %s: %w", res.name(), state.After, err)
		}
		if out.stored {
			return fmt.Sprintf("the apiserver stored %s %s again, which the checkpoint said was already under %s", res.name(), state.After, cp.Target), nil
		}
	}
	return "", nil
}

// splitKey undoes objectKey; cluster-scoped names have no slash.
func splitKey(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}

// matches applies the encryption configuration's matching rules: an exact group/resource, "*.<group>" for
// a whole group, "*." for the core group and "*.*" for everything.
func matches(pattern, gr schema.GroupResource) bool {
	switch {
	case pattern.Group == "*" && pattern.Resource == "*":
		return true
	case pattern.Resource == "*":
		return pattern.Group == gr.Group
	}
	return pattern == gr
}
