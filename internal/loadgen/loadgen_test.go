package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var r Result
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, r.Percentile(50))
	assert.Equal(t, 99*time.Millisecond, r.Percentile(99))
	assert.Equal(t, 100*time.Millisecond, r.Percentile(100))
	assert.Equal(t, 1*time.Millisecond, r.Percentile(0.001))

	r.Latencies = []time.Duration{7, 9}
	assert.Equal(t, time.Duration(7), r.Percentile(50))
	assert.Equal(t, time.Duration(9), r.Percentile(99))
	assert.Zero(t, Result{}.Percentile(50))
}

func TestMergeAddsRunsUp(t *testing.T) {
	a := Result{Requests: 3, Errors: 1, Elapsed: time.Second, Latencies: []time.Duration{1, 5, 9}, ErrorSamples: []string{"a"}}
	b := Result{Requests: 2, Elapsed: 3 * time.Second, Latencies: []time.Duration{2, 6}}
	m := Merge(a, b)
	assert.Equal(t, 5, m.Requests)
	assert.Equal(t, 1, m.Errors)
	assert.Equal(t, 4*time.Second, m.Elapsed)
	assert.Equal(t, []time.Duration{1, 2, 5, 6, 9}, m.Latencies)
	assert.Equal(t, []string{"a"}, m.ErrorSamples)
	assert.InDelta(t, 1.25, m.RPS(), 1e-9)
	assert.Zero(t, Result{}.RPS())
}

// Every request sent is counted once, with its latency; failed checks, bad statuses and
// transport errors are all errors; the run ends at its duration.
func TestRunCountsEveryRequestAndError(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		switch r.URL.Path {
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
		default:
			w.Header().Set("X-Version", r.URL.Query().Get("v"))
		}
		fmt.Fprint(w, "body")
	}))
	defer srv.Close()

	next := func(rnd *rand.Rand) (*http.Request, func(*http.Response) error) {
		path, v := "/ok", "1"
		switch rnd.IntN(4) {
		case 0:
			path = "/teapot"
		case 1:
			v = "2" // answered, but the check wants 1
		}
		req, err := http.NewRequest(http.MethodGet, srv.URL+path+"?v="+v, nil)
		require.NoError(t, err)
		return req, func(resp *http.Response) error {
			if got := resp.Header.Get("X-Version"); got != "1" {
				return fmt.Errorf("version %q", got)
			}
			return nil
		}
	}
	began := time.Now()
	res, err := Run(context.Background(), Config{Clients: 4, Duration: 300 * time.Millisecond, Seed: 1, Next: next})
	require.NoError(t, err)
	took := time.Since(began)

	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Less(t, took, 5*time.Second, "the run ends at its duration")
	require.Positive(t, res.Requests)
	assert.Equal(t, int(served.Load()), res.Requests, "every request served is counted, once")
	assert.Len(t, res.Latencies, res.Requests)
	assert.Positive(t, res.Errors)
	assert.Less(t, res.Errors, res.Requests)
	assert.LessOrEqual(t, len(res.ErrorSamples), maxErrorSamples*4)
	assert.Positive(t, res.RPS())
	assert.LessOrEqual(t, res.Percentile(50), res.Percentile(99))

	// Transport errors count too.
	srv.Close()
	res, err = Run(context.Background(), Config{Clients: 2, Duration: 50 * time.Millisecond, Next: next})
	require.NoError(t, err)
	require.Positive(t, res.Requests)
	assert.Equal(t, res.Requests, res.Errors)
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	next := func(*rand.Rand) (*http.Request, func(*http.Response) error) {
		if n.Add(1) == 20 {
			cancel()
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		return req, nil
	}
	began := time.Now()
	res, err := Run(ctx, Config{Clients: 2, Duration: time.Hour, Next: next})
	require.NoError(t, err)
	assert.Less(t, time.Since(began), 10*time.Second)
	assert.GreaterOrEqual(t, res.Requests, 20)
	assert.Zero(t, res.Errors)
}

// A seed makes the request mix repeatable: client i always draws the same sequence.
func TestRunIsRepeatableBySeed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	draws := func(seed uint64) []int {
		var got []int
		next := func(rnd *rand.Rand) (*http.Request, func(*http.Response) error) {
			if len(got) < 5 {
				got = append(got, rnd.IntN(1000))
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			return req, nil
		}
		_, err := Run(context.Background(), Config{Clients: 1, Duration: 50 * time.Millisecond, Seed: seed, Next: next})
		require.NoError(t, err)
		return got
	}
	assert.Equal(t, draws(7), draws(7))
	assert.NotEqual(t, draws(7), draws(8))
}

func TestRunRefusesBadConfig(t *testing.T) {
	next := func(*rand.Rand) (*http.Request, func(*http.Response) error) { return nil, nil }
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Clients: 0, Duration: time.Second, Next: next}, "0 clients"},
		{Config{Clients: 1, Duration: 0, Next: next}, "duration 0s"},
		{Config{Clients: 1, Duration: time.Second}, "no Next"},
	} {
		_, err := Run(context.Background(), tc.cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}
