//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skewguard/skewguard/internal/deploytest/charttest"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/workflows"
)

// Sizes of TestConcurrentRegistrationsAcrossReplicas (issue 13, item 2).
const (
	replicaPodsPerVersion = 100 // 2 new versions: 200 pods
	replicaServingPods    = 2   // of each version's pods, those that run the echo backend and turn Ready
	registrationsPerPod   = 5   // 200 pods × 5 = 1,000 registrations
	registrationWorkers   = 64
)

// TestConcurrentRegistrationsAcrossReplicas runs skewguard as two `api` and two `worker`
// processes (one database, one Temporal namespace and task queue) with v1 of an app Active, then
// sends 1,000 agent registrations from the 200 pods of two new versions at once, round-robin over
// both API replicas, from 64 goroutines. Every registration must be answered 200 (a 503 with
// Retry-After is the API's documented "retry", and is retried), and in the end:
//   - exactly one version is Active (the newest Deployment, v3), in the registry and in the
//     HTTPRoutes' default rule, and no read of the registry during the run saw two;
//   - each version has exactly one workflow (Temporal visibility, by the search attributes
//     SkewNamespace/SkewApp: one workflow ID per version, the one the registry records, one run
//     not continued-as-new) and one life in the registry;
//   - each version's audit has one row per transition, chained (each row leaves the state the
//     previous one entered): observed once, activated at most once, superseded at most once;
//   - every pod has its row in the registry's pods table, and no pod row points to a version
//     other than its own.
//
// Pods: each new version is one Deployment of 2 pods running the echo backend (the stack's
// launcher starts a real process; they make the version's Service ready) and one of 98 pods the
// launcher leaves alone (kwok runs them, never Ready): 200 real pods in the API server, which is
// what registration checks, without 200 processes on a shared 2-core machine. The pod watch is
// off (PLT_SKEW_WATCH_PODS=false), so the registrations are the only thing that starts the new
// versions' workflows: both API replicas race to start each one.
func TestConcurrentRegistrationsAcrossReplicas(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-replicas")
	dbURL, st := newDatabase(t)
	host := ns + ".replicas.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000" // superseded versions stay Draining while checked
	s["PLT_SKEW_INSECURE_SKIP_POD_AUTH"] = "true" // pods are named in the path, as the harness does
	s["PLT_SKEW_WATCH_PODS"] = "false"
	apis, workers := startReplicas(t, s, 2, 2)
	gw := newGateway(t)
	ctx := context.Background()
	const app = "fanout"
	ref := func(label string) registry.VersionRef {
		return registry.VersionRef{Namespace: ns, App: app, Label: label}
	}

	// v1, Active before the burst (found by its one pod's registration).
	v1 := appVersion{Namespace: ns, App: app, Version: "1", Hostname: host}
	c.deploy(t, v1)
	c.waitPodsReady(t, v1, 90*time.Second)
	for _, p := range podNames(t, c, ns, "1") {
		apis[0].registerPod(t, p)
	}
	waitState(t, st, ref("1"), registry.Active, 90*time.Second)
	gw.waitServed(t, host, "1", 60*time.Second)

	// v2 then v3 (a second apart, so the newest Deployment is unambiguous), all pods in the API
	// server before the first registration is sent.
	for i, label := range []string{"2", "3"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // creation times have a resolution of one second
		}
		c.deployAgentFleet(t, appVersion{Namespace: ns, App: app, Version: label, Hostname: host}, replicaPodsPerVersion, replicaServingPods)
	}
	var pods []fleetPod
	waitFor(t, 120*time.Second, "the 200 pods of v2 and v3 Running", func() (bool, string) {
		pods = pods[:0]
		running := 0
		for _, label := range []string{"2", "3"} {
			list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=" + label})
			if err != nil {
				return false, err.Error()
			}
			for _, p := range list.Items {
				pods = append(pods, fleetPod{name: p.Name, label: label})
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
		}
		return running == 2*replicaPodsPerVersion && len(pods) == running, fmt.Sprintf("%d pods, %d Running", len(pods), running)
	})

	// Watch the registry for two Active versions while the burst and the flips run.
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	monitor := watchActive(monitorCtx, st, registry.AppRef{Namespace: ns, Name: app})

	res := sendRegistrations(t, apis, pods, registrationsPerPod, registrationWorkers)
	res.log(t)
	assert.Empty(t, res.failures, "registrations not answered 2xx")
	assert.Equal(t, len(pods)*registrationsPerPod, res.ok(), "registrations answered 200")

	waitState(t, st, ref("3"), registry.Active, 120*time.Second)
	waitFor(t, 60*time.Second, "v2 out of the way", func() (bool, string) {
		v, err := st.GetVersion(ctx, ref("2"))
		if err != nil {
			return false, err.Error()
		}
		return v.State == registry.Draining, string(v.State)
	})
	gw.waitServed(t, host, "3", 60*time.Second)
	stopMonitor()
	reads, maxActive, seen := monitor()
	t.Logf("registry read %d times during the run; most Active versions at once: %d", reads, maxActive)
	assert.LessOrEqual(t, maxActive, 1, "two Active versions at once in the registry: %v", seen)

	// Exactly one Active, and one life per version.
	vs, err := st.ListVersions(ctx, registry.AppRef{Namespace: ns, Name: app})
	require.NoError(t, err)
	lives := map[string][]registry.State{}
	byLabel := map[string]registry.Version{}
	for _, v := range vs {
		lives[v.Label] = append(lives[v.Label], v.State)
		byLabel[v.Label] = v
	}
	assert.Equal(t, map[string][]registry.State{
		"1": {registry.Draining}, "2": {registry.Draining}, "3": {registry.Active},
	}, lives, "one life per version, exactly one Active: the newest Deployment")

	// The routes agree: one default rule, to v3's Service.
	waitFor(t, 30*time.Second, "the default rule sending to v3", func() (bool, string) {
		backends := defaultBackends(t, c, ns)
		return slices.Equal(backends, []string{byLabel["3"].ServiceName}), fmt.Sprintf("default rules send to %v", backends)
	})

	// One workflow per version.
	checkOneWorkflowPerVersion(t, ns, app, byLabel)

	// One audit row per transition.
	for _, label := range []string{"1", "2", "3"} {
		checkAuditChain(t, st, ref(label))
	}

	for _, label := range []string{"2", "3"} {
		t.Logf("v%s recorded (pending) %s after the first registration was sent, the burst lasted %s", label,
			byLabel[label].PendingAt.Sub(res.begin).Round(time.Millisecond), res.elapsed.Round(time.Millisecond))
	}

	// Every pod recorded, none against another version. Registrations sent before the workflow
	// recorded the version leave the pod's row without its version; one more registration of
	// each pod (as the agent's re-registration after a reconnect), over both replicas, must link
	// every pod to its own version.
	checkPodRows(t, dbURL, ns, pods, false)
	again := sendRegistrations(t, apis, pods, 1, registrationWorkers)
	again.log(t)
	assert.Empty(t, again.failures, "re-registrations not answered 2xx")
	checkPodRows(t, dbURL, ns, pods, true)

	// What the processes warned about (a slow recording above is explained here, if anywhere).
	for i, sg := range append(append([]*skewguard{}, apis...), workers...) {
		var warned []string
		for _, line := range strings.Split(sg.logs(), "\n") {
			if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) && !strings.Contains(line, "INSECURE") &&
				!strings.Contains(line, "no TLS") && !strings.Contains(line, "plain HTTP") && len(warned) < 15 {
				warned = append(warned, line)
			}
		}
		t.Logf("process %d: %d warning(s)/error(s) (first 15):\n%s", i, len(warned), strings.Join(warned, "\n"))
	}
}

