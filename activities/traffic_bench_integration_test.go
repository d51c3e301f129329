//go:build integration

package activities_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/benchtable"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/internal/traffic"
)

// The traffic benchmark's fleet and its compressed check interval.
const (
	benchApps     = 100
	benchDraining = 10 // Draining versions per app, besides its Active one
	benchRounds   = 6
	benchInterval = 10 * time.Second
	realInterval  = time.Minute // the default check interval, for the extrapolated figures
	benchWindow   = 5 * time.Minute
	costBursts    = 5 // bursts of 100 queries that measure the cost of one
)

// BenchmarkTrafficChecks drives Activities.ReadTraffic the way the lifecycles of 1,000 Draining
// versions (100 apps × 10) would, against the real PostgreSQL registry and the stack's real
// Prometheus: each version checks on its own grid at a random phase of the check interval, with
// the inputs its workflow passes (activities.NewTrafficInput). No Temporal: the figure is the
// activity's sharing of queries and Prometheus's cost, not the scheduling of workflow tasks.
//
// The check interval is compressed to 10 s so that several rounds fit in a minute. That changes
// no figure per interval: which check queries and which one shares is decided by the check
// instants relative to the interval (MaxAge = interval, phases uniform in it), so it is the same
// at any scale as long as one query and one registry snapshot (milliseconds) are small beside the
// interval; and a query's cost to Prometheus depends on its text and the window it reads (the
// real default, 5 min, here), not on the interval. Figures per minute at the real 1-minute
// interval are the per-interval counts × 1 interval per minute.
//
// Phases: idle (Prometheus CPU with no checks, same length as a run), per-app (the design: one
// query per app per interval, shared by its versions), per-worker (one query for all 100 apps per
// interval, for comparison), a burst (all 1,000 checks due at once, as after a worker restart
// with every phase aligned), then the cost of one app query to Prometheus (bursts back to back,
// its idle CPU subtracted), from which its CPU at the real interval is computed: the run's own
// 10 queries/s are within the noise of Prometheus's scrapes on a busy machine.
func BenchmarkTrafficChecks(b *testing.B) {
	promURL := testenv.Get(b, testenv.PrometheusURL)
	reg := registrytest.New(b)
	tmpl, err := traffic.Select(traffic.PresetTraefik, "")
	require.NoError(b, err)
	ns := fmt.Sprintf("sg-trafficbench-%08x", rand.Uint32())
	fleet := setUpFleet(b, reg, ns)
	b.Logf("registry: %d apps × (%d draining + 1 active) in namespace %s", benchApps, benchDraining, ns)

	for b.Loop() {
		span := benchRounds * benchInterval
		idle := promSample(b, promURL)
		waitFor(span)
		idleEnd := promSample(b, promURL)

		q, err := traffic.NewQuerier(promURL, tmpl)
		require.NoError(b, err)
		acts := &activities.Activities{Registry: reg, Traffic: q}
		perApp := runChecks(b, acts, fleet, benchRounds)
		perAppEnd := promSample(b, promURL)
		require.Equal(b, int64(perApp.fetches), q.Queries(), "every query made is one the readings came from")

		worker := runWorkerBatch(b, promURL, tmpl, q.Range(benchWindow), ns, fleet)
		workerEnd := promSample(b, promURL)

		burstQ, err := traffic.NewQuerier(promURL, tmpl)
		require.NoError(b, err)
		burst := runBurst(b, &activities.Activities{Registry: reg, Traffic: burstQ}, fleet)

		// The cost of one query to Prometheus: bursts back to back (fresh workers: every app
		// queries), Prometheus's idle CPU subtracted.
		costStart := promSample(b, promURL)
		costQ, err := traffic.NewQuerier(promURL, tmpl)
		require.NoError(b, err)
		for range costBursts {
			runBurst(b, &activities.Activities{Registry: reg, Traffic: costQ}, fleet)
		}
		costEnd := promSample(b, promURL)

		report(b, phases{idle: idle, idleEnd: idleEnd, perAppEnd: perAppEnd, workerEnd: workerEnd, costStart: costStart, costEnd: costEnd},
			perApp, worker, burst, burstQ.Queries(), costQ.Queries())
	}
}

type version struct {
	ref     registry.VersionRef
	service string
}

