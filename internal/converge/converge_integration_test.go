//go:build integration

package converge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/testenv"
)

// mapLookuper feeds config.LoadFrom.
type mapLookuper map[string]string

func (m mapLookuper) Lookup(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// world is the real thing: the stack's API server, a fresh registry database, a fresh
// namespace, the lifecycle activities with the fenced route writer, and the controller running.
// Routes name a Gateway that does not exist, so the shared data plane ignores them.
type world struct {
	ns      string
	prefix  string
	clients *kube.Clients
	store   *registry.Store
	acts    *activities.Activities
}

const convergeTimeout = 5 * time.Second

func newWorld(t *testing.T) *world {
	t.Helper()
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	id := fmt.Sprintf("%08x", rand.Uint32())
	w := &world{ns: "sg-converge-" + id, prefix: "/sg-converge-" + id, clients: clients, store: registrytest.New(t)}
	_, err = clients.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}},
		metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), w.ns, metav1.DeleteOptions{})
	})
	cfg, err := config.LoadFrom(t.Context(), mapLookuper{
		"PLT_FEATURE_SKEW_PROTECTION":  "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS": w.ns + "/no-such-gateway",
		"PLT_SKEW_NAMESPACES":          w.ns,
	})
	require.NoError(t, err)
	writer := kube.NewRouteWriter(clients.Gateway).WithFence(RegistryFence(w.store))
	w.acts = &activities.Activities{Registry: w.store, Config: cfg, Routes: writer}
	return w
}

// run starts the controller, watching the test's namespace only, until the test ends.
func (w *world) run(t *testing.T) {
	t.Helper()
	c, err := New(Options{Gateway: w.clients.Gateway, Apps: w.store, Resync: SyncRoutes(w.acts), Namespaces: []string{w.ns}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	require.Eventually(t, c.HasSynced, 10*time.Second, 10*time.Millisecond)
}

// deploy records a version of app in the registry with the test's path prefix.
func (w *world) deploy(t *testing.T, app, label string) registry.VersionRef {
	t.Helper()
	ref := registry.VersionRef{Namespace: w.ns, App: app, Label: label}
	_, _, err := w.store.ObserveVersion(t.Context(), registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: app + "-" + label, ServicePort: 80, PathPrefix: w.prefix + "/" + app},
		WorkflowID: "skew/" + ref.String()},
		registry.Actor{Type: registry.ActorSystem, Name: "test"})
	require.NoError(t, err)
	return ref
}

func (w *world) sync(t *testing.T, app string) activities.SyncResult {
	t.Helper()
	res, err := w.acts.SyncRoutes(t.Context(), activities.SyncInput{App: registry.AppRef{Namespace: w.ns, Name: app},
		Actor: registry.Actor{Type: registry.ActorSystem, Name: "test"}})
	require.NoError(t, err)
	return res
}

func (w *world) routes(t *testing.T, app string) map[string]gatewayv1.HTTPRoute {
	t.Helper()
	list, err := w.clients.Gateway.GatewayV1().HTTPRoutes(w.ns).List(t.Context(),
		metav1.ListOptions{LabelSelector: labels.SelectorFromSet(routes.Labels(app)).String()})
	require.NoError(t, err)
	out := map[string]gatewayv1.HTTPRoute{}
	for _, r := range list.Items {
		out[r.Name] = r
	}
	return out
}

// awaitRoutes polls (bounded) until the app's routes have exactly want's names and specs.
func (w *world) awaitRoutes(t *testing.T, app string, want map[string]gatewayv1.HTTPRoute, what string) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, convergeTimeout, true, func(context.Context) (bool, error) {
		return sameSpecs(w.routes(t, app), want), nil
	})
	require.NoError(t, err, "%s: the routes did not converge within %s", what, convergeTimeout)
	t.Logf("%s: converged in %s", what, time.Since(start).Round(time.Millisecond))
}

func sameSpecs(got, want map[string]gatewayv1.HTTPRoute) bool {
	if len(got) != len(want) {
		return false
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || !equality.Semantic.DeepEqual(g.Spec, w.Spec) ||
			g.Annotations[routes.GenerationAnnotation] != w.Annotations[routes.GenerationAnnotation] {
			return false
		}
	}
	return true
}

