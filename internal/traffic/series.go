package traffic

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Point is one reading of a series: the request rate over the traffic window that ends at At.
type Point struct {
	At  time.Time `json:"at"`
	RPS float64   `json:"rps"`
}

// Series is the answer of one range query: the points of each queried version between Start
// and End, Step apart. An instant at which the query found nothing for a version (no series,
// NaN) has no point: unknown, never zero.
type Series struct {
	Query  string             `json:"query"`
	Start  time.Time          `json:"start"`
	End    time.Time          `json:"end"`
	Step   time.Duration      `json:"-"`
	Points map[string][]Point `json:"-"` // by version label, oldest first
}

// RatesOver runs the query Rates runs (the same template, batch and window widening) as a range
// query from start to end, one evaluation every step: the request rate of each target over time.
func (q *Querier) RatesOver(ctx context.Context, namespace, app string, window time.Duration, targets []Target,
	start, end time.Time, step time.Duration) (Series, error) {
	if step <= 0 || end.Before(start) {
		return Series{}, fmt.Errorf("range query for %s/%s: bad range %s to %s step %s", namespace, app, start, end, step)
	}
	query, err := q.tmpl.Batch(namespace, app, q.Range(window), targets)
	if err != nil {
		return Series{}, err
	}
	q.queries.Add(1)
	var opts []promv1.Option
	if q.Timeout > 0 {
		opts = append(opts, promv1.WithTimeout(q.Timeout))
	}
	val, warnings, _, err := q.api.QueryRange(ctx, query, promv1.Range{Start: start, End: end, Step: step}, opts...)
	if err != nil {
		return Series{}, fmt.Errorf("range query Prometheus for %s/%s: %w", namespace, app, err)
	}
	if len(warnings) > 0 && q.Log != nil {
		q.Log.Warn("prometheus warnings", "namespace", namespace, "app", app, "warnings", []string(warnings))
	}
	points, err := parseMatrix(val)
	if err != nil {
		return Series{}, fmt.Errorf("range query Prometheus for %s/%s: %w", namespace, app, err)
	}
	out := Series{Query: query, Start: start, End: end, Step: step, Points: make(map[string][]Point, len(targets))}
	for _, t := range targets {
		out.Points[t.Version] = points[t.Version]
	}
	return out, nil
}

// parseMatrix reads a range answer: the points of each version, summed per instant when a
// template yields several series of one version (it should not: Batch wraps it in sum()).
func parseMatrix(val model.Value) (map[string][]Point, error) {
	m, ok := val.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("expected a range vector, got %s", val.Type())
	}
	type key struct {
		version string
		at      model.Time
	}
	sums := map[key]float64{}
	order := map[string][]model.Time{}
	for _, s := range m {
		version := string(s.Metric[VersionLabel])
		if version == "" {
			continue
		}
		for _, p := range s.Values {
			v := float64(p.Value)
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				continue
			}
			k := key{version, p.Timestamp}
			if _, seen := sums[k]; !seen {
				order[version] = append(order[version], p.Timestamp)
			}
			sums[k] += v
		}
	}
	out := make(map[string][]Point, len(order))
	for version, times := range order {
		pts := make([]Point, 0, len(times))
		for _, at := range times {
			pts = append(pts, Point{At: at.Time().UTC(), RPS: sums[key{version, at}]})
		}
		slices.SortFunc(pts, func(a, b Point) int { return a.At.Compare(b.At) })
		out[version] = pts
	}
	return out, nil
}
