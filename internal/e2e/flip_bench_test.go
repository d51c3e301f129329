//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/benchtable"
	"github.com/skewguard/skewguard/internal/testenv"
)

// BenchmarkFlip measures the flip on the real stack, 20 times over, in two cases (each superseded
// version drains for 3 s, max alive, and the next flip waits for its expiry: the app carries the
// one pin of a version just superseded, and no expiry's route write overlaps a measurement):
//
//   - ready: the new version's pods are Ready before it registers (the clock starts at its first
//     registration, as the agent sends it);
//   - starting: the version registers while its pods start (watt-extra registers at start-up),
//     and the clock starts when its EndpointSlice first shows a ready endpoint.
//
// Each flip is timed to (a) the HTTPRoute whose default rule points at the new version, as a
// watch on the namespace's HTTPRoutes sees it, and (b) the first new visitor served by it through
// Traefik. Beside them, in the same run and interleaved with the flips, the benchmark measures
// Traefik's floor: it writes a route of its own, switching its backend between two Services, and
// times the watch event of that write to the first request Traefik serves from the new backend.
// Run it with
//
//	go test -tags integration -run '^$' -bench Flip -benchtime 1x ./internal/e2e
func BenchmarkFlip(b *testing.B) {
	for range b.N {
		runFlips(b, 20)
	}
}

// flipBench is one run's cluster, skewguard and watches.
type flipBench struct {
	c     *cluster
	ns    string
	host  string
	sg    *skewguard
	gw    *gateway
	seen  *eventLog // skewguard's routes
	floor *eventLog // the benchmark's own route
	ready *eventLog
	// registeredAt is when the last registration of registerWhenKnown was sent.
	registeredAt time.Time
}

