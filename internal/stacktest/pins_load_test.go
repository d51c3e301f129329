//go:build integration

package stacktest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/loadgen"
)

// Knobs of the throughput run (BenchmarkGatewayThroughput150PinsBeside1), read from the environment.
const (
	envLoadDuration = "SKEWGUARD_PINS_LOAD_DURATION" // load per side, split over the rounds; default 10s
	envLoadClients  = "SKEWGUARD_PINS_LOAD_CLIENTS"  // concurrent clients; default 8
	envLoadRounds   = "SKEWGUARD_PINS_LOAD_ROUNDS"   // 1 pin then 150 pins, this many times; default 2
	envLoadSeed     = "SKEWGUARD_PINS_LOAD_SEED"     // the request mix; default 1
)

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "%s=%q is not a whole number", name, v)
	require.Positive(t, n, "%s=%q must be positive", name, v)
	return n
}

// BenchmarkGatewayThroughput150PinsBeside1 measures what 150 pins cost the gateway: one app, one
// Traefik, the same load (N closed-loop clients, a quarter of the requests each by pin cookie,
// x-deployment-id header, dpl query parameter and no carrier, the version drawn among the app's
// pins), first with 1 pinned version beside the Active one, then with 150, alternating for a few
// rounds so that the other users of a shared machine weigh on both sides alike; the last round
// also runs each carrier alone, to show which one the pins slow down. Traefik's own CPU time per
// request (from /proc) tells the gateway's cost from the machine's. Every answer is checked (the
// version reached); the figures and the ratio are printed and reported as the benchmark's
// metrics, never asserted: the goal is a ratio of at least 0.9. It is a benchmark, not part of
// `make test`: `make bench-pins` (or go test -tags integration -run '^$' -bench Throughput150Pins
// -benchtime 1x ./internal/stacktest) on the running stack.
func BenchmarkGatewayThroughput150PinsBeside1(b *testing.B) {
	for range b.N {
		throughput150PinsBeside1(b)
	}
}

