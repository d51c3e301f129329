package converge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// recorder is the Resync of the tests: it records which apps were reconciled, in order, and
// fails an app as many times as told first.
type recorder struct {
	mu      sync.Mutex
	calls   []string
	fail    map[string]int
	outcome string
	seen    chan string
}

func newRecorder() *recorder {
	return &recorder{fail: map[string]int{}, outcome: activities.RoutesUnchanged, seen: make(chan string, 1000)}
}

func (r *recorder) resync(_ context.Context, app registry.AppRef) (activities.SyncResult, error) {
	key := app.String()
	r.mu.Lock()
	r.calls = append(r.calls, key)
	failing := r.fail[key] > 0
	if failing {
		r.fail[key]--
	}
	outcome := r.outcome
	r.mu.Unlock()
	r.seen <- key
	if failing {
		return activities.SyncResult{}, errors.New("API server unavailable")
	}
	return activities.SyncResult{Generation: 3, Write: activities.RouteOutcome{Outcome: outcome}}, nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == key {
			n++
		}
	}
	return n
}

// await waits (bounded) until key has been reconciled.
func (r *recorder) await(t *testing.T, key string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-r.seen:
			if got == key {
				return
			}
		case <-timeout:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("%s was not reconciled within 5s; reconciled: %v", key, r.calls)
		}
	}
}

type appList struct {
	mu    sync.Mutex
	apps  []registry.Application
	fails int
}

func (l *appList) ListApps(context.Context) ([]registry.Application, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails > 0 {
		l.fails--
		return nil, errors.New("registry unreachable")
	}
	return l.apps, nil
}

func route(ns, name, app string, port int32) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: routes.Labels(app),
			Annotations: map[string]string{routes.GenerationAnnotation: "3"}},
		Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{
			BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
				Name: gatewayv1.ObjectName(app + "-v1"), Port: &port}}}}}}},
	}
}

// harness runs a controller with one worker (so the queue is worked in order) on a fake
// clientset, and returns once the informer's watch is open: the fake's watch replays nothing,
// so a change made before it would be lost.
type harness struct {
	cs  *gatewayfake.Clientset
	rec *recorder
	c   *Controller
}

func start(t *testing.T, apps *appList, opts Options, initial ...*gatewayv1.HTTPRoute) *harness {
	t.Helper()
	cs := gatewayfake.NewSimpleClientset()
	for _, r := range initial {
		require.NoError(t, cs.Tracker().Add(r))
	}
	watching := make(chan struct{})
	var once sync.Once
	cs.PrependWatchReactor("httproutes", func(action k8stesting.Action) (bool, watch.Interface, error) {
		w, err := cs.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		once.Do(func() { close(watching) })
		return true, w, nil
	})
	h := &harness{cs: cs, rec: newRecorder()}
	opts.Gateway, opts.Apps, opts.Resync = cs, apps, h.rec.resync
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.RateLimiter == nil {
		opts.RateLimiter = workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond)
	}
	c, err := New(opts)
	require.NoError(t, err)
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the controller did not stop within 10s of its context ending")
		}
	})
	select {
	case <-watching:
	case <-time.After(5 * time.Second):
		t.Fatal("the HTTPRoute informer did not start watching within 5s")
	}
	require.Eventually(t, c.HasSynced, 5*time.Second, 5*time.Millisecond)
	return h
}

func (h *harness) routes(ns string) gatewayv1ClientShim {
	return gatewayv1ClientShim{h.cs, ns}
}

// gatewayv1ClientShim shortens the fake clientset's calls in the tests.
type gatewayv1ClientShim struct {
	cs *gatewayfake.Clientset
	ns string
}

