package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// TestOpenAPIMatchesTheRouter fails on any route the document lacks or any operation the router
// does not serve.
func TestOpenAPIMatchesTheRouter(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var served []string
	err := h.server.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		require.NoError(t, err)
		methods, err := route.GetMethods()
		require.NoError(t, err, "route %s must name its methods", tpl)
		for _, m := range methods {
			served = append(served, m+" "+tpl)
		}
		return nil
	})
	require.NoError(t, err)

	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(OpenAPI, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."), "an OpenAPI 3 document")
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			assert.NotEmpty(t, op["operationId"], "%s %s has no operationId", method, path)
			assert.NotEmpty(t, op["responses"], "%s %s has no responses", method, path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	assert.Equal(t, served, documented)
}

func TestOpenAPIIsServed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	rec := h.do(t, "GET", "/api/v1/openapi.yaml", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, OpenAPI, rec.Body.Bytes())
}

func TestHealth(t *testing.T) {
	failing := harnessOptions{ready: []ReadyCheck{
		{Name: "postgres", Check: func(context.Context) error { return nil }},
		{Name: "temporal", Check: func(context.Context) error { return errors.New("connection refused") }},
	}}
	healthy := harnessOptions{ready: []ReadyCheck{{Name: "postgres", Check: func(context.Context) error { return nil }}}}
	tests := []struct {
		name   string
		opts   harnessOptions
		path   string
		status int
		want   string
	}{
		{"liveness ignores dependencies", failing, "/healthz", http.StatusOK, `{"status":"ok"}`},
		{"ready", healthy, "/readyz", http.StatusOK, `{"status":"ok","ready":true}`},
		{"not ready", failing, "/readyz", http.StatusServiceUnavailable, `{"status":"unavailable","ready":false,"failed":["temporal"]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts)
			rec := h.do(t, "GET", tc.path, "", "")
			require.Equal(t, tc.status, rec.Code)
			assert.JSONEq(t, tc.want, rec.Body.String())
		})
	}
}

func TestMetricsUseRouteTemplates(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.do(t, "POST", "/control-plane/pods/web-v1-a/instance", tokenPodA, instanceBody)
	h.do(t, "GET", "/no/such/path", "", "")
	rec := h.do(t, "GET", "/metrics", "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	assert.Contains(t, body, `skewguard_http_request_duration_seconds_count{code="200",method="POST",route="/control-plane/pods/{podId}/instance"}`)
	assert.Contains(t, body, `route="unmatched"`)
	assert.NotContains(t, body, "web-v1-a", "no pod names in labels")
	assert.Contains(t, body, `skewguard_registrations_total{outcome="started",source="agent"}`)
}

func TestPanicsBecomeJSON500(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.server.router.HandleFunc("/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	rec := h.do(t, "GET", "/boom", "", "")
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Equal(t, CodeInternal, errorCode(t, rec))
}
