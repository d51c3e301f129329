package main

import (
	"context"
	"fmt"
	"io"

	"sort"
	"strings"
	"time"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/benchtable"
)

// procFigures are one process's figures over a window.
type procFigures struct {
	rss, maxRSS, hwm float64 // bytes: at the end, highest sampled in the window, peak of its life
	cores            float64
	heap, goroutines float64 // Go heap in use and goroutines (the worker's /metrics)
}

// stepResult is what one step measured.
type stepResult struct {
	n                   int
	started             int
	startDur, settleDur time.Duration
	window              time.Duration
	worker, server      procFigures
	actions             float64 // Temporal actions in the window (the dev server's `action` counter)
	actionsPerHour      float64
	workflowTasksPerH   float64 // RespondWorkflowTaskCompleted calls
	activitiesPerHour   float64 // activities scheduled
	byType              map[string]float64
	// CPU seconds each process spent per lifecycle opened, from the first start to the last
	// first workflow task.
	serverCPUPerStart, workerCPUPerStart float64
	serverWrittenPerStart                float64 // bytes the dev server wrote to disk per lifecycle opened
	serverWrittenPerHour                 float64 // bytes per hour at rest
	dbBytes                              float64
}

// actionTypes sums the dev server's `action` counter by action_type.
func actionTypes(text string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "action{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `action_type="`)
		typ, _, ok := strings.Cut(rest, `"`)
		if !ok {
			return nil, fmt.Errorf("action without action_type: %q", line)
		}
		v, _, err := metricSum(line, "action")
		if err != nil {
			return nil, err
		}
		out[typ] += v
	}
	return out, nil
}

// delta is after - before, per key, without the zeros.
func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// serverCounters reads the dev server's counters that the window compares.
type serverCounters struct {
	actions                   map[string]float64
	workflowTasks, activities float64
}

func readCounters(ctx context.Context, url string) (serverCounters, error) {
	text, err := scrape(ctx, url)
	if err != nil {
		return serverCounters{}, err
	}
	var c serverCounters
	if c.actions, err = actionTypes(text); err != nil {
		return c, err
	}
	if c.workflowTasks, _, err = metricSum(text, "service_requests", `operation="RespondWorkflowTaskCompleted"`, `service_name="frontend"`); err != nil {
		return c, err
	}
	c.activities = c.actions["command_ScheduleActivityTask"]
	return c, nil
}

// measure samples both processes and the dev server's counters across the window.
func measure(ctx context.Context, r *stepResult, dev *devServer, worker *proc, window time.Duration) error {
	c0, err := readCounters(ctx, dev.metricsURL)
	if err != nil {
		return err
	}
	w0, err := readProc(worker.pid())
	if err != nil {
		return err
	}
	s0, err := readProc(dev.pid())
	if err != nil {
		return err
	}
	maxW, maxS := w0.rssBytes, s0.rssBytes
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-worker.done:
			return fmt.Errorf("the worker exited during the window (see worker.log)")
		case <-dev.done:
			return fmt.Errorf("the dev server exited during the window (see temporal.log)")
		case <-time.After(min(5*time.Second, time.Until(end))):
		}
		if w, err := readProc(worker.pid()); err == nil {
			maxW = max(maxW, w.rssBytes)
		}
		if s, err := readProc(dev.pid()); err == nil {
			maxS = max(maxS, s.rssBytes)
		}
	}
	w1, err := readProc(worker.pid())
	if err != nil {
		return err
	}
	s1, err := readProc(dev.pid())
	if err != nil {
		return err
	}
	c1, err := readCounters(ctx, dev.metricsURL)
	if err != nil {
		return err
	}
	wm, err := scrape(ctx, "http://"+worker.addr+"/metrics")
	if err != nil {
		return err
	}
	r.window = w1.at.Sub(w0.at)
	r.worker = procFigures{rss: float64(w1.rssBytes), maxRSS: float64(max(maxW, w1.rssBytes)), hwm: float64(w1.hwmBytes), cores: cores(w0, w1)}
	if r.worker.heap, _, err = metricSum(wm, "go_memstats_heap_inuse_bytes"); err != nil {
		return err
	}
	if r.worker.goroutines, _, err = metricSum(wm, "go_goroutines"); err != nil {
		return err
	}
	r.server = procFigures{rss: float64(s1.rssBytes), maxRSS: float64(max(maxS, s1.rssBytes)), hwm: float64(s1.hwmBytes), cores: cores(s0, s1)}
	r.byType = delta(c0.actions, c1.actions)
	r.actions = sum(r.byType)
	r.actionsPerHour = perHour(r.actions, r.window)
	r.workflowTasksPerH = perHour(c1.workflowTasks-c0.workflowTasks, r.window)
	r.activitiesPerHour = perHour(c1.activities-c0.activities, r.window)
	r.dbBytes = dev.dbBytes()
	r.serverWrittenPerHour = perHour(float64(s1.written-s0.written), r.window)
	return nil
}

