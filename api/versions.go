package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skewguard/skewguard/internal/apiwire"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/traffic"
)

// Stable error codes of the version list and the request-rate series.
const (
	CodeInvalidState             = "invalid_state"             // 400: ?state= names no state
	CodeInvalidPaging            = "invalid_paging"            // 400: ?limit= or ?offset= is not a whole number in range
	CodeInvalidWindow            = "invalid_window"            // 400: ?window= is not a duration in range
	CodeInvalidStep              = "invalid_step"              // 400: ?step= is not a duration in range, or makes too many points
	CodePrometheusNotConfigured  = "prometheus_not_configured" // 503: no PROMETHEUS_URL
	CodePrometheusUnavailable    = "prometheus_unavailable"    // 503: the query failed
	maxVersionsOffset            = 1_000_000
	defaultSeriesWindow          = time.Hour
	minSeriesWindow              = time.Minute
	maxSeriesWindow              = 7 * 24 * time.Hour
	minSeriesStep                = time.Second
	maxSeriesPoints              = 1000
	defaultSeriesPoints          = 60
	seriesQueryTimeout           = 15 * time.Second
	prometheusUnavailableMessage = "Prometheus could not be queried; retry later"
)

// Traffic reads request rates from Prometheus (traffic.Querier).
type Traffic interface {
	RatesOver(ctx context.Context, namespace, app string, window time.Duration, targets []traffic.Target,
		start, end time.Time, step time.Duration) (traffic.Series, error)
}

// VersionList is the answer of GET …/versions: one page of the lives of the app's version
// labels that match the state filter, the Active version first, then the newest recorded first.
// Total counts every match, whatever the page; Limit and Offset are the page's.
type VersionList struct {
	App      registry.AppRef `json:"app"`
	Versions []ListedVersion `json:"versions"`
	Total    int             `json:"total"`
	Limit    int             `json:"limit"`
	Offset   int             `json:"offset"`
}

// ListedVersion is a version of the list with, when known, how many pods its Service has:
// PodsReady of PodsTotal endpoints of its EndpointSlices, from the informer cache (PodCounter),
// both absent when unknown (no counter, the cache has not listed, the Service does not exist).
type ListedVersion struct {
	registry.Version
	PodsReady *int `json:"podsReady,omitempty"`
	PodsTotal *int `json:"podsTotal,omitempty"`
}

// PodCounter counts a Service's endpoints from an informer cache, without calling the API
// server (kube.ReadinessWatcher); ok is false when the count is unknown.
type PodCounter interface {
	Pods(namespace, service string) (n kube.PodCount, ok bool)
}

// listed adds their pod counts to vs.
func (s *Server) listed(vs []registry.Version) []ListedVersion {
	out := make([]ListedVersion, len(vs))
	for i, v := range vs {
		out[i].Version = v
		if s.opts.PodCounter == nil || v.ServiceName == "" || !v.State.Live() {
			continue
		}
		if n, ok := s.opts.PodCounter.Pods(v.Namespace, v.ServiceName); ok {
			out[i].PodsReady, out[i].PodsTotal = new(n.Ready), new(n.Total)
		}
	}
	return out
}

func (s *Server) listVersions(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r) // checked by authorized
	opts, p := parseVersionQuery(r.URL.Query())
	if p != nil {
		writeProblem(w, p)
		return
	}
	page, err := s.opts.Registry.ListVersionsPage(r.Context(), app, opts)
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, VersionList{App: app, Versions: s.listed(page.Versions), Total: page.Total,
		Limit: opts.Limit, Offset: opts.Offset})
}

// parseVersionQuery reads ?state= (repeated or comma separated), ?limit= and ?offset=. The limit
// it returns is the one that applies (registry.DefaultVersionsLimit when none is given).
func parseVersionQuery(q url.Values) (registry.ListVersionsOptions, *apiwire.Problem) {
	opts := registry.ListVersionsOptions{Limit: registry.DefaultVersionsLimit}
	for _, raw := range q["state"] {
		for _, name := range strings.Split(raw, ",") {
			st := registry.State(strings.ToLower(strings.TrimSpace(name)))
			if !st.Known() {
				return opts, problem(CodeInvalidState, "state %q is not one of %s", name, stateNames())
			}
			opts.States = append(opts.States, st)
		}
	}
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > registry.MaxVersionsLimit {
			return opts, problem(CodeInvalidPaging, "limit must be a whole number from 1 to %d, got %q", registry.MaxVersionsLimit, v)
		}
		opts.Limit = n
	}
	if v := q.Get("offset"); v != "" || q.Has("offset") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxVersionsOffset {
			return opts, problem(CodeInvalidPaging, "offset must be a whole number from 0 to %d, got %q", maxVersionsOffset, v)
		}
		opts.Offset = n
	}
	return opts, nil
}

