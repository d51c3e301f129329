package traffic

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRatesOverRunsTheBatchQueryAsARangeQuery(t *testing.T) {
	f := &fakePrometheus{status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"skewguard_version":"42"},"values":[[1700000060,"2"],[1700000000,"1.5"],[1700000120,"NaN"]]},
		{"metric":{"other":"x"},"values":[[1700000000,"9"]]}]}}`}
	q := newQuerier(t, f)
	q.MinRange = 10 * time.Second
	start := time.Unix(1700000000, 0)
	s, err := q.RatesOver(t.Context(), "shop", "myapp", time.Second, []Target{{Version: "42"}, {Version: "43"}},
		start, start.Add(2*time.Minute), time.Minute)
	require.NoError(t, err)
	// The same query as an instant reading of the same targets and window.
	want, err := q.Template().Batch("shop", "myapp", q.Range(time.Second), []Target{{Version: "42"}, {Version: "43"}})
	require.NoError(t, err)
	assert.Equal(t, want, s.Query)
	assert.Equal(t, []string{want}, f.queries)
	assert.Equal(t, []Point{{At: start.UTC(), RPS: 1.5}, {At: start.Add(time.Minute).UTC(), RPS: 2}}, s.Points["42"],
		"oldest first; NaN is no point")
	assert.Empty(t, s.Points["43"], "no series: no points, never zeros")

	_, err = q.RatesOver(t.Context(), "shop", "myapp", time.Second, []Target{{Version: "42"}}, start, start, 0)
	assert.Error(t, err, "a zero step")

	f.body = `{"status":"success","data":{"resultType":"vector","result":[]}}`
	_, err = q.RatesOver(t.Context(), "shop", "myapp", time.Second, []Target{{Version: "42"}}, start, start, time.Minute)
	assert.ErrorContains(t, err, "expected a range vector")
}
