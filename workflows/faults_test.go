package workflows

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

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
