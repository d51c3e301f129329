// Package loadgen is a small closed-loop HTTP load generator for measuring the gateway (test and
// benchmark use only): N concurrent clients, each sending its next request as soon as the last
// one is answered, for a fixed duration. It reports requests per second and latency
// percentiles, and counts every failed or wrong answer instead of stopping at the first.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// maxErrorSamples is how many error messages a Result keeps (the count keeps them all).
const maxErrorSamples = 10

// Next builds a client's next request from its own random source (never shared, so a client
// needs no lock) and returns the check its response must pass. check may be nil; it is called
// with the response before the body is drained and must not close the body.
type Next func(r *rand.Rand) (req *http.Request, check func(*http.Response) error)

// Config is one run.
type Config struct {
	Clients  int           // concurrent clients, at least 1
	Duration time.Duration // how long clients start new requests
	Seed     uint64        // client i draws from PCG(Seed, i): a seed makes the request mix repeatable
	Next     Next
	// Client sends the requests; nil means one with keep-alive connections for every client
	// and a 10 s timeout.
	Client *http.Client
}

// Result is what a run measured.
type Result struct {
	Requests     int             // answered and checked, errors included
	Errors       int             // transport errors, non-2xx answers and failed checks
	Elapsed      time.Duration   // from the first request to the last answer
	Latencies    []time.Duration // of every request, sorted
	ErrorSamples []string        // the first few errors
}

// RPS is the requests answered per second, errors included.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile is the nearest-rank p-th percentile of the latencies (0 < p <= 100), 0 without any.
func (r Result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return r.Latencies[min(max(rank, 1), n)-1]
}

// String is one line of figures.
func (r Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f req/s, p50 %s, p99 %s, %d errors",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS(),
		r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond), r.Errors)
}

// Merge adds up runs made one after the other (their elapsed times add up too).
func Merge(rs ...Result) Result {
	var out Result
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.Elapsed += r.Elapsed
		out.Latencies = append(out.Latencies, r.Latencies...)
		for _, s := range r.ErrorSamples {
			if len(out.ErrorSamples) < maxErrorSamples {
				out.ErrorSamples = append(out.ErrorSamples, s)
			}
		}
	}
	slices.Sort(out.Latencies)
	return out
}

// Run sends requests until cfg.Duration has passed or ctx ends, then waits for the requests in
// flight to be answered (they are counted; the client's timeout bounds the wait).
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clients < 1 {
		return Result{}, fmt.Errorf("loadgen: %d clients: at least 1 is needed", cfg.Clients)
	}
	if cfg.Duration <= 0 {
		return Result{}, fmt.Errorf("loadgen: duration %s: must be positive", cfg.Duration)
	}
	if cfg.Next == nil {
		return Result{}, errors.New("loadgen: no Next function")
	}
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = cfg.Clients
		tr.MaxIdleConnsPerHost = cfg.Clients
		client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		defer tr.CloseIdleConnections()
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	results := make([]Result, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Clients {
		wg.Go(func() {
			results[i] = runClient(ctx, client, cfg.Next, rand.New(rand.NewPCG(cfg.Seed, uint64(i))))
		})
	}
	wg.Wait()
	out := Merge(results...)
	out.Elapsed = time.Since(start)
	return out, nil
}

// runClient is one client's loop. ctx only decides whether to start another request: the one
// in flight when it ends is answered and counted.
func runClient(ctx context.Context, client *http.Client, next Next, rnd *rand.Rand) Result {
	var res Result
	for ctx.Err() == nil {
		req, check := next(rnd)
		began := time.Now()
		err := do(client, req, check)
		res.Latencies = append(res.Latencies, time.Since(began))
		res.Requests++
		if err != nil {
			res.Errors++
			if len(res.ErrorSamples) < maxErrorSamples {
				res.ErrorSamples = append(res.ErrorSamples, err.Error())
			}
		}
	}
	return res
}

func do(client *http.Client, req *http.Request, check func(*http.Response) error) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var checkErr error
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		checkErr = fmt.Errorf("%s %s: status %d", req.Method, req.URL, resp.StatusCode)
	case check != nil:
		checkErr = check(resp)
	}
	// Drain the body so the connection is reused.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil && checkErr == nil {
		checkErr = fmt.Errorf("%s %s: read body: %w", req.Method, req.URL, err)
	}
	return checkErr
}
