package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/skewproc"
	"github.com/skewguard/skewguard/workflows"
)

// searchAttributes are the Keyword search attributes the lifecycle sets (workflows/api.go); the
// stack registers the same at the dev server's start (hack/lib/parts.sh).
var searchAttributes = []string{"SkewNamespace", "SkewApp", "SkewVersion", "SkewState"}

func run(ctx context.Context, s settings, stdout, stderr io.Writer) (err error) {
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s lifecycles: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	if s.out == "" {
		if s.out, err = os.MkdirTemp("", "lifecycles-"); err != nil {
			return err
		}
		if !s.keep {
			defer os.RemoveAll(s.out)
		}
	} else if err := os.MkdirAll(s.out, 0o755); err != nil {
		return err
	}
	logf("output in %s", s.out)
	if s.binary == "" {
		logf("building skewguard")
		b, err := skewproc.Build(ctx, s.out, stderr)
		if err != nil {
			return err
		}
		s.binary = b
	}

	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_007, 36)
	ns := "lifecycles-" + suffix
	dbName := "lifecycles_" + suffix
	dbURL, drop, err := registry.CreateDatabase(ctx, s.pgAdmin, dbName)
	if err != nil {
		return err
	}
	defer func() {
		if err := drop(context.WithoutCancel(ctx)); err != nil {
			logf("drop database %s: %v", dbName, err)
		}
	}()

	dev, err := startDevServer(ctx, s.temporalCLI, s.out)
	if err != nil {
		return err
	}
	defer dev.stop()
	logf("private Temporal dev server at %s (pid %d, metrics %s, database %s)", dev.addr, dev.pid(), dev.metricsURL, dev.dbFile)

	env := map[string]string{
		"DATABASE_URL":                 dbURL,
		"TEMPORAL_ADDRESS":             dev.addr,
		"TEMPORAL_NAMESPACE":           "default",
		"KUBECONFIG":                   s.kubeconfig,
		"PROMETHEUS_URL":               s.prometheus,
		"PLT_FEATURE_SKEW_PROTECTION":  "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS": "skewguard-system/gw:web",
		"PLT_SKEW_NAMESPACES":          ns, // route convergence watches only this (empty) namespace
		"PLT_SKEW_TASK_QUEUE":          "lifecycles-" + suffix,
		"PLT_SKEW_LOG_FORMAT":          "text",
		"PLT_SKEW_LOG_LEVEL":           "warn",
	}
	if ref := os.Getenv("SKEWGUARD_TEST_GATEWAY_REF"); ref != "" {
		env["PLT_SKEW_GATEWAY_PARENT_REFS"] = ref
	}
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(env))
	if err != nil {
		return fmt.Errorf("skewguard settings: %w", err)
	}
	worker, err := startProc(ctx, filepath.Join(s.out, "worker.log"), s.binary, []string{"worker"}, env, 90*time.Second)
	if err != nil {
		return err
	}
	defer worker.stop()
	logf("skewguard worker pid %d, ops %s", worker.pid(), worker.addr)

	tc, err := client.Dial(client.Options{HostPort: dev.addr, Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		return fmt.Errorf("dial the private Temporal: %w", err)
	}
	defer tc.Close()

	plan := lifecyclePlan{
		ns: ns, perApp: s.perApp, checking: s.checking, rest: s.rest, spread: s.spread, origin: time.Now(),
		policy: activities.ResolvePolicy(cfg, registry.Policy{}),
	}
	if plan.rest-plan.spread <= s.window {
		return fmt.Errorf("-rest %s - -spread %s: leaves no time at rest to measure a %s window", plan.rest, plan.spread, s.window)
	}
	logf("policy: grace %s, window %s, interval %s, max alive %s", plan.policy.GracePeriod, plan.policy.TrafficWindow,
		plan.policy.CheckInterval, plan.policy.MaxAlive)
	var results []stepResult
	open := 0
	for _, n := range s.steps {
		r := stepResult{n: n}
		logf("step %d: starting lifecycles %d..%d", n, open, n-1)
		d0, err := readProc(dev.pid())
		if err != nil {
			return err
		}
		w0, err := readProc(worker.pid())
		if err != nil {
			return err
		}
		began := time.Now()
		if err := startLifecycles(ctx, tc, cfg.TaskQueue, plan, open, n, s.concurrency); err != nil {
			return err
		}
		r.startDur = time.Since(began)
		r.started = n - open
		logf("step %d: %d starts in %s (%.0f/s); waiting for every first workflow task", n, r.started, r.startDur.Round(time.Millisecond),
			float64(r.started)/r.startDur.Seconds())
		if err := awaitSettled(ctx, dev, n, 15*time.Minute); err != nil {
			return err
		}
		r.settleDur = time.Since(began) - r.startDur
		d1, err := readProc(dev.pid())
		if err != nil {
			return err
		}
		w1, err := readProc(worker.pid())
		if err != nil {
			return err
		}
		r.serverCPUPerStart = cpuSeconds(d0, d1) / float64(r.started)
		r.workerCPUPerStart = cpuSeconds(w0, w1) / float64(r.started)
		r.serverWrittenPerStart = float64(d1.written-d0.written) / float64(r.started)
		open = n
		logf("step %d: settled after %s more; quiet %s, then measuring for %s", n, r.settleDur.Round(time.Millisecond), s.quiet, s.window)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.quiet):
		}
		if left := time.Until(plan.origin.Add(plan.rest - plan.spread)); left < s.window && s.checking < 1 {
			return fmt.Errorf("step %d: the first grace timers fire in %s, before the %s window ends: run again with a longer -rest (the machine is slower than -rest assumed)",
				n, left.Round(time.Second), s.window)
		}
		if err := measure(ctx, &r, dev, worker, s.window); err != nil {
			return err
		}
		logf("step %d: worker RSS %s (heap %s, %0.f goroutines), CPU %.3f cores; %0.f actions/h; dev server RSS %s CPU %.3f cores, db %s",
			n, mib(r.worker.rss), mib(r.worker.heap), r.worker.goroutines, r.worker.cores, r.actionsPerHour,
			mib(r.server.rss), r.server.cores, mib(r.dbBytes))
		logf("step %d: actions in the window (%s):%s", n, r.window.Round(time.Second), describe(r.byType))
		results = append(results, r)
	}
	for _, row := range rows(results, s.checking, plan.policy) {
		if err := writeRow(stdout, row); err != nil {
			return err
		}
	}
	return nil
}

