//go:build integration

package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// liveCache returns a LiveCache on a fresh database, listening, and a second Store on the same
// database that plays the worker process making the changes.
func liveCache(t *testing.T, opts registry.LiveCacheOptions) (*registry.LiveCache, *registry.Store, string) {
	t.Helper()
	dsn := registrytest.NewURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	open := func() *registry.Store {
		s, err := registry.Open(ctx, dsn)
		require.NoError(t, err)
		return s
	}
	api, worker := open(), open()
	c := registry.NewLiveCache(api, opts)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; api.Close(); worker.Close() })
	require.Eventually(t, c.Listening, 10*time.Second, 5*time.Millisecond, "the cache never started listening")
	return c, worker, dsn
}

// live reads ref through c and returns its state ("" when not live).
func live(t *testing.T, c *registry.LiveCache, r registry.VersionRef) registry.State {
	t.Helper()
	v, ok, err := c.LiveVersion(context.Background(), r)
	require.NoError(t, err)
	if !ok {
		return ""
	}
	return v.State
}

// announced runs change, one transaction, and waits until the cache has heard of it. A
// transaction announces each changed app once, and notifications arrive in commit order, so
// when every write of a test goes through here, none is still on its way after it returns.
func announced(t *testing.T, c *registry.LiveCache, change func()) {
	t.Helper()
	before := c.Stats().Notifications
	change()
	require.Eventually(t, func() bool { return c.Stats().Notifications > before }, 10*time.Second, 2*time.Millisecond,
		"the change was never announced to the cache")
}

func TestLiveCacheAnswersFromMemoryAndFollowsEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, worker, _ := liveCache(t, registry.LiveCacheOptions{})
	v1 := ref("1")

	assert.Equal(t, registry.State(""), live(t, c, v1), "unknown label")
	announced(t, c, func() { observe(t, worker, "1") })
	assert.Equal(t, registry.Pending, live(t, c, v1), "an unknown label is not cached as such")
	before := c.Stats()
	for range 10 {
		assert.Equal(t, registry.Pending, live(t, c, v1))
	}
	after := c.Stats()
	assert.Equal(t, before.Reads, after.Reads, "repeat reads of a live version must not reach the database")
	assert.EqualValues(t, 10, after.Hits-before.Hits)

	// Each change made elsewhere (the worker) is seen by the next read after it is announced.
	announced(t, c, func() {
		_, err := worker.Fail(ctx, v1, system, "never ready")
		require.NoError(t, err)
	})
	assert.False(t, c.Cached(v1))
	assert.Equal(t, registry.Failed, live(t, c, v1))
	assert.True(t, c.Cached(v1))

	announced(t, c, func() { activate(t, worker, "1") })
	assert.Equal(t, registry.Active, live(t, c, v1))

	announced(t, c, func() { observe(t, worker, "2") })
	announced(t, c, func() { activate(t, worker, "2") }) // 1 → Draining
	assert.Equal(t, registry.Draining, live(t, c, v1))
	assert.Equal(t, registry.Active, live(t, c, ref("2")))

	announced(t, c, func() {
		_, err := worker.Expire(ctx, v1, system, "no traffic")
		require.NoError(t, err)
	})
	assert.False(t, c.Cached(v1))
	assert.Equal(t, registry.State(""), live(t, c, v1), "an expired version must not be answered as live")
	assert.False(t, c.Cached(v1))

	// A traffic reading alone is not announced: 2 stays cached through it, up to the change of
	// another app that follows it.
	other := registry.VersionRef{Namespace: "shop", App: "other", Label: "1"}
	announced(t, c, func() {
		_, _, err := worker.ObserveVersion(ctx, registry.Observation{Ref: other, Placement: registry.Placement{ServiceName: "other-v1", ServicePort: 80}}, system)
		require.NoError(t, err)
	})
	assert.Equal(t, registry.Active, live(t, c, ref("2")))
	assert.Equal(t, registry.Pending, live(t, c, other))
	require.NoError(t, worker.RecordTraffic(ctx, ref("2"), 3, time.Time{}))
	announced(t, c, func() {
		_, err := worker.Fail(ctx, other, system, "barrier")
		require.NoError(t, err)
	})
	assert.False(t, c.Cached(other))
	assert.True(t, c.Cached(ref("2")), "a traffic reading, or another app's change, dropped the entry")
}

func TestLiveCacheIsOffWhileItsConnectionIsLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, worker, dsn := liveCache(t, registry.LiveCacheOptions{})
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	// Every write is awaited: each transaction announces once, in commit order.
	announced(t, c, func() { observe(t, worker, "1") })
	announced(t, c, func() { activate(t, worker, "1") })
	announced(t, c, func() { observe(t, worker, "2") })
	announced(t, c, func() { activate(t, worker, "2") })
	assert.Equal(t, registry.Draining, live(t, c, ref("1")))
	require.True(t, c.Cached(ref("1")))

	listener := func() (pid int) {
		err := admin.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'skewguard-listen'`).Scan(&pid)
		require.NoError(t, err)
		return pid
	}
	old := listener()
	require.NotZero(t, old)
	var killed bool
	require.NoError(t, admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, old).Scan(&killed))
	require.True(t, killed)
	// Changed while nobody listens: nothing will announce it.
	_, err = worker.Expire(ctx, ref("1"), system, "no traffic")
	require.NoError(t, err)

	require.Eventually(t, func() bool { p := listener(); return p != 0 && p != old && c.Listening() },
		20*time.Second, 10*time.Millisecond, "the cache never listened again")
	assert.Equal(t, registry.State(""), live(t, c, ref("1")), "a change made while the cache was off was missed")
}

func TestLiveCacheIsOffWithoutTheTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, worker, dsn := liveCache(t, registry.LiveCacheOptions{PingInterval: 20 * time.Millisecond})
	admin, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer admin.Close(ctx)
	announced(t, c, func() { observe(t, worker, "1") })
	assert.Equal(t, registry.Pending, live(t, c, ref("1")))
	require.True(t, c.Cached(ref("1")))

	_, err = admin.Exec(ctx, `ALTER TABLE versions DISABLE TRIGGER versions_changed`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !c.Listening() }, 10*time.Second, 5*time.Millisecond,
		"the cache kept answering from memory with nothing announcing changes")
	activate(t, worker, "1") // not announced
	assert.Equal(t, registry.Active, live(t, c, ref("1")))
	assert.False(t, c.Cached(ref("1")), "cached while off")

	_, err = admin.Exec(ctx, `ALTER TABLE versions ENABLE TRIGGER versions_changed`)
	require.NoError(t, err)
	require.Eventually(t, c.Listening, 20*time.Second, 5*time.Millisecond, "the cache never came back")
	assert.Equal(t, registry.Active, live(t, c, ref("1")))
}
