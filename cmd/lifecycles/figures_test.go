package main

import (
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/benchtable"
	"github.com/skewguard/skewguard/internal/registry"
)

// A real line's shape, with a command name holding a space and a ')' to fool a naive split:
// utime is field 14 (1234), stime field 15 (567).
const statLine = "4242 (skew guard) x) S 1 4242 4242 0 -1 4194560 2875 0 0 0 1234 567 0 0 39 19 12 0 1000 1290016768 7890 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0"

func TestParseStatCPUCountsFromTheLastParenthesis(t *testing.T) {
	got, err := parseStatCPU(statLine)
	require.NoError(t, err)
	assert.Equal(t, uint64(1234+567), got)
}

func TestParseStatCPURefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "4242 skewguard S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 5 0"} {
		_, err := parseStatCPU(s)
		assert.Error(t, err, s)
	}
}

const statusText = `Name:	skewguard
VmPeak:	 2000000 kB
VmHWM:	  300000 kB
VmRSS:	  123456 kB
RssAnon:	  100000 kB
`

func TestParseStatusKB(t *testing.T) {
	rss, err := parseStatusKB(statusText, "VmRSS")
	require.NoError(t, err)
	assert.Equal(t, uint64(123456*1024), rss)
	hwm, err := parseStatusKB(statusText, "VmHWM")
	require.NoError(t, err)
	assert.Equal(t, uint64(300000*1024), hwm)
	_, err = parseStatusKB(statusText, "VmSwap")
	assert.ErrorContains(t, err, "no VmSwap line")
	_, err = parseStatusKB("VmRSS:\t12 MB\n", "VmRSS")
	assert.Error(t, err)
}

func TestReadProcOfThisProcess(t *testing.T) {
	s, err := readProc(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, s.rssBytes)
	assert.GreaterOrEqual(t, s.hwmBytes, s.rssBytes)
}

func TestParseIOWritten(t *testing.T) {
	got, err := parseIOWritten("rchar: 940568253\nwchar: 14007135919\ncancelled_write_bytes: 7\nread_bytes: 5808128\nwrite_bytes: 14353854464\n")
	require.NoError(t, err)
	assert.Equal(t, uint64(14353854464), got)
	_, err = parseIOWritten("rchar: 1\n")
	assert.Error(t, err)
}

func TestCoresAndPerHour(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// 150 ticks (1.5 s of CPU) over 10 s of wall time: 0.15 cores.
	assert.InDelta(t, 0.15, cores(procSample{at: t0, cpuTicks: 50}, procSample{at: t0.Add(10 * time.Second), cpuTicks: 200}), 1e-9)
	assert.True(t, math.IsNaN(cores(procSample{at: t0}, procSample{at: t0})), "no wall time")
	assert.True(t, math.IsNaN(cores(procSample{at: t0, cpuTicks: 9}, procSample{at: t0.Add(time.Second), cpuTicks: 1})), "counter went back: another process")
	assert.InDelta(t, 1.5, cpuSeconds(procSample{cpuTicks: 50}, procSample{cpuTicks: 200}), 1e-9)
	assert.True(t, math.IsNaN(cpuSeconds(procSample{cpuTicks: 9}, procSample{cpuTicks: 1})))
	assert.InDelta(t, 600, perHour(20, 2*time.Minute), 1e-9)
	assert.True(t, math.IsNaN(perHour(1, 0)))
}

const metricsText = `# HELP action action counter
# TYPE action counter
action{action_type="command_StartTimer",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 20
action{action_type="command_UpsertWorkflowSearchAttributes",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 104
action{action_type="grpc_StartWorkflowExecution",namespace="default",operation="StartWorkflowExecution",service_name="frontend"} 21
action_latency{action_type="command_StartTimer"} 99999
service_requests{namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 7
service_requests{namespace="default",operation="RespondWorkflowTaskCompleted",service_name="history"} 1000
service_requests{namespace="default",operation="RespondWorkflowTaskCompletedX",service_name="frontend"} 5
go_goroutines 157
go_memstats_heap_inuse_bytes 1.5e+07
`

