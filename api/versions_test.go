package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/traffic"
)

func TestListVersionsFiltersAndPages(t *testing.T) {
	h := seeded(t, harnessOptions{})
	tests := []struct {
		query  string
		labels []string
		total  int
	}{
		{"", []string{"2", "3", "1", "0"}, 4},
		{"?state=draining", []string{"1"}, 1},
		{"?state=draining,active", []string{"2", "1"}, 2},
		{"?state=draining&state=expired", []string{"1", "0"}, 2},
		{"?state=Pending", []string{"3"}, 1},
		{"?state=staged", []string{}, 0},
		{"?limit=2", []string{"2", "3"}, 4},
		{"?limit=2&offset=2", []string{"1", "0"}, 4},
		{"?offset=9", []string{}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions"+tc.query, tokenViewer, "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			list := decode[VersionList](t, rec)
			assert.Equal(t, tc.labels, labels(list.Versions))
			assert.Equal(t, tc.total, list.Total)
		})
	}
}

func TestListVersionsBadInput(t *testing.T) {
	h := seeded(t, harnessOptions{})
	for query, code := range map[string]string{
		"?state=sleeping":     CodeInvalidState,
		"?state=":             CodeInvalidState,
		"?state=draining,":    CodeInvalidState,
		"?limit=0":            CodeInvalidPaging,
		"?limit=1001":         CodeInvalidPaging,
		"?limit=-1":           CodeInvalidPaging,
		"?limit=ten":          CodeInvalidPaging,
		"?limit=":             CodeInvalidPaging,
		"?offset=-1":          CodeInvalidPaging,
		"?offset=1.5":         CodeInvalidPaging,
		"?offset=99999999999": CodeInvalidPaging,
	} {
		t.Run(query, func(t *testing.T) {
			rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions"+query, tokenViewer, "")
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			assert.Equal(t, code, errorCode(t, rec))
		})
	}
}

// fakeTraffic answers RatesOver with fixed points and records the calls.
type fakeTraffic struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeTraffic) RatesOver(_ context.Context, namespace, app string, window time.Duration, targets []traffic.Target,
	start, end time.Time, step time.Duration) (traffic.Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s/%s %v window=%s range=%s step=%s", namespace, app, targets, window, end.Sub(start), step))
	if f.err != nil {
		return traffic.Series{}, f.err
	}
	return traffic.Series{Query: "q", Start: start, End: end, Step: step,
		Points: map[string][]traffic.Point{targets[0].Version: {{At: start, RPS: 1.5}}}}, nil
}

