//go:build integration

package workflows_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/converge"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/internal/traffic"
	"github.com/skewguard/skewguard/worker"
	"github.com/skewguard/skewguard/workflows"
)

var recordHistories = flag.Bool("record-histories", false, "write the histories of the real-stack lifecycles to testdata/histories for the replay test")

// stack is one test's slice of the real stack: a fresh database, a fresh namespace, and a
// worker on a task queue of its own, with millisecond-scale lifecycle durations.
type stack struct {
	t        *testing.T
	cfg      config.Config
	reg      *registry.Store
	kube     *kube.Clients
	temporal client.Client
	ns       string
	gateway  string
}

const app = "myapp"

func newStack(t *testing.T, env map[string]string) *stack {
	t.Helper()
	return newStackWrapped(t, env, nil)
}

// newStackWrapped is newStack with the worker's Kubernetes clients going through wrap (nil: the
// test's own clients), e.g. to count what the activities send to the API server.
func newStackWrapped(t *testing.T, env map[string]string, wrap func(http.RoundTripper) http.RoundTripper) *stack {
	t.Helper()
	vals := testenv.Require(t, testenv.TemporalAddr, testenv.Kubeconfig, testenv.PrometheusURL, testenv.GatewayRef, testenv.GatewayURL)
	s := &stack{t: t, gateway: vals[4]}
	base := map[string]string{
		"PLT_FEATURE_SKEW_PROTECTION":   "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS":  vals[3],
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "2000",
		"PLT_SKEW_TRAFFIC_WINDOW_MS":    "1000",
		"PLT_SKEW_CHECK_INTERVAL_MS":    "1000", // the minimum (internal/bounds)
		"PLT_SKEW_HTTP_MAX_ALIVE_MS":    "120000",
		"PLT_SKEW_READINESS_TIMEOUT_MS": "60000",
		"PLT_SKEW_TRAFFIC_PRESET":       "traefik",
		"PLT_SKEW_TASK_QUEUE":           fmt.Sprintf("skewguard-test-%08x", rand.Uint32()),
		"PROMETHEUS_URL":                vals[2],
		"TEMPORAL_ADDRESS":              vals[0],
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.LoadFrom(t.Context(), lookuper(base))
	require.NoError(t, err)
	s.cfg = cfg
	s.reg = registrytest.New(t)
	s.kube, err = kube.NewClients(vals[1])
	require.NoError(t, err)

	s.ns = fmt.Sprintf("sg-lifecycle-%08x", rand.Uint32())
	_, err = s.kube.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = s.kube.Kube.CoreV1().Namespaces().Delete(context.Background(), s.ns, metav1.DeleteOptions{})
	})

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s.temporal, err = client.Dial(client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace,
		Logger: tlog.NewStructuredLogger(quiet)})
	require.NoError(t, err)
	t.Cleanup(s.temporal.Close)

	// The activities as cmd/skewguard builds them (wire.go), with every claim allowed.
	tmpl, err := traffic.Select(cfg.TrafficPreset, cfg.TrafficQuery)
	require.NoError(t, err)
	querier, err := traffic.NewQuerier(cfg.PrometheusURL, tmpl)
	require.NoError(t, err)
	querier.Log, querier.Timeout = quiet, 15*time.Second
	// The stack scrapes every second: rate() needs two samples in its range, so a 1 s traffic
	// window is widened to 5 s for the query.
	querier.MinRange = 5 * time.Second
	ready, err := kube.NewReadinessWatcher(s.kube.Kube, cfg.Namespaces)
	require.NoError(t, err)
	ready.Probe = cfg.ReadinessTCPProbe
	ready.Start(context.Background())
	workerKube := s.kube
	if wrap != nil {
		rc := rest.CopyConfig(s.kube.Config)
		rc.Wrap(wrap)
		workerKube = &kube.Clients{Config: rc}
		workerKube.Kube, err = kubernetes.NewForConfig(rc)
		require.NoError(t, err)
		workerKube.Gateway, err = gatewayclient.NewForConfig(rc)
		require.NoError(t, err)
	}
	acts := &activities.Activities{
		Registry:  s.reg,
		Workloads: kube.Workloads{Client: workerKube.Kube, Gateway: workerKube.Gateway},
		Readiness: ready,
		Routes:    kube.NewRouteWriter(workerKube.Gateway).WithFence(converge.RegistryFence(s.reg)),
		Traffic:   querier,
		Claims:    claims.AllowAll(),
		Config:    cfg,
		Log:       quiet,
		AllRoutes: kube.AllRoutes(workerKube.Gateway),
	}
	w := worker.New(s.temporal, cfg.TaskQueue, acts, worker.Options{Logger: quiet, StopTimeout: time.Second})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return s
}

