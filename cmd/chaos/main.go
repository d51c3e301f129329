// Command chaos is `make chaos`: on the real local stack (hack/stack.sh), it runs skewguard as two
// `api` and two `worker` processes on one registry and one Temporal task queue, deploys one app
// through CHAOS_VERSIONS versions while a fleet of sessions sends requests through Traefik, kills
// skewguard processes with SIGKILL at random moments (one at a time, then two at once), and prints
// one table. It exits non-zero if a line of the table fails (see README: "make chaos").
//
// Settings: the stack's stack.env (source it with set -a), and
//
//	CHAOS_SEED       the run's seed (default: the clock); the fault schedule and the sessions follow it
//	CHAOS_VERSIONS   versions deployed (default 30, at least 2)
//	CHAOS_DURATION   how long versions are deployed and faults injected (default 3m)
//	CHAOS_SESSIONS   concurrent sessions (default 50)
//	CHAOS_SKEWGUARD  the skewguard binary (default: built from this checkout)
//	CHAOS_OUT        directory for the processes' logs and the request log (default: a new temp dir)
//	CHAOS_KEEP       1 keeps the namespace and the registry database afterwards
//	CHAOS_STACK_FAULTS  parts of the stack killed too, comma-separated: postgresql, temporal,
//	                 prometheus, kube-apiserver, traefik (default none: the stack may be shared;
//	                 they are killed and started by hack/stack.sh kill|start PART)
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/skewproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// settings of one run.
type settings struct {
	seed     int64
	versions int
	duration time.Duration
	sessions int
	binary   string
	out      string
	keep     bool
	parts    []string // stack parts killed too
	stackSh  string

	pgURL, kubeconfig, temporal, prometheus, gatewayURL, gatewayRef string
}

// Lifecycle durations of the run: demo-short, so that versions drain and expire within it.
const (
	gracePeriodMS   = 2000
	trafficWindowMS = 3000
	checkIntervalMS = 3000
	maxAliveMS      = 600000
	readinessMS     = 20000
)

func readSettings(getenv func(string) string) (settings, error) {
	var s settings
	var problems []string
	need := func(name string) string {
		v := getenv(name)
		if v == "" {
			problems = append(problems, name+" is not set (source the stack's stack.env with set -a: hack/stack.sh env prints its path)")
		}
		return v
	}
	s.pgURL = need("SKEWGUARD_TEST_PG_URL")
	s.kubeconfig = need("KUBECONFIG")
	s.temporal = need("TEMPORAL_ADDRESS")
	s.prometheus = need("PROMETHEUS_URL")
	s.gatewayURL = need("SKEWGUARD_TEST_GATEWAY_URL")
	s.gatewayRef = need("SKEWGUARD_TEST_GATEWAY_REF")

	s.seed = time.Now().UnixNano() % 1_000_000_000
	if v := getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			problems = append(problems, fmt.Sprintf("CHAOS_SEED: %q is not a non-negative integer", v))
		}
		s.seed = n
	}
	s.versions = 30
	if v := getenv("CHAOS_VERSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 500 {
			problems = append(problems, fmt.Sprintf("CHAOS_VERSIONS: %q is not an integer from 2 to 500", v))
		}
		s.versions = n
	}
	s.duration = 3 * time.Minute
	if v := getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 20*time.Second || d > 24*time.Hour {
			problems = append(problems, fmt.Sprintf("CHAOS_DURATION: %q is not a duration from 20s to 24h (e.g. 3m)", v))
		}
		s.duration = d
	}
	s.sessions = 50
	if v := getenv("CHAOS_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 2000 {
			problems = append(problems, fmt.Sprintf("CHAOS_SESSIONS: %q is not an integer from 1 to 2000", v))
		}
		s.sessions = n
	}
	s.binary = getenv("CHAOS_SKEWGUARD")
	s.out = getenv("CHAOS_OUT")
	s.keep = getenv("CHAOS_KEEP") == "1"
	known := map[string]bool{"postgresql": true, "temporal": true, "prometheus": true, "kube-apiserver": true, "traefik": true}
	for _, p := range strings.Split(getenv("CHAOS_STACK_FAULTS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !known[p] {
			problems = append(problems, fmt.Sprintf("CHAOS_STACK_FAULTS: %q is not one of postgresql, temporal, prometheus, kube-apiserver, traefik", p))
		}
		s.parts = append(s.parts, p)
	}
	s.stackSh = cmp.Or(getenv("CHAOS_STACK_SH"), "hack/stack.sh")
	if len(problems) > 0 {
		return s, errors.New(strings.Join(problems, "; "))
	}
	return s, nil
}