// fleetPod is one pod of the burst and its version.
type fleetPod struct{ name, label string }

// startReplicas runs skewguard as nAPI `skewguard api` and nWorker `skewguard worker` processes
// on the same settings (database, Temporal namespace and task queue), under one installation of
// the chart's RBAC, as startSkewguard does for `serve`; each gets its own listen address. It
// returns once every process is ready.
func startReplicas(t testing.TB, s settings, nAPI, nWorker int) (apis, workers []*skewguard) {
	t.Helper()
	args := []string{
		"--set", "services.icc.features.skew_protection.enable=" + orFalse(s["PLT_FEATURE_SKEW_PROTECTION"]),
		"--set", "services.icc.skew_protection.auto_cleanup=" + orFalse(s["PLT_SKEW_AUTO_CLEANUP"]),
		"--set", "gateway.parentRefs[0].namespace=skewguard-system", "--set", "gateway.parentRefs[0].name=gw",
	}
	if ns := s["PLT_SKEW_NAMESPACES"]; ns != "" {
		args = append(args, "--set", "config.namespaces={"+ns+"}")
	}
	for i, ns := range s.claimsAllow() {
		args = append(args, "--set", fmt.Sprintf("claims.allow[%d].namespace=%s", i, ns),
			"--set-string", fmt.Sprintf("claims.allow[%d].hosts[0]=*", i), "--set", fmt.Sprintf("claims.allow[%d].paths[0]=/", i))
	}
	rbac := charttest.InstallRBAC(t, 2*time.Hour, args...)
	s["KUBECONFIG"] = rbac.Kubeconfig
	s["PLT_SKEW_CLAIMS_CONFIGMAP"] = rbac.ClaimsConfigMap
	start := func(role string) *skewguard {
		addr := freeAddr(t)
		env := os.Environ()
		for k, v := range s {
			if k != "PLT_SKEW_LISTEN_ADDRESS" {
				env = append(env, k+"="+v)
			}
		}
		env = append(env, "PLT_SKEW_LISTEN_ADDRESS="+addr)
		sg := &skewguard{t: t, env: env, url: "http://" + addr}
		sg.startRole(role)
		t.Cleanup(sg.stop)
		return sg
	}
	for range nWorker {
		workers = append(workers, start("worker"))
	}
	for range nAPI {
		apis = append(apis, start("api"))
	}
	return apis, workers
}

