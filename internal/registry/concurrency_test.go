//go:build integration

package registry_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// runAll starts n goroutines at once and waits for them, collecting their errors.
func runAll(n int, fn func(i int) error) []error {
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestConcurrentActivationsKeepOneActive: 50 registrations of different versions of one app
// race to observe and activate. Whatever the order, one version ends Active — the newest
// detected, since versions found together are ordered — every other one Draining, each
// transition is audited once, and the supersessions of the versions that were Active form one
// chain in the order the activations committed; the others drained on arrival.
func TestConcurrentActivationsKeepOneActive(t *testing.T) {
	t.Parallel()
	const n = 50
	ctx := context.Background()
	s := registrytest.New(t)

	errs := runAll(n, func(i int) error {
		label := strconv.Itoa(i)
		if _, _, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref(label), Placement: registry.Placement{ServiceName: "web-v" + label, ServicePort: 80}},
			registry.Actor{Type: registry.ActorPod, ID: "pod-" + label}); err != nil {
			return err
		}
		_, err := s.Activate(ctx, ref(label), system, "ready")
		return err
	})
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}

	versions, err := s.ListVersions(ctx, app)
	require.NoError(t, err)
	require.Len(t, versions, n)
	states := map[registry.State]int{}
	for _, v := range versions {
		states[v.State]++
	}
	assert.Equal(t, map[registry.State]int{registry.Active: 1, registry.Draining: n - 1}, states)

	gen, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(n), gen, "one bump per activation")

	audit, err := s.AppAudit(ctx, app, 10*n)
	require.NoError(t, err)
	counts := map[string]int{}
	perVersion := map[string][]string{}
	for i := len(audit) - 1; i >= 0; i-- { // oldest first
		e := audit[i]
		counts[e.Event]++
		perVersion[e.Version.Label] = append(perVersion[e.Version.Label], e.Event)
	}
	assert.Equal(t, n, counts[registry.EventObserved])
	assert.Equal(t, n-1, counts[registry.EventSuperseded], "every version but one superseded once")
	snap, err := s.Snapshot(ctx, app)
	require.NoError(t, err)
	require.NotNil(t, snap.Active)
	newest := versions[0]
	for _, v := range versions {
		if v.PendingAt.After(newest.PendingAt) || (v.PendingAt.Equal(newest.PendingAt) && v.ID > newest.ID) {
			newest = v
		}
	}
	assert.Equal(t, newest.Label, snap.Active.Label, "the newest detected is Active")
	onArrival := 0
	for label, evs := range perVersion {
		switch {
		case label == snap.Active.Label:
			assert.Equal(t, []string{registry.EventObserved, registry.EventActivated}, evs, "version %s", label)
		case len(evs) == 2:
			onArrival++
			assert.Equal(t, []string{registry.EventObserved, registry.EventSuperseded}, evs, "version %s drained on arrival", label)
		default:
			assert.Equal(t, []string{registry.EventObserved, registry.EventActivated, registry.EventSuperseded}, evs, "version %s", label)
		}
	}
	assert.Equal(t, n-onArrival, counts[registry.EventActivated])

	// Activations in commit order: each one superseded the one before it.
	var order []string
	supersededBy := map[string]string{}
	for i := len(audit) - 1; i >= 0; i-- {
		e := audit[i]
		switch e.Event {
		case registry.EventActivated:
			order = append(order, e.Version.Label)
		case registry.EventSuperseded:
			var d struct{ SupersededBy string }
			require.NoError(t, json.Unmarshal(e.Detail, &d))
			supersededBy[e.Version.Label] = d.SupersededBy
		}
	}
	require.Len(t, order, n-onArrival)
	for i := 1; i < len(order); i++ {
		assert.Equal(t, order[i], supersededBy[order[i-1]], "version %s", order[i-1])
	}
	assert.Equal(t, order[len(order)-1], snap.Active.Label)
	assert.Len(t, snap.Pinned, n-1)
}

// TestConcurrentObservationsOfOneLabel: many pods of one version register at once; one row.
func TestConcurrentObservationsOfOneLabel(t *testing.T) {
	t.Parallel()
	const n = 30
	ctx := context.Background()
	s := registrytest.New(t)
	var mu sync.Mutex
	created := 0
	ids := map[int64]bool{}
	errs := runAll(n, func(i int) error {
		v, c, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref("1"), Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80}},
			registry.Actor{Type: registry.ActorPod, ID: "pod-" + strconv.Itoa(i)})
		mu.Lock()
		defer mu.Unlock()
		if c {
			created++
		}
		ids[v.ID] = true
		return err
	})
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
	assert.Equal(t, 1, created)
	assert.Len(t, ids, 1)
	audit, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved}, events(audit))
}