func (s gatewayv1ClientShim) get(t *testing.T, name string) *gatewayv1.HTTPRoute {
	t.Helper()
	r, err := s.cs.GatewayV1().HTTPRoutes(s.ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return r
}

func (s gatewayv1ClientShim) update(t *testing.T, r *gatewayv1.HTTPRoute) {
	t.Helper()
	_, err := s.cs.GatewayV1().HTTPRoutes(s.ns).Update(context.Background(), r, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (s gatewayv1ClientShim) updateStatus(t *testing.T, r *gatewayv1.HTTPRoute) {
	t.Helper()
	_, err := s.cs.GatewayV1().HTTPRoutes(s.ns).UpdateStatus(context.Background(), r, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func (s gatewayv1ClientShim) delete(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, s.cs.GatewayV1().HTTPRoutes(s.ns).Delete(context.Background(), name, metav1.DeleteOptions{}))
}

func (s gatewayv1ClientShim) create(t *testing.T, r *gatewayv1.HTTPRoute) {
	t.Helper()
	_, err := s.cs.GatewayV1().HTTPRoutes(s.ns).Create(context.Background(), r, metav1.CreateOptions{})
	require.NoError(t, err)
}

func TestStartUpReconcilesEveryApp(t *testing.T) {
	apps := &appList{apps: []registry.Application{
		{Namespace: "shop", Name: "cart"},
		{Namespace: "shop", Name: "checkout"}, // no route left: re-rendered all the same
		{Namespace: "blog", Name: "web"},
	}}
	h := start(t, apps, Options{}, route("shop", "cart", "cart", 80))
	for _, key := range []string{"shop/cart", "shop/checkout", "blog/web"} {
		h.rec.await(t, key)
	}
}

func TestStartUpRetriesListingApps(t *testing.T) {
	apps := &appList{apps: []registry.Application{{Namespace: "shop", Name: "cart"}}, fails: 1}
	h := start(t, apps, Options{})
	h.rec.await(t, "shop/cart") // after the one-second backoff
}

func TestStartUpOnlyInScope(t *testing.T) {
	apps := &appList{apps: []registry.Application{{Namespace: "blog", Name: "web"}, {Namespace: "shop", Name: "cart"}}}
	h := start(t, apps, Options{Namespaces: []string{"shop"}})
	h.rec.await(t, "shop/cart")
	// blog/web was listed first: with one worker and a FIFO queue it would have come first.
	assert.Zero(t, h.rec.count("blog/web"), "an app outside the watched namespaces is left alone")
}

func TestRouteEventsEnqueueTheirApp(t *testing.T) {
	h := start(t, &appList{}, Options{},
		route("shop", "cart", "cart", 80), route("shop", "cart--pins-1", "cart", 80), route("shop", "web", "web", 80))
	h.rec.await(t, "shop/cart") // the informer's initial list adds every route
	h.rec.await(t, "shop/web")
	rs := h.routes("shop")

	t.Run("deleting a route", func(t *testing.T) {
		before := h.rec.count("shop/cart")
		rs.delete(t, "cart--pins-1")
		h.rec.await(t, "shop/cart")
		assert.Equal(t, before+1, h.rec.count("shop/cart"))
	})
	t.Run("editing a route's spec", func(t *testing.T) {
		r := rs.get(t, "web")
		*r.Spec.Rules[0].BackendRefs[0].Port = 8080
		rs.update(t, r)
		h.rec.await(t, "shop/web")
	})
	t.Run("removing a rule", func(t *testing.T) {
		r := rs.get(t, "cart")
		r.Spec.Rules = nil
		rs.update(t, r)
		h.rec.await(t, "shop/cart")
	})
	t.Run("editing an annotation", func(t *testing.T) {
		r := rs.get(t, "web")
		r.Annotations[routes.GenerationAnnotation] = "99"
		rs.update(t, r)
		h.rec.await(t, "shop/web")
	})
	t.Run("a label edit that moves a route to another app enqueues both", func(t *testing.T) {
		r := rs.get(t, "web")
		r.Labels[routes.AppLabel] = "cart"
		rs.update(t, r)
		h.rec.await(t, "shop/web")
		h.rec.await(t, "shop/cart")
	})
	t.Run("a route created by hand with our labels", func(t *testing.T) {
		rs.create(t, route("shop", "impostor", "blog", 80))
		h.rec.await(t, "shop/blog")
	})
}

func TestIgnoredEvents(t *testing.T) {
	h := start(t, &appList{}, Options{}, route("shop", "cart", "cart", 80), route("shop", "web", "web", 80))
	h.rec.await(t, "shop/cart")
	h.rec.await(t, "shop/web")
	rs := h.routes("shop")
	before := h.rec.count("shop/cart")

	// The gateway writes the route's status.
	r := rs.get(t, "cart")
	r.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: gatewayv1.ParentReference{Name: "public"},
		ControllerName: "traefik.io/gateway-controller",
		Conditions:     []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}}}}
	rs.updateStatus(t, r)
	// A route someone else manages. (The fake's watch does not filter by label, as the API
	// server's does, so this also proves the handler's own check.)
	foreign := route("shop", "other", "cart", 80)
	foreign.Labels[routes.ManagedByLabel] = "helm"
	rs.create(t, foreign)

	// A sentinel event after them: with one worker and a FIFO queue, once it is reconciled,
	// anything the events above enqueued would have been reconciled before it.
	rs.delete(t, "web")
	h.rec.await(t, "shop/web")
	assert.Equal(t, before, h.rec.count("shop/cart"), "status updates and foreign routes enqueue nothing")
}