// logf prints a progress line on stderr.
var logOut io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "[chaos %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, stdout, stderr io.Writer) (bool, error) {
	logOut = stderr
	s, err := readSettings(os.Getenv)
	if err != nil {
		return false, err
	}
	if s.out == "" {
		if s.out, err = os.MkdirTemp("", fmt.Sprintf("chaos-%d-", s.seed)); err != nil {
			return false, err
		}
	} else if err := os.MkdirAll(s.out, 0o755); err != nil {
		return false, err
	}
	logf("seed %d, %d versions over %s, %d sessions; logs in %s", s.seed, s.versions, s.duration, s.sessions, s.out)
	if s.binary == "" {
		logf("building skewguard")
		b, err := skewproc.Build(ctx, s.out, stderr)
		if err != nil {
			return false, err
		}
		s.binary = b
	}

	// Names unique to this run: others share the stack (its Gateway, PostgreSQL and Temporal).
	suffix := strconv.FormatInt(time.Now().Unix()%1_000_000, 36)
	ns := fmt.Sprintf("chaos-%d-%s", s.seed, suffix)
	app := registry.AppRef{Namespace: ns, Name: "chaos"}
	host := ns + ".chaos.test"
	dbName := strings.ReplaceAll(ns, "-", "_")

	kc, err := kube.NewClients(s.kubeconfig)
	if err != nil {
		return false, err
	}
	dbURL, dropDB, err := registry.CreateDatabase(ctx, s.pgURL, dbName)
	if err != nil {
		return false, err
	}
	claimsCM := "chaos-claims-" + ns
	keepDB := false // a failed run keeps its registry for a look afterwards
	cleanup := func() {
		if s.keep {
			logf("kept namespace %s and database %s (CHAOS_KEEP=1)", ns, dbName)
			return
		}
		bg, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = kc.Kube.CoreV1().Namespaces().Delete(bg, ns, metav1.DeleteOptions{})
		_ = kc.Kube.CoreV1().ConfigMaps("skewguard-system").Delete(bg, claimsCM, metav1.DeleteOptions{})
		if keepDB {
			logf("kept the registry database %s of the failed run", dbName)
		} else if err := dropDB(bg); err != nil {
			logf("drop database %s: %v", dbName, err)
		}
	}
	defer cleanup()
	if _, err := kc.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	// The claims allowlist (README: Who may claim a hostname): this namespace may claim its host.
	if _, err := kc.Kube.CoreV1().ConfigMaps("skewguard-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: claimsCM, Namespace: "skewguard-system"},
		Data:       map[string]string{"claims.yaml": fmt.Sprintf("allow:\n  - namespace: %s\n    hosts: [%q]\n    paths: [/]\n", ns, host)},
	}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("create the claims ConfigMap: %w", err)
	}

	// The stack's admin kubeconfig: a first cut (the e2e tests use the chart's RBAC instead).
	env := map[string]string{
		"DATABASE_URL":                    dbURL,
		"TEMPORAL_ADDRESS":                s.temporal,
		"KUBECONFIG":                      s.kubeconfig,
		"PROMETHEUS_URL":                  s.prometheus,
		"PLT_FEATURE_SKEW_PROTECTION":     "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS":    s.gatewayRef,
		"PLT_SKEW_NAMESPACES":             ns,
		"PLT_SKEW_TASK_QUEUE":             "chaos-" + ns,
		"PLT_SKEW_TRAFFIC_PRESET":         "traefik",
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS":   strconv.Itoa(gracePeriodMS),
		"PLT_SKEW_TRAFFIC_WINDOW_MS":      strconv.Itoa(trafficWindowMS),
		"PLT_SKEW_CHECK_INTERVAL_MS":      strconv.Itoa(checkIntervalMS),
		"PLT_SKEW_HTTP_MAX_ALIVE_MS":      strconv.Itoa(maxAliveMS),
		"PLT_SKEW_READINESS_TIMEOUT_MS":   strconv.Itoa(readinessMS),
		"PLT_SKEW_INSECURE_SKIP_API_AUTH": "true",
		"PLT_SKEW_CLAIMS_CONFIGMAP":       "skewguard-system/" + claimsCM,
		"PLT_SKEW_LOG_FORMAT":             "text",
	}
	cfg, err := config.LoadFrom(ctx, envconfig.MapLookuper(env))
	if err != nil {
		return false, fmt.Errorf("skewguard settings: %w", err)
	}
	store, err := registry.Open(ctx, dbURL)
	if err != nil {
		return false, err
	}
	defer store.Close()

	var procs []*proc
	for _, r := range []string{"api", "worker"} {
		for i := 1; i <= 2; i++ {
			p, err := newProc(fmt.Sprintf("%s-%d", r, i), r, s.binary, s.out, env)
			if err != nil {
				return false, err
			}
			procs = append(procs, p)
		}
	}
	defer func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(p.stop)
		}
		wg.Wait()
	}()
	for _, p := range procs {
		if err := p.start(ctx, 90*time.Second); err != nil {
			return false, err
		}
		logf("%s ready on %s", p.name, p.addr)
	}

	rng := rand.New(rand.NewPCG(uint64(s.seed), 0))
	routeLog, err := os.Create(filepath.Join(s.out, "routes.log"))
	if err != nil {
		return false, err
	}
	defer routeLog.Close()
	obs := &observer{store: store, gw: kc.Gateway, cfg: cfg, app: app, routeLog: routeLog}
	var faults atomic.Value
	faults.Store("")
	clock := &faultClock{}
	tc, err := client.Dial(client.Options{HostPort: s.temporal, Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		return false, fmt.Errorf("connect to Temporal: %w", err)
	}
	defer tc.Close()
	pw := newProgressWatch(deadlines{
		grace: gracePeriodMS * time.Millisecond, window: trafficWindowMS * time.Millisecond,
		interval: checkIntervalMS * time.Millisecond, readiness: readinessMS * time.Millisecond,
	}, clock.state)
	fl := &fleet{
		gateway: s.gatewayURL, host: host, cookie: cfg.CookieName,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}},
		faults: func() string { return faults.Load().(string) },
	}
	dep := &deployer{kube: kc, ns: ns, app: app.Name, host: host}

	// Version 1 first, and the fleet once it is served.
	var deployed []string
	if err := dep.deploy(ctx, "1"); err != nil {
		return false, err
	}
	deployed = append(deployed, "1")
	if err := waitServed(ctx, fl, "1", 2*time.Minute); err != nil {
		return false, err
	}
	logf("version 1 served through the gateway; starting %d sessions", s.sessions)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var bg sync.WaitGroup
	bg.Go(func() { obs.run(runCtx) })
	bg.Go(func() { watchProgress(runCtx, store, tc, app, pw) })
	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	bg.Go(func() { fl.run(fleetCtx, s.sessions, s.seed) })

	start := time.Now()
	deadline := start.Add(s.duration)
	var res result
	res.Seed = s.seed
	var resMu sync.Mutex
	faultCtx, stopFaults := context.WithDeadline(ctx, deadline)
	defer stopFaults()
	targets := make([]target, 0, len(procs)+len(s.parts))
	for _, p := range procs {
		targets = append(targets, p)
	}
	for _, p := range s.parts {
		targets = append(targets, &stackPart{name: p, stackSh: s.stackSh, logDir: s.out})
	}
	faultsDone := make(chan struct{})
	var faultsErr error
	go func() {
		defer close(faultsDone)
		faultsErr = injectFaults(faultCtx, rng, targets, obs, fl, &faults, clock, deadline, start, &res, &resMu)
	}()
	// Whatever ends the run, the parts it killed are started again first: the stack outlives it.
	defer func() { stopFaults(); <-faultsDone }()

	// The other versions, evenly over the duration.
	interval := s.duration / time.Duration(s.versions)
	for i := 2; i <= s.versions; i++ {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(i-1) * interval))):
		}
		label := strconv.Itoa(i)
		if err := dep.deployRetrying(ctx, label, 2*time.Minute); err != nil {
			return false, err
		}
		deployed = append(deployed, label)
		logf("deployed version %s", label)
	}
	<-faultsDone
	if faultsErr != nil {
		return false, faultsErr
	}
	faults.Store("")
	logf("faults over; every process is running; sessions end")
	stopFleet()
	// New visitors keep coming, as to any live app: the Active version's series is what lets a
	// Draining version without one read as zero traffic (traffic.Rates.Of) rather than unknown.
	visitorsCtx, stopVisitors := context.WithCancel(ctx)
	defer stopVisitors()
	bg.Go(func() { fl.newVisitors(visitorsCtx, 500*time.Millisecond) })

	// Settle: with no sessions left, every version but the newest drains and expires.
	settle := 3*time.Duration(gracePeriodMS+trafficWindowMS+checkIntervalMS)*time.Millisecond + 60*time.Second
	newest := deployed[len(deployed)-1]
	var final []registry.Version
	settleEnd := time.Now().Add(settle)
	for {
		vs, err := store.ListVersions(ctx, app)
		if err == nil {
			final = vs
			if settled(vs, newest) {
				break
			}
		}
		if time.Now().After(settleEnd) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopRun()
	stopVisitors()
	bg.Wait()

	res.Requests = fl.records()
	res.Deployed = deployed
	res.Recorded = map[string]bool{}
	res.Lives = map[string]lifetime{}
	for _, v := range final {
		res.Recorded[v.Label] = true
		if _, seen := res.Lives[v.Label]; seen {
			continue
		}
		l := lifetime{}
		switch {
		case v.ActiveAt != nil:
			l.Routed = *v.ActiveAt
		case v.StagedAt != nil:
			l.Routed = *v.StagedAt
		}
		if v.ExpiredAt != nil {
			l.Expired = *v.ExpiredAt
		}
		res.Lives[v.Label] = l
		want := registry.Expired
		if v.Label == newest {
			want = registry.Active
		}
		if v.State != want {
			res.Stuck = append(res.Stuck, fmt.Sprintf("%s %s (want %s %s after the run)", v.Label, v.State, want, settle))
		}
	}
	res.Stuck = append(pw.results(), res.Stuck...)
	var sampleErrs int
	res.Samples, res.TwoActiveDB, res.TwoActiveRt, sampleErrs = obs.results()
	if sampleErrs > 0 {
		logf("%d registry or route samples failed", sampleErrs)
	}
	if err := writeRequests(filepath.Join(s.out, "requests.tsv"), res.Requests); err != nil {
		logf("write the request log: %v", err)
	}
	lines := res.table(stdout)
	if up, err := traefikScraped(ctx, s.prometheus); err != nil || !up {
		// Without Traefik's counters skewguard sees no traffic reading and, by design, keeps
		// draining versions until their max alive: stuck versions are then the stack's doing.
		lines = append(lines, line{What: "Prometheus scrapes Traefik (traffic data)", Value: fmt.Sprintf("no (%v)", err)})
	}
	ok := printTable(stdout, res, lines)
	keepDB = !ok
	fmt.Fprintf(stdout, "kills: %s\nlogs: %s\n", strings.Join(res.Kills, "; "), s.out)
	return ok, nil
}

