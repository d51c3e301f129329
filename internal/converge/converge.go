// Package converge keeps the HTTPRoutes skewguard owns equal to what the registry says they
// should be. The lifecycle workflows write routes when a version changes state; nothing in them
// notices a route deleted or edited by hand, or routes that drifted while skewguard was down.
// The controller here does: it watches skewguard's HTTPRoutes, and re-renders an app's routes
// from the registry whenever one of them is added, changed or deleted, and every app once at
// start-up. The write goes through the same generation-fenced route writer as the workflows',
// so a repair never rolls routing back.
package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gatewaylisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// ResyncFunc renders one app's routes from the registry and writes them. SyncRoutes makes one
// from the lifecycle activities.
type ResyncFunc func(ctx context.Context, app registry.AppRef) (activities.SyncResult, error)

// RenderFunc renders one app's routes from the registry, writing nothing. Rendering makes one
// from the lifecycle activities.
type RenderFunc func(ctx context.Context, app registry.AppRef) ([]gatewayv1.HTTPRoute, error)

// AppLister lists the registry's applications; *registry.Store is one.
type AppLister interface {
	ListApps(ctx context.Context) ([]registry.Application, error)
}

// Options configure a Controller.
type Options struct {
	// Gateway is the client the HTTPRoute informers list and watch with.
	Gateway gatewayclient.Interface
	// Apps lists the applications re-rendered once the informers have synced.
	Apps AppLister
	// Resync reconciles one app.
	Resync ResyncFunc
	// Render, when set, is asked first: an app whose routes in the informers' cache already
	// equal its rendering (names, specs, labels, generation) is not resynced, which costs the
	// API server nothing and takes no registry lock. Start-up convergence of routes that are up
	// to date then makes no request per app. A cache that lags is safe: the change it has not
	// seen yet arrives as an event and enqueues the app again.
	Render RenderFunc
	// Namespaces limits the watch (and the start-up re-render) to these namespaces; none
	// means all, as for detection.
	Namespaces []string
	// Workers is how many apps are reconciled at once (default 2).
	Workers int
	// Timeout bounds one reconcile (default 1m): a stuck call must not hold a worker forever.
	Timeout time.Duration
	// RateLimiter spaces out the retries of a failing app (default: client-go's controller
	// rate limiter, 5ms doubling to 1000s per app, 10/s overall).
	RateLimiter workqueue.TypedRateLimiter[string]
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Controller is the route convergence controller. Run it once.
type Controller struct {
	opts      Options
	log       *slog.Logger
	scope     map[string]bool // nil: every namespace
	factories []gatewayinformers.SharedInformerFactory
	synced    []cache.InformerSynced
	listers   []gatewaylisters.HTTPRouteLister
	queue     workqueue.TypedRateLimitingInterface[string]
}

// New builds (but does not start) a controller.
func New(o Options) (*Controller, error) {
	var problems []error
	if o.Gateway == nil {
		problems = append(problems, errors.New("no Gateway API client"))
	}
	if o.Apps == nil {
		problems = append(problems, errors.New("no application lister"))
	}
	if o.Resync == nil {
		problems = append(problems, errors.New("no resync function"))
	}
	if o.Workers < 0 {
		problems = append(problems, fmt.Errorf("workers must not be negative, got %d", o.Workers))
	}
	if o.Timeout < 0 {
		problems = append(problems, fmt.Errorf("timeout must not be negative, got %s", o.Timeout))
	}
	for _, ns := range o.Namespaces {
		if ns == "" {
			problems = append(problems, errors.New("an empty namespace in the namespaces list"))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("route convergence: %w", err)
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.RateLimiter == nil {
		o.RateLimiter = workqueue.DefaultTypedControllerRateLimiter[string]()
	}
	c := &Controller{
		opts: o,
		log:  o.Logger,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(o.RateLimiter,
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "skewguard-routes"}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	} else {
		c.scope = make(map[string]bool, len(namespaces))
		for _, ns := range namespaces {
			c.scope[ns] = true
		}
	}
	selector := managedSelector().String()
	for _, ns := range namespaces {
		// No periodic resync: every real change arrives as an event, and a resync would only
		// replay unchanged objects, which the update handler ignores anyway.
		f := gatewayinformers.NewSharedInformerFactoryWithOptions(o.Gateway, 0,
			gatewayinformers.WithNamespace(ns),
			gatewayinformers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = selector }),
			gatewayinformers.WithTransform(dropManagedFields))
		inf := f.Gateway().V1().HTTPRoutes().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.enqueueRoute(obj) },
			UpdateFunc: c.onUpdate,
			DeleteFunc: func(obj any) { c.enqueueRoute(obj) },
		}); err != nil {
			return nil, fmt.Errorf("route convergence: watch HTTPRoutes: %w", err)
		}
		c.factories = append(c.factories, f)
		c.synced = append(c.synced, inf.HasSynced)
		c.listers = append(c.listers, f.Gateway().V1().HTTPRoutes().Lister())
	}
	return c, nil
}

