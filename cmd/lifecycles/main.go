// Command lifecycles measures what thousands of open version lifecycles cost at rest: it starts
// a private Temporal dev server (its own ports and SQLite file; the shared one would carry the
// open workflows into every later test), one real `skewguard worker` process pointed at it and
// at the stack's PostgreSQL (a database of its own), kube-apiserver and Prometheus, then opens
// lifecycles in steps (default 1,000 then 10,000: 10 versions per app, 1 Active and 9 Draining
// inside their grace period, each Draining one waiting on its durable timer), and after each
// step measures over a window: the worker's RSS, Go heap and CPU, Temporal's actions, the dev
// server's own RSS, CPU and database size, and how fast the starts went. It prints the figures
// as benchtable rows (pipe into `go run ./cmd/benchtable`), and removes what it created.
//
// Settings: the stack's stack.env (source it with set -a), and flags (-h).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := parseSettings(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecycles:", err)
		os.Exit(2)
	}
	if err := run(ctx, s, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lifecycles:", err)
		os.Exit(1)
	}
}

// settings of one run.
type settings struct {
	steps       []int         // open lifecycles after each step, increasing
	perApp      int           // versions per app (1 Active, the rest Draining)
	checking    float64       // share of apps whose Draining versions are past grace (read traffic every interval)
	rest        time.Duration // how long after the run began the versions at rest stay in their grace period
	spread      time.Duration // their draining times are spread over this
	window      time.Duration // measurement window at rest, per step
	quiet       time.Duration // pause between the settled starts and the window
	concurrency int           // concurrent StartWorkflowExecution calls
	binary      string        // skewguard binary; "" builds it
	temporalCLI string
	out         string
	keep        bool

	pgAdmin, kubeconfig, prometheus string
}

func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("lifecycles", flag.ContinueOnError)
	fs.SetOutput(stderr)
	steps := fs.String("n", "1000,10000", "open lifecycles after each step, comma-separated and increasing")
	fs.IntVar(&s.perApp, "per-app", 10, "versions per app: 1 Active, the rest Draining")
	fs.Float64Var(&s.checking, "checking", 0, "share of apps (0..1) whose Draining versions are past their grace period and read traffic every check interval (0: all at rest)")
	fs.DurationVar(&s.rest, "rest", time.Hour, "the grace timers of the versions at rest fire between -rest - -spread and -rest after the run began: the whole run must end before (beyond the grace period, draining times lie in the future)")
	fs.DurationVar(&s.spread, "spread", 5*time.Minute, "spread of the grace timers of the versions at rest")
	fs.DurationVar(&s.window, "window", 2*time.Minute, "measurement window after each step")
	fs.DurationVar(&s.quiet, "quiet", 15*time.Second, "pause between the end of the starts and the window")
	fs.IntVar(&s.concurrency, "concurrency", 32, "concurrent workflow starts")
	fs.StringVar(&s.binary, "skewguard", getenv("LIFECYCLES_SKEWGUARD"), "skewguard binary (default: built from this checkout)")
	fs.StringVar(&s.out, "out", "", "directory for logs and the dev server's database (default: a new temp dir, removed unless -keep)")
	fs.BoolVar(&s.keep, "keep", false, "keep the output directory")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	var err error
	if s.steps, err = parseSteps(*steps, s.perApp); err != nil {
		return s, err
	}
	if s.perApp < 2 {
		return s, fmt.Errorf("-per-app %d: at least 2 (one Active, one Draining)", s.perApp)
	}
	if s.checking < 0 || s.checking > 1 {
		return s, fmt.Errorf("-checking %v: a share between 0 and 1", s.checking)
	}
	if s.window <= 0 || s.concurrency <= 0 || s.quiet < 0 || s.spread <= 0 || s.rest <= 0 {
		return s, fmt.Errorf("-window, -rest, -spread and -concurrency must be positive, -quiet not negative")
	}
	var missing []string
	need := func(k string) string {
		v := getenv(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	s.pgAdmin = need("SKEWGUARD_TEST_PG_URL")
	s.kubeconfig = need("KUBECONFIG")
	s.prometheus = need("PROMETHEUS_URL")
	s.temporalCLI = need("SKEWGUARD_TEST_TEMPORAL_CLI")
	if len(missing) > 0 {
		return s, fmt.Errorf("missing %s: source the stack's stack.env (set -a; source .stack/stack.env; set +a)", strings.Join(missing, ", "))
	}
	return s, nil
}

// parseSteps reads "1000,10000": increasing counts, each a whole number of apps.
func parseSteps(v string, perApp int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-n: %q is not a positive count", f)
		}
		if perApp > 0 && n%perApp != 0 {
			return nil, fmt.Errorf("-n: %d is not a multiple of -per-app %d", n, perApp)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-n: %d after %d: steps must increase", n, out[len(out)-1])
		}
		out = append(out, n)
	}
	return out, nil
}
