//go:build integration

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
)

// fleetStats counts what the session fleet saw.
type fleetStats struct {
	requests, sessions atomic.Int64
	mu                 sync.Mutex
	wrongPin           []string // a pinned session served by another version
	staleNew           []string // a new session, started after the newest version was routed, landed elsewhere
	errors             []string
}

func (s *fleetStats) add(list *[]string, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*list) < 20 {
		*list = append(*list, msg)
	}
}

// TestSessionFleetStaysPinnedAcrossDeploys runs 50 browser-like sessions, each keeping its cookie, while v2
// and then v3 are deployed. No pinned session may be served by another version (all versions stay live:
// pinned traffic keeps them draining), and every session started after a version was routed to new
// visitors must land on it.
func TestSessionFleetStaysPinnedAcrossDeploys(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-fleet")
	dbURL, st := newDatabase(t)
	host := ns + ".fleet.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "120000" // every version stays live for the whole run
	startSkewguard(t, s)
	gw := newGateway(t)

	v := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "shop", Version: label, Hostname: host, Replicas: 2}
	}
	c.deploy(t, v("1"))
	gw.waitServed(t, host, "1", 90*time.Second)

	var newest atomic.Value // the version new visitors must land on
	newest.Store("1")
	stats := &fleetStats{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSessions(ctx, gw, host, i, &newest, stats)
		}()
	}

	for _, label := range []string{"2", "3"} {
		time.Sleep(2 * time.Second) // let sessions build up on the current version
		c.deploy(t, v(label))
		gw.waitServed(t, host, label, 90*time.Second)
		newest.Store(label)
	}
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()

	t.Logf("checked %d requests in %d sessions", stats.requests.Load(), stats.sessions.Load())
	assert.Empty(t, stats.wrongPin, "pinned sessions served by another version")
	assert.Empty(t, stats.staleNew, "new sessions not on the newest version")
	assert.Empty(t, stats.errors, "request errors")
	assert.Greater(t, stats.requests.Load(), int64(1000), "the fleet sent too few requests to prove anything")

	for _, label := range []string{"1", "2"} {
		ver, err := st.GetVersion(context.Background(), registry.VersionRef{Namespace: ns, App: "shop", Label: label})
		require.NoError(t, err)
		assert.Equal(t, registry.Draining, ver.State, "version %s", label)
	}
}

// runSessions plays sessions one after another until ctx ends: a first request without a cookie, which
// must be served by the version the Set-Cookie pins, then 10–40 requests carrying that cookie.
func runSessions(ctx context.Context, gw *gateway, host string, worker int, newest *atomic.Value, stats *fleetStats) {
	for session := 0; ctx.Err() == nil; session++ {
		stats.sessions.Add(1)
		mustLand := newest.Load().(string)
		first, err := gw.get(host, "/", nil)
		stats.requests.Add(1)
		if err != nil {
			stats.add(&stats.errors, err.Error())
			continue
		}
		pin, ok := first.pinCookie("__plt_dpl")
		switch {
		case !ok:
			stats.add(&stats.errors, fmt.Sprintf("worker %d: new session got no pin cookie (status %d)", worker, first.Status))
			continue
		case pin != first.Version:
			stats.add(&stats.wrongPin, fmt.Sprintf("worker %d: cookie pins %q but %q served", worker, pin, first.Version))
		}
		if pin < mustLand { // labels are "1" < "2" < "3": landing on an older version than was routed is stale
			stats.add(&stats.staleNew, fmt.Sprintf("worker %d: new session landed on %s after %s was routed", worker, pin, mustLand))
		}
		for range 10 + rand.IntN(30) {
			if ctx.Err() != nil {
				return
			}
			r, err := gw.get(host, "/", withCookie("__plt_dpl="+pin))
			stats.requests.Add(1)
			if err != nil {
				stats.add(&stats.errors, err.Error())
				continue
			}
			if r.Version != pin {
				stats.add(&stats.wrongPin, fmt.Sprintf("worker %d: pinned to %s, served by %q (status %d)", worker, pin, r.Version, r.Status))
			}
			time.Sleep(time.Duration(20+rand.IntN(40)) * time.Millisecond) // think time between clicks
		}
	}
}