func TestVersionRPS(t *testing.T) {
	ft := &fakeTraffic{}
	h := seeded(t, harnessOptions{traffic: ft})
	h.reg.versions[1].ServiceName = "web-v1"

	rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/rps", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	s := decode[RPSSeries](t, rec)
	assert.Equal(t, []traffic.Point{{At: s.Start, RPS: 1.5}}, s.Points)
	assert.Equal(t, "1h0m0s", s.Window)
	assert.Equal(t, float64(60), s.StepSeconds, "default: 60 points")
	assert.Equal(t, float64(300), s.TrafficWindowSeconds, "the default traffic window")

	// The app's traffic window is the query's rate window, as in the lifecycle's checks.
	rec = h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, `{"trafficWindowMs":120000}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/rps?window=30m&step=10s", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{
		"shop/web [{1 web-v1 []}] window=5m0s range=1h0m0s step=1m0s",
		"shop/web [{1 web-v1 []}] window=2m0s range=30m0s step=10s",
	}, ft.calls)

	t.Run("viewer elsewhere", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/other/web/versions/1/rps", tokenViewer, "")
		require.Equal(t, http.StatusForbidden, rec.Code)
	})
	t.Run("unknown version", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/9/rps", tokenViewer, "")
		require.Equal(t, http.StatusNotFound, rec.Code)
		assert.Equal(t, CodeVersionNotFound, errorCode(t, rec))
	})
	for query, code := range map[string]string{
		"?window=30s":           CodeInvalidWindow,
		"?window=8d":            CodeInvalidWindow,
		"?window=":              CodeInvalidWindow,
		"?window=soon":          CodeInvalidWindow,
		"?window=-1h":           CodeInvalidWindow,
		"?step=500ms":           CodeInvalidStep,
		"?step=2h":              CodeInvalidStep, // longer than the default window
		"?step=x":               CodeInvalidStep,
		"?window=7d&step=1m":    CodeInvalidStep, // 10080 points
		"?window=1h&step=3s":    CodeInvalidStep, // 1200 points
		"?window=1000s&step=1s": "",              // exactly 1000 points
	} {
		t.Run(query, func(t *testing.T) {
			rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/rps"+query, tokenViewer, "")
			if code == "" {
				require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
				return
			}
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			assert.Equal(t, code, errorCode(t, rec))
		})
	}
	t.Run("Prometheus down", func(t *testing.T) {
		ft.err = errors.New("dial tcp: connection refused")
		defer func() { ft.err = nil }()
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/rps", tokenViewer, "")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, CodePrometheusUnavailable, errorCode(t, rec))
		assert.NotContains(t, rec.Body.String(), "connection refused")
	})
	t.Run("no Prometheus", func(t *testing.T) {
		h := seeded(t, harnessOptions{})
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/rps", tokenViewer, "")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, CodePrometheusNotConfigured, errorCode(t, rec))
	})
}

func TestPolicyResolved(t *testing.T) {
	cfg := testConfig(t, map[string]string{"PLT_SKEW_HTTP_MAX_ALIVE_MS": "7200000", "PLT_SKEW_AUTO_CLEANUP": "true"})
	h := seeded(t, harnessOptions{defaults: DefaultsFromConfig(cfg)})
	rec := h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, `{"gracePeriodMs":60000,"autoCleanup":false}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	rec = h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code)
	var view struct {
		Overrides json.RawMessage            `json:"overrides"`
		Resolved  map[string]json.RawMessage `json:"resolved"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &view), rec.Body.String())
	assert.JSONEq(t, `{"gracePeriodMs": 60000, "autoCleanup": false}`, string(view.Overrides))
	// Every field of the policy is resolved (a new field joins without a change here).
	assert.Len(t, view.Resolved, reflect.TypeFor[registry.Policy]().NumField())
	for name, want := range map[string]string{
		"gracePeriodMs":   `{"value": 60000,   "source": "override"}`,
		"autoCleanup":     `{"value": false,   "source": "override"}`,
		"maxAliveMs":      `{"value": 7200000, "source": "default", "setting": "PLT_SKEW_HTTP_MAX_ALIVE_MS"}`,
		"checkIntervalMs": `{"value": 60000,   "source": "default", "setting": "PLT_SKEW_CHECK_INTERVAL_MS"}`,
		"trafficWindowMs": `{"value": 300000,  "source": "default", "setting": "PLT_SKEW_TRAFFIC_WINDOW_MS"}`,
		"cookieMaxAge":    `{"value": 43200,   "source": "default", "setting": "PLT_SKEW_COOKIE_MAX_AGE"}`,
		"requireApproval": `{"value": false,   "source": "default", "setting": "PLT_SKEW_REQUIRE_APPROVAL"}`,
	} {
		assert.JSONEq(t, want, string(view.Resolved[name]), name)
	}
}

// TestResolveCoversEveryPolicyField: a field added to registry.Policy shows in resolved without
// a change here; with a Config field of the same Go name it has a default and its variable.
func TestResolveCoversEveryPolicyField(t *testing.T) {
	d := DefaultsFromConfig(testConfig(t, nil))
	resolved := d.Resolve(registry.Policy{})
	typ := reflect.TypeFor[registry.Policy]()
	require.Len(t, resolved, typ.NumField())
	for i := range typ.NumField() {
		name := jsonName(typ.Field(i))
		r, ok := resolved[name]
		require.True(t, ok, name)
		assert.Equal(t, SourceDefault, r.Source, name)
		if _, global := reflect.TypeFor[config.Config]().FieldByName(typ.Field(i).Name); global {
			assert.NotNil(t, r.Value, "%s has a configured default", name)
			assert.NotEmpty(t, r.Setting, "%s names its variable", name)
		}
	}
	// A stored value outside today's bounds shows as the lifecycle applies it: clamped.
	huge := int64(9.3e12)
	assert.Equal(t, int64(2_592_000_000), d.Resolve(registry.Policy{MaxAliveMS: &huge})["maxAliveMs"].Value)
}

func testConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(t.Context(), mapLookuper(env))
	require.NoError(t, err)
	return cfg
}

type mapLookuper map[string]string

func (m mapLookuper) Lookup(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// fakePodCounter answers pod counts from a map of "namespace/service".
type fakePodCounter map[string]kube.PodCount

func (f fakePodCounter) Pods(namespace, service string) (kube.PodCount, bool) {
	n, ok := f[namespace+"/"+service]
	return n, ok
}

func TestListVersionsCountsPods(t *testing.T) {
	h := newHarness(t, harnessOptions{podCounter: fakePodCounter{
		"shop/web-v2": {Ready: 3, Total: 4},
		"shop/web-v1": {Ready: 0, Total: 0},
		"shop/web-v0": {Ready: 1, Total: 1}, // an expired version's count is never shown
	}})
	now := time.Now()
	for _, v := range []registry.Version{
		{Namespace: "shop", App: "web", Label: "0", State: registry.Expired, PendingAt: now.Add(-3 * time.Hour),
			Placement: registry.Placement{ServiceName: "web-v0"}},
		{Namespace: "shop", App: "web", Label: "1", State: registry.Draining, PendingAt: now.Add(-2 * time.Hour),
			Placement: registry.Placement{ServiceName: "web-v1"}},
		{Namespace: "shop", App: "web", Label: "2", State: registry.Active, PendingAt: now.Add(-time.Hour),
			Placement: registry.Placement{ServiceName: "web-v2"}},
		{Namespace: "shop", App: "web", Label: "3", State: registry.Pending, PendingAt: now,
			Placement: registry.Placement{ServiceName: "web-v3"}}, // not in the cache: unknown
	} {
		h.reg.addVersion(v)
	}
	rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var raw struct {
		Versions []map[string]any `json:"versions"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &raw))
	got := map[string][2]any{}
	for _, v := range raw.Versions {
		got[v["version"].(string)] = [2]any{v["podsReady"], v["podsTotal"]}
		assert.Contains(t, v, "serviceName", "the version's own fields are still inline")
	}
	assert.Equal(t, map[string][2]any{
		"2": {3.0, 4.0},
		"1": {0.0, 0.0}, // known: no pod at all is a count, not an absence
		"3": {nil, nil},
		"0": {nil, nil},
	}, got)

	// Without a counter the fields are absent.
	h = seeded(t, harnessOptions{})
	rec = h.do(t, "GET", "/api/v1/apps/shop/web/versions", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.NotContains(t, rec.Body.String(), "pods")
}
