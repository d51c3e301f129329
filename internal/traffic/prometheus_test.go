package traffic

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakePrometheus answers /api/v1/query with a fixed body and records the queries it got.
type fakePrometheus struct {
	mu      sync.Mutex
	queries []string
	status  int
	body    string
}

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	f.queries = append(f.queries, r.Form.Get("query"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

func newQuerier(t *testing.T, f *fakePrometheus) *Querier {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	tmpl, err := Parse(`rate(req{v="{{str .Version}}"}[{{.Window}}])`)
	require.NoError(t, err)
	q, err := NewQuerier(srv.URL, tmpl)
	require.NoError(t, err)
	return q
}

func TestRates(t *testing.T) {
	f := &fakePrometheus{status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"skewguard_version":"41"},"value":[1700000000,"0"]},
		{"metric":{"skewguard_version":"42"},"value":[1700000000,"2.5"]},
		{"metric":{"skewguard_version":"43"},"value":[1700000000,"NaN"]},
		{"metric":{"other":"x"},"value":[1700000000,"9"]}]}}`}
	q := newQuerier(t, f)
	q.MinRange = 10 * time.Second

	rates, err := q.Rates(t.Context(), "shop", "myapp", time.Second, []Target{
		{Version: "41"}, {Version: "42"}, {Version: "43"}, {Version: "44"},
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]Reading{
		"41": {RPS: 0, Found: true},
		"42": {RPS: 2.5, Found: true},
		"43": {}, // NaN is unknown, not zero
		"44": {}, // absent is unknown, not zero
	}, rates.Readings)
	require.Len(t, f.queries, 1, "one query for every version")
	assert.Equal(t, f.queries[0], rates.Query)
	assert.Contains(t, rates.Query, "[10s]", "the window is widened to MinRange")
	assert.False(t, rates.At.IsZero())
}

func TestRatesFailures(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"server error", 500, `{"status":"error","errorType":"internal","error":"boom"}`},
		{"bad query", 400, `{"status":"error","errorType":"bad_data","error":"parse error"}`},
		{"not a vector", 200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuerier(t, &fakePrometheus{status: tt.status, body: tt.body})
			_, err := q.Rates(t.Context(), "shop", "myapp", time.Minute, []Target{{Version: "41"}})
			assert.ErrorContains(t, err, "query Prometheus for shop/myapp")
		})
	}
}

func TestNewQuerierNeedsURL(t *testing.T) {
	tmpl, err := Select(PresetWatt, "")
	require.NoError(t, err)
	_, err = NewQuerier("", tmpl)
	assert.ErrorIs(t, err, ErrNoPrometheus)
}

// TestRatesOf: no series is zero only when the Active reference version has one; otherwise unknown.
func TestRatesOf(t *testing.T) {
	found := func(rps float64) Reading { return Reading{RPS: rps, Found: true} }
	tests := []struct {
		name  string
		rates Rates
		want  Reading
	}{
		{"series found", Rates{Readings: map[string]Reading{"1": found(0.5)}, Reference: "2"}, found(0.5)},
		{"no series, reference seen", Rates{Readings: map[string]Reading{"1": {}, "2": found(3)}, Reference: "2"}, found(0)},
		{"no series, reference idle too", Rates{Readings: map[string]Reading{"1": {}, "2": {}}, Reference: "2"}, Reading{}},
		{"no series, no reference", Rates{Readings: map[string]Reading{"1": {}}}, Reading{}},
		{"asking version is the reference", Rates{Readings: map[string]Reading{"1": {}}, Reference: "1"}, Reading{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.rates.Of("1"))
		})
	}
}
