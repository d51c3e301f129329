package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/registry"
)

// activeAt is when a version deployed at offset becomes Active: readiness takes readyDelay.
func activeAt(offset time.Duration) time.Time { return t0.Add(offset + readyDelay) }

func TestHappyPathWithDefaults(t *testing.T) {
	env, w := newEnv(t, defaults)
	drained := activeAt(time.Hour) // v2's activation drains v1

	var inGrace, afterFirstZero StateView
	at(env, drained.Sub(t0)+10*time.Minute, func() { inGrace = queryState(t, env, "v1") })
	at(env, drained.Sub(t0)+35*time.Minute+30*time.Second, func() { afterFirstZero = queryState(t, env, "v1") })
	runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1 := w.version("v1")
	require.Equal(t, registry.Expired, v1.State)
	assert.Equal(t, activeAt(0), *v1.ActiveAt, "v1 became Active once ready")
	assert.Equal(t, drained, *v1.DrainingAt, "v1 drains when v2 becomes Active")
	assert.Equal(t, drained.Add(36*time.Minute), *v1.ExpiredAt,
		"expired exactly after grace period (30m) + traffic window (5m) + the second zero check (1m)")
	assert.Equal(t, []time.Time{drained.Add(35 * time.Minute), drained.Add(36 * time.Minute)}, w.readingsOf("v1"),
		"no reading during the grace period nor the window after it; then one per interval")
	// Each reading may share its app's query of the last interval, but not one from before the first
	// reading instant, nor the query of the previous reading.
	firstRead := drained.Add(35 * time.Minute)
	assert.Equal(t, []activities.TrafficInput{
		{Ref: ref("v1"), ServiceName: app + "-v1", Window: 5 * time.Minute, MaxAge: time.Minute, NotBefore: firstRead},
		{Ref: ref("v1"), ServiceName: app + "-v1", Window: 5 * time.Minute, MaxAge: time.Minute, NotBefore: firstRead, After: firstRead},
	}, w.inputs["v1"])
	assert.Equal(t, []retirement{{At: drained.Add(36 * time.Minute), Label: "v1", Delete: false}}, w.retiredOf("v1"),
		"scaled to 0 (auto-cleanup off) when expired")

	v2 := w.version("v2")
	assert.Equal(t, registry.Active, v2.State)
	assert.Equal(t, drained, *v2.ActiveAt)

	last := w.lastSync()
	assert.Equal(t, routeSync{At: drained.Add(36 * time.Minute), Generation: last.Generation, Active: "v2", Cause: "v1"}, last,
		"routes re-rendered without v1 when it expired")
	assert.Contains(t, w.syncs, routeSync{At: drained, Generation: 2, Active: "v2", Pinned: []string{"v1"}, Cause: "v2"},
		"v2's activation pinned v1")

	// The state query during the grace period, and between the two zero readings.
	assert.Equal(t, registry.Draining, inGrace.State)
	assert.Equal(t, drained, *inGrace.DrainingAt)
	assert.Equal(t, "v2", inGrace.SupersededBy)
	assert.Equal(t, drained.Add(30*time.Minute), *inGrace.GraceEndsAt)
	assert.Equal(t, drained.Add(35*time.Minute), *inGrace.FirstReadAt)
	assert.Equal(t, drained.Add(24*time.Hour), *inGrace.MaxAliveAt)
	assert.Equal(t, drained.Add(30*time.Minute), *inGrace.NextCheckAt, "one durable timer for the grace period")
	assert.Contains(t, inGrace.WaitingFor, "grace period")
	assert.Empty(t, inGrace.Readings)
	require.Len(t, inGrace.Transitions, 3)
	assert.Equal(t, []registry.State{registry.Pending, registry.Active, registry.Draining},
		[]registry.State{inGrace.Transitions[0].State, inGrace.Transitions[1].State, inGrace.Transitions[2].State})
	assert.Equal(t, []time.Time{t0, activeAt(0), drained},
		[]time.Time{inGrace.Transitions[0].At, inGrace.Transitions[1].At, inGrace.Transitions[2].At})

	assert.Equal(t, 1, afterFirstZero.ZeroStreak)
	require.Len(t, afterFirstZero.Readings, 1)
	assert.Equal(t, Reading{At: drained.Add(35 * time.Minute), Verdict: VerdictZero, Taken: drained.Add(35 * time.Minute)},
		afterFirstZero.Readings[0])
	assert.Equal(t, drained.Add(36*time.Minute), *afterFirstZero.NextCheckAt)
}

// drained is when v1 becomes Draining in the two-version fleets below (v2 deployed at 1h).
var drained = activeAt(time.Hour)

