//go:build integration

package kube

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/testenv"
)

// routeNamespace creates a fresh namespace on the real API server for one test.
func routeNamespace(t *testing.T) (*Clients, string) {
	t.Helper()
	return testNamespace(t, "sg-routes")
}

// testNamespace creates a fresh namespace named prefix-<random> and deletes it after the test.
func testNamespace(t testing.TB, prefix string) (*Clients, string) {
	t.Helper()
	clients, err := NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	ns := fmt.Sprintf("%s-%08x", prefix, rand.Uint32())
	_, err = clients.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return clients, ns
}

// renderedIn renders myapp in ns with an Active version and pins draining versions, the
// prefix rewritten (five rules per pin, as the default configuration does). The routes name a
// Gateway that does not exist, so the stack's data plane, shared with other tests, ignores
// them.
func renderedIn(t *testing.T, ns string, generation int64, pins int) []gatewayv1.HTTPRoute {
	t.Helper()
	in := routes.Input{
		Namespace: ns, App: "myapp", Generation: generation,
		ParentRefs: []routes.ParentRef{{Namespace: ns, Name: "no-such-gateway"}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePrefix: true,
		Active: &routes.Backend{Version: "g" + strconv.FormatInt(generation, 10), ServiceName: "myapp-active", Port: 80},
	}
	for i := range pins {
		in.Pinned = append(in.Pinned, routes.Backend{Version: strconv.Itoa(i), ServiceName: "myapp-v" + strconv.Itoa(i), Port: 80})
	}
	out, err := routes.Render(in)
	require.NoError(t, err)
	return out
}

// liveRoutes returns the app's managed routes by name.
func liveRoutes(t *testing.T, c *Clients, ns string) map[string]gatewayv1.HTTPRoute {
	t.Helper()
	list, err := c.Gateway.GatewayV1().HTTPRoutes(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: labels.SelectorFromSet(routes.Labels("myapp")).String()})
	require.NoError(t, err)
	out := map[string]gatewayv1.HTTPRoute{}
	for _, r := range list.Items {
		out[r.Name] = r
	}
	return out
}

// specGenerations maps each route to its metadata.generation, which only a spec change bumps
// (the gateway's status writes change the resourceVersion, not this).
func specGenerations(live map[string]gatewayv1.HTTPRoute) map[string]int64 {
	out := map[string]int64{}
	for name, r := range live {
		out[name] = r.Generation
	}
	return out
}

// assertRoutesAre checks that the app's live routes are exactly want, spec and generation.
func assertRoutesAre(t *testing.T, c *Clients, ns string, want []gatewayv1.HTTPRoute) {
	t.Helper()
	live := liveRoutes(t, c, ns)
	require.Len(t, live, len(want))
	for _, w := range want {
		got, ok := live[w.Name]
		require.True(t, ok, "route %s missing", w.Name)
		assert.True(t, equality.Semantic.DeepEqual(w.Spec, got.Spec), "route %s: spec differs from the rendering", w.Name)
		assert.Equal(t, w.Annotations[routes.GenerationAnnotation], got.Annotations[routes.GenerationAnnotation], w.Name)
	}
}

