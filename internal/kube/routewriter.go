package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayv1client "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/typed/apis/v1"

	"github.com/skewguard/skewguard/internal/routes"
)

// RouteFieldManager names skewguard's writes in managedFields and audit logs.
const RouteFieldManager = "skewguard"

// ErrRouteNotManaged is returned (wrapped) when a route skewguard wants to write already
// exists and does not carry skewguard's labels for the app. skewguard never touches it.
var ErrRouteNotManaged = errors.New("HTTPRoute exists and is not managed by skewguard for this app")

// RouteApplyResult says what ApplyRoutes did, route by route, for audit and metrics.
type RouteApplyResult struct {
	Created []string `json:"created,omitempty"`
	Updated []string `json:"updated,omitempty"`
	// Restamped lists routes whose spec was already as desired and whose metadata (the generation
	// annotation, a label) was brought forward with a small merge patch, resourceVersion-fenced
	// like a full update: every route an apply keeps must carry its generation (see upsertRoute).
	Restamped []string `json:"restamped,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	Deleted   []string `json:"deleted,omitempty"`
	// SkippedStale lists routes left as they are because a newer generation wrote them, or
	// would have been written had the write not been superseded.
	SkippedStale []string `json:"skippedStale,omitempty"`
	// Superseded is true when the app's routes turned out to be written from a newer
	// generation: the write stopped there, changing nothing further. It is not an error; a
	// retry would find the same.
	Superseded bool `json:"superseded,omitempty"`
	// Writes counts the write requests sent to the API server (create, update, patch, delete),
	// including those refused by a conflict and retried, and withdrawals of stale creations.
	Writes int `json:"writes,omitempty"`
	// WriteBytes is the size of the JSON bodies of those requests.
	WriteBytes int64 `json:"writeBytes,omitempty"`
}

// Changed reports whether the apply wrote anything.
func (r RouteApplyResult) Changed() bool {
	return r.Objects() > 0
}

// Objects is how many routes the apply changed: created, updated, restamped or deleted.
func (r RouteApplyResult) Objects() int {
	return len(r.Created) + len(r.Updated) + len(r.Restamped) + len(r.Deleted)
}

// RouteWriter writes an app's rendered HTTPRoutes, fenced by the app's route generation so that
// a late or retried write can never roll routing back. Construct it only when skew protection
// is enabled: with the feature off skewguard makes no Gateway API calls at all.
type RouteWriter struct {
	client  gatewayclient.Interface
	backoff wait.Backoff
	fence   FenceFunc
}

// FenceFunc returns an app's current route generation from the source of truth (the
// registry), which outlives the app's routes. It is the tombstone the routes themselves cannot
// be: once a newer generation removed every route of an app, nothing is left on the API server
// to tell a late writer that it is stale.
type FenceFunc func(ctx context.Context, namespace, app string) (int64, error)

// NewRouteWriter returns a writer that uses gw.
func NewRouteWriter(gw gatewayclient.Interface) *RouteWriter {
	return &RouteWriter{client: gw, backoff: retry.DefaultRetry}
}

// WithFence returns a copy of w that also checks f: before writing anything, and again after
// each route it creates, so that a write from a generation older than f's answer changes
// nothing, even when the newer generation left the app without any route.
func (w *RouteWriter) WithFence(f FenceFunc) *RouteWriter {
	c := *w
	c.fence = f
	return &c
}

// ApplyRoutes makes the app's managed HTTPRoutes in namespace equal desired, as routes.Render
// returned them for generation: each carries the app's labels and generation in its
// routes.GenerationAnnotation, which the renderer alone puts on it (a route that lacks them, or
// is labelled for another app or generation, is refused before anything is read or written):
//   - a route that is missing is created;
//   - a live route is updated (resourceVersion precondition, re-read and retried on conflict)
//     only if its generation is ≤ generation, and only if it differs; one whose spec is already
//     as desired gets a merge patch of its metadata alone (the generation), with the same
//     precondition (Restamped);
//   - a live route of the app that is not desired is deleted (UID and resourceVersion
//     preconditions) if its generation is ≤ generation; NotFound is success.
//
// The app's routes are found by labels (routes.ManagedByLabel and routes.AppLabel), never by
// name, and a route of the wanted name that lacks them is never touched (ErrRouteNotManaged).
// Desired routes are written in the rendered order (the first route, the one holding the default
// rule, which Render always puts first, before the pin shards) except that a route that takes over
// a Service another gives up is written first (routeWriteOrder), then surplus routes are deleted:
// a Service routed before and after the apply is routed after every write in between, whether a
// pin moves between shards or the old Active version becomes a pin of another shard at a flip.
//
// As soon as a route written from a newer generation is seen, the apply stops and reports
// Superseded. The first route is the fence between concurrent writers: the app's routes are
// listed again once it is written, and a pin shard this call creates is deleted again if the
// first route has been superseded meanwhile. So whatever the interleaving of writers, the
// routes end as the newest generation wants them, and a late writer cannot resurrect a shard a
// newer one removed.
//
// With a fence (WithFence), a generation older than the fence's is Superseded before anything
// is read or written; the fence is asked again after every route the apply creates, and a route
// created by a write that turns out stale is deleted again. That closes the one gap the routes
// cannot: after a newer write deleted all of the app's routes, a late writer would find nothing
// to compare against and would recreate them.
//
// Re-running with the same arguments changes nothing.
func (w *RouteWriter) ApplyRoutes(ctx context.Context, namespace, app string, generation int64,
	desired []gatewayv1.HTTPRoute) (RouteApplyResult, error) {
	var res RouteApplyResult
	want, err := prepareRoutes(namespace, app, generation, desired)
	if err != nil {
		return res, err
	}
	if stale, err := w.fenced(ctx, namespace, app, generation); err != nil {
		return res, err
	} else if stale {
		res.Superseded = true
		res.SkippedStale = routeNames(want)
		return res, nil
	}
	client := countingRoutes{HTTPRouteInterface: w.client.GatewayV1().HTTPRoutes(namespace), res: &res}
	live, err := w.listRoutes(ctx, client, namespace, app, generation, &res)
	if err != nil {
		return res, err
	}
	if res.Superseded {
		res.SkippedStale = routeNames(want)
		return res, nil
	}
	order := routeWriteOrder(live, want)
	rest := func(k int) []string {
		var names []string
		for _, i := range order[k:] {
			names = append(names, want[i].Name)
		}
		return names
	}
	for k, i := range order {
		fence := ""
		if i > 0 {
			fence = want[0].Name
		}
		outcome, err := w.upsertRoute(ctx, client, namespace, app, generation, &want[i], live[want[i].Name], fence)
		if err != nil {
			return res, err
		}
		if outcome == routeStale {
			res.Superseded = true
			res.SkippedStale = append(res.SkippedStale, rest(k)...)
			return res, nil
		}
		res.record(outcome, want[i].Name)
		if i == 0 {
			// Read the app's routes again now that the first one carries this generation: a
			// newer write either shows here, or lists after this point and so sees (and
			// supersedes) every shard this write goes on to create. Needed even when the first
			// route is the last write: an older writer in flight may have created a shard since
			// the list above, which only this read finds (TestReListAfterTheFirstRouteIsNeeded).
			if live, err = w.listRoutes(ctx, client, namespace, app, generation, &res); err != nil {
				return res, err
			}
			if res.Superseded {
				res.SkippedStale = append(res.SkippedStale, rest(k+1)...)
				return res, nil
			}
		}
	}

	wanted := make(map[string]bool, len(want))
	for _, r := range want {
		wanted[r.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(live)) {
		if wanted[name] {
			continue
		}
		outcome, err := w.deleteRoute(ctx, client, app, generation, live[name])
		if err != nil {
			return res, err
		}
		if outcome == routeStale {
			res.Superseded = true
			res.SkippedStale = append(res.SkippedStale, name)
			return res, nil
		}
		res.record(outcome, name)
	}
	return res, nil
}

// routeWriteOrder is the order in which ApplyRoutes writes want (indexes into it): the rendered
// order (the first route, holding the default rule, first), except that a route taking over a
// Service another route of the app gives up is written before that route. So a Service the
// gateway routes to before and after the apply is routed at every moment in between: at a flip
// whose old Active version becomes a pin of another shard, that shard gets the pin before the
// first route's default rule moves on; when an expiry shifts pins down a shard, the lower shard
// gets each pin before the higher one drops it. Writes of one app are serialized (the registry
// lock) and one transaction changes one thing, so these constraints do not form a cycle in
// practice; if they do (a flip and an expiry written together), the routes in the cycle keep the
// rendered order and a moving pin can be absent between two writes.
func routeWriteOrder(live map[string]*gatewayv1.HTTPRoute, want []gatewayv1.HTTPRoute) []int {
	services := func(r *gatewayv1.HTTPRoute) map[string]bool {
		out := map[string]bool{}
		if r == nil {
			return out
		}
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				out[string(b.Name)] = true
			}
		}
		return out
	}
	n := len(want)
	had := make([]map[string]bool, n)  // what each route routes to now
	gets := make([]map[string]bool, n) // ... and once written
	for i := range want {
		had[i], gets[i] = services(live[want[i].Name]), services(&want[i])
	}
	// before[a][b]: write a before b (a takes over a Service b gives up).
	indegree := make([]int, n)
	before := make([]map[int]bool, n)
	for a := range n {
		before[a] = map[int]bool{}
		for s := range gets[a] {
			if had[a][s] {
				continue
			}
			for b := range n {
				if b != a && had[b][s] && !gets[b][s] && !before[a][b] {
					before[a][b] = true
					indegree[b]++
				}
			}
		}
	}
	order := make([]int, 0, n)
	done := make([]bool, n)
	for len(order) < n {
		next := -1
		for i := range n {
			if !done[i] && indegree[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 { // a cycle: the rest in the rendered order
			for i := range n {
				if !done[i] {
					order = append(order, i)
				}
			}
			break
		}
		done[next] = true
		order = append(order, next)
		for b := range before[next] {
			indegree[b]--
		}
	}
	return order
}

// fenced reports whether the fence, if any, knows a generation newer than generation.
func (w *RouteWriter) fenced(ctx context.Context, namespace, app string, generation int64) (bool, error) {
	if w.fence == nil {
		return false, nil
	}
	current, err := w.fence(ctx, namespace, app)
	if err != nil {
		return false, fmt.Errorf("read the route generation of %s/%s: %w", namespace, app, err)
	}
	return generation < current, nil
}

// listRoutes returns the app's managed routes by name, and marks res Superseded if any of them
// was written from a newer generation.
func (w *RouteWriter) listRoutes(ctx context.Context, client gatewayv1client.HTTPRouteInterface, namespace, app string,
	generation int64, res *RouteApplyResult) (map[string]*gatewayv1.HTTPRoute, error) {
	selector := labels.SelectorFromSet(routes.Labels(app)).String()
	list, err := client.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list HTTPRoutes of %s/%s: %w", namespace, app, err)
	}
	live := make(map[string]*gatewayv1.HTTPRoute, len(list.Items))
	for i := range list.Items {
		r := &list.Items[i]
		live[r.Name] = r
		if routeGeneration(r) > generation {
			res.Superseded = true
		}
	}
	return live, nil
}

type routeOutcome int

const (
	routeUnchanged routeOutcome = iota
	routeCreated
	routeUpdated
	routeRestamped
	routeDeleted
	routeGone // already deleted by someone else
	routeStale
)

func (r *RouteApplyResult) record(o routeOutcome, name string) {
	switch o {
	case routeCreated:
		r.Created = append(r.Created, name)
	case routeUpdated:
		r.Updated = append(r.Updated, name)
	case routeRestamped:
		r.Restamped = append(r.Restamped, name)
	case routeUnchanged:
		r.Unchanged = append(r.Unchanged, name)
	case routeDeleted:
		r.Deleted = append(r.Deleted, name)
	}
}

// upsertRoute creates want or brings the live route to it. live is the route as listed (nil
// if it was not there); it is re-read after every conflict. fence, when set, names the app's
// first route, checked after creating a pin shard; the writer's FenceFunc, when set, is checked
// after creating any route.
func (w *RouteWriter) upsertRoute(ctx context.Context, client gatewayv1client.HTTPRouteInterface, namespace, app string,
	generation int64, want, live *gatewayv1.HTTPRoute, fence string) (routeOutcome, error) {
	var outcome routeOutcome
	reread := false
	err := retry.RetryOnConflict(w.backoff, func() error {
		if reread {
			got, err := client.Get(ctx, want.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				live = nil
			case err != nil:
				return err
			default:
				live = got
			}
			reread = false
		}
		if live == nil {
			created, err := client.Create(ctx, want, metav1.CreateOptions{FieldManager: RouteFieldManager})
			if apierrors.IsAlreadyExists(err) {
				reread = true
				return apierrors.NewConflict(gatewayv1.Resource("httproutes"), want.Name, err)
			}
			if err != nil {
				return err
			}
			outcome = routeCreated
			return w.checkFence(ctx, client, namespace, app, generation, created, fence, &outcome)
		}
		if !managedRoute(live, app) {
			return fmt.Errorf("%w: %s/%s (labels %v)", ErrRouteNotManaged, live.Namespace, live.Name, live.Labels)
		}
		if routeGeneration(live) > generation {
			outcome = routeStale
			return nil
		}
		if routeUpToDate(live, want) {
			outcome = routeUnchanged
			return nil
		}
		var err error
		if equality.Semantic.DeepEqual(live.Spec, want.Spec) {
			// Only the metadata lags: a pin shard the change did not touch still carries the
			// previous generation. It is brought forward all the same, since a route this apply
			// keeps without writing is one an older writer still in flight may change or
			// withdraw afterwards (its write, conditional on a resourceVersion this apply let
			// stand, would succeed). A merge patch of the metadata alone, conditional on the
			// resourceVersion read, fences exactly as the full update does, for a fraction of
			// the bytes.
			_, err = client.Patch(ctx, want.Name, types.MergePatchType, metadataPatch(live, want),
				metav1.PatchOptions{FieldManager: RouteFieldManager})
			outcome = routeRestamped
		} else {
			next := live.DeepCopy()
			next.Spec = *want.Spec.DeepCopy()
			next.Labels = routeMergeMaps(next.Labels, want.Labels)
			next.Annotations = routeMergeMaps(next.Annotations, want.Annotations)
			// Not sent back: the server keeps managedFields when they are omitted, and ignores
			// status on the main resource (HTTPRoute has a status subresource). The gateway's
			// status for every parent would otherwise double the body.
			next.ManagedFields = nil
			next.Status = gatewayv1.HTTPRouteStatus{}
			_, err = client.Update(ctx, next, metav1.UpdateOptions{FieldManager: RouteFieldManager})
			outcome = routeUpdated
		}
		switch {
		case apierrors.IsConflict(err):
			reread = true
			return err
		case apierrors.IsNotFound(err): // deleted since it was read: create it instead
			reread = true
			return apierrors.NewConflict(gatewayv1.Resource("httproutes"), want.Name, err)
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return outcome, fmt.Errorf("apply HTTPRoute %s/%s: %w", want.Namespace, want.Name, err)
	}
	return outcome, nil
}

// checkFence runs after a route was created. The write is stale, and the route just created is
// removed again, if the writer's FenceFunc now knows a newer generation, or, for a pin shard
// (fence names the app's first route), if that first route is gone or carries a newer generation:
// either way a newer write completed while this one ran and may have deleted this very route as
// surplus. Only creations need this: an update or delete carries a resourceVersion
// precondition, so a newer writer that read the route before it changed gets a conflict,
// re-reads it and overrides it.
func (w *RouteWriter) checkFence(ctx context.Context, client gatewayv1client.HTTPRouteInterface, namespace, app string,
	generation int64, created *gatewayv1.HTTPRoute, fence string, outcome *routeOutcome) error {
	stale, err := w.fenced(ctx, namespace, app, generation)
	if err != nil {
		// Unknown whether the route may stay: take it back, leaving things as they were, and let
		// the caller retry. A retry that finds the write current creates it again.
		if werr := withdrawRoute(ctx, client, created); werr != nil {
			return errors.Join(err, werr)
		}
		*outcome = routeGone
		return err
	}
	if !stale && fence != "" {
		first, err := client.Get(ctx, fence, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read first route %s after creating %s: %w", fence, created.Name, err)
		}
		stale = err != nil || routeGeneration(first) > generation
	}
	if !stale {
		return nil
	}
	*outcome = routeStale
	return withdrawRoute(ctx, client, created)
}

// withdrawRoute deletes a route this write created, unless someone changed it since.
func withdrawRoute(ctx context.Context, client gatewayv1client.HTTPRouteInterface, created *gatewayv1.HTTPRoute) error {
	err := client.Delete(ctx, created.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
		UID: &created.UID, ResourceVersion: &created.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("withdraw stale HTTPRoute %s: %w", created.Name, err)
	}
	return nil // NotFound or Conflict: a newer writer already owns the name
}

// deleteRoute deletes a surplus route unless a newer generation wrote it.
func (w *RouteWriter) deleteRoute(ctx context.Context, client gatewayv1client.HTTPRouteInterface, app string,
	generation int64, live *gatewayv1.HTTPRoute) (routeOutcome, error) {
	name := live.Name
	var outcome routeOutcome
	reread := false
	err := retry.RetryOnConflict(w.backoff, func() error {
		if reread {
			got, err := client.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				outcome = routeGone
				return nil
			}
			if err != nil {
				return err
			}
			live, reread = got, false
		}
		if !managedRoute(live, app) { // relabelled since it was listed: no longer ours
			outcome = routeGone
			return nil
		}
		if routeGeneration(live) > generation {
			outcome = routeStale
			return nil
		}
		err := client.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
			UID: &live.UID, ResourceVersion: &live.ResourceVersion}})
		switch {
		case apierrors.IsNotFound(err):
			outcome = routeGone
			return nil
		case apierrors.IsConflict(err):
			reread = true
			return err
		case err != nil:
			return err
		}
		outcome = routeDeleted
		return nil
	})
	if err != nil {
		return outcome, fmt.Errorf("delete HTTPRoute %s/%s: %w", live.Namespace, name, err)
	}
	return outcome, nil
}

// prepareRoutes copies desired into what will be written, in namespace. It checks, and does not
// add, what the renderer puts on every route (routes.Render): the app's labels (the writer finds
// the app's routes by them) and the generation annotation (the fence between writers), which must
// be the generation this write is fenced with.
func prepareRoutes(namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) ([]gatewayv1.HTTPRoute, error) {
	want := make([]gatewayv1.HTTPRoute, len(desired))
	seen := make(map[string]bool, len(desired))
	gen := strconv.FormatInt(generation, 10)
	for i := range desired {
		r := desired[i].DeepCopy()
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %d has no name", namespace, app, i)
		case seen[r.Name]:
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s listed twice", namespace, app, r.Name)
		case r.Namespace != "" && r.Namespace != namespace:
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s is for namespace %s", namespace, app, r.Name, r.Namespace)
		case r.Labels[routes.AppLabel] != "" && r.Labels[routes.AppLabel] != app:
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s is labelled for app %s", namespace, app, r.Name, r.Labels[routes.AppLabel])
		case r.Annotations[routes.GenerationAnnotation] != "" && r.Annotations[routes.GenerationAnnotation] != gen:
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s was rendered for generation %s, not %s",
				namespace, app, r.Name, r.Annotations[routes.GenerationAnnotation], gen)
		case !managedRoute(r, app):
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s lacks the labels %v routes.Render puts on it",
				namespace, app, r.Name, routes.Labels(app))
		case r.Annotations[routes.GenerationAnnotation] == "":
			return nil, fmt.Errorf("apply HTTPRoutes of %s/%s: route %s lacks the %s annotation routes.Render puts on it",
				namespace, app, r.Name, routes.GenerationAnnotation)
		}
		seen[r.Name] = true
		r.Namespace = namespace
		r.ResourceVersion, r.UID = "", ""
		want[i] = *r
	}
	return want, nil
}

func managedRoute(r *gatewayv1.HTTPRoute, app string) bool {
	return r.Labels[routes.ManagedByLabel] == routes.ManagedByValue && r.Labels[routes.AppLabel] == app
}

// routeGeneration is the generation r was written from; a managed route without a readable
// annotation counts as older than any generation.
func routeGeneration(r *gatewayv1.HTTPRoute) int64 {
	g, err := strconv.ParseInt(r.Annotations[routes.GenerationAnnotation], 10, 64)
	if err != nil {
		return -1
	}
	return g
}

// routeUpToDate reports whether live already has want's spec, labels and annotations (other
// labels and annotations on live are someone else's and are kept).
func routeUpToDate(live, want *gatewayv1.HTTPRoute) bool {
	return equality.Semantic.DeepEqual(live.Spec, want.Spec) &&
		routeMapContains(live.Labels, want.Labels) && routeMapContains(live.Annotations, want.Annotations)
}

func routeMapContains(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// routeMergeMaps returns a copy of base with over's entries set.
func routeMergeMaps(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	maps.Copy(out, base)
	maps.Copy(out, over)
	return out
}

func routeNames(rs []gatewayv1.HTTPRoute) []string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.Name
	}
	return names
}

// metadataPatch is a JSON merge patch that sets want's labels and annotations on live, and
// carries live's resourceVersion: the API server refuses it with a Conflict if the route changed
// since it was read, as it does an update.
func metadataPatch(live, want *gatewayv1.HTTPRoute) []byte {
	diff := func(have, want map[string]string) map[string]string {
		var out map[string]string
		for k, v := range want {
			if got, ok := have[k]; !ok || got != v {
				if out == nil {
					out = map[string]string{}
				}
				out[k] = v
			}
		}
		return out
	}
	type meta struct {
		ResourceVersion string            `json:"resourceVersion"`
		Labels          map[string]string `json:"labels,omitempty"`
		Annotations     map[string]string `json:"annotations,omitempty"`
	}
	b, err := json.Marshal(struct {
		Metadata meta `json:"metadata"`
	}{meta{live.ResourceVersion, diff(live.Labels, want.Labels), diff(live.Annotations, want.Annotations)}})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return b
}

// countingRoutes counts, into res, the write requests sent through it and the size of their
// JSON bodies (as encoding/json writes them, which is what the clientset sends).
type countingRoutes struct {
	gatewayv1client.HTTPRouteInterface
	res *RouteApplyResult
}

func (c countingRoutes) count(body any) {
	c.res.Writes++
	if b, ok := body.([]byte); ok {
		c.res.WriteBytes += int64(len(b))
		return
	}
	if b, err := json.Marshal(body); err == nil {
		c.res.WriteBytes += int64(len(b))
	}
}

func (c countingRoutes) Create(ctx context.Context, r *gatewayv1.HTTPRoute, opts metav1.CreateOptions) (*gatewayv1.HTTPRoute, error) {
	c.count(r)
	return c.HTTPRouteInterface.Create(ctx, r, opts)
}

func (c countingRoutes) Update(ctx context.Context, r *gatewayv1.HTTPRoute, opts metav1.UpdateOptions) (*gatewayv1.HTTPRoute, error) {
	c.count(r)
	return c.HTTPRouteInterface.Update(ctx, r, opts)
}

func (c countingRoutes) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions,
	subresources ...string) (*gatewayv1.HTTPRoute, error) {
	c.count(data)
	return c.HTTPRouteInterface.Patch(ctx, name, pt, data, opts, subresources...)
}

func (c countingRoutes) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	c.count(&opts)
	return c.HTTPRouteInterface.Delete(ctx, name, opts)
}
