package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Reading is one version's request rate. Found is false when the query returned nothing for the
// version (or NaN): the rate is unknown, which is not the same as zero.
type Reading struct {
	RPS   float64 `json:"rps"`
	Found bool    `json:"found"`
}

// Rates is the answer of one batched query: a reading per queried version, at one instant.
type Rates struct {
	At       time.Time          `json:"at"`
	Query    string             `json:"query"`
	Readings map[string]Reading `json:"readings"` // by version label
	// Reference is the app's Active version when it was queried alongside the draining ones: its
	// series shows that the app's traffic is visible to the query at all.
	Reference string `json:"reference,omitempty"`
}

// Of returns the reading of one version. A version with no series counts as zero only when the
// Reference version has one: the query demonstrably sees the app's traffic, and no request reached
// this version in the window (Traefik, for one, creates a series on a backend's first request).
// Otherwise no series stays unknown, never zero.
func (r Rates) Of(version string) Reading {
	got := r.Readings[version]
	if !got.Found && r.Reference != "" && r.Reference != version && r.Readings[r.Reference].Found {
		return Reading{RPS: 0, Found: true}
	}
	return got
}

// ErrNoPrometheus is returned when no Prometheus URL is configured.
var ErrNoPrometheus = errors.New("no Prometheus URL configured (PROMETHEUS_URL)")

// Querier runs batched traffic queries against Prometheus.
type Querier struct {
	api  promv1.API
	tmpl *Template
	// MinRange is the shortest range a query uses. rate() and sum_over_time() need at least two
	// samples in the range, so a traffic window shorter than two scrape intervals would always
	// read as "unknown"; the window is widened to MinRange in that case.
	MinRange time.Duration
	// Timeout bounds one query on the Prometheus side (0: the server default).
	Timeout time.Duration
	Log     *slog.Logger

	queries atomic.Int64
}

// NewQuerier returns a Querier for the Prometheus at url using tmpl.
func NewQuerier(url string, tmpl *Template) (*Querier, error) {
	if url == "" {
		return nil, ErrNoPrometheus
	}
	if tmpl == nil {
		return nil, fmt.Errorf("traffic querier: no template")
	}
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", url, err)
	}
	return &Querier{api: promv1.NewAPI(c), tmpl: tmpl, Log: slog.Default()}, nil
}

// Template returns the per-version template the querier renders.
func (q *Querier) Template() *Template { return q.tmpl }

// Range returns the range a query over window really uses.
func (q *Querier) Range(window time.Duration) time.Duration { return max(window, q.MinRange) }

// Queries returns how many queries the querier has sent to Prometheus (failed ones included).
func (q *Querier) Queries() int64 { return q.queries.Load() }

// Rates asks Prometheus, in one instant query evaluated now, for the request rate of every target.
func (q *Querier) Rates(ctx context.Context, namespace, app string, window time.Duration, targets []Target) (Rates, error) {
	return q.RatesAt(ctx, namespace, app, window, targets, time.Now())
}

// RatesAt is Rates evaluated at the instant at: the readings cover the window that ends at at.
func (q *Querier) RatesAt(ctx context.Context, namespace, app string, window time.Duration, targets []Target, at time.Time) (Rates, error) {
	query, err := q.tmpl.Batch(namespace, app, q.Range(window), targets)
	if err != nil {
		return Rates{}, err
	}
	q.queries.Add(1)
	var opts []promv1.Option
	if q.Timeout > 0 {
		opts = append(opts, promv1.WithTimeout(q.Timeout))
	}
	val, warnings, _, err := q.api.Query(ctx, query, at, opts...)
	if err != nil {
		return Rates{}, fmt.Errorf("query Prometheus for %s/%s: %w", namespace, app, err)
	}
	if len(warnings) > 0 && q.Log != nil {
		q.Log.Warn("prometheus warnings", "namespace", namespace, "app", app, "warnings", []string(warnings))
	}
	readings, err := parse(val)
	if err != nil {
		return Rates{}, fmt.Errorf("query Prometheus for %s/%s: %w", namespace, app, err)
	}
	out := Rates{At: at, Query: query, Readings: make(map[string]Reading, len(targets))}
	for _, t := range targets {
		out.Readings[t.Version] = readings[t.Version]
	}
	return out, nil
}

// Validate asks Prometheus to parse the query of a sample version, so a broken template is found
// at start-up rather than at the first check.
func (q *Querier) Validate(ctx context.Context) error {
	query, err := q.tmpl.Batch("ns", "app", q.Range(5*time.Minute), []Target{{Version: "v1", Service: "app-v1"}})
	if err != nil {
		return err
	}
	if _, err := q.api.FormatQuery(ctx, query); err != nil {
		return fmt.Errorf("traffic query template does not parse: %w", err)
	}
	return nil
}

func parse(val model.Value) (map[string]Reading, error) {
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("expected an instant vector, got %s", val.Type())
	}
	out := make(map[string]Reading, len(vec))
	for _, s := range vec {
		v := float64(s.Value)
		version := string(s.Metric[VersionLabel])
		if version == "" || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			continue
		}
		r := out[version]
		r.RPS += v
		r.Found = true
		out[version] = r
	}
	return out, nil
}