type lookuper map[string]string

func (l lookuper) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func (s *stack) ref(version string) registry.VersionRef {
	return registry.VersionRef{Namespace: s.ns, App: app, Label: version}
}

// deploy applies a version's Deployment and Service (its pods run the stack's echo backend) and
// starts its lifecycle, as detection would.
func (s *stack) deploy(version string) {
	s.t.Helper()
	name := app + "-" + version
	labels := map[string]string{kube.AppLabel: app, kube.VersionLabel: version}
	_, err := s.kube.Kube.AppsV1().Deployments(s.ns).Create(s.t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "echo",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(s.t, err)
	_, err = s.kube.Kube.CoreV1().Services(s.ns).Create(s.t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(s.t, err)
	_, err = workflows.Start(s.t.Context(), s.temporal, s.cfg.TaskQueue, workflows.LifecycleInput{
		Ref: s.ref(version), Placement: registry.Placement{ServiceName: name, ServicePort: 80, Hostname: s.host()},
		Actor: registry.Actor{Type: registry.ActorPod, Name: name + "-test"},
	})
	require.NoError(s.t, err)
}

// eventually polls cond every 100 ms until it holds, failing the test after timeout.
func (s *stack) eventually(timeout time.Duration, what string, cond func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("%s: not after %s (last: %s)", what, timeout, last)
}

// routing is the app's live routing as the HTTPRoutes say it: the default rule's Service and the
// pinned versions.
type routing struct {
	Default string
	Pinned  []string
}

func (s *stack) routing() (routing, error) {
	list, err := s.kube.Gateway.GatewayV1().HTTPRoutes(s.ns).List(s.t.Context(), metav1.ListOptions{})
	if err != nil {
		return routing{}, err
	}
	var r routing
	for _, route := range list.Items {
		for _, rule := range route.Spec.Rules {
			if len(rule.BackendRefs) != 1 {
				continue
			}
			svc := string(rule.BackendRefs[0].Name)
			if isDefault(rule) {
				r.Default = svc
			} else if pinsByCookie(rule) { // the Active version's header and query carriers are no pin
				r.Pinned = append(r.Pinned, svc)
			}
		}
	}
	slices.Sort(r.Pinned)
	r.Pinned = slices.Compact(r.Pinned) // one rule per carrier: cookie, header, query
	return r, nil
}

// pinsByCookie reports whether rule holds a version's pin cookie match.
func pinsByCookie(rule gatewayv1.HTTPRouteRule) bool {
	for _, m := range rule.Matches {
		for _, h := range m.Headers {
			if h.Name == "Cookie" && h.Value != routes.AnyCookie {
				return true
			}
		}
	}
	return false
}

// isDefault reports whether rule is the catch-all (no cookie, header or query match).
func isDefault(rule gatewayv1.HTTPRouteRule) bool {
	for _, m := range rule.Matches {
		if len(m.Headers) > 0 || len(m.QueryParams) > 0 {
			return false
		}
	}
	return true
}

func (s *stack) waitRouting(want routing) {
	s.t.Helper()
	s.eventually(30*time.Second, fmt.Sprintf("routes %+v", want), func() (bool, string) {
		got, err := s.routing()
		if err != nil {
			return false, err.Error()
		}
		return got.Default == want.Default && slices.Equal(got.Pinned, want.Pinned), fmt.Sprintf("%+v", got)
	})
}

// served asks the Gateway for the app, with a pinning cookie when version is not empty, and
// returns the version that answered.
// host is the test's own hostname: the shared gateway may serve other apps (the demo's myapp
// at /myapp), and a test never claims a host and path that anything else on the stack claims.
func (s *stack) host() string { return s.ns + ".lifecycle.test" }

func (s *stack) served(pin string) (string, error) {
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.gateway+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = s.host()
	if pin != "" {
		req.Header.Set("Cookie", "a=1; __plt_dpl="+pin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		Version string `json:"version"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Version, err
}

func (s *stack) waitServed(pin, want string) {
	s.t.Helper()
	s.eventually(30*time.Second, fmt.Sprintf("gateway serves %s for pin %q", want, pin), func() (bool, string) {
		got, err := s.served(pin)
		if err != nil {
			return false, err.Error()
		}
		return got == want, got
	})
}

func (s *stack) state(version string) workflows.StateView {
	s.t.Helper()
	val, err := s.temporal.QueryWorkflow(s.t.Context(), workflows.WorkflowID(s.ref(version)), "", workflows.QueryState)
	require.NoError(s.t, err)
	var v workflows.StateView
	require.NoError(s.t, val.Get(&v))
	return v
}

// visible waits until Temporal's visibility lists the version's workflow with SkewState=state,
// through the temporal CLI as an operator would.
func (s *stack) visible(version string, state registry.State) {
	s.t.Helper()
	cli := testenv.Get(s.t, testenv.TemporalCLI)
	query := fmt.Sprintf(`WorkflowId = %q AND SkewState = %q AND SkewApp = %q AND SkewNamespace = %q`,
		workflows.WorkflowID(s.ref(version)), state, app, s.ns)
	s.eventually(20*time.Second, "visibility "+query, func() (bool, string) {
		out, err := exec.CommandContext(s.t.Context(), cli, "workflow", "list", "--address", s.cfg.TemporalAddress,
			"--query", query, "--output", "json").CombinedOutput()
		if err != nil {
			return false, fmt.Sprintf("%v: %s", err, out)
		}
		return strings.Contains(string(out), workflows.WorkflowID(s.ref(version))), string(out)
	})
}

func (s *stack) replicas(version string) int32 {
	s.t.Helper()
	d, err := s.kube.Kube.AppsV1().Deployments(s.ns).Get(s.t.Context(), app+"-"+version, metav1.GetOptions{})
	require.NoError(s.t, err)
	return *d.Spec.Replicas
}

// history fetches a closed workflow's history, replays it, and with -record-histories writes it
// to testdata/histories/<name>.json.
func (s *stack) history(version, name string) {
	s.t.Helper()
	iter := s.temporal.GetWorkflowHistory(s.t.Context(), workflows.WorkflowID(s.ref(version)), "", false, 0)
	h := &historypb.History{}
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(s.t, err)
		h.Events = append(h.Events, e)
	}
	replayer := sdkworker.NewWorkflowReplayer()
	replayer.RegisterWorkflow(workflows.VersionLifecycle)
	require.NoError(s.t, replayer.ReplayWorkflowHistory(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), h),
		"the recorded history replays against the current workflow code")
	if *recordHistories {
		data, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
		require.NoError(s.t, err)
		path := filepath.Join("testdata", "histories", name+".json")
		require.NoError(s.t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(s.t, os.WriteFile(path, data, 0o644))
		s.t.Logf("recorded %s (%d events)", path, len(h.Events))
	}
}

// TestLifecycleOnTheRealStack drives two versions through the whole lifecycle on the real parts
// (PostgreSQL, Temporal, the API server, Traefik, Prometheus) with millisecond-scale durations:
// grace 2 s, window 1 s, interval 500 ms.
func TestLifecycleOnTheRealStack(t *testing.T) {
	for _, cleanup := range []bool{false, true} {
		t.Run(map[bool]string{false: "scale to 0", true: "auto-cleanup"}[cleanup], func(t *testing.T) {
			s := newStack(t, map[string]string{"PLT_SKEW_AUTO_CLEANUP": fmt.Sprint(cleanup)})

			s.deploy("v1")
			s.waitRouting(routing{Default: "myapp-v1"})
			s.waitServed("", "v1") // also creates v1's series in Traefik's metrics
			assert.Equal(t, registry.Active, s.state("v1").State)
			s.visible("v1", registry.Active)

			s.deploy("v2")
			s.waitRouting(routing{Default: "myapp-v2", Pinned: []string{"myapp-v1"}})
			s.waitServed("", "v2")
			s.waitServed("v1", "v1") // a pinned session still reaches v1
			// v2's workflow signals v1's once the routes are written.
			var view workflows.StateView
			s.eventually(10*time.Second, "v1's workflow draining", func() (bool, string) {
				view = s.state("v1")
				return view.State == registry.Draining, string(view.State)
			})
			assert.Equal(t, "v2", view.SupersededBy)
			s.visible("v1", registry.Draining)
			s.visible("v2", registry.Active)

			// No more traffic to v1: it expires after grace + window + two zero readings.
			s.eventually(60*time.Second, "v1 expired", func() (bool, string) {
				v, err := s.reg.GetVersion(t.Context(), s.ref("v1"))
				if err != nil {
					return false, err.Error()
				}
				return v.State == registry.Expired, string(v.State)
			})
			s.waitRouting(routing{Default: "myapp-v2"})
			s.waitServed("v1", "v2") // a cookie for an expired version falls through to the Active one

			run := s.temporal.GetWorkflow(t.Context(), workflows.WorkflowID(s.ref("v1")), "")
			var res workflows.LifecycleResult
			require.NoError(t, run.Get(t.Context(), &res))
			assert.Equal(t, registry.Expired, res.State)
			assert.Contains(t, res.Reason, "no traffic")
			v1, err := s.reg.GetVersion(t.Context(), s.ref("v1"))
			require.NoError(t, err)
			assert.GreaterOrEqual(t, v1.ExpiredAt.Sub(*v1.DrainingAt), 3500*time.Millisecond,
				"not before grace (2 s) + window (1 s) + the second check (500 ms)")
			s.visible("v1", registry.Expired)
			view = s.state("v1") // a closed workflow still answers the query
			require.GreaterOrEqual(t, len(view.Readings), 2)
			last := view.Readings[len(view.Readings)-2:]
			assert.Equal(t, []string{workflows.VerdictZero, workflows.VerdictZero}, []string{last[0].Verdict, last[1].Verdict},
				"the traefik preset found v1's series and read zero twice")

			if cleanup {
				s.eventually(10*time.Second, "v1's Deployment and Service deleted", func() (bool, string) {
					_, errD := s.kube.Kube.AppsV1().Deployments(s.ns).Get(t.Context(), "myapp-v1", metav1.GetOptions{})
					_, errS := s.kube.Kube.CoreV1().Services(s.ns).Get(t.Context(), "myapp-v1", metav1.GetOptions{})
					return errD != nil && errS != nil, fmt.Sprint(errD, errS)
				})
			} else {
				assert.Equal(t, int32(0), s.replicas("v1"), "v1 scaled to 0")
				assert.Equal(t, int32(1), s.replicas("v2"))
			}
			events := auditEvents(t, s.reg, s.ref("v1"))
			for _, want := range []string{"observed", "activated", "routes-synced", "superseded", "expired"} {
				assert.Contains(t, events, want)
			}
			assert.Contains(t, events, map[bool]string{false: "scaled-to-zero", true: "workloads-deleted"}[cleanup])

			s.history("v1", map[bool]string{false: "expired-by-traffic", true: "expired-auto-cleanup"}[cleanup])
			require.NoError(t, s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref("v2")), "", "test done"))
		})
	}
}

func auditEvents(t *testing.T, reg *registry.Store, ref registry.VersionRef) []string {
	t.Helper()
	trail, err := reg.Audit(t.Context(), ref)
	require.NoError(t, err)
	var out []string
	for _, e := range trail {
		out = append(out, e.Event)
	}
	return out
}

// TestManualActionsOnTheRealStack steers versions with the updates and the signal, as an
// operator would from the Temporal UI or the API.
func TestManualActionsOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}

	s.deploy("v1")
	s.waitRouting(routing{Default: "myapp-v1"})
	_, err := s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{RequireApproval: ptr.To(true)}, alice)
	require.NoError(t, err)

	s.deploy("v2")
	s.waitRouting(routing{Default: "myapp-v1", Pinned: []string{"myapp-v2"}})
	s.eventually(10*time.Second, "v2 staged", func() (bool, string) {
		st := s.state("v2").State
		return st == registry.Staged, string(st)
	})
	s.visible("v2", registry.Staged)
	s.waitServed("v2", "v2") // a staged version is reachable by pin only
	s.waitServed("", "v1")

	res := s.update("v2", workflows.UpdateApprove, alice)
	assert.Equal(t, registry.Active, res.State)
	s.waitRouting(routing{Default: "myapp-v2", Pinned: []string{"myapp-v1"}})
	s.eventually(10*time.Second, "v1 draining", func() (bool, string) {
		st := s.state("v1").State
		return st == registry.Draining, string(st)
	})

	res = s.update("v1", workflows.UpdatePromote, alice)
	assert.Equal(t, registry.Active, res.State)
	s.waitRouting(routing{Default: "myapp-v1", Pinned: []string{"myapp-v2"}})
	s.eventually(10*time.Second, "v2 draining again", func() (bool, string) {
		st := s.state("v2").State
		return st == registry.Draining, string(st)
	})

	_, err = s.tryUpdate("v1", workflows.UpdateExpire, alice)
	require.Error(t, err, "the only Active version cannot be expired")
	assert.Contains(t, err.Error(), "is the Active version of")

	require.NoError(t, s.temporal.SignalWorkflow(t.Context(), workflows.WorkflowID(s.ref("v2")), "", workflows.SignalForceExpire, nil))
	var final workflows.LifecycleResult
	require.NoError(t, s.temporal.GetWorkflow(t.Context(), workflows.WorkflowID(s.ref("v2")), "").Get(t.Context(), &final))
	assert.Equal(t, registry.Expired, final.State)
	assert.Contains(t, final.Reason, "force-expire")
	s.waitRouting(routing{Default: "myapp-v1"})
	assert.Equal(t, int32(0), s.replicas("v2"))

	s.deploy("v3")
	s.eventually(30*time.Second, "v3 staged", func() (bool, string) {
		st := s.state("v3").State
		return st == registry.Staged, string(st)
	})
	res = s.update("v3", workflows.UpdateReject, alice)
	assert.Equal(t, registry.Expired, res.State)
	s.waitRouting(routing{Default: "myapp-v1"})

	s.history("v2", "approved-promoted-force-expired")
	s.history("v3", "staged-rejected")
	s.history("v1", "promoted-running")
	require.NoError(t, s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref("v1")), "", "test done"))
}

func (s *stack) tryUpdate(version, name string, actor registry.Actor) (workflows.ActionResult, error) {
	h, err := s.temporal.UpdateWorkflow(s.t.Context(), client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(s.ref(version)), UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ActionRequest{Actor: actor, Reason: "test"}},
	})
	if err != nil {
		return workflows.ActionResult{}, err
	}
	var res workflows.ActionResult
	return res, h.Get(s.t.Context(), &res)
}

func (s *stack) update(version, name string, actor registry.Actor) workflows.ActionResult {
	s.t.Helper()
	res, err := s.tryUpdate(version, name, actor)
	require.NoError(s.t, err, "%s %s", name, version)
	return res
}