func throughput150PinsBeside1(t *testing.B) {
	duration := 10 * time.Second
	if v := os.Getenv(envLoadDuration); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "%s=%q is not a duration", envLoadDuration, v)
		require.Positive(t, d, "%s=%q must be positive", envLoadDuration, v)
		duration = d
	}
	clients := envInt(t, envLoadClients, 8)
	rounds := envInt(t, envLoadRounds, 2)
	seed := uint64(envInt(t, envLoadSeed, 1))

	k := newKube(t)
	ns := k.namespace(t, "pinsload")
	versions := manyVersions()
	many := versions[:manyPins]
	one := versions[:1]
	svc := k.versionListeners(t, ns, versions)
	app := newPinnedApp(t, k, ns, "load", true, svc)

	measure := func(pins []string, what string, d time.Duration, seed uint64, carriers ...carrier) (loadgen.Result, time.Duration) {
		t.Helper()
		// Traefik's CPU time without our load (config reloads, Prometheus scrapes, the other
		// users of the stack) over a short window, subtracted from what the load run used.
		idle0, idleStart := traefikCPU(t), time.Now()
		time.Sleep(idleWindow) // a measurement window: there is no event to wait for
		idleRate := float64(traefikCPU(t)-idle0) / float64(time.Since(idleStart))
		cpu0 := traefikCPU(t)
		res, err := loadgen.Run(context.Background(), loadgen.Config{
			Clients: clients, Duration: d, Seed: seed, Next: app.mix(pins, carriers...),
		})
		require.NoError(t, err)
		used := traefikCPU(t) - cpu0
		background := time.Duration(idleRate * float64(res.Elapsed))
		cpu := max(used-background, 0)
		t.Logf("%3d pin(s), %s: %s; Traefik CPU %s, %s of it without load%s", len(pins), what, res,
			used.Round(time.Millisecond), background.Round(time.Millisecond), perRequest(cpu, res))
		require.Zero(t, res.Errors, "every answer comes from the version asked for: %v", res.ErrorSamples)
		return res, cpu
	}
	// Each carrier alone, in the last round: which one the pins slow down.
	byCarrier := func(pins []string) {
		t.Helper()
		d := max(duration/time.Duration(rounds*4), time.Second)
		for _, c := range allCarriers {
			measure(pins, c.String()+" only", d, seed, c)
		}
	}

	var oneRes, manyRes []loadgen.Result
	var oneCPU, manyCPU time.Duration
	for round := range rounds {
		what, roundSeed := fmt.Sprintf("round %d, mixed", round+1), seed+uint64(round)
		app.write(t, one)
		app.waitServes(t, one, many[1:]) // the shards of the 150 pins are gone from Traefik too
		res, cpu := measure(one, what, duration/time.Duration(rounds), roundSeed, allCarriers...)
		oneRes, oneCPU = append(oneRes, res), oneCPU+cpu
		if round == rounds-1 {
			byCarrier(one)
		}

		desired := app.write(t, many)
		app.waitServes(t, many, nil)
		if round == 0 {
			t.Logf("150 pins: %d HTTPRoutes, %d rules", len(desired), countRules(desired))
		}
		res, cpu = measure(many, what, duration/time.Duration(rounds), roundSeed, allCarriers...)
		manyRes, manyCPU = append(manyRes, res), manyCPU+cpu
		if round == rounds-1 {
			byCarrier(many)
		}
	}

	a, b := loadgen.Merge(oneRes...), loadgen.Merge(manyRes...)
	t.Logf("%d clients, %s per side over %d round(s), seed %d", clients, duration, rounds, seed)
	t.Logf("  1 pin:  %s%s", a, perRequest(oneCPU, a))
	t.Logf("150 pins: %s%s", b, perRequest(manyCPU, b))
	t.ReportMetric(a.RPS(), "req/s-1pin")
	t.ReportMetric(b.RPS(), "req/s-150pins")
	t.ReportMetric(b.RPS()/a.RPS(), "ratio")
	t.Logf("throughput ratio 150 pins / 1 pin: %.2f (goal >= 0.90); p50 %s vs %s, p99 %s vs %s",
		b.RPS()/a.RPS(), b.Percentile(50).Round(time.Microsecond), a.Percentile(50).Round(time.Microsecond),
		b.Percentile(99).Round(time.Microsecond), a.Percentile(99).Round(time.Microsecond))
}

// idleWindow is how long Traefik's CPU time is sampled without load before each run.
const idleWindow = 2 * time.Second

// perRequest is Traefik's CPU time per request (without its background), or nothing when it
// could not be read.
func perRequest(cpu time.Duration, r loadgen.Result) string {
	if cpu <= 0 || r.Requests == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s per request beyond it)", (cpu / time.Duration(r.Requests)).Round(time.Microsecond))
}

// carrier is how a request of the load names its version.
type carrier int

const (
	byCookie carrier = iota
	byHeader
	byQuery
	byNothing // the Active version, through the default rule
)

var allCarriers = []carrier{byCookie, byHeader, byQuery, byNothing}

func (c carrier) String() string {
	return [...]string{"cookie", "header", "query", "no carrier"}[c]
}

// mix is the load's request mix: each request uses one of carriers, drawn at random, naming one
// of pins, drawn at random (no carrier: the Active version). Every answer must come from the
// version the request asked for.
func (p *pinnedApp) mix(pins []string, carriers ...carrier) loadgen.Next {
	return func(rnd *rand.Rand) (*http.Request, func(*http.Response) error) {
		v := pins[rnd.IntN(len(pins))]
		var req *http.Request
		switch carriers[rnd.IntN(len(carriers))] {
		case byCookie:
			req = p.request("__plt_dpl="+v, "", "")
		case byHeader:
			req = p.request("", v, "")
		case byQuery:
			req = p.request("", "", v)
		default:
			req, v = p.request("", "", ""), manyActive
		}
		return req, func(resp *http.Response) error {
			if got := resp.Header.Get("X-Skewguard-Version"); got != v {
				return fmt.Errorf("%s %v: version %q answered, want %q", req.URL, req.Header, got, v)
			}
			return nil
		}
	}
}
