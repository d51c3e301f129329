//go:build integration

package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/workflows"
)

// writeCounter counts the requests that may change something on the API server: every verb
// but GET (get, list, watch), HEAD and OPTIONS.
type writeCounter struct {
	mu     sync.Mutex
	writes []string
}

func (c *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			c.mu.Lock()
			c.writes = append(c.writes, r.Method+" "+r.URL.Path)
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (c *writeCounter) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestObserveModeWritesNothing: v1 then v2 of an app go through the whole lifecycle (v1
// Active, then Draining, then Expired and retired) with every request of the worker's
// Kubernetes clients counted. In manage mode the same run writes routes, Events and a scale to
// 0 (the counter counts); in observe mode (the app's policy) the registry records every state
// and the worker sends not one write to the API server, and no HTTPRoute of the app exists.
func TestObserveModeWritesNothing(t *testing.T) {
	for _, mode := range []string{registry.ModeManage, registry.ModeObserve} {
		t.Run(mode, func(t *testing.T) {
			counter := &writeCounter{}
			s := newStackWrapped(t, nil, counter.wrap)
			alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
			_, err := s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{Mode: ptr.To(mode)}, alice)
			require.NoError(t, err)
			t.Cleanup(func() {
				for _, v := range []string{"v1", "v2"} {
					_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(v)), "", "test done")
				}
			})

			s.deploy("v1")
			s.eventually(30*time.Second, "v1 active", func() (bool, string) {
				st := s.state("v1").State
				return st == registry.Active, string(st)
			})
			s.deploy("v2")
			s.eventually(30*time.Second, "v2 active", func() (bool, string) {
				st := s.state("v2").State
				return st == registry.Active, string(st)
			})
			// v1 is expired by an operator (with no route there is no traffic series, and a
			// lifecycle waits for max alive on unknown traffic), and retired.
			s.eventually(10*time.Second, "v1 draining", func() (bool, string) {
				st := s.state("v1").State
				return st == registry.Draining, string(st)
			})
			s.update("v1", workflows.UpdateExpire, alice)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var res workflows.LifecycleResult
			require.NoError(t, s.temporal.GetWorkflow(ctx, workflows.WorkflowID(s.ref("v1")), "").Get(ctx, &res))
			assert.Equal(t, registry.Expired, res.State)
			v2, err := s.reg.GetVersion(t.Context(), s.ref("v2"))
			require.NoError(t, err)
			assert.Equal(t, registry.Active, v2.State, "the registry records the states")

			routes, err := s.kube.Gateway.GatewayV1().HTTPRoutes(s.ns).List(t.Context(), metav1.ListOptions{})
			require.NoError(t, err)
			writes := counter.seen()
			if mode == registry.ModeManage {
				assert.NotEmpty(t, writes, "manage mode writes (the counter counts)")
				assert.NotEmpty(t, routes.Items)
				assert.Equal(t, int32(0), s.replicas("v1"))
				return
			}
			assert.Empty(t, writes, "observe mode sends no write to the API server")
			assert.Empty(t, routes.Items, "no HTTPRoute written")
			assert.Equal(t, int32(1), s.replicas("v1"), "v1 not scaled down")
			assert.Contains(t, auditEvents(t, s.reg, s.ref("v1")), "retire-observed")
		})
	}
}