func TestMetricSum(t *testing.T) {
	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"action", nil, 145}, // not action_latency
		{"action", []string{`action_type="command_UpsertWorkflowSearchAttributes"`}, 104},
		{"service_requests", []string{`operation="RespondWorkflowTaskCompleted"`, `service_name="frontend"`}, 7},
		{"go_goroutines", nil, 157},
		{"go_memstats_heap_inuse_bytes", nil, 1.5e7},
	} {
		got, found, err := metricSum(metricsText, c.name, c.match...)
		require.NoError(t, err)
		assert.True(t, found, c.name)
		assert.Equal(t, c.want, got, "%s %v", c.name, c.match)
	}
	_, found, err := metricSum(metricsText, "go_gc")
	require.NoError(t, err)
	assert.False(t, found)
	_, _, err = metricSum("action{a=\"b\" 3\n", "action")
	assert.Error(t, err)
	_, _, err = metricSum("action{a=\"b\"} x\n", "action")
	assert.Error(t, err)
}

func TestActionTypesAndDelta(t *testing.T) {
	before, err := actionTypes(metricsText)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"command_StartTimer": 20, "command_UpsertWorkflowSearchAttributes": 104, "grpc_StartWorkflowExecution": 21}, before)
	after, err := actionTypes(strings.ReplaceAll(metricsText, "} 20\n", "} 26\n") +
		`action{action_type="command_ScheduleActivityTask",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 3` + "\n")
	require.NoError(t, err)
	d := delta(before, after)
	assert.Equal(t, map[string]float64{"command_StartTimer": 6, "command_ScheduleActivityTask": 3}, d)
	assert.Equal(t, 9.0, sum(d))
	assert.Equal(t, " command_StartTimer=6 command_ScheduleActivityTask=3", describe(d))
}

func TestParseSteps(t *testing.T) {
	got, err := parseSteps("1000, 10000", 10)
	require.NoError(t, err)
	assert.Equal(t, []int{1000, 10000}, got)
	for _, bad := range []string{"", "1000,1000", "10000,1000", "1005", "0", "-10", "ten"} {
		_, err := parseSteps(bad, 10)
		assert.Error(t, err, bad)
	}
}