func TestDrifted(t *testing.T) {
	base := route("shop", "cart", "cart", 80)
	base.ResourceVersion, base.Generation = "10", 1
	tests := []struct {
		name   string
		change func(r *gatewayv1.HTTPRoute)
		want   bool
	}{
		{"replayed unchanged (resync)", func(*gatewayv1.HTTPRoute) {}, false},
		{"status only", func(r *gatewayv1.HTTPRoute) {
			r.ResourceVersion = "11"
			r.Status.Parents = []gatewayv1.RouteParentStatus{{ControllerName: "x"}}
		}, false},
		{"managedFields only", func(r *gatewayv1.HTTPRoute) {
			r.ResourceVersion = "11"
			r.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
		}, false},
		{"spec", func(r *gatewayv1.HTTPRoute) { r.ResourceVersion = "11"; *r.Spec.Rules[0].BackendRefs[0].Port = 81 }, true},
		{"generation", func(r *gatewayv1.HTTPRoute) { r.ResourceVersion = "11"; r.Generation = 2 }, true},
		{"label", func(r *gatewayv1.HTTPRoute) { r.ResourceVersion = "11"; r.Labels["team"] = "x" }, true},
		{"annotation", func(r *gatewayv1.HTTPRoute) {
			r.ResourceVersion = "11"
			delete(r.Annotations, routes.GenerationAnnotation)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.change(cur)
			assert.Equal(t, tc.want, drifted(base, cur))
		})
	}
}

func TestFailuresAreRetriedWithBackoff(t *testing.T) {
	errorsBefore := counter(t, "error")
	appliedBefore := counter(t, activities.RoutesApplied)
	apps := &appList{apps: []registry.Application{{Namespace: "shop", Name: "cart"}}}
	rec := newRecorder()
	rec.fail["shop/cart"] = 2
	rec.outcome = activities.RoutesApplied
	limiter := &countingLimiter{TypedRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, 10*time.Millisecond)}
	c, err := New(Options{Gateway: gatewayfake.NewSimpleClientset(), Apps: apps, Resync: rec.resync, Workers: 1, RateLimiter: limiter})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for range 3 {
		rec.await(t, "shop/cart")
	}
	require.Eventually(t, func() bool { return limiter.forgotten("shop/cart") }, 5*time.Second, 5*time.Millisecond,
		"a success resets the app's backoff")
	assert.Equal(t, 2, limiter.delays("shop/cart"), "each failure asked the rate limiter for a delay")
	assert.Equal(t, errorsBefore+2, counter(t, "error"))
	assert.Equal(t, appliedBefore+1, counter(t, activities.RoutesApplied))
}

// countingLimiter records the rate limiter's use by the queue.
type countingLimiter struct {
	workqueue.TypedRateLimiter[string]
	mu     sync.Mutex
	when   map[string]int
	forget map[string]bool
}

func (l *countingLimiter) When(item string) time.Duration {
	l.mu.Lock()
	if l.when == nil {
		l.when = map[string]int{}
	}
	l.when[item]++
	l.mu.Unlock()
	return l.TypedRateLimiter.When(item)
}

func (l *countingLimiter) Forget(item string) {
	l.mu.Lock()
	if l.forget == nil {
		l.forget = map[string]bool{}
	}
	l.forget[item] = true
	l.mu.Unlock()
	l.TypedRateLimiter.Forget(item)
}

func (l *countingLimiter) delays(item string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.when[item]
}

func (l *countingLimiter) forgotten(item string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.forget[item]
}

func counter(t *testing.T, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, metrics.RouteReconciles.WithLabelValues(outcome).(prometheus.Metric).Write(&m))
	return m.GetCounter().GetValue()
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := New(Options{Workers: -1, Namespaces: []string{""}})
	require.Error(t, err)
	for _, want := range []string{"no Gateway API client", "no application lister", "no resync function",
		"workers must not be negative", "empty namespace"} {
		assert.ErrorContains(t, err, want)
	}
}

// generations is a registry stand-in for RegistryFence.
type generations map[string]int64

func (g generations) Generation(_ context.Context, app registry.AppRef) (int64, error) {
	if app.Name == "broken" {
		return 0, errors.New("connection refused")
	}
	gen, ok := g[app.String()]
	if !ok {
		return 0, fmt.Errorf("application %s: %w", app, registry.ErrNotFound)
	}
	return gen, nil
}

func TestRegistryFence(t *testing.T) {
	fence := RegistryFence(generations{"shop/cart": 7})
	gen, err := fence(context.Background(), "shop", "cart")
	require.NoError(t, err)
	assert.Equal(t, int64(7), gen)
	gen, err = fence(context.Background(), "shop", "unknown")
	require.NoError(t, err, "an app the registry does not know has written nothing")
	assert.Zero(t, gen)
	_, err = fence(context.Background(), "shop", "broken")
	assert.ErrorContains(t, err, "connection refused")
}
