//go:build integration

package registry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// flipCapped activates label with the global cap global (PLT_SKEW_MAX_VERSIONS), recording the
// snapshot the transaction publishes.
func flipCapped(t *testing.T, s *registry.Store, label string, global int64, published *registry.Snapshot) registry.Transition {
	t.Helper()
	tr, err := s.Flip(context.Background(), registry.FlipRequest{
		Ref: ref(label), Op: registry.OpActivate, Actor: system, Reason: "ready endpoints", MaxVersions: global,
		Publish: func(_ context.Context, snap registry.Snapshot) error {
			if published != nil {
				*published = snap
			}
			return nil
		},
	})
	require.NoError(t, err)
	return tr
}

func stateOf(t *testing.T, s *registry.Store, labels ...string) map[string]registry.State {
	t.Helper()
	out := map[string]registry.State{}
	for _, l := range labels {
		v, err := s.GetVersion(context.Background(), ref(l))
		require.NoError(t, err)
		out[l] = v.State
	}
	return out
}

func labelsOf(vs []registry.Version) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Label)
	}
	return out
}

// maxVersions 3 (ICC's meaning: Draining versions beside the Active one) and six deploys: at the
// fifth and the sixth activation the oldest Draining version is expired in the same transaction,
// with the routes published without it and the reason in its audit. A retried activation
// returns the same capped version and expires nothing more.
func TestMaxVersionsExpiresTheOldestDraining(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	_, err := s.PutPolicy(ctx, app, registry.Policy{MaxVersions: ptr[int64](3)}, user)
	require.NoError(t, err)

	var snap registry.Snapshot
	for i := 1; i <= 4; i++ {
		observe(t, s, fmt.Sprint(i))
		tr := flipCapped(t, s, fmt.Sprint(i), 0, &snap)
		assert.Empty(t, tr.Capped, "activation %d stays within the cap", i)
	}
	observe(t, s, "5")
	tr := flipCapped(t, s, "5", 0, &snap)
	require.Equal(t, []string{"1"}, labelsOf(tr.Capped))
	assert.Equal(t, registry.Expired, tr.Capped[0].State)
	assert.Equal(t, []string{"2", "3", "4"}, labelsOf(snap.Pinned), "the routes published with the flip leave the capped version out")

	observe(t, s, "6")
	tr = flipCapped(t, s, "6", 0, &snap)
	assert.Equal(t, []string{"2"}, labelsOf(tr.Capped))
	assert.Equal(t, map[string]registry.State{"1": registry.Expired, "2": registry.Expired, "3": registry.Draining,
		"4": registry.Draining, "5": registry.Draining, "6": registry.Active}, stateOf(t, s, "1", "2", "3", "4", "5", "6"))
	assert.Equal(t, "6", snap.Active.Label)
	assert.Equal(t, []string{"3", "4", "5"}, labelsOf(snap.Pinned))

	audit, err := s.Audit(ctx, ref("2"))
	require.NoError(t, err)
	last := audit[len(audit)-1]
	assert.Equal(t, registry.EventExpired, last.Event)
	assert.Equal(t, registry.Draining, *last.FromState)
	assert.Equal(t, registry.Expired, *last.ToState)
	assert.Equal(t, "maxVersions 3 exceeded by version 6", last.Reason)
	assert.JSONEq(t, `{"maxVersions": 3, "exceededBy": "6", "exceededByLife": 1}`, string(last.Detail))

	// A retried activation (the activity's result was lost) changes nothing, expires nothing
	// more, and names the version its first attempt capped, so that its workflow is still told.
	gen, err := s.Generation(ctx, app)
	require.NoError(t, err)
	again := flipCapped(t, s, "6", 0, nil)
	assert.False(t, again.Changed)
	assert.Equal(t, []string{"2"}, labelsOf(again.Capped))
	assert.Equal(t, gen, again.Generation)
	assert.Equal(t, registry.Draining, stateOf(t, s, "3")["3"], "the retry expired nothing more")
	after, err := s.Audit(ctx, ref("2"))
	require.NoError(t, err)
	assert.Len(t, after, len(audit), "nor audited anything")
}

// Without a cap (no policy, PLT_SKEW_MAX_VERSIONS 0) nothing is expired for it.
func TestMaxVersionsUnsetIsUnlimited(t *testing.T) {
	t.Parallel()
	s := registrytest.New(t)
	for i := 1; i <= 6; i++ {
		observe(t, s, fmt.Sprint(i))
		assert.Empty(t, flipCapped(t, s, fmt.Sprint(i), 0, nil).Capped)
	}
	snap, err := s.Snapshot(context.Background(), app)
	require.NoError(t, err)
	assert.Equal(t, []string{"1", "2", "3", "4", "5"}, labelsOf(snap.Pinned))
}

