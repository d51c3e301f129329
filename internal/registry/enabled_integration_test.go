//go:build integration

package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// switchOff stores enabled=false for the app, as PUT …/policy does.
func switchPolicy(t *testing.T, s *registry.Store, on bool) {
	t.Helper()
	_, err := s.PutPolicy(context.Background(), app, registry.Policy{Enabled: ptr(on), MaxVersions: ptr[int64](5)}, user)
	require.NoError(t, err)
}

// Switching skew protection off for an app: ApplySwitch expires every Draining version (audited
// "skew protection disabled for the app") and publishes, in the same transaction, a snapshot with
// the Active version only and the policy off (rendered as one plain route). Until publish returns
// nothing is visible outside the transaction. A repeat expires nothing and publishes the same
// generation.
func TestSwitchOffExpiresDrainingWithThePlainRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	for _, l := range []string{"1", "2", "3"} {
		observe(t, s, l)
		activate(t, s, l)
	}
	before, err := s.Generation(ctx, app)
	require.NoError(t, err)
	switchPolicy(t, s, false)
	afterPut, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Greater(t, afterPut, before, "switching off changes what the routes look like: a new generation")
	switchPolicy(t, s, false)
	again, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, afterPut, again, "storing off twice is one change")

	var published registry.Snapshot
	res, err := s.ApplySwitch(ctx, app, user, func(ctx context.Context, snap registry.Snapshot) error {
		published = snap
		outside, err := s.GetVersion(ctx, ref("1"))
		require.NoError(t, err)
		assert.Equal(t, registry.Draining, outside.State, "the expiry commits with the routes, not before")
		return nil
	})
	require.NoError(t, err)
	assert.True(t, res.Off)
	assert.Equal(t, []string{"1", "2"}, labelsOf(res.Expired))
	assert.Equal(t, map[string]registry.State{"1": registry.Expired, "2": registry.Expired, "3": registry.Active},
		stateOf(t, s, "1", "2", "3"))
	require.NotNil(t, published.Active)
	assert.Equal(t, "3", published.Active.Label)
	assert.Empty(t, published.Pinned, "no pins while off")
	assert.True(t, published.Policy.ProtectionOff(), "rendered plain (activities.RouteInput)")
	assert.Greater(t, published.Generation, afterPut)
	assert.Equal(t, published.Generation, res.Generation)

	for _, l := range []string{"1", "2"} {
		trail, err := s.Audit(ctx, ref(l))
		require.NoError(t, err)
		last := trail[len(trail)-1]
		assert.Equal(t, registry.EventExpired, last.Event, l)
		assert.Equal(t, registry.ReasonProtectionOff, last.Reason, l)
		assert.Equal(t, registry.Draining, *last.FromState, l)
		assert.Equal(t, user, last.Actor, l)
	}

	// Switching off twice: nothing more expires, the same generation is published (the route
	// writer finds it written), and nothing is audited.
	trail, err := s.AppAudit(ctx, app, 1000)
	require.NoError(t, err)
	var repeat registry.Snapshot
	res2, err := s.ApplySwitch(ctx, app, user, func(_ context.Context, snap registry.Snapshot) error { repeat = snap; return nil })
	require.NoError(t, err)
	assert.Empty(t, res2.Expired)
	assert.Equal(t, res.Generation, res2.Generation)
	assert.Equal(t, published.Generation, repeat.Generation)
	trail2, err := s.AppAudit(ctx, app, 1000)
	require.NoError(t, err)
	assert.Len(t, trail2, len(trail))
}

// A publish that fails (the route write refused) leaves everything as it was.
func TestSwitchOffRollsBackWhenPublishFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	for _, l := range []string{"1", "2"} {
		observe(t, s, l)
		activate(t, s, l)
	}
	switchPolicy(t, s, false)
	gen, err := s.Generation(ctx, app)
	require.NoError(t, err)
	trail, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)

	refused := errors.New("admission webhook said no")
	_, err = s.ApplySwitch(ctx, app, user, func(context.Context, registry.Snapshot) error { return refused })
	require.ErrorIs(t, err, refused)
	assert.Equal(t, registry.Draining, stateOf(t, s, "1")["1"])
	after, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, gen, after)
	trail2, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	assert.Len(t, trail2, len(trail))
}

// While off, an activation expires the version it supersedes in its own flip (a cap of 0,
// whatever maxVersions says), with the reason; switched on again, the next activation drains
// the previous version as usual, and the routes have their pins back.
func TestActivationWhileOffExpiresThePrevious(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	switchPolicy(t, s, false)
	observe(t, s, "1")
	activate(t, s, "1")
	observe(t, s, "2")
	var snap registry.Snapshot
	tr := flipCapped(t, s, "2", 0, &snap)
	require.NotNil(t, tr.Previous)
	assert.Equal(t, "1", tr.Previous.Label)
	assert.Equal(t, []string{"1"}, labelsOf(tr.Capped))
	assert.Equal(t, registry.ReasonProtectionOff, tr.CappedBecause)
	assert.Empty(t, snap.Pinned)
	assert.Equal(t, registry.Expired, stateOf(t, s, "1")["1"])
	trail, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	last := trail[len(trail)-1]
	assert.Equal(t, registry.ReasonProtectionOff, last.Reason)
	assert.Equal(t, registry.Draining, *last.FromState, "superseded, then expired in the same flip")

	switchPolicy(t, s, true)
	res, err := s.ApplySwitch(ctx, app, user, func(_ context.Context, sn registry.Snapshot) error { snap = sn; return nil })
	require.NoError(t, err)
	assert.False(t, res.Off)
	assert.False(t, snap.Policy.ProtectionOff(), "rendered with its cookie again")
	observe(t, s, "3")
	tr = flipCapped(t, s, "3", 0, &snap)
	assert.Empty(t, tr.Capped)
	assert.Equal(t, []string{"2"}, labelsOf(snap.Pinned), "v2 drains")
}