func runFlips(b *testing.B, flips int) {
	b.Helper()
	var tb testing.TB = b
	c := newCluster(tb)
	ns := c.namespace(tb, "e2e-flip")
	dbURL, _ := newDatabase(tb)
	s := baseSettings(tb, ns, dbURL)
	s["PLT_SKEW_WATCH_PODS"] = "false" // registration is the trigger being measured
	s["PLT_SKEW_INSECURE_SKIP_POD_AUTH"] = "true"
	// Each superseded version drains for 3 s (max alive) and expires: the app keeps the few pins
	// a deploy train leaves, not one per flip of the run.
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "2000"
	s["PLT_SKEW_HTTP_MAX_ALIVE_MS"] = "3000"
	f := &flipBench{c: c, ns: ns, host: ns + ".flip.test", sg: startSkewguard(tb, s), gw: newGateway(tb)}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	f.seen, f.floor = watchDefaultBackends(tb, ctx, c, ns)
	f.ready = watchReadyServices(tb, ctx, c, ns)

	// The ready case's versions run before the clock starts; the floor switches between two
	// Services skewguard does not manage.
	for i := 0; i <= flips; i++ {
		c.deploy(tb, appVersion{Namespace: ns, App: "flip", Version: "f" + strconv.Itoa(i), Hostname: f.host})
	}
	floorA, floorB := appVersion{Namespace: ns, App: "floor", Version: "a"}, appVersion{Namespace: ns, App: "floor", Version: "b"}
	c.deploy(tb, floorA)
	c.deploy(tb, floorB)
	f.register(tb, f.podOf(tb, "f0", true))
	f.gw.waitServed(tb, f.host, "f0", 90*time.Second)
	floor := newFloorRoute(tb, f, floorA, floorB)

	var toRoute, toVisitor, floors []time.Duration
	for i := 1; i <= flips; i++ {
		label := "f" + strconv.Itoa(i)
		pod := f.podOf(tb, label, true)
		start := time.Now()
		f.register(tb, pod)
		route, visitor := f.awaitFlip(tb, label, start)
		toRoute, toVisitor = append(toRoute, route), append(toVisitor, visitor)
		f.awaitExpired(tb, appVersion{App: "flip", Version: "f" + strconv.Itoa(i-1)})
		floors = append(floors, floor.step(tb))
	}

	// Versions that register while their pods start.
	var rToRoute, rToVisitor []time.Duration
	for i := 1; i <= flips; i++ {
		v := appVersion{Namespace: ns, App: "flip", Version: "s" + strconv.Itoa(i), Hostname: f.host,
			Env: map[string]string{"ECHO_START_DELAY": startDelay.String()}}
		c.deploy(tb, v)
		f.registerWhenKnown(tb, f.podOf(tb, v.Version, true))
		start := f.ready.await(tb, v.name(), 90*time.Second)
		if f.registeredAt.After(start) {
			tb.Fatalf("%s: Ready before it registered: make startDelay longer", v.Version)
		}
		route, visitor := f.awaitFlip(tb, v.Version, start)
		rToRoute, rToVisitor = append(rToRoute, route), append(rToVisitor, visitor)
		prev := appVersion{App: "flip", Version: "s" + strconv.Itoa(i-1)}
		if i == 1 {
			prev.Version = "f" + strconv.Itoa(flips)
		}
		f.awaitExpired(tb, prev)
		floors = append(floors, floor.step(tb))
	}

	fl := summarize(floors)
	b.Logf("Traefik floor (route written → first request served) over %d writes: %s", len(floors), fl)
	report := func(what, unit string, route, visitor []time.Duration) {
		r, v := summarize(route), summarize(visitor)
		b.Logf("%s: to the route %s; to the first visitor %s", what, r, v)
		b.ReportMetric(ms(r.p50), unit+"-route-p50-ms")
		b.ReportMetric(ms(r.p99), unit+"-route-p99-ms")
		b.ReportMetric(ms(v.p50), unit+"-visitor-p50-ms")
		benchtable.Report(b, benchtable.Row{Figure: "flip (" + what + "): → HTTPRoute written, p50", Value: msText(r.p50),
			Goal: "≤ 100 ms", Peer: "Traefik floor p50 " + msText(fl.p50), Ratio: ms(r.p50) / ms(fl.p50), Met: benchtable.Met(r.p50 <= 100*time.Millisecond)})
		benchtable.Report(b, benchtable.Row{Figure: "flip (" + what + "): → HTTPRoute written, p99", Value: msText(r.p99),
			Goal: "≤ 300 ms", Peer: "Traefik floor p99 " + msText(fl.p99), Ratio: ms(r.p99) / ms(fl.p99), Met: benchtable.Met(r.p99 <= 300*time.Millisecond)})
		benchtable.Report(b, benchtable.Row{Figure: "flip (" + what + "): → first new visitor served, p50", Value: msText(v.p50),
			Goal: "≤ 1.5 × Traefik floor", Peer: "Traefik floor p50 " + msText(fl.p50), Ratio: ms(v.p50) / ms(fl.p50),
			Met: benchtable.Met(ms(v.p50) <= 1.5*ms(fl.p50))})
		benchtable.Report(b, benchtable.Row{Figure: "flip (" + what + "): → first new visitor served, p99", Value: msText(v.p99),
			Peer: "Traefik floor p99 " + msText(fl.p99), Ratio: ms(v.p99) / ms(fl.p99)})
	}
	report("ready, from registration", "ready", toRoute, toVisitor)
	report("starting, from pods Ready", "starting", rToRoute, rToVisitor)
	benchtable.Report(b, benchtable.Row{Figure: "Traefik floor: route write → first request served, p50 (p99)",
		Value: fmt.Sprintf("%s (%s)", msText(fl.p50), msText(fl.p99))})
}

// podOf returns the name of a pod of version label; running asks for one with an IP.
func (f *flipBench) podOf(tb testing.TB, label string, running bool) string {
	var name string
	waitFor(tb, 60*time.Second, "a pod of "+label, func() (bool, string) {
		pods, err := f.c.kube.CoreV1().Pods(f.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "plt.dev/version=" + label})
		if err != nil || len(pods.Items) == 0 || running && pods.Items[0].Status.PodIP == "" {
			return false, fmt.Sprint(err)
		}
		name = pods.Items[0].Name
		return true, ""
	})
	return name
}