// rssGoal is the goal of the issue: 10,000 open lifecycles on one worker in at most 1 GiB.
const rssGoal = 1 << 30

// rows turns the steps into the table: each figure per step; a later step names the first one as
// its peer, and its ratio is later/first (how the figure grows with the open lifecycles).
func rows(rs []stepResult, checking float64, p activities.Policy) []benchtable.Row {
	if len(rs) == 0 {
		return nil
	}
	type fig struct {
		name, goal string
		value      func(stepResult) float64
		format     func(float64) string
		met        func(float64) bool
	}
	cores := func(v float64) string { return fmt.Sprintf("%.3f cores", v) }
	count := func(unit string) func(float64) string {
		return func(v float64) string { return fmt.Sprintf("%.0f %s", v, unit) }
	}
	figs := []fig{
		{"worker RSS at rest", "≤ 1 GiB", func(r stepResult) float64 { return r.worker.rss }, mib, func(v float64) bool { return v <= rssGoal }},
		{"worker Go heap in use at rest", "", func(r stepResult) float64 { return r.worker.heap }, mib, nil},
		{"worker goroutines at rest", "", func(r stepResult) float64 { return r.worker.goroutines }, count("goroutines"), nil},
		{"worker peak RSS (starts included)", "≤ 1 GiB", func(r stepResult) float64 { return r.worker.hwm }, mib, func(v float64) bool { return v <= rssGoal }},
		{"worker CPU at rest", "", func(r stepResult) float64 { return r.worker.cores }, cores, nil},
		{"Temporal actions per hour at rest", "", func(r stepResult) float64 { return r.actionsPerHour }, count("actions/h"), nil},
		{"workflow tasks per hour at rest", "", func(r stepResult) float64 { return r.workflowTasksPerH }, count("tasks/h"), nil},
		{"activities per hour at rest", "", func(r stepResult) float64 { return r.activitiesPerHour }, count("activities/h"), nil},
		{"dev server RSS at rest", "", func(r stepResult) float64 { return r.server.rss }, mib, nil},
		{"dev server peak RSS", "", func(r stepResult) float64 { return r.server.hwm }, mib, nil},
		{"dev server CPU at rest", "", func(r stepResult) float64 { return r.server.cores }, cores, nil},
		{"dev server SQLite file", "", func(r stepResult) float64 { return r.dbBytes }, mib, nil},
		{"dev server CPU per lifecycle opened (start + first workflow task)", "", func(r stepResult) float64 { return r.serverCPUPerStart * 1000 }, count("ms"), nil},
		{"dev server disk writes per lifecycle opened", "", func(r stepResult) float64 { return r.serverWrittenPerStart / 1024 }, count("KiB"), nil},
		{"dev server disk writes per hour at rest", "", func(r stepResult) float64 { return r.serverWrittenPerHour }, mib, nil},
		{"worker CPU per lifecycle opened", "", func(r stepResult) float64 { return r.workerCPUPerStart * 1000 }, count("ms"), nil},
		{"workflow starts per second", "", func(r stepResult) float64 { return float64(r.started) / r.startDur.Seconds() }, count("starts/s"), nil},
		{"starts → every first workflow task done", "", func(r stepResult) float64 { return (r.startDur + r.settleDur).Seconds() }, func(v float64) string { return fmt.Sprintf("%.1f s", v) }, nil},
	}
	what := "at rest"
	if checking > 0 {
		what = fmt.Sprintf("%.0f%% of apps checking traffic every %s", checking*100, p.CheckInterval)
	}
	var out []benchtable.Row
	first := rs[0]
	for _, f := range figs {
		for _, r := range rs {
			v := f.value(r)
			row := benchtable.Row{
				Figure: fmt.Sprintf("lifecycles (%s): %s, %s open", what, f.name, thousands(r.n)),
				Value:  f.format(v), Goal: f.goal,
			}
			if f.met != nil {
				row.Met = benchtable.Met(f.met(v))
			}
			if r.n != first.n {
				row.Peer = f.format(f.value(first)) + " at " + thousands(first.n)
				row.Ratio = ratio(f.value(first), v)
			}
			out = append(out, row)
		}
	}
	return out
}

// thousands writes n with comma separators: 10000 → "10,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// describe lists the action types of a window, largest first, for the log.
func describe(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%.0f", k, m[k])
	}
	if b.Len() == 0 {
		return " none"
	}
	return b.String()
}

func writeRow(w io.Writer, row benchtable.Row) error { return benchtable.Write(w, row) }