// deployAgentFleet deploys version v as total pods: a Deployment of serving pods that run the
// echo backend (named v.name(), the pods the Service's readiness comes from), a Deployment of
// the rest that the stack's launcher does not start (Running, never Ready: pods whose agent
// registers before the app listens), and the version's Service selecting both. The two
// Deployments' selectors differ by a label of their own, so neither adopts the other's pods.
func (c *cluster) deployAgentFleet(t testing.TB, v appVersion, total, serving int) {
	t.Helper()
	ctx := context.Background()
	part := func(name, launch string, replicas int32) {
		labels := v.labels()
		labels["e2e.skewguard.dev/part"] = launch
		selector := map[string]string{"app.kubernetes.io/name": v.App, "plt.dev/version": v.Version, "e2e.skewguard.dev/part": launch}
		annotations := map[string]string{launchAnnotation: launch}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v.Namespace, Labels: v.labels()},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "echo",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}}},
				},
			},
		}
		_, err := c.kube.AppsV1().Deployments(v.Namespace).Create(ctx, dep, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	part(v.name(), "echo", int32(serving))
	part(v.name()+"-agents", neverReadyProgram, int32(total-serving))
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: v.name(), Namespace: v.Namespace, Labels: v.labels()},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/name": v.App, "plt.dev/version": v.Version},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	_, err := c.kube.CoreV1().Services(v.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
}

// podNames lists the names of the pods of one version.
func podNames(t testing.TB, c *cluster, ns, label string) []string {
	t.Helper()
	list, err := c.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "plt.dev/version=" + label})
	require.NoError(t, err)
	var out []string
	for _, p := range list.Items {
		out = append(out, p.Name)
	}
	return out
}

// burstResult is what a burst of registrations saw, per API replica.
type burstResult struct {
	begin     time.Time
	elapsed   time.Duration
	latencies [][]time.Duration // by replica, of the answers finally received
	statuses  []map[int]int     // by replica: every answer's status, retries included
	retried   atomic.Int64
	mu        sync.Mutex
	failures  []string
}

func (r *burstResult) ok() int {
	n := 0
	for _, by := range r.statuses {
		n += by[http.StatusOK]
	}
	return n
}

func (r *burstResult) fail(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) < 20 {
		r.failures = append(r.failures, msg)
	}
}

