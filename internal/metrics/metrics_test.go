package metrics

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordersFeedTheRegistry(t *testing.T) {
	tests := []struct {
		name   string
		record func()
		read   func() float64
	}{
		{"registration", func() { Registration("agent", "fast_path") },
			func() float64 { return counterValue(Registrations.WithLabelValues("agent", "fast_path")) }},
		{"transition", func() { Transition("active", "draining") },
			func() float64 { return counterValue(Transitions.WithLabelValues("active", "draining")) }},
		{"route write", func() { RouteWrite("applied") },
			func() float64 { return counterValue(RouteWrites.WithLabelValues("applied")) }},
		{"route reconcile", func() { RouteReconcile("applied") },
			func() float64 { return counterValue(RouteReconciles.WithLabelValues("applied")) }},
		{"activity failure", func() { ActivityFailure("ApplyRoutes") },
			func() float64 { return counterValue(ActivityFailures.WithLabelValues("ApplyRoutes")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.read()
			tc.record()
			assert.Equal(t, before+1, tc.read())
		})
	}
}

func TestHandlerExposesEveryFamily(t *testing.T) {
	ObserveHTTP("/healthz", "GET", 200, time.Millisecond)
	Registration("pod_watch", "started")
	Transition("pending", "active")
	RouteWrite("stale")
	RouteReconcile("unchanged")
	ActivityFailure("Expire")
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	body, _ := io.ReadAll(rec.Body)
	for _, name := range []string{
		"skewguard_registrations_total", "skewguard_version_transitions_total", "skewguard_route_writes_total", "skewguard_route_reconciles_total",
		"skewguard_activity_failures_total", "skewguard_http_request_duration_seconds_bucket", "go_goroutines",
	} {
		assert.Contains(t, string(body), name)
	}
}

// counterValue reads a counter without prometheus/testutil, whose dependencies go.mod lacks.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