// traefikScraped asks Prometheus whether its last scrape of Traefik succeeded.
func traefikScraped(ctx context.Context, prometheus string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, prometheus+"/api/v1/query?query="+url.QueryEscape(`up{job="traefik"}`), nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err
	}
	for _, r := range body.Data.Result {
		if len(r.Value) == 2 && r.Value[1] == "1" {
			return true, nil
		}
	}
	return false, errors.New(`up{job="traefik"} is not 1`)
}

// settled: the newest version Active, every other one Expired.
func settled(vs []registry.Version, newest string) bool {
	for _, v := range vs {
		want := registry.Expired
		if v.Label == newest {
			want = registry.Active
		}
		if v.State != want {
			return false
		}
	}
	return len(vs) > 0
}

// injectFaults kills skewguard processes (and the stack parts asked for) with SIGKILL at random moments until deadline: one at a
// time in the first half, two at once in the second; each comes back after a random pause, and
// the routes' convergence is measured from its restart.
func injectFaults(ctx context.Context, rng *rand.Rand, procs []target, obs *observer, fl *fleet, faults *atomic.Value,
	clock *faultClock, deadline, start time.Time, res *result, mu *sync.Mutex) error {
	half := start.Add(deadline.Sub(start) / 2)
	for {
		wait := time.Duration(2000+rng.IntN(6000)) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		n := 1
		if time.Now().After(half) {
			n = 2
		}
		idx := rng.Perm(len(procs))[:n]
		var victims []target
		var names []string
		for _, i := range idx {
			victims = append(victims, procs[i])
			names = append(names, procs[i].label())
		}
		pause := time.Duration(500+rng.IntN(4500)) * time.Millisecond
		what := "killed " + strings.Join(names, "+")
		faults.Store(what)
		clock.begin()
		killedAt := time.Now()
		for _, p := range victims {
			if err := p.kill(); err != nil {
				return err
			}
		}
		logf("%s (SIGKILL); back in %s", what, pause.Round(time.Millisecond))
		// The pause is not cut short by the deadline: every process is back before the run ends.
		time.Sleep(pause)
		// The stack's parts first: a skewguard process is ready only once what it needs is up.
		slices.SortStableFunc(victims, func(a, b target) int {
			_, as := a.(*stackPart)
			_, bs := b.(*stackPart)
			switch {
			case as && !bs:
				return -1
			case bs && !as:
				return 1
			}
			return 0
		})
		for _, p := range victims {
			if err := p.start(context.WithoutCancel(ctx), 90*time.Second); err != nil {
				return err
			}
		}
		// Traefik is back once it serves the app again (its Gateway provider has synced), not
		// once its process answers a ping: a request before that is the restart's, not skewguard's.
		for _, p := range victims {
			if p.label() == "traefik" {
				if err := waitServing(ctx, fl, time.Minute); err != nil {
					return err
				}
			}
		}
		restarted := time.Now() // every victim is up (ready, healthy, serving) again
		faults.Store("")
		clock.end()
		d, err := obs.convergence(context.WithoutCancel(ctx), restarted, time.Minute)
		mu.Lock()
		res.Kills = append(res.Kills, fmt.Sprintf("%s for %s", strings.Join(names, "+"), pause.Round(time.Millisecond)))
		if slices.Contains(names, "traefik") {
			res.GatewayDown = append(res.GatewayDown, [2]time.Time{killedAt, restarted})
		}
		if err != nil {
			res.Unconverged = append(res.Unconverged, what+": "+err.Error())
		} else {
			res.Convergence = append(res.Convergence, d)
		}
		mu.Unlock()
		logf("%s back; routes converged in %s", strings.Join(names, "+"), d.Round(time.Millisecond))
	}
}