func (r *burstResult) log(t testing.TB) {
	t.Helper()
	total := 0
	for _, l := range r.latencies {
		total += len(l)
	}
	t.Logf("%d registrations in %s: %.0f registrations/s (%d retried after a 503)", total, r.elapsed.Round(time.Millisecond),
		float64(total)/r.elapsed.Seconds(), r.retried.Load())
	for i, l := range r.latencies {
		sorted := slices.Clone(l)
		slices.Sort(sorted)
		t.Logf("api replica %d: %d answered, statuses %v, latency p50 %s p99 %s max %s", i, len(sorted), r.statuses[i],
			percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 100))
	}
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))].Round(100 * time.Microsecond)
}

// sendRegistrations sends each pod's registration perPod times, in a shuffled order, from
// workers goroutines; registration n goes to API replica n mod len(apis). A 503 with Retry-After
// (the pod cache is syncing, PostgreSQL or TokenReview unavailable) is the API's "retry", as the
// agent does; the retry goes to the same replica. Anything else not 2xx is a failure.
func sendRegistrations(t testing.TB, apis []*skewguard, pods []fleetPod, perPod, workers int) *burstResult {
	t.Helper()
	type job struct {
		replica int
		pod     string
	}
	jobs := make([]job, 0, len(pods)*perPod)
	for round := range perPod {
		for _, p := range pods {
			jobs = append(jobs, job{pod: p.name, replica: round})
		}
	}
	// Interleave: a pod's registrations are spread over the burst, and consecutive ones hit both
	// replicas.
	seed := time.Now().UnixNano()
	t.Logf("burst order seed %d", seed)
	shuffle(jobs, uint64(seed))
	for i := range jobs {
		jobs[i].replica = i % len(apis)
	}
	res := &burstResult{latencies: make([][]time.Duration, len(apis)), statuses: make([]map[int]int, len(apis))}
	for i := range apis {
		res.statuses[i] = map[int]int{}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	queue := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	begin := time.Now()
	for range workers {
		wg.Go(func() {
			for j := range queue {
				sg := apis[j.replica]
				body := `{"podId":"` + j.pod + `","apiVersion":"v3"}`
				for attempt := 1; ; attempt++ {
					t0 := time.Now()
					resp, err := client.Post(sg.url+"/control-plane/pods/"+j.pod+"/instance", "application/json", bytes.NewBufferString(body))
					if err != nil {
						res.fail(fmt.Sprintf("replica %d, pod %s: %v", j.replica, j.pod, err))
						break
					}
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					took := time.Since(t0)
					mu.Lock()
					res.statuses[j.replica][resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && attempt < 10 {
						res.retried.Add(1)
						time.Sleep(time.Second) // the Retry-After the API sends
						continue
					}
					mu.Lock()
					res.latencies[j.replica] = append(res.latencies[j.replica], took)
					mu.Unlock()
					if resp.StatusCode != http.StatusOK {
						res.fail(fmt.Sprintf("replica %d, pod %s: HTTP %d %s", j.replica, j.pod, resp.StatusCode, answer))
					} else if !bytes.Contains(answer, []byte(`"applicationId"`)) {
						res.fail(fmt.Sprintf("replica %d, pod %s: 200 without applicationId: %s", j.replica, j.pod, answer))
					}
					break
				}
			}
		})
	}
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	wg.Wait()
	res.begin, res.elapsed = begin, time.Since(begin)
	return res
}

// shuffle permutes jobs with a small deterministic generator (the seed is logged).
func shuffle[T any](jobs []T, seed uint64) {
	x := seed | 1
	for i := len(jobs) - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		jobs[i], jobs[j] = jobs[j], jobs[i]
	}
}

// watchActive reads the app's versions from the registry until ctx ends and, when called,
// returns how many reads it made, the most Active versions one read saw, and that read.
func watchActive(ctx context.Context, st *registry.Store, app registry.AppRef) func() (reads, most int, seen []string) {
	done := make(chan struct{})
	var reads, most int
	var seen []string
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			vs, err := st.ListVersions(ctx, app)
			if err == nil {
				reads++
				var active []string
				for _, v := range vs {
					if v.State == registry.Active {
						active = append(active, v.Label)
					}
				}
				if len(active) > most {
					most, seen = len(active), active
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() (int, int, []string) {
		<-done
		return reads, most, seen
	}
}

// defaultBackends returns the backends of every default rule (no header or query match: what
// new visitors get) of the HTTPRoutes of ns.
func defaultBackends(t testing.TB, c *cluster, ns string) []string {
	t.Helper()
	list, err := c.gw.GatewayV1().HTTPRoutes(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	out := []string{}
	for _, r := range list.Items {
		for _, rule := range r.Spec.Rules {
			pinned := false
			for _, m := range rule.Matches {
				if len(m.Headers) > 0 || len(m.QueryParams) > 0 {
					pinned = true
				}
			}
			if pinned {
				continue
			}
			for _, b := range rule.BackendRefs {
				out = append(out, string(b.Name))
			}
		}
	}
	return out
}

// checkOneWorkflowPerVersion lists, in Temporal's visibility, every workflow execution whose
// search attributes name the app (SkewNamespace, SkewApp), whatever its workflow ID, and checks
// that each version has exactly one: one workflow ID, the one the registry records
// (skew/<ns>/<app>/<version>), and one run that was not continued as new (a run continued as
// new is the same workflow going on). Visibility lags the server a little: it is read until
// every version shows a workflow whose SkewState is the registry's state, then once more.
func checkOneWorkflowPerVersion(t testing.TB, ns, app string, versions map[string]registry.Version) {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: testenv.Get(t, testenv.TemporalAddr), Namespace: "default", Logger: quietTemporalLogger()})
	require.NoError(t, err)
	defer tc.Close()
	query := fmt.Sprintf("SkewNamespace = '%s' AND SkewApp = '%s'", ns, app)
	list := func() (map[string][]*execution, error) {
		out := map[string][]*execution{}
		var token []byte
		for {
			resp, err := tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: "default", Query: query, PageSize: 1000, NextPageToken: token,
			})
			if err != nil {
				return nil, err
			}
			for _, e := range resp.GetExecutions() {
				x := &execution{id: e.GetExecution().GetWorkflowId(), run: e.GetExecution().GetRunId(), status: e.GetStatus(),
					version: keyword(e.GetSearchAttributes(), "SkewVersion"), state: keyword(e.GetSearchAttributes(), "SkewState")}
				out[x.version] = append(out[x.version], x)
			}
			if token = resp.GetNextPageToken(); len(token) == 0 {
				return out, nil
			}
		}
	}
	// Not a waitFor: a duplicate workflow may never catch up, and the assertions below say more
	// than a timeout would.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, err := list()
		if err != nil {
			continue
		}
		caughtUp := true
		for label, v := range versions {
			seen := false
			for _, x := range got[label] {
				seen = seen || (x.status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING && x.state == string(v.State))
			}
			caughtUp = caughtUp && seen
		}
		if caughtUp {
			break
		}
	}
	// The final read, retried: a loaded Temporal may miss one RPC deadline.
	var got map[string][]*execution
	for attempt := 1; ; attempt++ {
		if got, err = list(); err == nil || attempt == 5 {
			break
		}
		t.Logf("list workflows (attempt %d): %v", attempt, err)
	}
	require.NoError(t, err)
	labels := make([]string, 0, len(got))
	for label := range got {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	for _, label := range labels {
		_, known := versions[label]
		assert.True(t, known, "a workflow for version %q, which the registry does not know: %v", label, got[label])
	}
	for label, v := range versions {
		ids := map[string]bool{}
		var runs []*execution
		for _, x := range got[label] {
			ids[x.id] = true
			if x.status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
				runs = append(runs, x)
			}
		}
		t.Logf("version %s: %d execution(s) in visibility: %v", label, len(got[label]), got[label])
		want := workflows.WorkflowID(registry.VersionRef{Namespace: ns, App: app, Label: label})
		assert.Equal(t, map[string]bool{want: true}, ids, "version %s: one workflow ID", label)
		assert.Equal(t, want, v.WorkflowID, "version %s: the registry records its workflow", label)
		if assert.Len(t, runs, 1, "version %s: one run not continued as new: %v", label, runs) {
			assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, runs[0].status, "version %s", label)
		}
	}
}