// TestAdviseModeOnTheRealStack: in advise mode a deploy publishes a plan and changes nothing
// in the cluster; a second deploy before the first plan is applied supersedes (withdraws) it;
// applying the second plan's YAML with kubectl, as a pipeline would, moves the lifecycle on:
// v2 Active in the registry and served by the Gateway.
func TestAdviseModeOnTheRealStack(t *testing.T) {
	kubeconfig := testenv.Get(t, testenv.Kubeconfig)
	kubectl, err := exec.LookPath("kubectl")
	require.NoError(t, err, "the test applies the plan with kubectl, as a pipeline would")
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	_, err = s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{Mode: ptr.To(registry.ModeAdvise)}, alice)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, v := range []string{"v1", "v2"} {
			_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(v)), "", "test done")
		}
	})
	pending := func(version string) func() (bool, string) {
		return func() (bool, string) {
			p, err := s.reg.PendingPlan(t.Context(), s.ref(version))
			if err != nil {
				return false, err.Error()
			}
			return p.Step == registry.StepActivate && len(p.Changes) > 0, p.Step
		}
	}

	s.deploy("v1")
	s.eventually(30*time.Second, "v1's activation plan", pending("v1"))
	p1, err := s.reg.PendingPlan(t.Context(), s.ref("v1"))
	require.NoError(t, err)
	for _, c := range p1.Changes {
		assert.Equal(t, registry.ActionApply, c.Action)
		assert.Equal(t, "HTTPRoute", c.Kind)
		var obj gatewayv1.HTTPRoute
		require.NoError(t, json.Unmarshal(c.Object, &obj))
		assert.Equal(t, "skewguard", obj.Labels["app.kubernetes.io/managed-by"], "our labels")
		assert.Equal(t, "myapp", obj.Labels["app.kubernetes.io/name"])
		assert.NotEmpty(t, obj.Annotations["skewguard.dev/route-generation"], "our generation annotation")
		assert.Equal(t, "HTTPRoute", obj.Kind)
	}
	routes, err := s.kube.Gateway.GatewayV1().HTTPRoutes(s.ns).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, routes.Items, "advise mode writes no HTTPRoute")
	assert.Equal(t, registry.Pending, s.state("v1").State, "not Active before the plan is applied")
	s.eventually(10*time.Second, "v1's workflow details name its plan", func() (bool, string) {
		w := s.state("v1").WaitingFor
		return strings.Contains(w, "advise mode") && strings.Contains(w, "skewguard plan "+s.ns+"/"+app+" v1"), w
	})
	s.eventually(10*time.Second, "a PlanPublished Event on v1's Deployment", func() (bool, string) {
		evs, err := s.kube.Kube.EventsV1().Events(s.ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == "PlanPublished" && e.Regarding.Name == app+"-v1" {
				return true, ""
			}
		}
		return false, "none"
	})

	s.deploy("v2")
	s.eventually(30*time.Second, "v2's activation plan", pending("v2"))
	st, err := s.reg.PlanState(t.Context(), s.ref("v1"), registry.StepActivate)
	require.NoError(t, err)
	assert.Equal(t, registry.PlanSuperseded, st, "v1's plan withdrawn")
	_, err = s.reg.PendingPlan(t.Context(), s.ref("v1"))
	assert.True(t, errors.Is(err, registry.ErrNotFound), "v1 has no pending plan: %v", err)

	p2, err := s.reg.PendingPlan(t.Context(), s.ref("v2"))
	require.NoError(t, err)
	doc, err := p2.YAML()
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), kubectl, "--kubeconfig", kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(string(doc))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "kubectl apply: %s\n%s", out, doc)

	s.eventually(30*time.Second, "v2 active", func() (bool, string) {
		st := s.state("v2").State
		return st == registry.Active, string(st)
	})
	st, err = s.reg.PlanState(t.Context(), s.ref("v2"), registry.StepActivate)
	require.NoError(t, err)
	assert.Equal(t, registry.PlanApplied, st)
	s.waitServed("", "v2")
	// v1's activation, withdrawn, commits in the registry alone: v2, the newer, stays Active.
	s.eventually(30*time.Second, "v1 moves on", func() (bool, string) {
		st := s.state("v1").State
		return st != registry.Pending, string(st)
	})
	assert.NotEqual(t, registry.Active, s.state("v1").State)
	assert.Equal(t, registry.Active, s.state("v2").State)

	// Retirement: expiring v1 publishes a plan to scale its Deployment to 0 and waits for it.
	alice2 := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	go func() { _, _ = s.tryUpdate("v1", workflows.UpdateExpire, alice2) }()
	s.eventually(30*time.Second, "v1's retire plan", func() (bool, string) {
		p, err := s.reg.PendingPlan(t.Context(), s.ref("v1"))
		if err != nil {
			return false, err.Error()
		}
		return p.Step == registry.StepRetire, p.Step
	})
	p3, err := s.reg.PendingPlan(t.Context(), s.ref("v1"))
	require.NoError(t, err)
	require.Len(t, p3.Changes, 1)
	assert.Equal(t, registry.PlanChange{Action: registry.ActionScale, APIVersion: "apps/v1", Kind: "Deployment",
		Namespace: s.ns, Name: app + "-v1", Replicas: ptr.To[int32](0)}, p3.Changes[0])
	assert.Equal(t, int32(1), s.replicas("v1"), "advise mode does not scale")
	out, err = exec.CommandContext(t.Context(), kubectl, "--kubeconfig", kubeconfig, "-n", s.ns,
		"scale", "deployment/"+app+"-v1", "--replicas=0").CombinedOutput()
	require.NoError(t, err, "kubectl scale: %s", out)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var res workflows.LifecycleResult
	require.NoError(t, s.temporal.GetWorkflow(ctx, workflows.WorkflowID(s.ref("v1")), "").Get(ctx, &res))
	assert.Equal(t, registry.Expired, res.State)
	st, err = s.reg.PlanState(t.Context(), s.ref("v1"), registry.StepRetire)
	require.NoError(t, err)
	assert.Equal(t, registry.PlanApplied, st)
}
