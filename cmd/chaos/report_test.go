package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

var t0 = time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func req(pinned, answered string, start, end, status int) request {
	return request{Session: 1, Carrier: "cookie", Pinned: pinned, Answered: answered, Start: at(start), End: at(end), Status: status}
}

func TestPinnedLive(t *testing.T) {
	lives := map[string]lifetime{
		"1": {Routed: at(0), Expired: at(100)},
		"2": {Routed: at(50)},
	}
	cases := []struct {
		name string
		r    request
		want bool
	}{
		{"live, long before expiry", req("1", "1", 10, 11, 200), true},
		{"ends within the margin before expiry", req("1", "2", 99, 99, 200), false},
		{"after expiry", req("1", "2", 101, 102, 200), false},
		{"never expired", req("2", "2", 60, 61, 200), true},
		{"before the version was routed", req("2", "1", 40, 41, 200), false},
		{"unknown version", req("9", "1", 40, 41, 200), false},
		{"anonymous", req("", "1", 40, 41, 200), false},
	}
	for _, c := range cases {
		if got := pinnedLive(c.r, lives); got != c.want {
			t.Errorf("%s: pinnedLive = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTableFailsOnAMisroutedLivePin(t *testing.T) {
	res := result{
		Seed:     7,
		Lives:    map[string]lifetime{"1": {Routed: at(0), Expired: at(100)}, "2": {Routed: at(50)}},
		Deployed: []string{"1", "2"},
		Recorded: map[string]bool{"1": true, "2": true},
		Requests: []request{
			req("1", "1", 10, 11, 200),
			req("1", "2", 60, 61, 200),   // misrouted: 1 was live
			req("1", "2", 120, 121, 200), // re-pinned after expiry: fine
		},
		Convergence: []time.Duration{time.Second},
		Kills:       []string{"api-1"},
	}
	var log bytes.Buffer
	lines := res.table(&log)
	if !strings.Contains(log.String(), "MISROUTED session 1 carrier cookie pinned 1 answered 2") {
		t.Errorf("the misrouted request is not logged: %q", log.String())
	}
	var out bytes.Buffer
	if printTable(&out, res, lines) {
		t.Errorf("the table passed with a misrouted request:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "misrouted, pinned to a live version") || !strings.Contains(out.String(), "FAIL") {
		t.Errorf("no failing misroute line:\n%s", out.String())
	}

	res.Requests = res.Requests[:1]
	out.Reset()
	if !printTable(&out, res, res.table(&log)) {
		t.Errorf("a clean run failed:\n%s", out.String())
	}
}

func TestTableLines(t *testing.T) {
	clean := func() result {
		return result{
			Lives:       map[string]lifetime{"1": {Routed: at(0)}},
			Deployed:    []string{"1"},
			Recorded:    map[string]bool{"1": true},
			Requests:    []request{req("1", "1", 10, 11, 200)},
			Convergence: []time.Duration{time.Second, 2 * time.Second},
			Kills:       []string{"api-1", "worker-2"},
		}
	}
	cases := []struct {
		name   string
		mutate func(*result)
		line   string
	}{
		{"lost", func(r *result) { r.Deployed = append(r.Deployed, "2") }, "versions lost"},
		{"stuck", func(r *result) { r.Stuck = []string{"1 draining"} }, "versions stuck"},
		{"two active in the registry", func(r *result) { r.TwoActiveDB = []string{"01:00 1+2"} }, "two Active at once, registry"},
		{"two active in the routes", func(r *result) { r.TwoActiveRt = []string{"01:00 a+b"} }, "two Active at once, routes"},
		{"slow convergence", func(r *result) { r.Convergence = append(r.Convergence, 11*time.Second) }, "route convergence"},
		{"never converged", func(r *result) { r.Unconverged = []string{"killed api-1"} }, "route convergence"},
		{"a 503 for a live pin", func(r *result) {
			r.Requests = append(r.Requests, request{Pinned: "1", Start: at(20), End: at(21), Status: 503, Err: "no available server"})
		}, "failed, pinned to a live version"},
	}
	var out bytes.Buffer
	if !printTable(&out, clean(), clean().table(&out)) {
		t.Fatalf("the clean run failed:\n%s", out.String())
	}
	for _, c := range cases {
		r := clean()
		c.mutate(&r)
		var failedLines []string
		for _, l := range r.table(&out) {
			if l.Failed {
				failedLines = append(failedLines, l.What)
			}
		}
		if len(failedLines) != 1 || !strings.HasPrefix(failedLines[0], c.line) {
			t.Errorf("%s: failed lines %q, want only %q", c.name, failedLines, c.line)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%v = %s, want %s", p, got, want)
		}
	}
	if got := percentile([]time.Duration{3 * time.Second}, 99); got != 3*time.Second {
		t.Errorf("p99 of one = %s", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %s", got)
	}
}

func TestDefaultBackends(t *testing.T) {
	path := gatewayv1.HTTPRouteMatch{}
	header := gatewayv1.HTTPRouteMatch{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-deployment-id", Value: "1"}}}
	backend := func(name string) []gatewayv1.HTTPBackendRef {
		return []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name)}}}}
	}
	route := func(rules ...gatewayv1.HTTPRouteRule) gatewayv1.HTTPRoute {
		return gatewayv1.HTTPRoute{Spec: gatewayv1.HTTPRouteSpec{Rules: rules}}
	}
	one := []gatewayv1.HTTPRoute{route(
		gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{header}, BackendRefs: backend("v1")},
		gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{path}, BackendRefs: backend("v2")},
	)}
	if got := defaultBackends(one); len(got) != 1 || got[0] != "v2" {
		t.Errorf("defaultBackends = %v, want [v2]", got)
	}
	two := append(one, route(gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{path}, BackendRefs: backend("v3")}))
	if got := defaultBackends(two); len(got) != 2 {
		t.Errorf("defaultBackends = %v, want two", got)
	}
}