func stateNames() string {
	names := make([]string, 0, len(registry.States))
	for _, st := range registry.States {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

func problem(code, format string, args ...any) *apiwire.Problem {
	return &apiwire.Problem{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// RPSSeries is the answer of GET …/versions/{version}/rps: the version's request rate over the
// window that ends now, one point per step, from the query the lifecycle's traffic checks run
// (each point is the rate over the app's traffic window that ends at it). An instant with no
// point is unknown (no series), never zero.
type RPSSeries struct {
	Version registry.VersionRef `json:"ref"`
	// Query is the PromQL that was run.
	Query string    `json:"query"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Window, Step and TrafficWindow are Go durations ("1h0m0s"); the seconds beside them are
	// the same values for programs.
	Window               string          `json:"window"`
	Step                 string          `json:"step"`
	StepSeconds          float64         `json:"stepSeconds"`
	TrafficWindow        string          `json:"trafficWindow"`
	TrafficWindowSeconds float64         `json:"trafficWindowSeconds"`
	Points               []traffic.Point `json:"points"`
}

func (s *Server) versionRPS(w http.ResponseWriter, r *http.Request) {
	ref, ok := versionRef(w, r)
	if !ok {
		return
	}
	window, step, p := parseSeriesQuery(r.URL.Query())
	if p != nil {
		writeProblem(w, p)
		return
	}
	if s.opts.Traffic == nil {
		writeError(w, http.StatusServiceUnavailable, CodePrometheusNotConfigured,
			"no Prometheus is configured (PROMETHEUS_URL): request rates are unknown")
		return
	}
	v, err := s.opts.Registry.GetVersion(r.Context(), ref)
	if err != nil {
		s.registryError(w, err)
		return
	}
	pol, err := s.opts.Registry.GetPolicy(r.Context(), ref.AppRef())
	if err != nil {
		s.registryError(w, err)
		return
	}
	tw := s.opts.PolicyDefaults.TrafficWindow(pol)
	end := time.Now().UTC().Truncate(time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), seriesQueryTimeout)
	defer cancel()
	series, err := s.opts.Traffic.RatesOver(ctx, ref.Namespace, ref.App, tw,
		[]traffic.Target{{Version: v.Label, Service: v.ServiceName}}, end.Add(-window), end, step)
	if err != nil {
		if errors.Is(r.Context().Err(), context.Canceled) {
			return // the caller left
		}
		s.log.Warn("request-rate series", "version", ref.String(), "error", err)
		writeError(w, http.StatusServiceUnavailable, CodePrometheusUnavailable, prometheusUnavailableMessage)
		return
	}
	writeJSON(w, http.StatusOK, RPSSeries{
		Version: ref, Query: series.Query, Start: series.Start, End: series.End,
		Window: window.String(), Step: step.String(), StepSeconds: step.Seconds(),
		TrafficWindow: tw.String(), TrafficWindowSeconds: tw.Seconds(),
		Points: nonNil(series.Points[v.Label]),
	})
}

// parseSeriesQuery reads ?window= (default 1h, from 1m to 7d) and ?step= (default window/60
// rounded up to a whole second; at least 1s and at most window, and at most 1000 points).
// Both are Go durations ("90s", "1h30m") or whole days ("7d").
func parseSeriesQuery(q url.Values) (window, step time.Duration, p *apiwire.Problem) {
	window = defaultSeriesWindow
	if v := q.Get("window"); v != "" || q.Has("window") {
		d, err := apiwire.ParseAge(v)
		if err != nil || d < minSeriesWindow || d > maxSeriesWindow {
			return 0, 0, problem(CodeInvalidWindow, "window must be a duration from %s to %s (e.g. 30m, 6h, 7d), got %q",
				minSeriesWindow, "7d", v)
		}
		window = d
	}
	step = max(minSeriesStep, ceilSecond(window/defaultSeriesPoints))
	if v := q.Get("step"); v != "" || q.Has("step") {
		d, err := apiwire.ParseAge(v)
		if err != nil || d < minSeriesStep || d > window {
			return 0, 0, problem(CodeInvalidStep, "step must be a duration from %s to the window (%s), got %q", minSeriesStep, window, v)
		}
		if window/d > maxSeriesPoints {
			return 0, 0, problem(CodeInvalidStep, "step %s over a window of %s makes more than %d points; take a step of at least %s",
				d, window, maxSeriesPoints, ceilSecond(window/maxSeriesPoints))
		}
		step = d
	}
	return window, step, nil
}

// ceilSecond rounds d up to a whole second.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}