// execution is one workflow run as visibility lists it.
type execution struct {
	id, run, version, state string
	status                  enumspb.WorkflowExecutionStatus
}

func (x *execution) String() string {
	return fmt.Sprintf("%s (run %s, %s, SkewState %s)", x.id, x.run, x.status, x.state)
}

// keyword decodes a Keyword search attribute ("" when absent).
func keyword(sa *commonpb.SearchAttributes, name string) string {
	p, ok := sa.GetIndexedFields()[name]
	if !ok {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return "?" + err.Error()
	}
	return s
}

// quietTemporalLogger keeps the Temporal client's own logs to warnings.
func quietTemporalLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// checkAuditChain checks that the version's audit holds one row per transition: the state
// changes, in order, each leave the state the previous one entered and enter another; at most
// one observed, activated and superseded row (one life: no redeployed, no refreshed, no promotion here).
func checkAuditChain(t testing.TB, st *registry.Store, ref registry.VersionRef) {
	t.Helper()
	audit, err := st.Audit(context.Background(), ref)
	require.NoError(t, err)
	counts := map[string]int{}
	var prev *registry.State
	for _, e := range audit {
		counts[e.Event]++
		if e.ToState == nil {
			continue
		}
		if prev != nil {
			assert.NotNil(t, e.FromState, "%s: %s row without from state", ref, e.Event)
			if e.FromState != nil {
				assert.Equal(t, *prev, *e.FromState, "%s: %s row leaves %s, but the previous row entered %s (events %v)",
					ref, e.Event, *e.FromState, *prev, auditEvents(audit))
			}
		}
		if e.FromState != nil {
			assert.NotEqual(t, *e.FromState, *e.ToState, "%s: a %s row that changes nothing", ref, e.Event)
		}
		prev = e.ToState
	}
	t.Logf("%s audit: %v", ref, auditEvents(audit))
	assert.Equal(t, 1, counts[registry.EventObserved], "%s: observed rows (%v)", ref, auditEvents(audit))
	assert.LessOrEqual(t, counts[registry.EventActivated], 1, "%s: activated rows (%v)", ref, auditEvents(audit))
	assert.LessOrEqual(t, counts[registry.EventSuperseded], 1, "%s: superseded rows (%v)", ref, auditEvents(audit))
	// Nothing about a version changed after it was observed: a refreshed row is a second
	// observation (a second workflow, or a start that lost its input).
	for _, none := range []string{registry.EventRedeployed, registry.EventRefreshed, registry.EventPromoted, registry.EventExpired, registry.EventFailed} {
		assert.Zero(t, counts[none], "%s: %s rows (%v)", ref, none, auditEvents(audit))
	}
	switch ref.Label {
	case "1": // Active before the burst, superseded once
		assert.Equal(t, 1, counts[registry.EventActivated], "%s", ref)
		assert.Equal(t, 1, counts[registry.EventSuperseded], "%s", ref)
	case "3": // the newest, Active
		assert.Equal(t, 1, counts[registry.EventActivated], "%s", ref)
		assert.Zero(t, counts[registry.EventSuperseded], "%s", ref)
	case "2": // kept out by v3, or Active for a moment and then superseded: superseded once either way
		assert.Equal(t, 1, counts[registry.EventSuperseded], "%s", ref)
	}
}

