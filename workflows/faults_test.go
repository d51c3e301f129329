package workflows

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/registry"
)

// Faults the chaos run cannot reach in minutes (issue 13): outages of hours, in simulated time.

// TestPrometheusDownForTheWholeDrainingPeriod: every traffic reading of a Draining version fails,
// from the first to the last. A failed reading counts as nothing, so the version is kept for its
// pinned sessions until max alive, and expires exactly then, even between two checks and even
// when a reading hangs across that instant; the failures are visible in the state query meanwhile.
func TestPrometheusDownForTheWholeDrainingPeriod(t *testing.T) {
	refused := errors.New(`Post "http://prometheus:9090/api/v1/query": dial tcp 10.96.0.9:9090: connect: connection refused`)
	// With a 7-minute interval the checks fall on drained + 30m + k·7m: 24 h is not one of them.
	policy := defaults
	policy.CheckInterval = 7 * time.Minute
	lastCheck := func(p activities.Policy) time.Duration { // the last check before max alive
		k := (p.MaxAlive - p.GracePeriod - 1) / p.CheckInterval
		return p.GracePeriod + k*p.CheckInterval
	}
	tests := []struct {
		name    string
		policy  activities.Policy
		err     error
		wait    time.Duration // how long one attempt of a reading takes
		message string        // what the failed readings say
	}{
		{"connection refused", policy, refused, 0, "connection refused"},
		{"no Prometheus configured", policy,
			temporal.NewNonRetryableApplicationError("no Prometheus configured (PROMETHEUS_URL): traffic is unknown", activities.ErrTypeNoTrafficSource, nil),
			0, "no Prometheus configured"},
		// Every attempt hangs 25 s before it fails, and max alive falls 30 s after the last
		// check: that reading is still being retried when it arrives.
		{"every attempt hangs, across max alive", func() activities.Policy {
			p := policy
			p.MaxAlive = lastCheck(policy) + 30*time.Second
			return p
		}(), refused, 25 * time.Second, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, tt.policy)
			w.traffic = func(label string, _ time.Duration) (float64, bool, error) {
				if label == "v1" {
					return 0, false, tt.err
				}
				return 0, true, nil
			}
			w.trafficWait = tt.wait
			maxAt := drained.Add(tt.policy.MaxAlive)
			var before StateView
			at(env, maxAt.Sub(t0)-time.Second, func() { before = queryState(t, env, "v1") })
			runFleet(t, env, drained.Sub(t0)+tt.policy.MaxAlive+time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

			v1 := w.version("v1")
			require.Equal(t, registry.Expired, v1.State)
			assert.Equal(t, maxAt, *v1.ExpiredAt, "expired exactly at max alive, not before, not at the next check")
			assert.Equal(t, []retirement{{At: maxAt, Label: "v1"}}, w.retiredOf("v1"), "retired then, not before")
			row := w.lastAudit("v1", "draining→expired")
			assert.Equal(t, maxAt, row.At)
			assert.Contains(t, row.Reason, fmt.Sprintf("max alive %s reached", tt.policy.MaxAlive))

			reads := w.readingsOf("v1")
			require.NotEmpty(t, reads)
			last := reads[len(reads)-1] // the world records every attempt of a reading
			assert.False(t, last.Before(drained.Add(lastCheck(tt.policy))), "checked until the end: last attempt at %s", last)
			if tt.wait == 0 {
				assert.True(t, last.Before(maxAt))
			}

			// A second before max alive: still Draining, every reading failed, and it says so.
			require.Equal(t, registry.Draining, before.State)
			assert.Equal(t, 0, before.ZeroStreak, "a failed reading is never a zero")
			require.Len(t, before.Readings, keptReadings)
			for _, r := range before.Readings {
				assert.Equal(t, VerdictFailed, r.Verdict)
				assert.Contains(t, r.Error, tt.message)
			}
			assert.Equal(t, maxAt, *before.MaxAliveAt)
			assert.Contains(t, before.WaitingFor, "last reading failed", "the details say the readings fail")
			assert.Contains(t, before.WaitingFor, tt.message)
			assert.Contains(t, before.LastError, "traffic reading failed")
			assert.Contains(t, before.LastError, tt.message)
		})
	}
}