// minute answers a reading at since ≥ 35 min from a script: index 0 is the first reading.
func script(steps ...string) trafficFunc {
	return func(label string, since time.Duration) (float64, bool, error) {
		if label != "v1" {
			return 0, true, nil
		}
		i := int((since - 35*time.Minute) / time.Minute)
		step := "traffic"
		if i >= 0 && i < len(steps) {
			step = steps[i]
		} else if len(steps) > 0 {
			step = steps[len(steps)-1]
		}
		switch step {
		case "zero":
			return 0, true, nil
		case "unknown":
			return 0, false, nil
		case "fail":
			return 0, false, errors.New("prometheus: connection refused")
		}
		return 2.5, true, nil
	}
}

func TestDrainingReadings(t *testing.T) {
	tests := []struct {
		name      string
		traffic   trafficFunc
		expiredAt time.Duration // after drained
		reason    string
	}{
		{"zero twice", script("zero", "zero"), 36 * time.Minute, "no traffic"},
		{"traffic until max alive", script("traffic"), 24 * time.Hour, "max alive 24h0m0s reached"},
		{"failed queries never expire before max alive", script("fail"), 24 * time.Hour, "max alive"},
		{"no series never counts as zero", script("unknown"), 24 * time.Hour, "max alive"},
		{"a failed query keeps the zero streak", script("zero", "fail", "zero"), 37 * time.Minute, "no traffic"},
		{"no series keeps the zero streak", script("zero", "unknown", "zero"), 37 * time.Minute, "no traffic"},
		{"traffic resets the zero streak", script("zero", "traffic", "zero", "zero"), 38 * time.Minute, "no traffic"},
		{"traffic stops late", script("traffic", "traffic", "traffic", "zero", "zero"), 39 * time.Minute, "no traffic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, defaults)
			w.traffic = tt.traffic
			var before StateView
			at(env, drained.Sub(t0)+tt.expiredAt-time.Second, func() { before = queryState(t, env, "v1") })
			runFleet(t, env, drained.Sub(t0)+25*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

			v1 := w.version("v1")
			require.Equal(t, registry.Expired, v1.State)
			assert.Equal(t, drained.Add(tt.expiredAt), *v1.ExpiredAt)
			assert.Equal(t, registry.Draining, before.State, "still draining a second before")
			reads := w.readingsOf("v1")
			require.NotEmpty(t, reads)
			assert.Equal(t, drained.Add(35*time.Minute), reads[0], "the first reading comes after grace period + window")
			assert.False(t, reads[len(reads)-1].After(*v1.ExpiredAt))
			assert.Contains(t, w.lastAudit("v1", "draining→expired").Reason, tt.reason)
		})
	}
}

func TestForceExpireSignal(t *testing.T) {
	t.Run("draining version expires at once", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		at(env, drained.Sub(t0)+10*time.Minute, func() {
			require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalForceExpire, nil))
		})
		runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

		v1 := w.version("v1")
		require.Equal(t, registry.Expired, v1.State)
		assert.Equal(t, drained.Add(10*time.Minute), *v1.ExpiredAt, "in the grace period, without waiting for it")
		assert.Empty(t, w.readingsOf("v1"))
		assert.Equal(t, []retirement{{At: drained.Add(10 * time.Minute), Label: "v1"}}, w.retiredOf("v1"))
		row := w.lastAudit("v1", "draining→expired")
		assert.Equal(t, registry.Actor{Type: registry.ActorUser, Name: "temporal"}, row.Actor, "the UI's signal button sends no actor")
		assert.Contains(t, row.Reason, "force-expire")
		assert.Equal(t, routeSync{At: drained.Add(10 * time.Minute), Generation: 3, Active: "v2", Cause: "v1"}, w.lastSync())
	})
	t.Run("with an actor and a reason", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
		at(env, drained.Sub(t0)+31*time.Minute, func() {
			require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalForceExpire, ActionRequest{Actor: alice, Reason: "hotfix"}))
		})
		runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})
		assert.Equal(t, drained.Add(31*time.Minute), *w.version("v1").ExpiredAt)
		assert.Equal(t, auditRow{At: drained.Add(31 * time.Minute), Label: "v1", Event: "draining→expired", Actor: alice, Reason: "hotfix"},
			w.lastAudit("v1", "draining→expired"))
	})
	t.Run("the Active version ignores it and says why", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		var view StateView
		at(env, drained.Sub(t0)+10*time.Minute, func() {
			require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v2")), SignalForceExpire, nil))
		})
		at(env, drained.Sub(t0)+11*time.Minute, func() { view = queryState(t, env, "v2") })
		runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

		assert.Equal(t, registry.Active, w.version("v2").State)
		assert.Empty(t, w.retiredOf("v2"))
		row := w.lastAudit("v2", "force-expire-refused")
		assert.Equal(t, drained.Add(10*time.Minute), row.At)
		assert.Contains(t, row.Reason, "cannot be expired")
		assert.Contains(t, view.LastError, "force-expire ignored")
	})
	t.Run("an Active version the registry has expired since retires", func(t *testing.T) {
		// Superseded and then expired for maxVersions by two flips whose signals crossed: the
		// force-expire of the second arrives before the superseded signal of the first.
		env, w := newEnv(t, defaults)
		at(env, time.Hour, func() {
			w.mu.Lock()
			v := w.newest("v1")
			now := w.now()
			v.State, v.DrainingAt, v.ExpiredAt = registry.Expired, &now, &now
			w.mu.Unlock()
			require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalForceExpire,
				ActionRequest{Actor: registry.Actor{Type: registry.ActorWorkflow, ID: "skew/shop/web/v3"}, Reason: "maxVersions exceeded by version v3"}))
		})
		runFleet(t, env, 3*time.Hour, deploy{"v1", 0})

		assert.Equal(t, []retirement{{At: t0.Add(time.Hour), Label: "v1"}}, w.retiredOf("v1"))
		view := queryState(t, env, "v1")
		assert.Equal(t, registry.Expired, view.State)
		assert.NotContains(t, w.events("v1"), "force-expire-refused")
	})
}

