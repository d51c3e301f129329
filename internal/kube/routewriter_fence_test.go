package kube

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/routes"
)

// registryFence stands in for the registry's route generation of myapp.
type registryFence struct {
	mu    sync.Mutex
	gen   int64
	err   error
	calls int
}

func (f *registryFence) get(_ context.Context, namespace, app string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if namespace != routeTestNS || app != "myapp" {
		return 0, errors.New("asked about the wrong app")
	}
	return f.gen, f.err
}

func (f *registryFence) set(gen int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen, f.err = gen, err
}

// TestApplyRoutesFenceIsATombstone: generation 2 removes every route of the app; a late writer
// of generation 1 then finds no route to compare against. Only the registry's generation stops
// it from bringing the routes back.
func TestApplyRoutesFenceIsATombstone(t *testing.T) {
	store, plain := newRouteStore(t)
	ctx := context.Background()
	fence := &registryFence{gen: 2}
	w := plain.WithFence(fence.get)

	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, rendered(t, 2, 15))
	require.NoError(t, err)
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Deleted)
	require.Empty(t, store.names())
	written := store.writes()

	res, err = w.ApplyRoutes(ctx, routeTestNS, "myapp", 1, rendered(t, 1, 15))
	require.NoError(t, err)
	assert.True(t, res.Superseded)
	assert.False(t, res.Changed())
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.SkippedStale)
	assert.Empty(t, store.names(), "the late writer created nothing")
	assert.Equal(t, written, store.writes(), "nor tried to")

	// The same late write without the fence is what the fence is for: it resurrects the routes.
	res, err = plain.ApplyRoutes(ctx, routeTestNS, "myapp", 1, rendered(t, 1, 15))
	require.NoError(t, err)
	assert.False(t, res.Superseded)
	assert.Equal(t, []string{"myapp", "myapp--pins-1"}, store.names())
}

func TestWithFenceLeavesTheOriginalUnfenced(t *testing.T) {
	_, plain := newRouteStore(t)
	fence := &registryFence{gen: 9}
	fenced := plain.WithFence(fence.get)
	assert.Nil(t, plain.fence)
	assert.NotNil(t, fenced.fence)
	res, err := plain.ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 0))
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Created)
	assert.Zero(t, fence.calls)
}

// TestApplyRoutesFenceAskedAfterEachCreate: the registry moves on between the writer's first
// look at the fence and its create (the newer writer may already have listed, found nothing, and
// finished). The created route is withdrawn.
func TestApplyRoutesFenceAskedAfterEachCreate(t *testing.T) {
	t.Run("first route", func(t *testing.T) {
		store, plain := newRouteStore(t)
		fence := &registryFence{gen: 1}
		store.before = func(verb, name string) {
			if verb == "create" && name == "myapp" {
				fence.set(2, nil)
			}
		}
		res, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 15))
		require.NoError(t, err)
		assert.True(t, res.Superseded)
		assert.Empty(t, res.Created)
		assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.SkippedStale)
		assert.Empty(t, store.names(), "the stale route was withdrawn")
		assert.Equal(t, []string{"create myapp", "delete myapp"}, store.writes())
	})
	t.Run("pin shard", func(t *testing.T) {
		store, plain := newRouteStore(t)
		fence := &registryFence{gen: 1}
		store.before = func(verb, name string) {
			if verb == "create" && name == "myapp--pins-1" {
				fence.set(2, nil)
			}
		}
		res, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 15))
		require.NoError(t, err)
		assert.True(t, res.Superseded)
		assert.Equal(t, []string{"myapp"}, res.Created)
		assert.Equal(t, []string{"myapp--pins-1"}, res.SkippedStale)
		// The first route stays for the newer writer to overwrite or delete: it was there when
		// the registry still said 1, so that writer lists it.
		assert.Equal(t, []string{"myapp"}, store.names(), "the stale shard was withdrawn")
	})
	t.Run("a current write keeps what it created", func(t *testing.T) {
		store, plain := newRouteStore(t)
		fence := &registryFence{gen: 1}
		res, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 15))
		require.NoError(t, err)
		assert.False(t, res.Superseded)
		assert.Equal(t, []string{"myapp", "myapp--pins-1"}, res.Created)
		assert.Equal(t, []string{"myapp", "myapp--pins-1"}, store.names())
		assert.Equal(t, 3, fence.calls, "once before writing, once after each create")
	})
}

func TestApplyRoutesFenceErrors(t *testing.T) {
	boom := errors.New("registry unreachable")
	t.Run("before writing: nothing is written", func(t *testing.T) {
		store, plain := newRouteStore(t)
		fence := &registryFence{err: boom}
		_, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 0))
		require.ErrorIs(t, err, boom)
		assert.ErrorContains(t, err, "route generation of shop/myapp")
		assert.Empty(t, store.writes())
	})
	t.Run("after a create: the route is taken back", func(t *testing.T) {
		store, plain := newRouteStore(t)
		fence := &registryFence{gen: 1}
		store.before = func(verb, name string) {
			if verb == "create" {
				fence.set(1, boom)
			}
		}
		_, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 0))
		require.ErrorIs(t, err, boom)
		assert.Empty(t, store.names())
		assert.Equal(t, []string{"create myapp", "delete myapp"}, store.writes())
	})
	t.Run("an update is not taken back", func(t *testing.T) {
		store, plain := newRouteStore(t)
		_, err := plain.ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, rendered(t, 1, 0))
		require.NoError(t, err)
		fence := &registryFence{gen: 2}
		res, err := plain.WithFence(fence.get).ApplyRoutes(context.Background(), routeTestNS, "myapp", 2, rendered(t, 2, 0))
		require.NoError(t, err)
		assert.Equal(t, []string{"myapp"}, res.Updated)
		assert.Equal(t, "2", store.get("myapp").Annotations[routes.GenerationAnnotation])
	})
}

// TestReListAfterTheFirstRouteIsNeeded: the list after the first route is written is not
// redundant even when that write is the apply's last: an older writer in flight (its first route
// written, its own re-list passed) can create a shard between this writer's list and its write of
// the first route, and check the first route before that write lands. The resourceVersion
// precondition of this writer's update does not see it (the first route did not change); only the
// re-list finds the shard, which this writer then deletes as surplus.
func TestReListAfterTheFirstRouteIsNeeded(t *testing.T) {
	older := rendered(t, 5, 12) // the first route and myapp--pins-1
	require.Len(t, older, 2)
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 5, older[:1]) // the older writer's first route
	require.NoError(t, err)
	injected := false
	store.before = func(verb, name string) {
		if verb == "update" && name == "myapp" && !injected {
			injected = true // the older writer creates its shard, and finds its first route current
			store.mu.Lock()
			store.put(older[1].DeepCopy())
			store.mu.Unlock()
		}
	}
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 6, rendered(t, 6, 3))
	require.NoError(t, err)
	require.True(t, injected)
	assert.Equal(t, []string{"myapp"}, res.Updated)
	assert.Equal(t, []string{"myapp--pins-1"}, res.Deleted)
	assert.Equal(t, []string{"myapp"}, store.names(), "the older writer's shard does not outlive the newer write")
}