// lifecyclePlan says what lifecycle i is: app i/perApp, version i%perApp; the last version of
// each app is Active, the others Draining.
type lifecyclePlan struct {
	ns       string
	perApp   int
	checking float64
	rest     time.Duration // no grace timer of a version at rest fires before origin + rest - spread
	spread   time.Duration // the draining times at rest are spread over this
	origin   time.Time
	policy   activities.Policy
}

// input is lifecycle i's start: a Resume that puts it straight into its state, as
// continue-as-new does, so no activity runs and the registry needs no row. A Draining version at
// rest drained at origin + rest - grace - U[0, spread): its grace timer fires between
// origin + rest - spread and origin + rest, so the whole run is at rest if it ends before. With
// rest longer than the grace period that draining time lies in the future: the workflow holds
// the same state and one timer either way, only a longer one. A version of a checking app
// drained grace + traffic window ago, so its checks (a traffic reading every check interval,
// never two zeros: no series is found for it) begin within a check interval.
func (p lifecyclePlan) input(i int) workflows.LifecycleInput {
	app, v := i/p.perApp, i%p.perApp
	ref := registry.VersionRef{Namespace: p.ns, App: fmt.Sprintf("app-%05d", app), Label: fmt.Sprintf("v%02d", v+1)}
	active := fmt.Sprintf("v%02d", p.perApp)
	actor := registry.Actor{Type: registry.ActorSystem, Name: "lifecycles"}
	rng := rand.New(rand.NewPCG(uint64(i), 14))
	activeAt := p.origin.Add(-2 * time.Hour)
	in := workflows.LifecycleInput{Ref: ref, Placement: registry.Placement{ServiceName: ref.App + "-" + ref.Label, ServicePort: 3000}, Actor: actor}
	r := &workflows.Resume{VersionID: int64(i + 1), Life: 1, Policy: p.policy,
		Transitions: []workflows.StateChange{{State: registry.Active, At: activeAt, Actor: actor, Reason: "load"}}}
	if v == p.perApp-1 {
		r.State = registry.Active
	} else {
		r.State, r.By = registry.Draining, active
		if p.checks(app) {
			r.DrainingAt = p.origin.Add(-p.policy.GracePeriod - p.policy.TrafficWindow - time.Duration(rng.Int64N(int64(p.policy.CheckInterval))))
		} else {
			r.DrainingAt = p.origin.Add(p.rest - p.policy.GracePeriod - time.Duration(rng.Int64N(int64(p.spread))))
		}
		r.Transitions = append(r.Transitions, workflows.StateChange{State: registry.Draining, At: r.DrainingAt, Actor: actor, Reason: "superseded by " + active})
	}
	in.Resume = r
	return in
}