func TestSettled(t *testing.T) {
	vs := []registry.Version{{Label: "1", State: registry.Expired}, {Label: "2", State: registry.Active}}
	if !settled(vs, "2") {
		t.Error("not settled")
	}
	vs[0].State = registry.Draining
	if settled(vs, "2") {
		t.Error("settled with a draining version")
	}
	if settled(nil, "2") {
		t.Error("settled with nothing recorded")
	}
}

func TestReadSettings(t *testing.T) {
	stack := map[string]string{
		"SKEWGUARD_TEST_PG_URL": "postgres://x", "KUBECONFIG": "k", "TEMPORAL_ADDRESS": "t", "PROMETHEUS_URL": "p",
		"SKEWGUARD_TEST_GATEWAY_URL": "g", "SKEWGUARD_TEST_GATEWAY_REF": "ns/gw:web",
	}
	get := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return stack[k]
		}
	}
	s, err := readSettings(get(map[string]string{"CHAOS_SEED": "42", "CHAOS_VERSIONS": "5", "CHAOS_DURATION": "1m"}))
	if err != nil || s.seed != 42 || s.versions != 5 || s.duration != time.Minute || s.sessions != 50 {
		t.Errorf("readSettings = %+v, %v", s, err)
	}
	_, err = readSettings(get(map[string]string{"CHAOS_SEED": "x", "CHAOS_VERSIONS": "1", "CHAOS_DURATION": "1s", "KUBECONFIG": ""}))
	for _, want := range []string{"CHAOS_SEED", "CHAOS_VERSIONS", "CHAOS_DURATION", "KUBECONFIG is not set"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestFailureCause(t *testing.T) {
	cases := map[string]request{
		"503 no available server":                      {Status: 503, Err: "no available server"},
		"no answer: connection refused [traefik down]": {Err: "connection refused", Faults: "killed traefik"},
		"502 Bad Gateway [skewguard+postgresql down]":  {Status: 502, Err: "Bad Gateway", Faults: "killed api-1+postgresql"},
		"404 404 page not found [skewguard down]":      {Status: 404, Err: "404 page not found", Faults: "killed api-2+worker-1"},
	}
	for want, r := range cases {
		if got := failureCause(r); got != want {
			t.Errorf("failureCause(%+v) = %q, want %q", r, got, want)
		}
	}
}

func TestSummarizeRoutes(t *testing.T) {
	to := func(name string) []gatewayv1.HTTPBackendRef {
		return []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name)}}}}
	}
	r := gatewayv1.HTTPRoute{Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{
		{Matches: []gatewayv1.HTTPRouteMatch{{Headers: []gatewayv1.HTTPHeaderMatch{{Name: "x-deployment-id", Value: "16"}}}}, BackendRefs: to("app-v16")},
		{Matches: []gatewayv1.HTTPRouteMatch{{}}, BackendRefs: to("app-v17")},
	}}}
	r.Name = "app"
	r.Annotations = map[string]string{"skewguard.dev/route-generation": "24"}
	want := "  app gen=24: [header x-deployment-id=16 -> app-v16] [path -> app-v17]\n"
	if got := summarizeRoutes([]gatewayv1.HTTPRoute{r}); got != want {
		t.Errorf("summarizeRoutes = %q, want %q", got, want)
	}
}

func TestGatewayOutagesDoNotFailTheLivePinLine(t *testing.T) {
	down := req("1", "", 20, 20, 0)
	down.Faults, down.Err = "killed traefik+api-1", "connection refused"
	inFlight := req("1", "", 29, 31, 0) // sent before the kill at 30, reset by it
	inFlight.Err = "connection reset"
	later := req("1", "", 60, 61, 502) // Traefik up: the gateway's answer counts
	res := result{
		Lives:       map[string]lifetime{"1": {Routed: at(0)}},
		Deployed:    []string{"1"},
		Recorded:    map[string]bool{"1": true},
		Requests:    []request{down, inFlight, later},
		Convergence: []time.Duration{time.Second},
		Kills:       []string{"traefik"},
		GatewayDown: [][2]time.Time{{at(30), at(35)}},
	}
	assert := func(what string, r request, want bool) {
		t.Helper()
		if got := res.gatewayOutage(r); got != want {
			t.Errorf("%s: gatewayOutage = %v, want %v", what, got, want)
		}
	}
	assert("sent while Traefik was down", down, true)
	assert("in flight when Traefik was killed", inFlight, true)
	assert("Traefik up", later, false)

	var log bytes.Buffer
	lines := res.table(&log)
	got := map[string]line{}
	for _, l := range lines {
		got[strings.TrimSpace(l.What)] = l
	}
	if l := got["of them while Traefik was down or restarting"]; l.Value != "2" {
		t.Errorf("outage line = %q, want 2", l.Value)
	}
	if l := got["failed, pinned to a live version, gateway up"]; l.Value != "1" || !l.Failed {
		t.Errorf("live pin line = %+v, want 1 and failed", l)
	}
}