// The global default applies when the app sets none; the app's 0 lifts it. A cap lowered
// below the number of Draining versions expires all those beyond it at the next activation,
// never a Pending or Staged version, the Active one, or the one being activated.
func TestMaxVersionsGlobalDefaultAndOverride(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	for i := 1; i <= 3; i++ {
		observe(t, s, fmt.Sprint(i))
		flipCapped(t, s, fmt.Sprint(i), 1, nil)
	}
	assert.Equal(t, map[string]registry.State{"1": registry.Expired, "2": registry.Draining, "3": registry.Active},
		stateOf(t, s, "1", "2", "3"), "global cap 1")

	_, err := s.PutPolicy(ctx, app, registry.Policy{MaxVersions: ptr[int64](0)}, user)
	require.NoError(t, err)
	for i := 4; i <= 6; i++ {
		observe(t, s, fmt.Sprint(i))
		assert.Empty(t, flipCapped(t, s, fmt.Sprint(i), 1, nil).Capped, "the app's 0: no cap")
	}

	// A staged and a pending version are pinned or waiting: never counted, never expired.
	observe(t, s, "staged")
	_, err = s.Stage(ctx, ref("staged"), system, "approval required")
	require.NoError(t, err)
	observe(t, s, "pending")

	_, err = s.PutPolicy(ctx, app, registry.Policy{MaxVersions: ptr[int64](1)}, user)
	require.NoError(t, err)
	observe(t, s, "7")
	tr := flipCapped(t, s, "7", 0, nil)
	assert.Equal(t, []string{"2", "3", "4", "5"}, labelsOf(tr.Capped), "oldest first, down to the cap at once")
	assert.Equal(t, map[string]registry.State{"6": registry.Draining, "7": registry.Active,
		"staged": registry.Staged, "pending": registry.Pending}, stateOf(t, s, "6", "7", "staged", "pending"))

	// Promote counts too: the version it displaces drains. Then the next activation expires
	// the version Draining the longest (7, since the rollback), not the older deployment 6,
	// which was Active until now and has the most recent sessions.
	tr, err = s.Flip(ctx, registry.FlipRequest{Ref: ref("6"), Op: registry.OpPromote, Actor: user, Reason: "rollback"})
	require.NoError(t, err)
	assert.Empty(t, tr.Capped, "6 Active, 7 Draining: within the cap")
	observe(t, s, "8")
	tr = flipCapped(t, s, "8", 0, nil)
	assert.Equal(t, []string{"7"}, labelsOf(tr.Capped))
	assert.Equal(t, registry.Draining, stateOf(t, s, "6")["6"], "the version displaced now is kept")
}

// A cap's expiries are part of the flip: when the route write fails, the capped version stays
// Draining with the rest.
func TestMaxVersionsRollsBackWithTheFlip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	for i := 1; i <= 2; i++ {
		observe(t, s, fmt.Sprint(i))
		flipCapped(t, s, fmt.Sprint(i), 1, nil)
	}
	observe(t, s, "3")
	boom := errors.New("route write refused")
	_, err := s.Flip(ctx, registry.FlipRequest{Ref: ref("3"), Op: registry.OpActivate, Actor: system, MaxVersions: 1,
		Publish: func(context.Context, registry.Snapshot) error { return boom }})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, map[string]registry.State{"1": registry.Draining, "2": registry.Active, "3": registry.Pending},
		stateOf(t, s, "1", "2", "3"))
}

func TestMaxVersionsPolicyBounds(t *testing.T) {
	t.Parallel()
	s := registrytest.New(t)
	_, err := s.PutPolicy(context.Background(), app, registry.Policy{MaxVersions: ptr[int64](-1)}, user)
	var pe *registry.PolicyError
	require.True(t, errors.As(err, &pe), "want *PolicyError, got %v", err)
	assert.Equal(t, []string{"maxVersions: must be between 0 and 1000, got -1"}, pe.Problems)
	want := registry.Policy{MaxVersions: ptr[int64](1000)}
	_, err = s.PutPolicy(context.Background(), app, want, user)
	require.NoError(t, err)
	got, err := s.GetPolicy(context.Background(), app)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