func TestRouteWriterAgainstAPIServer(t *testing.T) {
	c, ns := routeNamespace(t)
	ctx := context.Background()
	w := NewRouteWriter(c.Gateway)

	// 6 pins with the prefix rewritten need three routes (2 + 3 + 1).
	res, err := w.ApplyRoutes(ctx, ns, "myapp", 2, renderedIn(t, ns, 2, 6))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp", "myapp--pins-1", "myapp--pins-2"}, res.Created)
	assertRoutesAre(t, c, ns, renderedIn(t, ns, 2, 6))

	t.Run("repeating a write changes nothing", func(t *testing.T) {
		before := specGenerations(liveRoutes(t, c, ns))
		res, err := w.ApplyRoutes(ctx, ns, "myapp", 2, renderedIn(t, ns, 2, 6))
		require.NoError(t, err)
		assert.False(t, res.Changed(), "%+v", res)
		assert.Len(t, res.Unchanged, 3)
		assert.Equal(t, before, specGenerations(liveRoutes(t, c, ns)), "what the server stores equals what was rendered")
	})

	t.Run("a newer generation updates and adds shards", func(t *testing.T) {
		res, err := w.ApplyRoutes(ctx, ns, "myapp", 3, renderedIn(t, ns, 3, 9))
		require.NoError(t, err)
		assert.Equal(t, []string{"myapp", "myapp--pins-2"}, res.Updated)
		// pins-1 keeps its three pins: only its generation annotation is patched.
		assert.Equal(t, []string{"myapp--pins-1"}, res.Restamped)
		assert.Equal(t, []string{"myapp--pins-3"}, res.Created)
		assertRoutesAre(t, c, ns, renderedIn(t, ns, 3, 9))
	})

	t.Run("a stale write after a newer one leaves the newer routes in place", func(t *testing.T) {
		before := liveRoutes(t, c, ns)
		res, err := w.ApplyRoutes(ctx, ns, "myapp", 2, renderedIn(t, ns, 2, 30))
		require.NoError(t, err)
		assert.True(t, res.Superseded)
		assert.False(t, res.Changed())
		assert.Equal(t, specGenerations(before), specGenerations(liveRoutes(t, c, ns)))
		assertRoutesAre(t, c, ns, renderedIn(t, ns, 3, 9))
	})

	t.Run("surplus shards are removed", func(t *testing.T) {
		res, err := w.ApplyRoutes(ctx, ns, "myapp", 4, renderedIn(t, ns, 4, 1))
		require.NoError(t, err)
		assert.Equal(t, []string{"myapp"}, res.Updated)
		assert.Equal(t, []string{"myapp--pins-1", "myapp--pins-2", "myapp--pins-3"}, res.Deleted)
		assertRoutesAre(t, c, ns, renderedIn(t, ns, 4, 1))
	})

	t.Run("a route of the same name that skewguard does not manage is left alone", func(t *testing.T) {
		foreign := renderedIn(t, ns, 1, 10)[1].DeepCopy()
		foreign.Labels = map[string]string{"app.kubernetes.io/managed-by": "someone-else"}
		created, err := c.Gateway.GatewayV1().HTTPRoutes(ns).Create(ctx, foreign, metav1.CreateOptions{})
		require.NoError(t, err)

		_, err = w.ApplyRoutes(ctx, ns, "myapp", 5, renderedIn(t, ns, 5, 10))
		require.ErrorIs(t, err, ErrRouteNotManaged)
		got, err := c.Gateway.GatewayV1().HTTPRoutes(ns).Get(ctx, foreign.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, created.Generation, got.Generation)
		assert.Equal(t, created.Labels, got.Labels)

		// Nor is it deleted when the app's routes go away.
		res, err := w.ApplyRoutes(ctx, ns, "myapp", 6, nil)
		require.NoError(t, err)
		assert.Equal(t, []string{"myapp"}, res.Deleted)
		_, err = c.Gateway.GatewayV1().HTTPRoutes(ns).Get(ctx, foreign.Name, metav1.GetOptions{})
		assert.NoError(t, err)
	})
}

// TestRouteWritersRaceAgainstAPIServer lets writers of several generations, each with its own
// number of shards, write concurrently in random order against the real API server: the routes
// must always end as the newest generation rendered them.
func TestRouteWritersRaceAgainstAPIServer(t *testing.T) {
	c, ns := routeNamespace(t)
	ctx := context.Background()
	const rounds, writers = 4, 6
	generation := int64(0)
	for round := range rounds {
		gens := make([]int64, writers)
		for i := range gens {
			generation++
			gens[i] = generation
		}
		rand.Shuffle(len(gens), func(i, j int) { gens[i], gens[j] = gens[j], gens[i] })
		pins := func(g int64) int { return int(g*7) % 23 }

		var wg sync.WaitGroup
		for _, g := range gens {
			wg.Go(func() {
				_, err := NewRouteWriter(c.Gateway).ApplyRoutes(ctx, ns, "myapp", g, renderedIn(t, ns, g, pins(g)))
				assert.NoError(t, err, "generation %d", g)
			})
		}
		wg.Wait()
		newest := generation
		t.Logf("round %d: order %v, newest %d with %d pins", round, gens, newest, pins(newest))
		assertRoutesAre(t, c, ns, renderedIn(t, ns, newest, pins(newest)))
	}
}

// TestRouteWriterFenceAgainstAPIServer: generation 2 deletes every route of the app; a late
// writer of generation 1, fenced by the registry's generation (2, which outlives the routes),
// creates nothing. Without the fence the same write brings the routes back.
func TestRouteWriterFenceAgainstAPIServer(t *testing.T) {
	c, ns := routeNamespace(t)
	ctx := context.Background()
	registryGeneration := int64(2)
	fence := func(_ context.Context, namespace, app string) (int64, error) {
		if namespace != ns || app != "myapp" {
			return 0, fmt.Errorf("fence asked about %s/%s", namespace, app)
		}
		return registryGeneration, nil
	}
	plain := NewRouteWriter(c.Gateway)
	w := plain.WithFence(fence)

	res, err := w.ApplyRoutes(ctx, ns, "myapp", 2, renderedIn(t, ns, 2, 5))
	require.NoError(t, err)
	require.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Created)

	res, err = w.ApplyRoutes(ctx, ns, "myapp", 2, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Deleted)
	require.Empty(t, liveRoutes(t, c, ns))

	res, err = w.ApplyRoutes(ctx, ns, "myapp", 1, renderedIn(t, ns, 1, 5))
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.False(t, res.Changed(), "%+v", res)
	assert.Empty(t, liveRoutes(t, c, ns), "the late writer created nothing")

	res, err = plain.ApplyRoutes(ctx, ns, "myapp", 1, renderedIn(t, ns, 1, 5))
	require.NoError(t, err)
	assert.NotEmpty(t, res.Created, "without the fence the late write resurrects the routes")
	assert.Len(t, liveRoutes(t, c, ns), 2)
}