func TestUpdates(t *testing.T) {
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	when := drained.Sub(t0) + 5*time.Minute
	tests := []struct {
		name     string
		label    string
		update   string
		req      any
		rejected string // the validator's message, if refused
		check    func(t *testing.T, w *world)
	}{
		{
			name: "expire a draining version", label: "v1", update: UpdateExpire,
			req: ActionRequest{Actor: alice, Reason: "rolled forward"},
			check: func(t *testing.T, w *world) {
				assert.Equal(t, t0.Add(when), *w.version("v1").ExpiredAt)
				assert.Equal(t, auditRow{At: t0.Add(when), Label: "v1", Event: "draining→expired", Actor: alice, Reason: "rolled forward"},
					w.lastAudit("v1", "draining→expired"))
				assert.Len(t, w.retiredOf("v1"), 1)
			},
		},
		{
			name: "expire without an argument (Temporal UI)", label: "v1", update: UpdateExpire,
			check: func(t *testing.T, w *world) {
				assert.Equal(t, t0.Add(when), *w.version("v1").ExpiredAt)
				assert.Equal(t, registry.Actor{Type: registry.ActorUser, Name: "temporal"}, w.lastAudit("v1", "draining→expired").Actor)
			},
		},
		{
			name: "expire the Active version", label: "v2", update: UpdateExpire, req: ActionRequest{Actor: alice},
			rejected: "version v2 is the Active version of shop/myapp and cannot be expired: deploy or promote another version first",
		},
		{
			name: "promote a draining version", label: "v1", update: UpdatePromote, req: ActionRequest{Actor: alice, Reason: "v2 is broken"},
			check: func(t *testing.T, w *world) {
				v1, v2 := w.version("v1"), w.version("v2")
				assert.Equal(t, registry.Active, v1.State)
				assert.Equal(t, t0.Add(when), *v1.ActiveAt)
				assert.Equal(t, registry.Expired, v2.State, "the demoted version drains and expires in turn")
				assert.Equal(t, t0.Add(when+36*time.Minute), *v2.ExpiredAt, "its draining clock started at the promotion")
				assert.Contains(t, w.syncs, routeSync{At: t0.Add(when), Generation: 3, Active: "v1", Pinned: []string{"v2"}, Cause: "v1"})
				assert.Empty(t, w.readingsOf("v1"), "a promoted version stops checking traffic")
			},
		},
		{name: "promote the Active version", label: "v2", update: UpdatePromote, rejected: "version v2 is already the Active version"},
		{name: "approve a version that is not staged", label: "v1", update: UpdateApprove, rejected: "version v1 is draining: only a Staged or Failed version can be approved"},
		{name: "reject a version that is not staged", label: "v2", update: UpdateReject, rejected: "version v2 is active: only a Staged or Failed version can be rejected"},
		{
			name: "unknown actor type", label: "v1", update: UpdateExpire, req: ActionRequest{Actor: registry.Actor{Type: "robot"}},
			rejected: `unknown actor type "robot"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, defaults)
			var out *updateOutcome
			at(env, when, func() { out = sendUpdate(env, tt.label, tt.update, tt.req) })
			runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})
			require.NotNil(t, out)
			require.True(t, out.done, "the update was answered")
			if tt.rejected != "" {
				assert.True(t, out.rejected, "refused by the validator")
				require.Error(t, out.err)
				assert.Contains(t, out.err.Error(), tt.rejected)
				assert.Equal(t, registry.Expired, w.version("v1").State, "nothing changed: v1 drained and expired as usual")
				assert.Equal(t, drained.Add(36*time.Minute), *w.version("v1").ExpiredAt)
				assert.Equal(t, registry.Active, w.version("v2").State)
				return
			}
			require.NoError(t, out.err)
			assert.True(t, out.accepted)
			tt.check(t, w)
		})
	}
}

func TestApproval(t *testing.T) {
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	policy := defaults
	policy.RequireApproval = true

	t.Run("the first version waits for approval", func(t *testing.T) {
		env, w := newEnv(t, policy)
		var staged StateView
		at(env, 30*time.Minute, func() { staged = queryState(t, env, "v1") })
		var out *updateOutcome
		at(env, time.Hour, func() { out = sendUpdate(env, "v1", UpdateApprove, ActionRequest{Actor: alice}) })
		runFleet(t, env, 2*time.Hour, deploy{"v1", 0})

		assert.Equal(t, registry.Staged, staged.State)
		assert.Equal(t, activeAt(0), staged.Since, "staged once ready")
		assert.Contains(t, staged.WaitingFor, "approve")
		require.NoError(t, out.err)
		assert.Equal(t, ActionResult{State: registry.Active, Message: "version v1 is now active"}, out.result)
		v1 := w.version("v1")
		assert.Equal(t, t0.Add(time.Hour), *v1.ActiveAt)
		assert.Equal(t, routeSync{At: activeAt(0), Generation: 1, Pinned: []string{"v1"}, Cause: "v1"}, w.syncs[0],
			"a staged version is reachable by pin only")
		assert.Equal(t, routeSync{At: t0.Add(time.Hour), Generation: 2, Active: "v1", Cause: "v1"}, w.lastSync())
	})

	tests := []struct {
		update string
		check  func(t *testing.T, w *world)
	}{
		{UpdateApprove, func(t *testing.T, w *world) {
			assert.Equal(t, t0.Add(3*time.Hour), *w.version("v2").ActiveAt)
			assert.Equal(t, t0.Add(3*time.Hour), *w.version("v1").DrainingAt, "approving v2 drains v1")
			assert.Equal(t, t0.Add(3*time.Hour+36*time.Minute), *w.version("v1").ExpiredAt)
		}},
		{UpdateReject, func(t *testing.T, w *world) {
			assert.Equal(t, t0.Add(3*time.Hour), *w.version("v2").ExpiredAt)
			assert.Equal(t, []retirement{{At: t0.Add(3 * time.Hour), Label: "v2"}}, w.retiredOf("v2"))
			assert.Equal(t, registry.Active, w.version("v1").State, "v1 stays Active")
			assert.Equal(t, routeSync{At: t0.Add(3 * time.Hour), Generation: 4, Active: "v1", Cause: "v2"}, w.lastSync())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.update+" the second version", func(t *testing.T) {
			env, w := newEnv(t, policy)
			at(env, 10*time.Minute, func() { sendUpdate(env, "v1", UpdateApprove, nil) })
			var out, promote *updateOutcome
			at(env, 2*time.Hour+time.Minute, func() { promote = sendUpdate(env, "v2", UpdatePromote, nil) })
			at(env, 3*time.Hour, func() { out = sendUpdate(env, "v2", tt.update, ActionRequest{Actor: alice}) })
			runFleet(t, env, 5*time.Hour, deploy{"v1", 0}, deploy{"v2", 2 * time.Hour})

			assert.Equal(t, activeAt(2*time.Hour), *w.version("v2").StagedAt)
			require.True(t, promote.rejected, "%+v", promote)
			assert.ErrorContains(t, promote.err, "version v2 is staged: approve it instead")
			require.NoError(t, out.err)
			tt.check(t, w)
		})
	}
}

func TestRedeployExpiredLabel(t *testing.T) {
	env, w := newEnv(t, defaults)
	runFleet(t, env, 5*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour}, deploy{"v1", 3 * time.Hour})

	first := w.lifeOf("v1", 1)
	assert.Equal(t, registry.Expired, first.State)
	assert.Equal(t, drained.Add(36*time.Minute), *first.ExpiredAt)

	second := w.lifeOf("v1", 2)
	assert.Equal(t, registry.Active, second.State, "the expired label was deployed again")
	assert.Equal(t, t0.Add(3*time.Hour), second.PendingAt)
	assert.Equal(t, activeAt(3*time.Hour), *second.ActiveAt)
	v2 := w.version("v2")
	assert.Equal(t, activeAt(3*time.Hour), *v2.DrainingAt)
	assert.Equal(t, activeAt(3*time.Hour).Add(36*time.Minute), *v2.ExpiredAt)
	assert.Equal(t, []string{"observed", "pending→active", "draining→expired", "observed", "pending→active"}, w.events("v1"))
}

func TestTwoVersionsAtOnce(t *testing.T) {
	env, w := newEnv(t, defaults)
	runFleet(t, env, 4*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour}, deploy{"v3", time.Hour})

	v2, v3 := w.version("v2"), w.version("v3")
	winner, loser := v3, v2
	if v2.State == registry.Active {
		winner, loser = v2, v3
	}
	assert.Equal(t, registry.Active, winner.State, "exactly one of the two is Active")
	assert.Equal(t, activeAt(time.Hour), *winner.ActiveAt)
	assert.Equal(t, registry.Expired, loser.State, "the other was Active for an instant, then drained")
	assert.Equal(t, activeAt(time.Hour), *loser.DrainingAt)
	assert.Equal(t, activeAt(time.Hour).Add(36*time.Minute), *loser.ExpiredAt)
	v1 := w.version("v1")
	assert.Equal(t, activeAt(time.Hour), *v1.DrainingAt)
	assert.Equal(t, activeAt(time.Hour).Add(36*time.Minute), *v1.ExpiredAt)
	assert.Equal(t, routeSync{At: activeAt(time.Hour).Add(36 * time.Minute), Generation: w.lastSync().Generation,
		Active: winner.Label, Cause: w.lastSync().Cause}, w.lastSync())
}

func TestActivityFailsThenSucceeds(t *testing.T) {
	env, w := newEnv(t, defaults)
	// The route write is part of Activate: a failed attempt (registry or routes) changes nothing.
	w.failures = map[string]int{"Activate": 2}
	runFleet(t, env, time.Hour, deploy{"v1", 0})

	v1 := w.version("v1")
	assert.Equal(t, activeAt(0).Add(3*time.Second), *v1.ActiveAt, "Activate retried after 1s, then 2s")
	assert.Equal(t, activeAt(0).Add(3*time.Second), w.syncs[0].At, "routes written with the activation")
	assert.Equal(t, 3, w.attempts["Activate"])
	assert.Len(t, w.syncs, 1)

	t.Run("while expiring", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		runFleetWith := func() {
			at(env, drained.Sub(t0)+36*time.Minute-time.Second, func() {
				w.mu.Lock()
				w.failures["Retire"] = 3
				w.mu.Unlock()
			})
			runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})
		}
		runFleetWith()
		assert.Equal(t, drained.Add(36*time.Minute), *w.version("v1").ExpiredAt)
		assert.Equal(t, []retirement{{At: drained.Add(36*time.Minute + 7*time.Second), Label: "v1"}}, w.retiredOf("v1"),
			"scaled down after three failed attempts (1s, 2s, 4s)")
	})
}

func TestAutoCleanup(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off: scale to 0", true: "on: delete"}[on], func(t *testing.T) {
			policy := defaults
			policy.AutoCleanup = on
			env, w := newEnv(t, policy)
			runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})
			assert.Equal(t, []retirement{{At: drained.Add(36 * time.Minute), Label: "v1", Delete: on}}, w.retiredOf("v1"))
		})
	}
}

// A version that never became ready is marked Failed and left alone: never routed, its
// workloads untouched (the user owns its Deployment), even when it is the app's first version.
func TestNotReadyInTime(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.readyWait, w.notReady = 10*time.Minute, true
	runFleet(t, env, 30*time.Hour, deploy{"v1", 0})

	v1 := w.version("v1")
	assert.Equal(t, registry.Failed, v1.State)
	assert.Nil(t, v1.ActiveAt, "never routed")
	assert.Nil(t, v1.ExpiredAt, "not expired")
	assert.Equal(t, t0.Add(10*time.Minute), *v1.FailedAt, "failed at the readiness timeout")
	assert.Contains(t, w.lastAudit("v1", "pending→failed").Reason, "not ready within the readiness timeout (10m0s)")
	assert.Empty(t, w.retiredOf("v1"), "its workloads are not touched")
	assert.Contains(t, w.kubeEvents, "v1 VersionFailed", "a Kubernetes Event tells the Deployment's owner")
	assert.Empty(t, w.syncs, "nothing routed")

	t.Run("ready late: activated then", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		w.readyWait, w.notReadyUntil = 10*time.Minute, t0.Add(2*time.Hour)
		runFleet(t, env, 30*time.Hour, deploy{"v1", 0})
		v1 := w.version("v1")
		assert.Equal(t, registry.Active, v1.State)
		assert.False(t, v1.ActiveAt.Before(t0.Add(2*time.Hour)), "activated once its endpoints were ready, at %s", v1.ActiveAt)
		assert.Empty(t, w.retiredOf("v1"))
	})

	t.Run("explicit expire retires it", func(t *testing.T) {
		env, w := newEnv(t, defaults)
		w.readyWait, w.notReady = 10*time.Minute, true
		var out *updateOutcome
		at(env, time.Hour, func() { out = sendUpdate(env, "v1", UpdateExpire, ActionRequest{Reason: "broken image"}) })
		runFleet(t, env, 3*time.Hour, deploy{"v1", 0})
		require.NotNil(t, out)
		require.NoError(t, out.err)
		assert.Equal(t, registry.Expired, w.version("v1").State)
		assert.Len(t, w.retiredOf("v1"), 1, "the user asked: its workloads go")
	})
}

// A version whose routes cannot be rendered never becomes Active: it is Failed with the reason,
// the predecessor is never told it is superseded, and the app keeps serving from the current
// Active version past its max alive.
func TestUnroutableVersionNeverActive(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.unroutable["v2"] = `hostname "Web_App.example.com": a lowercase RFC 1123 subdomain must consist of ...`
	runFleet(t, env, 30*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1, v2 := w.version("v1"), w.version("v2")
	assert.Equal(t, registry.Active, v1.State, "v1 keeps serving after max alive (24 h) passed")
	assert.Nil(t, v1.DrainingAt, "never superseded")
	assert.Equal(t, registry.Failed, v2.State)
	assert.Nil(t, v2.ActiveAt)
	assert.Contains(t, v2.Failure, "Web_App.example.com")
	assert.Contains(t, w.lastAudit("v2", "pending→failed").Reason, "cannot activate: routes cannot be rendered")
	assert.Empty(t, w.retiredOf("v1"))
	assert.Empty(t, w.retiredOf("v2"))
	assert.Equal(t, "v1", w.lastSync().Active, "the routes still send new visitors to v1")
	assert.Contains(t, w.kubeEvents, "v2 VersionFailed")
}

func TestExpirePending(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.readyWait = time.Hour
	var out *updateOutcome
	at(env, 5*time.Minute, func() { out = sendUpdate(env, "v1", UpdateExpire, ActionRequest{Reason: "wrong image"}) })
	runFleet(t, env, 2*time.Hour, deploy{"v1", 0})
	require.NoError(t, out.err)
	assert.Equal(t, t0.Add(5*time.Minute), *w.version("v1").ExpiredAt, "the readiness wait is abandoned")
	assert.Nil(t, w.version("v1").ActiveAt)
}

func TestInvalidInput(t *testing.T) {
	env, _ := newEnv(t, defaults)
	in := input("v1")
	in.ServiceName = ""
	env.ExecuteWorkflow(VersionLifecycle, in)
	require.True(t, env.IsWorkflowCompleted())
	err := env.GetWorkflowError()
	require.Error(t, err)
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, "InvalidInput", app.Type())
	assert.Contains(t, app.Message(), "missing serviceName")
}

func TestContinueAsNewKeepsZeroStreak(t *testing.T) {
	env, w := newEnv(t, defaults)
	env.SetStartWorkflowOptions(StartOptions("test", input("v1")))
	drainedAt := t0.Add(time.Hour)
	at(env, time.Hour, func() {
		w.supersede("v1")
		require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalSuperseded,
			Superseded{VersionID: w.version("v1").ID, DrainingAt: drainedAt, By: "v2"}))
	})
	// Suggested while waiting for the first reading: the run ends right after it.
	at(env, time.Hour+34*time.Minute, func() { env.SetContinueAsNewSuggested(true) })
	env.ExecuteWorkflow(VersionLifecycle, input("v1"))

	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	assert.Equal(t, WorkflowType, can.WorkflowType.Name)
	var next LifecycleInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Resume)
	assert.Equal(t, 1, next.Resume.ZeroStreak, "the first zero reading is carried")
	assert.Equal(t, drainedAt, next.Resume.DrainingAt.UTC())
	assert.Equal(t, registry.Draining, next.Resume.State)
	assert.Equal(t, defaults, next.Resume.Policy)
	assert.Equal(t, 1, next.Resume.Runs)
	require.Len(t, next.Resume.Readings, 1)
	assert.Equal(t, drainedAt.Add(35*time.Minute), next.Resume.Readings[0].At.UTC())
	assert.Equal(t, []time.Time{drainedAt.Add(35 * time.Minute)}, w.readingsOf("v1"), "it continued right after the reading")

	// The next run, started when the previous one ended, needs one more zero reading.
	env2 := quietSuite().NewTestWorkflowEnvironment()
	env2.SetStartTime(drainedAt.Add(35 * time.Minute))
	env2.RegisterWorkflow(VersionLifecycle)
	w.mock(env2)
	env2.ExecuteWorkflow(VersionLifecycle, next)
	require.True(t, env2.IsWorkflowCompleted())
	require.NoError(t, env2.GetWorkflowError())
	var res LifecycleResult
	require.NoError(t, env2.GetWorkflowResult(&res))
	assert.Equal(t, registry.Expired, res.State)
	assert.Equal(t, drainedAt.Add(36*time.Minute), *w.version("v1").ExpiredAt,
		"expired at the second zero reading, as if nothing had happened")
	assert.Equal(t, []time.Time{drainedAt.Add(35 * time.Minute), drainedAt.Add(36 * time.Minute)}, w.readingsOf("v1"))
	assert.Equal(t, []registry.State{registry.Pending, registry.Active, registry.Draining, registry.Expired}, states(res.Transitions),
		"the timeline survives continue-as-new")
}

func TestContinueAsNewWaitsForPendingUpdates(t *testing.T) {
	env, w := newEnv(t, defaults)
	env.SetStartWorkflowOptions(StartOptions("test", input("v1")))
	at(env, time.Hour, func() {
		w.supersede("v1")
		require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalSuperseded,
			Superseded{VersionID: w.version("v1").ID, DrainingAt: t0.Add(time.Hour), By: "v2"}))
	})
	// The update arrives while the first reading is being taken, after continue-as-new was
	// suggested: it must be answered by this run, not lost with it.
	w.trafficWait = 10 * time.Second
	at(env, time.Hour+34*time.Minute, func() { env.SetContinueAsNewSuggested(true) })
	var out *updateOutcome
	at(env, time.Hour+35*time.Minute+5*time.Second, func() {
		out = sendUpdate(env, "v1", UpdateExpire, ActionRequest{Reason: "enough"})
	})
	env.ExecuteWorkflow(VersionLifecycle, input("v1"))
	require.NoError(t, env.GetWorkflowError(), "the update is handled instead of continuing as new")
	require.NotNil(t, out)
	require.NoError(t, out.err)
	assert.Equal(t, ActionResult{State: registry.Expired, Message: "version v1 is now expired"}, out.result)
	assert.Equal(t, t0.Add(time.Hour+35*time.Minute+10*time.Second), *w.version("v1").ExpiredAt,
		"expired when the reading returned, by the queued update")
}

func states(changes []StateChange) []registry.State {
	out := make([]registry.State, len(changes))
	for i, c := range changes {
		out[i] = c.State
	}
	return out
}

func TestStartOptions(t *testing.T) {
	opts := StartOptions("skewguard", input("1.2.3"))
	assert.Equal(t, "skew/shop/myapp/1.2.3", opts.ID)
	assert.Equal(t, "skewguard", opts.TaskQueue)
	assert.Equal(t, enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING, opts.WorkflowIDConflictPolicy)
	assert.Equal(t, enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE, opts.WorkflowIDReusePolicy)
	for key, want := range map[temporal.SearchAttributeKeyKeyword]string{
		NamespaceKey: "shop", AppKey: "myapp", VersionKey: "1.2.3", StateKey: "pending",
	} {
		got, ok := opts.TypedSearchAttributes.GetKeyword(key)
		assert.True(t, ok, key.GetName())
		assert.Equal(t, want, got, key.GetName())
	}
	assert.Equal(t, "myapp version 1.2.3 (namespace shop)", opts.StaticSummary)
	assert.Contains(t, opts.StaticDetails, "Service: `myapp-1.2.3` port 80")
	assert.Contains(t, opts.StaticDetails, "Detected by: pod myapp-1.2.3-pod")

	_, err := Start(t.Context(), nil, "skewguard", LifecycleInput{Ref: ref("v1")})
	assert.ErrorContains(t, err, "missing serviceName", "bad input is refused before any call")
}

func TestSupersededWithoutTimeStartsTheClockOnArrival(t *testing.T) {
	env, w := newEnv(t, defaults)
	env.SetStartWorkflowOptions(StartOptions("test", input("v1")))
	at(env, time.Hour, func() {
		w.supersede("v1")
		require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalSuperseded, Superseded{By: "v2"}))
	})
	env.ExecuteWorkflow(VersionLifecycle, input("v1"))
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, t0.Add(time.Hour+36*time.Minute), *w.version("v1").ExpiredAt, "not expired at once as if drained in year 1")
}

// A start of a new life of the label, made while the expired life's run is still retiring its
// workloads, attaches to that run (USE_EXISTING); its redeploy signal makes the run carry on as
// the new life instead of completing and losing it. A redeploy that follows another life is
// stale and ignored.
func TestRedeployWhileRetiring(t *testing.T) {
	for _, tt := range []struct {
		name      string
		after     func(w *world) int64
		continue_ bool
		// failing: the activity that fails once right after the expiry, so that the run is
		// still in it when the redeploy arrives.
		failing string
	}{
		{"follows this life", func(w *world) int64 { return w.version("v1").ID }, true, "Retire"},
		{"follows this life, while looking for a redeploy", func(w *world) int64 { return w.version("v1").ID }, true, "CurrentVersion"},
		{"follows an older life", func(w *world) int64 { return w.version("v1").ID + 1000 }, false, "Retire"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, defaults)
			env.SetStartWorkflowOptions(StartOptions("test", input("v1")))
			drainedAt := t0.Add(time.Hour)
			expiresAt := drainedAt.Add(36 * time.Minute)
			at(env, time.Hour, func() {
				w.supersede("v1")
				require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalSuperseded,
					Superseded{VersionID: w.version("v1").ID, DrainingAt: drainedAt, By: "v2"}))
			})
			// One step fails once: the run is still finishing a second after the expiry.
			at(env, expiresAt.Sub(t0)-time.Second, func() {
				w.mu.Lock()
				w.failures[tt.failing] = 1
				w.mu.Unlock()
			})
			next := input("v1")
			next.ServiceName = "v1-again"
			at(env, expiresAt.Sub(t0)+500*time.Millisecond, func() {
				require.Equal(t, registry.Expired, w.version("v1").State)
				require.NoError(t, env.SignalWorkflowByID(WorkflowID(ref("v1")), SignalRedeploy,
					Redeploy{After: tt.after(w), Input: next}))
			})
			env.ExecuteWorkflow(VersionLifecycle, input("v1"))

			require.True(t, env.IsWorkflowCompleted())
			var can *workflow.ContinueAsNewError
			if !tt.continue_ {
				require.NoError(t, env.GetWorkflowError(), "a stale redeploy is ignored: the run completes")
				return
			}
			require.ErrorAs(t, env.GetWorkflowError(), &can)
			var got LifecycleInput
			require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &got))
			assert.Equal(t, "v1-again", got.ServiceName, "the new life starts from the redeploy's input")
			assert.Nil(t, got.Resume, "a new life carries nothing of the expired one")
		})
	}
}

// A retirement the API server refuses (RBAC, an admission webhook) is not retried as is: it is
// audited once, reported as an Event, and tried again after a pause that doubles; the run ends
// when it succeeds.
func TestRetireRefusedIsRetriedLater(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.retireRefusals = 2
	runFleet(t, env, 6*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1 := w.version("v1")
	require.Equal(t, registry.Expired, v1.State)
	expiredAt := *v1.ExpiredAt
	assert.Equal(t, 3, w.attempts["Retire"], "two refusals, then the retirement")
	require.Len(t, w.retired, 1)
	assert.Equal(t, expiredAt.Add(retireRetryFirst+2*retireRetryFirst), w.retired[0].At,
		"tried again after 1 min, then after 2 min: not in a loop")
	refused := w.lastAudit("v1", "retire-refused")
	assert.Equal(t, expiredAt, refused.At)
	assert.Contains(t, refused.Reason, "forbidden")
	n := 0
	for _, e := range w.events("v1") {
		if e == "retire-refused" {
			n++
		}
	}
	assert.Equal(t, 1, n, "audited once, not at every attempt")
	assert.Contains(t, w.kubeEvents, "v1 RetireRefused")
}

// Every activity of a lifecycle runs with a heartbeat timeout, so an attempt on a worker that
// died is retried within seconds rather than after its start-to-close timeout (the worker
// heartbeats every activity while it runs: worker.keepAlive).
func TestEveryActivityHasAHeartbeatTimeout(t *testing.T) {
	env, _ := newEnv(t, defaults)
	rec := &optionsRecorder{seen: map[string]time.Duration{}}
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{rec}})
	runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})
	require.Greater(t, len(rec.seen), 5, "the lifecycle ran its activities")
	for name, d := range rec.seen {
		assert.Greater(t, d, time.Duration(0), "%s has no heartbeat timeout", name)
		assert.LessOrEqual(t, d, 2*lostWorkerWithin, "%s: a lost worker noticed late", name)
	}
}

// optionsRecorder records the longest heartbeat timeout each activity type was scheduled with
// (zero wins: it is none).
type optionsRecorder struct {
	interceptor.WorkerInterceptorBase
	seen map[string]time.Duration
}

func (r *optionsRecorder) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recorderInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, r: r}
}

type recorderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	r *optionsRecorder
}

func (i *recorderInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&recorderOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, r: i.r})
}

type recorderOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	r *optionsRecorder
}

func (o *recorderOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	d := workflow.GetActivityOptions(ctx).HeartbeatTimeout
	if prev, ok := o.r.seen[activityType]; !ok || (prev != 0 && (d == 0 || d > prev)) {
		o.r.seen[activityType] = d
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// An expiry the registry acknowledged and then lost (PostgreSQL failed over to a replica the
// commit had not reached) is noticed when the lifecycle looks at the registry one last time: the
// version is expired again rather than left Draining with no workflow to ever expire it.
func TestRegistryLosingTheExpiryIsNoticed(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.loseExpiries = 1
	runFleet(t, env, 3*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1 := w.version("v1")
	require.Equal(t, registry.Expired, v1.State, "expired again once the lost expiry was noticed")
	assert.Equal(t, 0, w.loseExpiries)
	assert.Len(t, w.retiredOf("v1"), 2, "retired after each expiry (idempotent)")
}

// TestReadyAtAdmissionIsActivatedWithoutWaiting: a version whose Service the readiness cache
// already knows ready when Admit records it is activated by the next step, at the instant it was
// recorded, with no WaitReady; v1's draining clock starts at that same instant.
func TestReadyAtAdmissionIsActivatedWithoutWaiting(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.readyAtAdmission = true
	waits := 0
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "WaitReady" {
			waits++
		}
	})
	runFleet(t, env, 2*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1, v2 := w.version("v1"), w.version("v2")
	require.NotNil(t, v1.ActiveAt)
	require.NotNil(t, v2.ActiveAt)
	assert.Equal(t, t0, *v1.ActiveAt, "v1 Active when recorded, not after a readiness wait")
	assert.Equal(t, t0.Add(time.Hour), *v2.ActiveAt)
	assert.Equal(t, t0.Add(time.Hour), *v1.DrainingAt)
	assert.Zero(t, waits, "no WaitReady when the cache knew the version ready")
	assert.Equal(t, 2, w.attempts["Admit"], "one admission per version")
}
