// Package metrics owns skewguard's Prometheus collectors: one registry, the metrics every part
// of the control plane reports into, and the handler that serves them. Labels only ever take
// values from small fixed sets (states, outcomes, activity names, route templates), never
// version labels or pod names, so the series count stays bounded.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "skewguard"

// Registry holds every skewguard collector plus the Go and process collectors.
var Registry = prometheus.NewRegistry()

var (
	// Registrations counts registrations by source (agent, pod_watch, websocket, retry) and
	// outcome (detect.Outcome's labels: fast_path, started, deduped, feature_off, no_labels,
	// no_service, stale, invalid, error).
	Registrations = counterVec("registrations_total",
		"Pod registrations by source (agent, pod_watch, websocket) and outcome.",
		"source", "outcome")

	// Transitions counts version state transitions.
	Transitions = counterVec("version_transitions_total",
		"Version state transitions by from and to state.",
		"from", "to")

	// RouteWrites counts HTTPRoute writes by outcome (applied, unchanged, stale, error).
	RouteWrites = counterVec("route_writes_total",
		"HTTPRoute writes by outcome: applied, unchanged, stale (a newer generation was already written), error.",
		"outcome")

	// RouteReconciles counts the route convergence controller's reconciles of an app by
	// outcome: applied (drift was repaired), unchanged, stale, disabled, error.
	RouteReconciles = counterVec("route_reconciles_total",
		"Reconciles of an app's HTTPRoutes by the convergence controller, by outcome: applied (drift repaired), unchanged, stale, disabled, error.",
		"outcome")

	// ActivityFailures counts failed Temporal activity attempts by activity name.
	ActivityFailures = counterVec("activity_failures_total",
		"Failed activity attempts by activity name (each retry counts).",
		"activity")

	// Refusals counts writes the API server (or an admission webhook) refused and that skewguard
	// will not retry as they are, and versions refused before they could be routed, by kind
	// (the error type the workflow sees: RoutesRefused, RoutesInvalid, ClaimConflict,
	// WorkloadsRefused, ...). Each refusal is also in the version's audit and workflow details.
	Refusals = counterVec("refusals_total",
		"Steps refused for good (not retried as they are) by kind: RoutesRefused, RoutesInvalid, ClaimConflict, WorkloadsRefused.",
		"kind")

	// HTTPDuration is the latency of HTTP requests by route template, method and status code.
	HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "http_request_duration_seconds",
		Help:      "HTTP request latency by route template, method and status code.",
		Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method", "code"})

	// TokenReviews counts token authentications by result: cache_hit, reviewed, error, malformed, wrong_audience.
	TokenReviews = counterVec("token_reviews_total",
		"Bearer token authentications by result: cache_hit, reviewed (a TokenReview call), error, malformed and wrong_audience (refused without a TokenReview).",
		"result")

	// AccessReviews counts authorization decisions by result: cache_hit, reviewed, error.
	AccessReviews = counterVec("access_reviews_total",
		"SubjectAccessReview decisions by result: cache_hit, reviewed (a SubjectAccessReview call), error.",
		"result")

	// AgentConnections is the number of open agent update WebSockets.
	AgentConnections = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "agent_websockets",
		Help:      "Open agent update WebSocket connections.",
	})
)

// counterVec is a skewguard counter (the name without the namespace) with the given labels.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		Registrations, Transitions, RouteWrites, RouteReconciles, ActivityFailures, Refusals, HTTPDuration,
		TokenReviews, AccessReviews, AgentConnections,
	)
}

// Refusal records one step refused for good, by kind.
func Refusal(kind string) { Refusals.WithLabelValues(kind).Inc() }

// Registration records one registration from source; outcome is its label (detect.Outcome.String).
func Registration(source, outcome string) { Registrations.WithLabelValues(source, outcome).Inc() }

// Transition records one version state transition.
func Transition(from, to string) { Transitions.WithLabelValues(from, to).Inc() }

// RouteWrite records one HTTPRoute write outcome.
func RouteWrite(outcome string) { RouteWrites.WithLabelValues(outcome).Inc() }

// RouteReconcile records the outcome of one reconcile of an app's routes.
func RouteReconcile(outcome string) { RouteReconciles.WithLabelValues(outcome).Inc() }

// ActivityFailure records one failed attempt of the named activity.
func ActivityFailure(activity string) { ActivityFailures.WithLabelValues(activity).Inc() }

// ObserveHTTP records the latency of one HTTP request.
func ObserveHTTP(route, method string, code int, d time.Duration) {
	HTTPDuration.WithLabelValues(route, method, strconv.Itoa(code)).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus exposition format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}