// startDelay is how long the starting case's pods take to listen, and so to be Ready, once they
// run: the agent registers when the process starts, before that.
const startDelay = 1500 * time.Millisecond

// registerWhenKnown registers pod as soon as skewguard's pod cache has it (404 until then).
func (f *flipBench) registerWhenKnown(tb testing.TB, pod string) {
	waitFor(tb, 30*time.Second, "registration of "+pod, func() (bool, string) {
		resp, err := http.Post(f.sg.url+"/control-plane/pods/"+pod+"/instance", "application/json",
			bytes.NewBufferString(`{"podId":"`+pod+`","apiVersion":"v3"}`))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		f.registeredAt = time.Now()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

func (f *flipBench) register(tb testing.TB, pod string) {
	resp, err := http.Post(f.sg.url+"/control-plane/pods/"+pod+"/instance", "application/json",
		bytes.NewBufferString(`{"podId":"`+pod+`","apiVersion":"v3"}`))
	require.NoError(tb, err)
	resp.Body.Close()
	require.Equal(tb, http.StatusOK, resp.StatusCode)
}

// awaitFlip waits for label's route and first visitor, and returns both times from start.
func (f *flipBench) awaitFlip(tb testing.TB, label string, start time.Time) (route, visitor time.Duration) {
	svc := appVersion{App: "flip", Version: label}.name()
	written := f.seen.await(tb, svc, 60*time.Second)
	for {
		r, err := f.gw.get(f.host, "/", nil)
		if err == nil && r.Version == label {
			break
		}
		if time.Since(start) > 60*time.Second {
			tb.Fatalf("new visitors not served by %s after 60s", label)
		}
		time.Sleep(2 * time.Millisecond) // the measurement's resolution: nothing to wait on but Traefik
	}
	return written.Sub(start), time.Since(start)
}

// awaitExpired waits until no HTTPRoute of the namespace routes to v's Service any more (it
// expired), so that the next measurement does not overlap its expiry's route write.
func (f *flipBench) awaitExpired(tb testing.TB, v appVersion) {
	waitFor(tb, 60*time.Second, v.name()+" expired from the routes", func() (bool, string) {
		routes, err := f.c.gw.GatewayV1().HTTPRoutes(f.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, r := range routes.Items {
			for _, rule := range r.Spec.Rules {
				for _, b := range rule.BackendRefs {
					if string(b.Name) == v.name() {
						return false, "still routed by " + r.Name
					}
				}
			}
		}
		return true, ""
	})
}

// floorRoute is the benchmark's own HTTPRoute, switched between two Services.
type floorRoute struct {
	f     *flipBench
	host  string
	a, b  appVersion
	onA   bool
	route *gatewayv1.HTTPRoute
}

func newFloorRoute(tb testing.TB, f *flipBench, a, b appVersion) *floorRoute {
	ref := testenv.Get(tb, testenv.GatewayRef) // namespace/name:section
	nsName, section, _ := strings.Cut(ref, ":")
	gwNS, gwName, _ := strings.Cut(nsName, "/")
	pns, sec := gatewayv1.Namespace(gwNS), gatewayv1.SectionName(section)
	fr := &floorRoute{f: f, host: f.ns + ".floor.test", a: a, b: b, onA: true}
	port := gatewayv1.PortNumber(80)
	fr.route = &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "floor", Namespace: f.ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Namespace: &pns, Name: gatewayv1.ObjectName(gwName), SectionName: &sec}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(fr.host)},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(a.name()), Port: &port}}}}}},
		},
	}
	created, err := f.c.gw.GatewayV1().HTTPRoutes(f.ns).Create(context.Background(), fr.route, metav1.CreateOptions{})
	require.NoError(tb, err)
	fr.route = created
	f.gw.waitServed(tb, fr.host, a.Version, 90*time.Second)
	return fr
}