// managedSelector selects the HTTPRoutes skewguard writes: managed by skewguard, for some app.
func managedSelector() labels.Selector {
	app, err := labels.NewRequirement(routes.AppLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid label key
	}
	return labels.SelectorFromSet(labels.Set{routes.ManagedByLabel: routes.ManagedByValue}).Add(*app)
}

// dropManagedFields keeps the informer's cache small: managedFields are never read here.
func dropManagedFields(obj any) (any, error) {
	if r, ok := obj.(*gatewayv1.HTTPRoute); ok {
		r.ManagedFields = nil
	}
	return obj, nil
}

// Run starts the informers, waits for them to sync, starts the workers, enqueues every
// application of the registry (listing them is retried until it succeeds), and runs until ctx
// ends; then it stops taking work, lets the reconciles in flight return, and returns.
func (c *Controller) Run(ctx context.Context) {
	defer func() {
		c.queue.ShutDown()
		for _, f := range c.factories {
			f.Shutdown() // waits for the informers' goroutines, ctx having ended
		}
	}()
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return // stopping before the first list
	}
	c.log.Info("HTTPRoute informers synced: route convergence running", "namespaces", namespacesOrAll(c.opts.Namespaces),
		"workers", c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	c.enqueueRegistry(ctx)
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

// HasSynced reports whether every HTTPRoute informer has listed once.
func (c *Controller) HasSynced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// enqueueRegistry enqueues every application in scope, so routes are re-rendered at start-up:
// drift that happened while skewguard was down raises no event. Apps without any route are
// included on purpose: their routes may have been deleted meanwhile.
func (c *Controller) enqueueRegistry(ctx context.Context) {
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: time.Minute}
	for {
		apps, err := c.opts.Apps.ListApps(ctx)
		if err == nil {
			n := 0
			for _, a := range apps {
				if c.inScope(a.Namespace) {
					c.queue.Add(a.Namespace + "/" + a.Name)
					n++
				}
			}
			c.log.Info("re-rendering the routes of every application", "apps", n)
			return
		}
		if ctx.Err() != nil {
			return
		}
		delay := backoff.Step()
		c.log.Warn("cannot list applications for route convergence; retrying", "in", delay, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (c *Controller) inScope(namespace string) bool {
	return c.scope == nil || c.scope[namespace]
}

// appKey returns the namespace/app key of one of skewguard's routes. The informer lists only
// those, but the check is repeated here: a tombstone or a fake watch may carry anything.
func (c *Controller) appKey(obj any) (string, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	r, ok := obj.(*gatewayv1.HTTPRoute)
	if !ok || r.Labels[routes.ManagedByLabel] != routes.ManagedByValue || r.Labels[routes.AppLabel] == "" ||
		!c.inScope(r.Namespace) {
		return "", false
	}
	return r.Namespace + "/" + r.Labels[routes.AppLabel], true
}

func (c *Controller) enqueueRoute(obj any) {
	if key, ok := c.appKey(obj); ok {
		c.queue.Add(key)
	}
}

// onUpdate enqueues the route's app when the route's spec, labels or annotations changed: the
// gateway writing the route's status, many times over, is no drift. A relabelled route
// enqueues its former app as well.
func (c *Controller) onUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*gatewayv1.HTTPRoute)
	cur, ok2 := newObj.(*gatewayv1.HTTPRoute)
	if !ok1 || !ok2 || !drifted(old, cur) {
		return
	}
	c.enqueueRoute(old)
	c.enqueueRoute(cur)
}

// drifted reports whether an update of a route changed anything skewguard writes: its spec
// (metadata.generation counts spec changes, where the server sets it), labels or annotations.
// A status-only update, or the same object replayed, is not drift.
func drifted(old, cur *gatewayv1.HTTPRoute) bool {
	if old.ResourceVersion != "" && old.ResourceVersion == cur.ResourceVersion {
		return false
	}
	return old.Generation != cur.Generation ||
		!equality.Semantic.DeepEqual(old.Spec, cur.Spec) ||
		!maps.Equal(old.Labels, cur.Labels) ||
		!maps.Equal(old.Annotations, cur.Annotations)
}

// processNext reconciles one app from the queue; false once the queue is shut down.
func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	err := c.reconcile(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case ctx.Err() != nil:
		// Stopping: the next process re-renders every app at start-up anyway.
	default:
		c.log.Warn("route convergence failed; retrying with backoff", "app", key,
			"retries", c.queue.NumRequeues(key), "error", err)
		c.queue.AddRateLimited(key)
	}
	return true
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || namespace == "" || name == "" {
		// Keys are built here, never from input: this cannot happen, and retrying cannot help.
		c.log.Error("route convergence: malformed queue key dropped", "key", key)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	ref := registry.AppRef{Namespace: namespace, Name: name}
	if c.opts.Render != nil {
		// An error here is not the reconcile's: Resync reads, renders and reports it again.
		if desired, err := c.opts.Render(ctx, ref); err == nil && c.cachedUpToDate(namespace, name, desired) {
			metrics.RouteReconcile(activities.RoutesUnchanged)
			c.log.Debug("routes of an app up to date in the cache", "app", key)
			return nil
		}
	}
	res, err := c.opts.Resync(ctx, ref)
	if err != nil {
		metrics.RouteReconcile("error")
		return err
	}
	metrics.RouteReconcile(res.Write.Outcome)
	if res.Write.Outcome == activities.RoutesApplied {
		c.log.Info("repaired the routes of an app from the registry", "app", key, "generation", res.Generation,
			"written", res.Write.Applied, "deleted", res.Write.Deleted)
	} else {
		c.log.Debug("routes of an app checked", "app", key, "generation", res.Generation, "outcome", res.Write.Outcome)
	}
	return nil
}

// cachedUpToDate reports whether the informers' cache holds exactly desired for the app: the
// same route names, each with desired's spec, labels and annotations (others' labels and
// annotations may be there too), as the route writer would find it with nothing to write.
func (c *Controller) cachedUpToDate(namespace, app string, desired []gatewayv1.HTTPRoute) bool {
	selector := labels.SelectorFromSet(routes.Labels(app))
	cached := map[string]*gatewayv1.HTTPRoute{}
	for _, l := range c.listers {
		list, err := l.HTTPRoutes(namespace).List(selector)
		if err != nil {
			return false
		}
		for _, r := range list {
			cached[r.Name] = r
		}
	}
	if len(cached) != len(desired) {
		return false
	}
	contains := func(have, want map[string]string) bool {
		for k, v := range want {
			if got, ok := have[k]; !ok || got != v {
				return false
			}
		}
		return true
	}
	for i := range desired {
		r, ok := cached[desired[i].Name]
		if !ok || !equality.Semantic.DeepEqual(r.Spec, desired[i].Spec) ||
			!contains(r.Labels, desired[i].Labels) || !contains(r.Annotations, desired[i].Annotations) {
			return false
		}
	}
	return true
}

// Rendering renders an app's routes from one registry snapshot as SyncRoutes does, without the
// app's lock and without writing: an app the registry does not know renders as no routes.
func Rendering(a *activities.Activities) RenderFunc {
	return func(ctx context.Context, app registry.AppRef) ([]gatewayv1.HTTPRoute, error) {
		if !a.Config.SkewProtection {
			return nil, errors.New("skew protection is off")
		}
		snap, err := a.Registry.Snapshot(ctx, app)
		if errors.Is(err, registry.ErrNotFound) {
			return []gatewayv1.HTTPRoute{}, nil
		}
		if err != nil {
			return nil, err
		}
		return routes.Render(activities.RouteInput(a.Config, snap))
	}
}

// SyncRoutes reconciles an app with the lifecycle activities: render from one registry
// snapshot, write through the activities' (fenced) route writer. The writer compares every
// route with the rendering, so this repairs any drift and writes nothing otherwise.
func SyncRoutes(a *activities.Activities) ResyncFunc {
	actor := registry.Actor{Type: registry.ActorSystem, Name: "converge"}
	return func(ctx context.Context, app registry.AppRef) (activities.SyncResult, error) {
		return a.SyncRoutes(ctx, activities.SyncInput{App: app, Actor: actor,
			Reason: "route convergence: re-rendered from the registry"})
	}
}

// GenerationReader reads an app's route generation; *registry.Store is one.
type GenerationReader interface {
	Generation(ctx context.Context, app registry.AppRef) (int64, error)
}

// RegistryFence is the route writer's fence (kube.RouteWriter.WithFence) on the registry: the
// app's route generation, which outlives the app's routes and versions. An app the registry
// does not know has generation 0: nothing has been written for it that a write could be older
// than.
func RegistryFence(g GenerationReader) kube.FenceFunc {
	return func(ctx context.Context, namespace, app string) (int64, error) {
		gen, err := g.Generation(ctx, registry.AppRef{Namespace: namespace, Name: app})
		if errors.Is(err, registry.ErrNotFound) {
			return 0, nil
		}
		return gen, err
	}
}

func namespacesOrAll(ns []string) string {
	if len(ns) == 0 {
		return "all"
	}
	return strings.Join(ns, ",")
}
