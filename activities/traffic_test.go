package activities

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
)

// clock is a settable clock for the traffic cache.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// drainingApp returns an Activities over one app "shop/myapp" whose versions 1..n are Draining,
// with a fake Prometheus answering 0 rps for each and a settable clock.
func drainingApp(t *testing.T, n int) (*Activities, *clock, func() int32) {
	t.Helper()
	snap := registry.Snapshot{Active: &registry.Version{Label: "live", State: registry.Active, Placement: registry.Placement{ServiceName: "myapp-live"}}}
	rates := map[string]string{"live": "3"}
	for i := 1; i <= n; i++ {
		label := strconv.Itoa(i)
		snap.Pinned = append(snap.Pinned, registry.Version{Namespace: "shop", App: "myapp", Label: label,
			State: registry.Draining, Placement: registry.Placement{ServiceName: "myapp-" + label}})
		rates[label] = "0"
	}
	q, queries := prometheus(t, rates, 0)
	c := &clock{now: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	a := &Activities{Registry: &fakeRegistry{snap: snap}, Traffic: q, trafficClock: c.Now}
	return a, c, func() int32 { return queries.Load() }
}

var checkPolicy = Policy{CheckInterval: time.Minute, TrafficWindow: 5 * time.Minute}

func versionRef(label string) registry.VersionRef {
	return registry.VersionRef{Namespace: "shop", App: "myapp", Label: label}
}

func read(t *testing.T, a *Activities, label string, firstRead, previous time.Time) TrafficReading {
	t.Helper()
	r, err := a.ReadTraffic(t.Context(), NewTrafficInput(versionRef(label), "myapp-"+label, checkPolicy, firstRead, previous))
	require.NoError(t, err)
	require.True(t, r.Found)
	return r
}

// A reading is never taken from a query evaluated before the version's first reading instant: that
// query's window would cover part of its grace period.
func TestReadTrafficNotFromBeforeTheFirstReadingInstant(t *testing.T) {
	a, c, queries := drainingApp(t, 2)
	t0 := c.now
	r1 := read(t, a, "1", t0.Add(-time.Hour), time.Time{})
	assert.Equal(t, t0, r1.At)
	require.EqualValues(t, 1, queries())

	c.now = t0.Add(10 * time.Second) // the cached answer is 10 s old, well within the interval
	r2 := read(t, a, "2", t0.Add(time.Second), time.Time{})
	assert.EqualValues(t, 2, queries(), "the app's answer from before version 2's first reading instant is not used")
	assert.Equal(t, c.now, r2.At)

	c.now = t0.Add(20 * time.Second)
	r2b := read(t, a, "2", t0.Add(time.Second), time.Time{})
	assert.EqualValues(t, 2, queries(), "an answer taken at or after the first reading instant is shared")
	assert.Equal(t, r2.At, r2b.At)
}

// Two consecutive readings of one version never come from one query, however fresh it is.
func TestReadTrafficTwoReadingsNeverShareAQuery(t *testing.T) {
	a, c, queries := drainingApp(t, 2)
	t0 := c.now
	first := read(t, a, "1", t0, time.Time{})
	require.EqualValues(t, 1, queries())

	c.now = t0.Add(30 * time.Second)
	other := read(t, a, "2", t0, time.Time{})
	assert.Equal(t, first.At, other.At, "another version shares the query")
	assert.EqualValues(t, 1, queries())

	next := read(t, a, "1", t0, first.At)
	assert.EqualValues(t, 2, queries(), "version 1's next reading needs a query of its own")
	assert.True(t, next.At.After(first.At))

	c.now = t0.Add(45 * time.Second)
	again := read(t, a, "2", t0, other.At)
	assert.Equal(t, next.At, again.At, "version 2's next reading shares version 1's new query")
	assert.EqualValues(t, 2, queries())
}

// The ten draining versions of one app, each checking on its own grid at a random phase, cost at
// most one query per check interval between them, and every version still gets one reading per
// interval from a query it has not used before, never older than the interval.
func TestReadTrafficOneQueryPerAppPerInterval(t *testing.T) {
	const versions, rounds = 10, 30
	interval := checkPolicy.CheckInterval
	a, c, queries := drainingApp(t, versions)
	t0 := c.now
	rng := rand.New(rand.NewPCG(14, 4))

	type check struct {
		at    time.Time
		label string
	}
	var checks []check
	for i := 1; i <= versions; i++ {
		phase := time.Duration(rng.Int64N(int64(interval)))
		for k := range rounds {
			checks = append(checks, check{at: t0.Add(phase + time.Duration(k)*interval), label: strconv.Itoa(i)})
		}
	}
	slices.SortFunc(checks, func(x, y check) int { return x.at.Compare(y.at) })

	firstRead := t0.Add(-time.Hour) // long past: every version is already being checked
	previous := map[string]time.Time{}
	var fetches []time.Time // instants of the queries, in order
	for _, ch := range checks {
		c.now = ch.at
		before := queries()
		r := read(t, a, ch.label, firstRead, previous[ch.label])
		if queries() > before {
			fetches = append(fetches, r.At)
		}
		assert.Truef(t, r.At.After(previous[ch.label]), "version %s at %s: a new query for each reading", ch.label, ch.at)
		assert.LessOrEqualf(t, ch.at.Sub(r.At), interval, "version %s at %s: reading at most one interval old", ch.label, ch.at)
		previous[ch.label] = r.At
	}
	assert.LessOrEqual(t, len(fetches), rounds+1, "about one query per interval for the whole app")
	for i := 1; i < len(fetches); i++ {
		assert.GreaterOrEqualf(t, fetches[i].Sub(fetches[i-1]), interval,
			"queries %d and %d are less than one interval apart", i-1, i)
	}
	t.Logf("%d versions × %d rounds: %d queries", versions, rounds, len(fetches))
}