// faultClock says whether a fault is in force and when the last one ended.
type faultClock struct {
	mu      sync.Mutex
	in      bool
	cleared time.Time
}

func (c *faultClock) begin() { c.mu.Lock(); c.in = true; c.mu.Unlock() }
func (c *faultClock) end()   { c.mu.Lock(); c.in, c.cleared = false, time.Now(); c.mu.Unlock() }
func (c *faultClock) state() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in, c.cleared
}

// watchProgress looks at every version's progress once a second until ctx ends.
func watchProgress(ctx context.Context, store *registry.Store, tc client.Client, app registry.AppRef, pw *progressWatch) {
	every(ctx, time.Second, func() {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		vs, err := store.ListVersions(lctx, app)
		cancel()
		if err != nil {
			return // PostgreSQL down: a fault, not a look
		}
		pw.observe(time.Now(), vs, historyLengths(ctx, tc, vs))
	})
}

// waitServing waits until a new session gets a 2xx answer through the gateway.
func waitServing(ctx context.Context, fl *fleet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, _, _ := fl.get(context.WithoutCancel(ctx), -1, "", fl.cookie, "")
		if r.Status/100 == 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway does not serve the app %s after a restart: status %d %s", timeout, r.Status, r.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitServed waits until a new session is answered by version want.
func waitServed(ctx context.Context, fl *fleet, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last request
	for time.Now().Before(deadline) {
		r, _, _ := fl.get(ctx, -1, "", fl.cookie, "")
		if r.Status == http.StatusOK && r.Answered == want {
			return nil
		}
		last = r
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("new sessions not served by version %s after %s (last: status %d version %q %s)",
		want, timeout, last.Status, last.Answered, last.Err)
}

// deployer applies versions of the app as a user's `kubectl apply` would: a Deployment and a
// Service per version, whose pod the stack's launcher runs as the echo backend.
type deployer struct {
	kube    *kube.Clients
	ns, app string
	host    string
}

// deployRetrying deploys version as a user's pipeline would while the API server restarts:
// again until it is there or timeout passes (an object the last attempt created counts).
func (d *deployer) deployRetrying(ctx context.Context, version string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		err := d.deploy(ctx, version)
		if err == nil || time.Now().After(end) || ctx.Err() != nil {
			return err
		}
		logf("deploy version %s: %v (again in 1s)", version, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (d *deployer) deploy(ctx context.Context, version string) error {
	name := d.app + "-v" + version
	labels := map[string]string{"app.kubernetes.io/name": d.app, "plt.dev/version": version, "plt.dev/hostname": d.host}
	selector := map[string]string{"app.kubernetes.io/name": d.app, "plt.dev/version": version}
	one := int32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "echo",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := d.kube.Kube.AppsV1().Deployments(d.ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("deploy version %s: %w", version, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	if _, err := d.kube.Kube.CoreV1().Services(d.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("deploy version %s: %w", version, err)
	}
	return nil
}

// writeRequests writes every request, one a line, for a look after the run.
func writeRequests(path string, rs []request) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, "session\tcarrier\tpinned\tstart\tms\tstatus\tanswered\terr\tfaults")
	for _, r := range rs {
		fmt.Fprintf(f, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", r.Session, r.Carrier, r.Pinned,
			r.Start.Format("15:04:05.000"), r.End.Sub(r.Start).Milliseconds(), r.Status, r.Answered, r.Err, r.Faults)
	}
	return f.Close()
}