// step switches the floor route to its other Service and returns the time from the watch event
// of that write to the first request Traefik serves from it.
func (fr *floorRoute) step(tb testing.TB) time.Duration {
	to := fr.b
	if !fr.onA {
		to = fr.a
	}
	fr.onA = !fr.onA
	fr.f.floor.forget(to.name())
	routes := fr.f.c.gw.GatewayV1().HTTPRoutes(fr.f.ns)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error { // Traefik writes the status
		live, err := routes.Get(context.Background(), fr.route.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		live.Spec.Rules[0].BackendRefs[0].Name = gatewayv1.ObjectName(to.name())
		_, err = routes.Update(context.Background(), live, metav1.UpdateOptions{})
		return err
	})
	require.NoError(tb, err)
	written := fr.f.floor.await(tb, to.name(), 60*time.Second)
	for {
		r, err := fr.f.gw.get(fr.host, "/", nil)
		if err == nil && r.Version == to.Version {
			return time.Since(written)
		}
		if time.Since(written) > 60*time.Second {
			tb.Fatalf("floor route: %s not served after 60s", to.Version)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// eventLog records when a key was first seen, and wakes those waiting for it.
type eventLog struct {
	mu      sync.Mutex
	first   map[string]time.Time
	changed chan struct{}
}

func newEventLog() *eventLog {
	return &eventLog{first: map[string]time.Time{}, changed: make(chan struct{})}
}

func (l *eventLog) saw(key string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.first[key]; ok {
		return
	}
	l.first[key] = at
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.first, key)
}

func (l *eventLog) await(tb testing.TB, key string, timeout time.Duration) time.Time {
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		at, ok := l.first[key]
		ch := l.changed
		l.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("%s not seen within %s", key, timeout)
		}
	}
}

// watchDefaultBackends logs, per Service, when an HTTPRoute of ns first had a default rule (no
// header or query match) with that Service as its only backend: skewguard's routes in one log,
// the benchmark's route "floor" in the other.
func watchDefaultBackends(tb testing.TB, ctx context.Context, c *cluster, ns string) (skew, floor *eventLog) {
	skew, floor = newEventLog(), newEventLog()
	w, err := c.gw.GatewayV1().HTTPRoutes(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(tb, err)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			at := time.Now()
			r, ok := ev.Object.(*gatewayv1.HTTPRoute)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			l := skew
			if r.Name == "floor" {
				l = floor
			}
			for _, rule := range r.Spec.Rules {
				isDefault := len(rule.Matches) == 0 ||
					len(rule.Matches) == 1 && len(rule.Matches[0].Headers) == 0 && len(rule.Matches[0].QueryParams) == 0
				if isDefault && len(rule.BackendRefs) == 1 {
					l.saw(string(rule.BackendRefs[0].Name), at)
				}
			}
		}
	}()
	return skew, floor
}

// watchReadyServices logs, per Service, when one of its EndpointSlices first had a ready endpoint.
func watchReadyServices(tb testing.TB, ctx context.Context, c *cluster, ns string) *eventLog {
	l := newEventLog()
	w, err := c.kube.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(tb, err)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			at := time.Now()
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					l.saw(s.Labels[discoveryv1.LabelServiceName], at)
					break
				}
			}
		}
	}()
	return l
}

type durations struct{ p50, p99, min, max time.Duration }

func (d durations) String() string {
	return fmt.Sprintf("p50 %s, p99 %s, min %s, max %s", msText(d.p50), msText(d.p99), msText(d.min), msText(d.max))
}

func summarize(d []time.Duration) durations {
	d = slices.Clone(d)
	slices.Sort(d)
	return durations{p50: d[len(d)/2], p99: d[(len(d)*99+99)/100-1], min: d[0], max: d[len(d)-1]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msText(d time.Duration) string { return fmt.Sprintf("%.0f ms", ms(d)) }