// setUpFleet records benchApps apps, each with benchDraining Draining versions and one Active.
func setUpFleet(b *testing.B, reg *registry.Store, ns string) []version {
	b.Helper()
	ctx := context.Background()
	actor := registry.Actor{Type: registry.ActorWorkflow, ID: "traffic-bench"}
	var fleet []version
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, benchApps)
	for i := range benchApps {
		wg.Go(func() {
			app := fmt.Sprintf("app%03d", i)
			for v := range benchDraining + 1 {
				ref := registry.VersionRef{Namespace: ns, App: app, Label: strconv.Itoa(v + 1)}
				if _, _, err := reg.ObserveVersion(ctx, registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: app + "-" + ref.Label, ServicePort: 80}}, actor); err != nil {
					errs <- err
					return
				}
				if _, err := reg.Activate(ctx, ref, actor, "traffic benchmark"); err != nil { // drains the previous one
					errs <- err
					return
				}
				if v < benchDraining {
					mu.Lock()
					fleet = append(fleet, version{ref: ref, service: app + "-" + ref.Label})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	require.Len(b, fleet, benchApps*benchDraining)
	snap, err := reg.Snapshot(ctx, fleet[0].ref.AppRef())
	require.NoError(b, err)
	draining := 0
	for _, v := range snap.Pinned {
		if v.State == registry.Draining {
			draining++
		}
	}
	require.Equal(b, benchDraining, draining)
	return fleet
}

// checkRun is what the readings of one run showed.
type checkRun struct {
	fetches   int                    // distinct queries the readings came from
	perApp    map[string][]time.Time // each app's query instants (TrafficReading.At), in order
	latency   []time.Duration        // check due → reading returned
	failed    int                    // readings that returned an error
	reused    int                    // a version's reading from the query of its previous one
	roundEnds []time.Duration        // per round: round start → its last reading returned
	elapsed   time.Duration
}

// runChecks runs rounds check rounds of the whole fleet: version i checks at start + phase_i +
// k·interval, concurrently with the others (as the worker runs activities), with the input its
// workflow would pass: the first reading instant long past, the previous reading's instant.
func runChecks(b *testing.B, acts *activities.Activities, fleet []version, rounds int) checkRun {
	b.Helper()
	type due struct {
		at    time.Duration
		v     int
		round int
	}
	rng := rand.New(rand.NewPCG(14, 4))
	var plan []due
	for i := range fleet {
		phase := time.Duration(rng.Int64N(int64(benchInterval)))
		for k := range rounds {
			plan = append(plan, due{at: phase + time.Duration(k)*benchInterval, v: i, round: k})
		}
	}
	slices.SortFunc(plan, func(x, y due) int { return int(x.at - y.at) })

	policy := activities.Policy{CheckInterval: benchInterval, TrafficWindow: benchWindow}
	start := time.Now()
	firstRead := start.Add(-time.Hour)
	var mu sync.Mutex
	previous := make([]time.Time, len(fleet))
	busy := make([]sync.Mutex, len(fleet)) // a version's next check waits for its last, as in its workflow
	run := checkRun{perApp: map[string][]time.Time{}, roundEnds: make([]time.Duration, rounds)}
	seen := map[string]map[time.Time]bool{}
	var wg sync.WaitGroup
	for _, d := range plan {
		waitUntil(start.Add(d.at))
		wg.Go(func() {
			v := fleet[d.v]
			busy[d.v].Lock()
			defer busy[d.v].Unlock()
			mu.Lock()
			prev := previous[d.v]
			mu.Unlock()
			r, err := acts.ReadTraffic(context.Background(),
				activities.NewTrafficInput(v.ref, v.service, policy, firstRead, prev))
			done := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			run.latency = append(run.latency, done-d.at)
			run.roundEnds[d.round] = max(run.roundEnds[d.round], done-time.Duration(d.round)*benchInterval)
			run.elapsed = max(run.elapsed, done)
			if err != nil {
				run.failed++
				return
			}
			if !r.At.After(prev) {
				run.reused++
			}
			previous[d.v] = r.At
			app := v.ref.App
			if seen[app] == nil {
				seen[app] = map[time.Time]bool{}
			}
			if !seen[app][r.At] {
				seen[app][r.At] = true
				run.fetches++
				run.perApp[app] = append(run.perApp[app], r.At)
			}
		})
	}
	wg.Wait()
	for _, at := range run.perApp {
		slices.SortFunc(at, time.Time.Compare)
	}
	return run
}

// runBurst has every version of a fresh worker (empty cache) check at the same instant.
func runBurst(b *testing.B, acts *activities.Activities, fleet []version) time.Duration {
	b.Helper()
	policy := activities.Policy{CheckInterval: benchInterval, TrafficWindow: benchWindow}
	start := time.Now()
	var wg sync.WaitGroup
	var failed sync.Map
	for _, v := range fleet {
		wg.Go(func() {
			_, err := acts.ReadTraffic(context.Background(),
				activities.NewTrafficInput(v.ref, v.service, policy, start.Add(-time.Hour), time.Time{}))
			if err != nil {
				failed.Store(v.ref.String(), err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	failed.Range(func(k, v any) bool { b.Errorf("burst reading of %s: %v", k, v); return true })
	return elapsed
}

// workerRun is the per-worker batch: one query for every app's Draining versions per interval.
type workerRun struct {
	queries int
	latency []time.Duration
	bytes   int
}

// runWorkerBatch sends, once per interval, one query that covers the Draining versions and Active
// reference of every app (each app's batch tagged with its app), as a per-worker cache would.
func runWorkerBatch(b *testing.B, promURL string, tmpl *traffic.Template, window time.Duration, ns string, fleet []version) workerRun {
	b.Helper()
	byApp := map[string][]traffic.Target{}
	var apps []string
	for _, v := range fleet {
		if _, ok := byApp[v.ref.App]; !ok {
			apps = append(apps, v.ref.App)
		}
		byApp[v.ref.App] = append(byApp[v.ref.App], traffic.Target{Version: v.ref.Label, Service: v.service})
	}
	parts := make([]string, 0, len(apps))
	for _, app := range apps {
		targets := append(byApp[app], traffic.Target{Version: strconv.Itoa(benchDraining + 1), Service: app + "-" + strconv.Itoa(benchDraining+1)})
		q, err := tmpl.Batch(ns, app, window, targets)
		require.NoError(b, err)
		parts = append(parts, fmt.Sprintf(`label_replace(%s, "skewguard_app", %q, "", "")`, q, app))
	}
	query := strings.Join(parts, " or ")
	c, err := api.NewClient(api.Config{Address: promURL})
	require.NoError(b, err)
	prom := promv1.NewAPI(c)
	run := workerRun{bytes: len(query)}
	start := time.Now()
	for k := range benchRounds {
		waitUntil(start.Add(time.Duration(k) * benchInterval))
		t := time.Now()
		_, _, _, err := prom.Query(context.Background(), query, t)
		require.NoError(b, err)
		run.latency = append(run.latency, time.Since(t))
		run.queries++
	}
	waitUntil(start.Add(benchRounds * benchInterval))
	return run
}

// promStats is a reading of Prometheus's own counters.
type promStats struct {
	at      time.Time
	cpu     float64 // process_cpu_seconds_total
	queries float64 // prometheus_http_requests_total{handler="/api/v1/query"}, every code
}

func promSample(b *testing.B, promURL string) promStats {
	b.Helper()
	resp, err := http.Get(promURL + "/metrics")
	require.NoError(b, err)
	defer resp.Body.Close()
	require.Equal(b, http.StatusOK, resp.StatusCode)
	s := promStats{at: time.Now()}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			value = line[i+1:]
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_cpu_seconds_total":
			s.cpu = f
		case strings.HasPrefix(line, "prometheus_http_requests_total{") && strings.Contains(line, `handler="/api/v1/query"`):
			s.queries += f
		}
	}
	require.NoError(b, sc.Err())
	return s
}

func cores(from, to promStats) float64 { return (to.cpu - from.cpu) / to.at.Sub(from.at).Seconds() }

// phases holds Prometheus's counters at the boundaries of the benchmark's phases.
type phases struct{ idle, idleEnd, perAppEnd, workerEnd, costStart, costEnd promStats }

func report(b *testing.B, p phases, run checkRun, worker workerRun, burst time.Duration, burstQueries, costQueries int64) {
	b.Helper()
	idle, idleEnd, perAppEnd, workerEnd := p.idle, p.idleEnd, p.perAppEnd, p.workerEnd
	require.Zero(b, run.failed, "readings failed")
	require.Zero(b, run.reused, "a version's reading came from the query of its previous one")
	perInterval := float64(run.fetches) / float64(benchApps*benchRounds)
	worst, minGap := 0, time.Duration(1<<62)
	for _, at := range run.perApp {
		worst = max(worst, len(at))
		for i := 1; i < len(at); i++ {
			minGap = min(minGap, at[i].Sub(at[i-1]))
		}
	}
	promQueries := perAppEnd.queries - idleEnd.queries
	idleQueries := idleEnd.queries - idle.queries
	b.Logf("per-app run: %d readings, %d queries (querier), %.0f (Prometheus's counter; %.0f during the idle window), worst app %d queries in %d rounds, closest two queries of one app %s apart",
		len(run.latency), run.fetches, promQueries, idleQueries, worst, benchRounds, minGap)

	benchtable.Report(b, benchtable.Row{Figure: "traffic checks (100 apps × 10 draining, 10 s interval): Prometheus queries per app per interval, counted at the querier",
		Value: fmt.Sprintf("%.2f (worst app %.2f)", perInterval, float64(worst)/benchRounds), Goal: "≤ 1", Met: benchtable.Met(perInterval <= 1)})
	promPer := promQueries / float64(benchApps*benchRounds)
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: Prometheus queries per app per interval, Prometheus's own count (prometheus_http_requests_total, handler /api/v1/query)",
		Value: fmt.Sprintf("%.2f", promPer), Goal: "≤ 1", Peer: fmt.Sprintf("%.0f queries from others in the idle window", idleQueries),
		Met: benchtable.Met(promPer <= 1)})
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: queries per minute at the real 1-minute interval (per-interval count × 100 apps)",
		Value: fmt.Sprintf("%.0f /min", perInterval*benchApps*float64(time.Minute/realInterval)), Goal: "≤ 100 /min"})

	slices.Sort(run.latency)
	p99 := run.latency[len(run.latency)*99/100]
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: one check (due → reading returned), p99, vs the interval",
		Value: ms(p99), Peer: "interval " + benchInterval.String(), Ratio: p99.Seconds() / benchInterval.Seconds(),
		Goal: "< interval", Met: benchtable.Met(p99 < benchInterval)})
	slices.Sort(run.roundEnds)
	lastRound := run.roundEnds[len(run.roundEnds)-1]
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: check round (round start → its last reading returned, phases spread over the interval), worst round",
		Value: ms(lastRound), Peer: "interval " + benchInterval.String(), Ratio: lastRound.Seconds() / benchInterval.Seconds(),
		Goal: "< 1 interval + 1 check", Met: benchtable.Met(lastRound < benchInterval+p99)})
	benchtable.Report(b, benchtable.Row{Figure: fmt.Sprintf("traffic checks: burst round, all 1,000 due at once on a fresh worker (%d queries)", burstQueries),
		Value: ms(burst), Peer: "interval " + benchInterval.String(), Ratio: burst.Seconds() / benchInterval.Seconds(),
		Goal: "< interval", Met: benchtable.Met(burst < benchInterval)})

	idleCores, appCores, workerCores := cores(idle, idleEnd), cores(idleEnd, perAppEnd), cores(perAppEnd, workerEnd)
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: Prometheus CPU during the per-app run (10 queries/s at the 10 s interval), vs Prometheus idle in the same run",
		Value: fmt.Sprintf("%.3f cores", appCores), Peer: fmt.Sprintf("idle %.3f cores", idleCores), Ratio: appCores / idleCores})
	costWall := p.costEnd.at.Sub(p.costStart.at).Seconds()
	perQuery := max(p.costEnd.cpu-p.costStart.cpu-idleCores*costWall, 0) / float64(costQueries)
	b.Logf("cost phase: %d queries in %.1f s, Prometheus CPU %.2f s (idle share %.2f s)", costQueries, costWall, p.costEnd.cpu-p.costStart.cpu, idleCores*costWall)
	benchtable.Report(b, benchtable.Row{Figure: fmt.Sprintf("traffic checks: Prometheus CPU per app query (%d back to back, idle subtracted)", costQueries),
		Value: fmt.Sprintf("%.2f ms", perQuery*1000)})
	atReal := idleCores + perQuery*benchApps/realInterval.Seconds()
	benchtable.Report(b, benchtable.Row{Figure: "traffic checks: Prometheus CPU at the real 1-minute interval (idle + 100 queries/min × CPU per query), vs idle",
		Value: fmt.Sprintf("%.3f cores", atReal), Peer: fmt.Sprintf("idle %.3f cores", idleCores), Ratio: atReal / idleCores})
	slices.Sort(worker.latency)
	workerPerQuery := max(workerCores-idleCores, 0) * benchInterval.Seconds()
	benchtable.Report(b, benchtable.Row{Figure: fmt.Sprintf("traffic checks, per-worker batch instead (one %d kB query for all 100 apps per interval): Prometheus CPU per interval vs 100 per-app queries", worker.bytes/1024),
		Value: fmt.Sprintf("%.0f ms (query p50 %s)", workerPerQuery*1000, ms(worker.latency[len(worker.latency)/2])),
		Peer:  fmt.Sprintf("per-app %.0f ms (100 queries, burst %s)", perQuery*benchApps*1000, ms(burst)), Ratio: workerPerQuery / (perQuery * benchApps)})
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// waitUntil sleeps until t: the benchmark's checks are due at fixed instants, like the timers of
// the workflows it stands for.
func waitUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// waitFor is the measurement window of the idle phase.
func waitFor(d time.Duration) { time.Sleep(d) }