// TestPrometheusBackMidDraining: Prometheus is unreachable from the first reading for five
// hours, then answers again: the readings count from then on, as if nothing had happened.
func TestPrometheusBackMidDraining(t *testing.T) {
	back := 5 * time.Hour // after drained
	tests := []struct {
		name      string
		after     []float64 // the readings once back, the last one repeated
		expiredAt time.Duration
	}{
		{"zero twice", []float64{0}, back + time.Minute},
		{"traffic, then zero twice", []float64{3, 3, 0}, back + 3*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, defaults)
			w.traffic = func(label string, since time.Duration) (float64, bool, error) {
				if label != "v1" {
					return 0, true, nil
				}
				if since < back {
					return 0, false, errors.New("dial tcp 10.96.0.9:9090: connect: connection refused")
				}
				i := min(int((since-back)/time.Minute), len(tt.after)-1)
				return tt.after[i], true, nil
			}
			var down StateView
			at(env, drained.Sub(t0)+back-time.Second, func() { down = queryState(t, env, "v1") })
			runFleet(t, env, drained.Sub(t0)+25*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

			assert.Equal(t, 0, down.ZeroStreak)
			assert.Contains(t, down.LastError, "connection refused")
			assert.Equal(t, VerdictFailed, down.Readings[len(down.Readings)-1].Verdict)
			v1 := w.version("v1")
			require.Equal(t, registry.Expired, v1.State)
			assert.Equal(t, drained.Add(tt.expiredAt), *v1.ExpiredAt, "two zero readings once Prometheus answers")
			assert.Contains(t, w.lastAudit("v1", "draining→expired").Reason, "no traffic: 2 consecutive zero readings")
			reads := w.readingsOf("v1")
			assert.Equal(t, drained.Add(35*time.Minute), reads[0])
			assert.Equal(t, drained.Add(tt.expiredAt), reads[len(reads)-1], "the deciding reading, on the check grid")
		})
	}
}

// registryActivities are the world's activities that go to PostgreSQL.
var registryActivities = map[string]bool{
	"Observe": true, "LoadPolicy": true, "Activate": true, "Promote": true, "Stage": true, "Expire": true,
	"Fail": true, "CurrentVersion": true, "SyncRoutes": true, "ApplySwitch": true, "Audit": true,
}

// TestPostgresDownTenMinutesMidFlip: PostgreSQL fails every call for ten minutes, starting at
// the flip of v2 (its activation), or right after the flip committed (v1's workflow is then
// told it is superseded and cannot load its policy), or at v2's first registry call. The flip
// completes once PostgreSQL is back, with nothing half-written: exactly one Active version at
// every change, one audit row per transition, the routes written once for the flip's
// generation, and v1's draining clock starting at the flip, not at the end of the outage.
func TestPostgresDownTenMinutesMidFlip(t *testing.T) {
	const outage = 10 * time.Minute
	tests := []struct {
		name string
		// starts reports whether the outage starts with this call (name, label of the version
		// whose change it is, if any).
		starts func(w *world, name string) bool
	}{
		{"from the flip", func(w *world, name string) bool {
			return name == "Activate" && w.newest("v2") != nil && w.now().Equal(activeAt(time.Hour))
		}},
		{"right after the flip committed", func(w *world, name string) bool {
			v2 := w.newest("v2")
			return v2 != nil && v2.State == registry.Active
		}},
		{"from v2's first registry call", func(w *world, name string) bool { return name == "Observe" && w.now().Equal(t0.Add(time.Hour)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, w := newEnv(t, defaults)
			withServerRetries(env)
			var downFrom time.Time
			failed := 0
			w.fault = func(name string) error {
				if !registryActivities[name] {
					return nil
				}
				if downFrom.IsZero() && tt.starts(w, name) {
					downFrom = w.now()
				}
				if !downFrom.IsZero() && w.now().Before(downFrom.Add(outage)) {
					failed++
					return fmt.Errorf("%s: failed to connect to `host=postgres user=skewguard database=skewguard`: dial tcp 10.96.0.5:5432: connect: connection refused", name)
				}
				return nil
			}
			runFleet(t, env, 4*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

			require.False(t, downFrom.IsZero(), "the outage happened")
			upAt := downFrom.Add(outage)
			assert.Greater(t, failed, 5, "calls failed all through the outage")
			v1, v2 := w.version("v1"), w.version("v2")
			require.Equal(t, registry.Active, v2.State)
			require.NotNil(t, v2.ActiveAt)
			if tt.name != "right after the flip committed" {
				assert.False(t, v2.ActiveAt.Before(upAt), "not Active before PostgreSQL is back: %s", v2.ActiveAt)
				assert.True(t, v2.ActiveAt.Before(upAt.Add(time.Minute+readyDelay)), "Active within a retry interval of its return: %s", v2.ActiveAt)
			}
			require.NotNil(t, v1.DrainingAt)
			assert.Equal(t, *v2.ActiveAt, *v1.DrainingAt, "v1 drains at the instant of the flip, in the same change")
			require.Equal(t, registry.Expired, v1.State)
			assert.Equal(t, v1.DrainingAt.Add(36*time.Minute), *v1.ExpiredAt, "its draining clock started at the flip")

			// One audit row per transition, whatever the retries.
			count := func(label string) map[string]int {
				n := map[string]int{}
				for _, e := range w.events(label) {
					n[e]++
				}
				return n
			}
			assert.Equal(t, map[string]int{"observed": 1, "pending→active": 1, "draining→expired": 1}, count("v1"))
			assert.Equal(t, map[string]int{"observed": 1, "pending→active": 1}, count("v2"))

			// The routes: written once for the flip's generation, always with one Active version.
			w.mu.Lock()
			defer w.mu.Unlock()
			flips := 0
			for i, s := range w.syncs {
				assert.NotEmpty(t, s.Active, "sync %d at %s has an Active version", i, s.At)
				if i > 0 {
					assert.Greater(t, s.Generation, w.syncs[i-1].Generation, "generations only grow")
				}
				if s.Active == "v2" && slices.Contains(s.Pinned, "v1") {
					flips++
					assert.Equal(t, *v2.ActiveAt, s.At)
				}
			}
			assert.Equal(t, 1, flips, "the flip's routes were written once")
		})
	}
}

// withServerRetries makes the test environment retry activities as the Temporal server does.
// The environment caps a retry policy without MaximumAttempts at 10 attempts (about four minutes
// with converge's backoff), where the server retries without limit: an outage longer than that
// would fail the workflow here and never on a real server.
func withServerRetries(env *testsuite.TestWorkflowEnvironment) {
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&serverRetries{}}})
}