// checkPodRows reads the registry's pods table: every pod of the burst has a row, and a row that
// names a version names the pod's own; with allLinked, every row names one.
func checkPodRows(t testing.TB, dbURL, ns string, pods []fleetPod, allLinked bool) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT p.name, coalesce(v.label, '') FROM pods p LEFT JOIN versions v ON v.id = p.version_id WHERE p.namespace = $1`, ns)
	require.NoError(t, err)
	recorded := map[string]string{}
	for rows.Next() {
		var name, label string
		require.NoError(t, rows.Scan(&name, &label))
		recorded[name] = label
	}
	require.NoError(t, rows.Err())
	var missing, wrong []string
	linked := 0
	for _, p := range pods {
		label, ok := recorded[p.name]
		switch {
		case !ok:
			missing = append(missing, p.name)
		case label == "":
		case label != p.label:
			wrong = append(wrong, fmt.Sprintf("%s of v%s recorded against v%s", p.name, p.label, label))
		default:
			linked++
		}
	}
	t.Logf("pods table: %d of %d pods recorded, %d of them linked to their version (a registration after the version was recorded links it)",
		len(pods)-len(missing), len(pods), linked)
	assert.Empty(t, missing, "pods that registered but have no row in the registry")
	assert.Empty(t, wrong, "pods recorded against another version")
	if allLinked {
		assert.Equal(t, len(pods), linked, "pods linked to their version")
	}
}