func TestParseSettingsNamesWhatIsMissing(t *testing.T) {
	env := map[string]string{"SKEWGUARD_TEST_PG_URL": "postgres://x/postgres?sslmode=disable", "KUBECONFIG": "k",
		"PROMETHEUS_URL": "http://p", "SKEWGUARD_TEST_TEMPORAL_CLI": "/t"}
	s, err := parseSettings([]string{"-n", "100,200", "-window", "30s"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []int{100, 200}, s.steps)
	assert.Equal(t, 30*time.Second, s.window)
	assert.Equal(t, 10, s.perApp)

	delete(env, "KUBECONFIG")
	delete(env, "PROMETHEUS_URL")
	_, err = parseSettings(nil, func(k string) string { return env[k] }, io.Discard)
	assert.ErrorContains(t, err, "missing KUBECONFIG, PROMETHEUS_URL")
	for _, args := range [][]string{{"-checking", "1.5"}, {"-per-app", "1"}, {"-window", "0s"}, {"extra"}} {
		_, err := parseSettings(args, func(k string) string { return env[k] }, io.Discard)
		assert.Error(t, err, "%v", args)
	}
}

func TestPlanPutsEachVersionWhereTheRunNeedsIt(t *testing.T) {
	policy := activities.Policy{GracePeriod: 30 * time.Minute, TrafficWindow: 5 * time.Minute, CheckInterval: time.Minute, MaxAlive: 24 * time.Hour}
	p := lifecyclePlan{ns: "ns", perApp: 10, checking: 0.1, rest: 45 * time.Minute, spread: 5 * time.Minute, origin: time.Now(), policy: policy}
	checkingApps := 0
	for i := range 2000 {
		in := p.input(i)
		assert.NotEmpty(t, in.ServiceName)
		r := in.Resume
		require.NotNil(t, r)
		assert.Equal(t, int64(i+1), r.VersionID)
		assert.Equal(t, policy, r.Policy)
		if i%10 == 9 {
			assert.Equal(t, registry.Active, r.State, "the last version of an app is Active")
			assert.Equal(t, "v10", in.Ref.Label)
			continue
		}
		require.Equal(t, registry.Draining, r.State)
		assert.Equal(t, "v10", r.By)
		assert.Equal(t, r.DrainingAt, r.Transitions[len(r.Transitions)-1].At)
		graceEnd := r.DrainingAt.Add(policy.GracePeriod)
		if p.checks(i / 10) {
			if i%10 == 0 {
				checkingApps++
			}
			firstRead := graceEnd.Add(policy.TrafficWindow)
			assert.False(t, firstRead.After(p.origin), "a checking version may read traffic at once")
			assert.True(t, firstRead.After(p.origin.Add(-policy.CheckInterval)), "and has not read for long")
		} else {
			assert.False(t, graceEnd.Before(p.origin.Add(p.rest-p.spread)), "at rest: no grace timer fires before rest - spread")
			assert.False(t, graceEnd.After(p.origin.Add(p.rest)), "at rest: every grace timer fires by rest")
		}
	}
	assert.Equal(t, 20, checkingApps, "10% of 200 apps")
	p.checking = 0
	assert.False(t, p.checks(0))
}

func TestRowsNameTheFirstStepAsPeerAndGiveTheGrowth(t *testing.T) {
	step := func(n int, rss float64) stepResult {
		return stepResult{n: n, started: n, startDur: 10 * time.Second, worker: procFigures{rss: rss, hwm: rss, cores: 0.01},
			actionsPerHour: 0, serverCPUPerStart: 0.05}
	}
	rs := rows([]stepResult{step(1000, 100<<20), step(10000, 1200<<20)}, 0, activities.Policy{CheckInterval: time.Minute})
	byFigure := map[string]benchtable.Row{}
	for _, r := range rs {
		byFigure[r.Figure] = r
	}
	small := byFigure["lifecycles (at rest): worker RSS at rest, 1,000 open"]
	big := byFigure["lifecycles (at rest): worker RSS at rest, 10,000 open"]
	assert.Equal(t, benchtable.Row{Figure: small.Figure, Value: "100 MiB", Goal: "≤ 1 GiB", Met: "yes"}, small)
	assert.Equal(t, "1200 MiB", big.Value)
	assert.Equal(t, "no", big.Met, "1200 MiB is over the goal")
	assert.Equal(t, "100 MiB at 1,000", big.Peer)
	assert.InDelta(t, 12, big.Ratio, 1e-9)
	zero := byFigure["lifecycles (at rest): Temporal actions per hour at rest, 10,000 open"]
	assert.Zero(t, zero.Ratio, "no ratio over a zero")
	assert.Equal(t, "50 ms", byFigure["lifecycles (at rest): dev server CPU per lifecycle opened (start + first workflow task), 1,000 open"].Value)
	assert.Equal(t, "1000 starts/s", byFigure["lifecycles (at rest): workflow starts per second, 10,000 open"].Value)
}

func TestWriteRowIsReadBackByBenchtable(t *testing.T) {
	var b strings.Builder
	row := benchtable.Row{Figure: "f", Value: "1 MiB", Goal: "≤ 1 GiB", Met: "yes"}
	require.NoError(t, writeRow(&b, row))
	got, err := benchtable.Parse(strings.NewReader(b.String()))
	require.NoError(t, err)
	assert.Equal(t, []benchtable.Row{row}, got)
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", -1000: "-1,000"} {
		assert.Equal(t, want, thousands(n))
	}
}