type serverRetries struct {
	interceptor.WorkerInterceptorBase
}

func (*serverRetries) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &serverRetriesInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}}
}

type serverRetriesInbound struct {
	interceptor.WorkflowInboundInterceptorBase
}

func (i *serverRetriesInbound) Init(out interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(&serverRetriesOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}})
}

type serverRetriesOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
}

func (o *serverRetriesOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	opts := workflow.GetActivityOptions(ctx)
	if p := opts.RetryPolicy; p != nil && p.MaximumAttempts == 0 {
		unlimited := *p
		unlimited.MaximumAttempts = 1_000_000 // as good as the server's none, and the test still ends
		opts.RetryPolicy = &unlimited
		ctx = workflow.WithActivityOptions(ctx, opts)
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// routeWrites are the world's activities that write the app's HTTPRoutes.
var routeWrites = map[string]bool{"Activate": true, "Promote": true, "Stage": true, "Expire": true, "SyncRoutes": true, "ApplySwitch": true}

// refuseRoutes makes the API server refuse every route write in [from, until), as an admission
// webhook or policy does (a Forbidden the writer reports as RoutesRefused).
func refuseRoutes(w *world, from, until time.Time) {
	w.fault = func(name string) error {
		if !routeWrites[name] || w.now().Before(from) || !w.now().Before(until) {
			return nil
		}
		return temporal.NewNonRetryableApplicationError(
			`routes refused: write routes of shop/myapp: httproutes.gateway.networking.k8s.io "myapp" is forbidden: `+
				`ValidatingAdmissionPolicy 'freeze' with binding 'freeze' denied request: change freeze`,
			activities.ErrTypeRoutesRefused, nil)
	}
}

// TestRoutesRefusedForAnHourAtExpiry: the API server refuses route writes for an hour that
// covers a Draining version's expiry. Nothing is expired or retired while the routes are
// refused (its routes would still send its pinned sessions to it); the refusal is in the
// workflow's details, its last error and the audit; once the writes are allowed again, the
// next attempt expires it and the routes drop it.
func TestRoutesRefusedForAnHourAtExpiry(t *testing.T) {
	env, w := newEnv(t, defaults)
	from, until := drained.Add(30*time.Minute), drained.Add(90*time.Minute) // expiry due at +36 min
	refuseRoutes(w, from, until)
	var during StateView
	at(env, drained.Sub(t0)+time.Hour, func() { during = queryState(t, env, "v1") })
	var retrying, queryAfter StateView
	at(env, drained.Sub(t0)+time.Hour+time.Minute, func() { retrying = queryState(t, env, "v1") })
	at(env, until.Sub(t0)+time.Minute+30*time.Second, func() { queryAfter = queryState(t, env, "v1") })
	runFleet(t, env, 6*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	assert.Equal(t, registry.Draining, during.State, "not expired while its routes cannot be written")
	assert.Contains(t, during.LastError, "not expired: routes refused")
	assert.Contains(t, during.LastError, "change freeze")
	assert.Contains(t, during.WaitingFor, "routes refused", "the details say why it is still Draining")
	assert.Contains(t, during.WaitingFor, "change freeze")

	// A minute later it is in the other half of its retry: waiting for the next attempt.
	assert.Equal(t, registry.Draining, retrying.State)
	assert.Contains(t, retrying.WaitingFor, "change freeze")

	refused := w.lastAudit("v1", "expire-refused")
	assert.Contains(t, refused.Reason, "change freeze")
	n := 0
	for _, e := range w.events("v1") {
		if e == "expire-refused" {
			n++
		}
	}
	assert.Equal(t, 1, n, "audited once, not at every attempt (one every two minutes for the hour)")
	assert.Equal(t, drained.Add(36*time.Minute), refused.At, "when it was first due")

	v1 := w.version("v1")
	require.Equal(t, registry.Expired, v1.State)
	assert.False(t, v1.ExpiredAt.Before(until), "not expired during the refusal: %s", v1.ExpiredAt)
	assert.True(t, v1.ExpiredAt.Before(until.Add(2*time.Minute+time.Second)), "expired by the first attempts after it: %s", v1.ExpiredAt)
	assert.Empty(t, queryAfter.LastError, "the refusal is over")
	rs := w.retiredOf("v1")
	require.Len(t, rs, 1)
	assert.Equal(t, *v1.ExpiredAt, rs[0].At, "retired only once its routes dropped it")
	last := w.lastSync()
	assert.Equal(t, routeSync{At: *v1.ExpiredAt, Generation: last.Generation, Active: "v2", Cause: "v1"}, last,
		"the routes converge: v2 Active, v1 gone")
	assert.Equal(t, registry.Active, w.version("v2").State)
}

// TestRoutesRefusedForAnHourAtActivation: v2 becomes ready while the API server refuses route
// writes. It never becomes Active (its routes are not there): it is Failed with the refusal,
// v1 keeps serving and is neither drained nor retired. An approve during the hour is refused
// with the reason; after the hour, an approve activates v2 and the routes follow.
func TestRoutesRefusedForAnHourAtActivation(t *testing.T) {
	env, w := newEnv(t, defaults)
	from, until := t0.Add(time.Hour), t0.Add(2*time.Hour)
	refuseRoutes(w, from, until)
	var during StateView
	var early, late *updateOutcome
	at(env, 90*time.Minute, func() {
		during = queryState(t, env, "v2")
		early = sendUpdate(env, "v2", UpdateApprove, ActionRequest{Actor: registry.Actor{Type: registry.ActorUser, Name: "alice"}})
	})
	at(env, 2*time.Hour+time.Minute, func() {
		late = sendUpdate(env, "v2", UpdateApprove, ActionRequest{Actor: registry.Actor{Type: registry.ActorUser, Name: "alice"}})
	})
	runFleet(t, env, 30*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	assert.Equal(t, registry.Failed, during.State)
	assert.Contains(t, during.Failure, "routes refused")
	assert.Contains(t, during.WaitingFor, "change freeze")
	assert.Contains(t, w.lastAudit("v2", "pending→failed").Reason, "cannot activate: routes refused")
	require.NotNil(t, early)
	require.Error(t, early.err, "an approve while the writes are refused is refused")
	assert.Contains(t, early.err.Error(), "routes refused")
	assert.Contains(t, w.lastAudit("v2", "activate-refused").Reason, "change freeze")

	require.NotNil(t, late)
	require.NoError(t, late.err)
	v1, v2 := w.version("v1"), w.version("v2")
	assert.Equal(t, t0.Add(2*time.Hour+time.Minute), *v2.ActiveAt)
	require.NotNil(t, v1.DrainingAt)
	assert.Equal(t, *v2.ActiveAt, *v1.DrainingAt, "v1 drained only once v2's routes were written")
	for _, r := range w.retiredOf("v1") {
		assert.False(t, r.At.Before(*v1.DrainingAt), "v1 not retired while it was the Active version")
	}
	assert.Contains(t, w.syncs, routeSync{At: *v2.ActiveAt, Generation: w.syncs[len(w.syncs)-1].Generation - 1, Active: "v2", Pinned: []string{"v1"}, Cause: "v2"})
}