// checks says whether app's Draining versions are past grace: the first ⌈share·apps⌉ of every
// hundred apps, so each step holds the same share.
func (p lifecyclePlan) checks(app int) bool {
	return float64(app%100) < p.checking*100
}

func startLifecycles(ctx context.Context, tc client.Client, queue string, p lifecyclePlan, from, to, concurrency int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				if _, err := workflows.Start(ctx, tc, queue, p.input(i)); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// awaitSettled waits until n lifecycles have run their first workflow task: each upserts its
// search attributes there, once (setup), and the dev server counts every command.
func awaitSettled(ctx context.Context, dev *devServer, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		text, err := scrape(ctx, dev.metricsURL)
		if err == nil {
			got, _, perr := metricSum(text, "action", `action_type="command_UpsertWorkflowSearchAttributes"`)
			if perr != nil {
				return perr
			}
			if int(got) >= n {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d of %d lifecycles ran their first workflow task after %s (see worker.log)", int(got), n, timeout)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func scrape(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// proc is a child process whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	addr string // ops listen address (skewguard)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process with SIGTERM (SIGKILL after 30 s) and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func spawn(logFile, binary string, args, env []string) (*proc, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// startProc runs `binary args` with env added to ours and PLT_SKEW_LISTEN_ADDRESS on a free port,
// and waits until its /readyz answers 200.
func startProc(ctx context.Context, logFile, binary string, args []string, env map[string]string, timeout time.Duration) (*proc, error) {
	addr, e, err := skewproc.Environ(env)
	if err != nil {
		return nil, err
	}
	p, err := spawn(logFile, binary, args, e)
	if err != nil {
		return nil, err
	}
	p.addr = addr
	hc := &http.Client{Timeout: time.Second}
	ready := func() bool {
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := poll(ctx, p, timeout, ready); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s %v: %w (see %s)", binary, args, err, logFile)
	}
	return p, nil
}

// poll calls ok every 200 ms until it holds, the process exits, or timeout passes.
func poll(ctx context.Context, p *proc, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", timeout)
		}
		select {
		case <-p.done:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// devServer is the run's private Temporal dev server.
type devServer struct {
	*proc
	addr, metricsURL, dbFile string
}

// startDevServer starts `temporal server start-dev` as the stack does (hack/lib/parts.sh: same
// binary, namespace, search attributes and log settings; no dynamic config values there
// either), headless, on free ports of 127.0.0.1 and a SQLite file in dir.
func startDevServer(ctx context.Context, cli, dir string) (*devServer, error) {
	ports := make([]string, 3)
	for i := range ports {
		a, err := skewproc.FreeAddr()
		if err != nil {
			return nil, err
		}
		_, ports[i], _ = net.SplitHostPort(a)
	}
	d := &devServer{addr: "127.0.0.1:" + ports[0], metricsURL: "http://127.0.0.1:" + ports[2] + "/metrics",
		dbFile: filepath.Join(dir, "temporal.db")}
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", ports[0], "--http-port", ports[1],
		"--metrics-port", ports[2], "--headless", "--db-filename", d.dbFile, "--namespace", "default",
		"--log-format", "json", "--log-level", "warn"}
	for _, sa := range searchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	logFile := filepath.Join(dir, "temporal.log")
	p, err := spawn(logFile, cli, args, os.Environ())
	if err != nil {
		return nil, err
	}
	d.proc = p
	quiet := tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	serving := func() bool {
		c, err := client.Dial(client.Options{HostPort: d.addr, Logger: quiet})
		if err != nil {
			return false
		}
		defer c.Close()
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return false
		}
		_, err = scrape(ctx, d.metricsURL)
		return err == nil
	}
	if err := poll(ctx, p, 2*time.Minute, serving); err != nil {
		p.stop()
		return nil, fmt.Errorf("temporal dev server: %w (see %s)", err, logFile)
	}
	return d, nil
}

// dbBytes is the size of the dev server's SQLite database with its WAL.
func (d *devServer) dbBytes() float64 {
	var n int64
	for _, f := range []string{d.dbFile, d.dbFile + "-wal", d.dbFile + "-shm"} {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return float64(n)
}