func TestConvergenceRepairsDrift(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	actor := registry.Actor{Type: registry.ActorSystem, Name: "test"}
	const app = "conv-shop"
	_, err := w.store.Activate(ctx, w.deploy(t, app, "v1"), actor, "test")
	require.NoError(t, err)
	// A Draining version too, so the app has a pin rule to lose.
	_, err = w.store.Activate(ctx, w.deploy(t, app, "v2"), actor, "test")
	require.NoError(t, err)
	res := w.sync(t, app)
	require.Equal(t, activities.RoutesApplied, res.Write.Outcome)
	want := w.routes(t, app)
	require.NotEmpty(t, want)
	w.run(t)

	client := w.clients.Gateway.GatewayV1().HTTPRoutes(w.ns)
	t.Run("a route deleted by hand is recreated", func(t *testing.T) {
		require.NoError(t, client.Delete(ctx, app, metav1.DeleteOptions{}))
		w.awaitRoutes(t, app, want, "delete")
	})
	t.Run("a hand-edited backend port is restored", func(t *testing.T) {
		r, err := client.Get(ctx, app, metav1.GetOptions{})
		require.NoError(t, err)
		port := gatewayv1.PortNumber(8081)
		edited := false
		for i := range r.Spec.Rules {
			for j := range r.Spec.Rules[i].BackendRefs {
				r.Spec.Rules[i].BackendRefs[j].Port = &port
				edited = true
			}
		}
		require.True(t, edited)
		_, err = client.Update(ctx, r, metav1.UpdateOptions{})
		require.NoError(t, err)
		w.awaitRoutes(t, app, want, "edit port")
	})
	t.Run("a removed rule is restored", func(t *testing.T) {
		r, err := client.Get(ctx, app, metav1.GetOptions{})
		require.NoError(t, err)
		require.Greater(t, len(r.Spec.Rules), 1)
		r.Spec.Rules = r.Spec.Rules[1:]
		_, err = client.Update(ctx, r, metav1.UpdateOptions{})
		require.NoError(t, err)
		w.awaitRoutes(t, app, want, "remove rule")
	})
}

// TestConvergenceAndTheRegistryTombstone: once every version expired and the routes were
// removed, a late write at the older generation brings nothing back, though no route is left to
// carry the newer generation. (The registry never expires an Active version, so the app here
// has only a Staged one, routed by its pin rule.)
func TestConvergenceAndTheRegistryTombstone(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	actor := registry.Actor{Type: registry.ActorSystem, Name: "test"}
	const app = "conv-blog"
	ref := w.deploy(t, app, "v1")
	_, err := w.store.Stage(ctx, ref, actor, "test")
	require.NoError(t, err)
	before := w.sync(t, app)
	require.Equal(t, activities.RoutesApplied, before.Write.Outcome)
	snap, err := w.store.Snapshot(ctx, registry.AppRef{Namespace: w.ns, Name: app})
	require.NoError(t, err)
	old, err := routes.Render(activities.RouteInput(w.acts.Config, snap))
	require.NoError(t, err)
	require.NotEmpty(t, old)
	w.run(t)

	_, err = w.store.Expire(ctx, ref, actor, "test")
	require.NoError(t, err)
	after := w.sync(t, app)
	require.Greater(t, after.Generation, before.Generation)
	w.awaitRoutes(t, app, nil, "expire")

	late := kube.NewRouteWriter(w.clients.Gateway).WithFence(RegistryFence(w.store))
	res, err := late.ApplyRoutes(ctx, w.ns, app, before.Generation, old)
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.False(t, res.Changed(), "%+v", res)
	assert.Empty(t, w.routes(t, app), "the late fenced write created nothing")

	// Without the fence the same late write does resurrect the route; the controller then
	// removes it again, being told by the registry that nothing is routed.
	res, err = kube.NewRouteWriter(w.clients.Gateway).ApplyRoutes(ctx, w.ns, app, before.Generation, old)
	require.NoError(t, err)
	require.NotEmpty(t, res.Created, "without the fence the late write recreates the routes")
	w.awaitRoutes(t, app, nil, "unfenced resurrection")
	for _, r := range old {
		_, err := w.clients.Gateway.GatewayV1().HTTPRoutes(w.ns).Get(ctx, r.Name, metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "route %s: %v", r.Name, err)
	}
}
