//go:build integration

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// queryCounter counts the statements a pool sends to PostgreSQL: its round trips.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countedStore opens a Store on a fresh registry database whose round trips are counted.
func countedStore(t testing.TB) (*registry.Store, *queryCounter) {
	t.Helper()
	dsn := registrytest.NewURL(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	q := &queryCounter{}
	cfg.ConnConfig.Tracer = q
	store, err := registry.OpenConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(store.Close)
	return store, q
}

// runLiveCache starts a LiveCache over store and waits until it listens.
func runLiveCache(t testing.TB, store *registry.Store) *registry.LiveCache {
	t.Helper()
	c := registry.NewLiveCache(store, registry.LiveCacheOptions{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, c.Listening, 10*time.Second, 5*time.Millisecond, "the live version cache never listened")
	return c
}

// TestRegistrationOfALiveVersionCostsNoRoundTrip registers pods against the real registry behind
// the live version cache: repeat registrations cost no database round trip, a new pod still
// gets its row, and once its version expires (a change made by the worker, announced by
// PostgreSQL) the next new pod of the label is not answered as live: it starts the next life.
func TestRegistrationOfALiveVersionCostsNoRoundTrip(t *testing.T) {
	ctx := context.Background()
	store, queries := countedStore(t)
	actor := registry.Actor{Type: registry.ActorSystem, ID: "test"}
	v1 := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	v2 := registry.VersionRef{Namespace: "shop", App: "web", Label: "2"}
	live, _, err := store.ObserveVersion(ctx, registry.Observation{Ref: v1, Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80}}, actor)
	require.NoError(t, err)
	_, err = store.Activate(ctx, v1, actor, "test")
	require.NoError(t, err)
	// Written before the cache listens: no announcement is still on its way.
	cache := runLiveCache(t, store)
	h := newHarness(t, harnessOptions{registry: cache})

	register := func(pod, token string) (InstanceResponse, int64) {
		t.Helper()
		before := queries.n.Load()
		rec := h.do(t, http.MethodPost, "/control-plane/pods/"+pod+"/instance", token,
			fmt.Sprintf(`{"podId":%q,"apiVersion":"v3","applicationName":"web"}`, pod))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var res InstanceResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &res))
		return res, queries.n.Load() - before
	}

	res, trips := register("web-v1-a", tokenPodA)
	assert.Equal(t, "1", res.DeploymentVersion)
	assert.EqualValues(t, 2, trips, "the first registration reads the version and writes the pod's row")
	for range 5 {
		_, trips = register("web-v1-a", tokenPodA)
		assert.Zero(t, trips, "a registration of a pod of a live version must not cost a round trip")
	}

	// A new pod of the cached version: answered from memory, its row written all the same.
	_, trips = register("web-v1-b", tokenPodB)
	assert.EqualValues(t, 1, trips, "only the new pod's row is written")
	pod, err := store.GetPod(ctx, "web-v1-b")
	require.NoError(t, err)
	require.NotNil(t, pod.VersionID)
	assert.Equal(t, live.ID, *pod.VersionID)
	require.Zero(t, h.starter.count())

	// The worker supersedes and expires version 1.
	_, _, err = store.ObserveVersion(ctx, registry.Observation{Ref: v2, Placement: registry.Placement{ServiceName: "web-v2", ServicePort: 80}}, actor)
	require.NoError(t, err)
	_, err = store.Activate(ctx, v2, actor, "test")
	require.NoError(t, err)
	_, err = store.Expire(ctx, v1, actor, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !cache.Cached(v1) }, 10*time.Second, 2*time.Millisecond,
		"the expiry was never announced to the cache")

	// A pod of label 1 created after the expiry brings the label back: its next life starts.
	fresh := testPod("shop", "web-v1-c", versionLabels("web", "1"))
	fresh.CreationTimestamp = metav1.NewTime(time.Now().Add(time.Second))
	_, err = h.kube.CoreV1().Pods("shop").Create(ctx, fresh, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.server.opts.Pods.PodsNamed("web-v1-c")) == 1 },
		10*time.Second, 5*time.Millisecond, "the informer never saw the new pod")
	res, _ = register("web-v1-c", tokenPodC)
	assert.Equal(t, "1", res.DeploymentVersion)
	require.Equal(t, 1, h.starter.count(), "the expired version was answered as live: its next life was not started")
	h.starter.mu.Lock()
	defer h.starter.mu.Unlock()
	assert.Equal(t, live.ID, h.starter.reqs[0].After)
}
