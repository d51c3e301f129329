//go:build integration

package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestSwitchOffAndOnOnTheRealStack: v1 Draining, v2 Active, a session pinned to v1. Switching
// skew protection off for the app (the policy, then policy-changed to its lifecycles, as PUT
// …/policy does) expires v1 with its pin and retires it; the routes are one plain rule to v2, so
// the v1-pinned request now reaches v2 and no response sets a cookie. While off, deploying v3
// expires v2 at once instead of draining it. Switched on again, the routes pin and set the cookie
// at once; deploying v4 drains v3: a new session is pinned to v4 while a v3 cookie still reaches
// v3. The grace period (60 s) is far longer than the test: nothing expires by traffic.
func TestSwitchOffAndOnOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	t.Cleanup(func() {
		for i := 1; i <= 4; i++ {
			_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(fmt.Sprintf("v%d", i))), "", "test done")
		}
	})
	activeNow := func(v string) {
		s.deploy(v)
		s.eventually(30*time.Second, v+" active", func() (bool, string) {
			st := s.state(v).State
			return st == registry.Active, string(st)
		})
	}
	setEnabled := func(on bool) {
		live, err := s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{Enabled: ptr.To(on)}, alice)
		require.NoError(t, err)
		for _, v := range live {
			require.NoError(t, s.temporal.SignalWorkflow(t.Context(), workflows.WorkflowID(v.Ref()), "",
				workflows.SignalPolicyChanged, workflows.ActionRequest{Actor: alice, Reason: "policy changed"}))
		}
	}

	activeNow("v1")
	activeNow("v2")
	s.waitRouting(routing{Default: "myapp-v2", Pinned: []string{"myapp-v1"}})
	s.waitServed("v1", "v1")
	s.waitServed("", "v2")
	_, cookie := s.servedWithCookie("")
	assert.Contains(t, cookie, "__plt_dpl=v2", "protection on: a new session is pinned")

	setEnabled(false)
	s.expiredBecauseOff("v1")
	s.waitRouting(routing{Default: "myapp-v2"})
	s.plainRoute("myapp-v2")
	s.waitServed("v1", "v2") // the v1 session falls through to the Active version
	for _, pin := range []string{"", "v1", "v2"} {
		got, cookie := s.servedWithCookie(pin)
		assert.Equal(t, "v2", got, "pin %q", pin)
		assert.Empty(t, cookie, "no Set-Cookie while off (pin %q)", pin)
	}

	// While off, a new version takes over and the one it supersedes expires at once.
	activeNow("v3")
	s.expiredBecauseOff("v2")
	s.waitRouting(routing{Default: "myapp-v3"})
	s.plainRoute("myapp-v3")

	setEnabled(true)
	s.eventually(30*time.Second, "the cookie is set again", func() (bool, string) {
		got, cookie := s.servedWithCookie("")
		return got == "v3" && strings.Contains(cookie, "__plt_dpl=v3"), got + " " + cookie
	})
	activeNow("v4")
	s.eventually(10*time.Second, "v3 draining", func() (bool, string) {
		st := s.state("v3").State
		return st == registry.Draining, string(st)
	})
	s.waitRouting(routing{Default: "myapp-v4", Pinned: []string{"myapp-v3"}})
	s.waitServed("v3", "v3")
	s.waitServed("", "v4")
	got, cookie := s.servedWithCookie("")
	assert.Equal(t, "v4", got)
	assert.Contains(t, cookie, "__plt_dpl=v4", "a new session is pinned to v4")
	assert.Equal(t, int32(1), s.replicas("v3"), "v3 drains, its workloads kept")

	s.history("v1", "expired-by-switch-off")
	s.history("v2", "switched-off-then-superseded")
}

// expiredBecauseOff checks that version was expired because the app's skew protection was
// switched off: the registry's audit says so, its workflow ended Expired within seconds (told,
// not at the end of its grace period), and its Deployment was scaled to 0.
func (s *stack) expiredBecauseOff(version string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 20*time.Second)
	defer cancel()
	var res workflows.LifecycleResult
	require.NoError(s.t, s.temporal.GetWorkflow(ctx, workflows.WorkflowID(s.ref(version)), "").Get(ctx, &res), "%s's workflow ends", version)
	assert.Equal(s.t, registry.Expired, res.State)
	assert.Contains(s.t, res.Reason, registry.ReasonProtectionOff)
	trail, err := s.reg.Audit(s.t.Context(), s.ref(version))
	require.NoError(s.t, err)
	var expired *registry.AuditEntry
	for i := range trail {
		if trail[i].Event == registry.EventExpired {
			expired = &trail[i]
		}
	}
	require.NotNil(s.t, expired, "%s has an expired entry", version)
	assert.Equal(s.t, registry.ReasonProtectionOff, expired.Reason)
	assert.Equal(s.t, registry.Draining, *expired.FromState)
	assert.Equal(s.t, int32(0), s.replicas(version), "%s scaled to 0", version)
}

// plainRoute checks the app's routes are one HTTPRoute with one rule, to svc, setting no cookie.
func (s *stack) plainRoute(svc string) {
	s.t.Helper()
	list, err := s.kube.Gateway.GatewayV1().HTTPRoutes(s.ns).List(s.t.Context(), metav1.ListOptions{})
	require.NoError(s.t, err)
	require.Len(s.t, list.Items, 1)
	rules := list.Items[0].Spec.Rules
	require.Len(s.t, rules, 1, "the default rule only")
	assert.Equal(s.t, svc, string(rules[0].BackendRefs[0].Name))
	assert.Empty(s.t, rules[0].Filters, "no Set-Cookie")
}

// servedWithCookie asks the Gateway for the app (pinned to pin when not empty) and returns the
// version that answered and the Set-Cookie header of the answer.
func (s *stack) servedWithCookie(pin string) (version, setCookie string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.gateway+"/", nil)
	require.NoError(s.t, err)
	req.Host = s.host()
	if pin != "" {
		req.Header.Set("Cookie", "a=1; __plt_dpl="+pin)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	require.Equal(s.t, http.StatusOK, resp.StatusCode)
	var body struct {
		Version string `json:"version"`
	}
	require.NoError(s.t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Version, strings.Join(resp.Header.Values("Set-Cookie"), "; ")
}

// TestPolicyChangeOfTheActiveVersionOnTheRealStack: a policy change that leaves the switch as it
// is (on) makes the Active lifecycle apply the switch, which expires nothing and writes no route
// (the HTTPRoute keeps its resourceVersion). Its history (recorded before change "app-enabled"
// as before-app-enabled-policy-changed, where the policy change ran SyncRoutes) replays.
func TestPolicyChangeOfTheActiveVersionOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
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
	route := func() string {
		list, err := s.kube.Gateway.GatewayV1().HTTPRoutes(s.ns).List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, list.Items, 1)
		return list.Items[0].ResourceVersion
	}
	before := route()
	_, err := s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{Enabled: ptr.To(true)}, alice)
	require.NoError(t, err)
	require.NoError(t, s.temporal.SignalWorkflow(t.Context(), workflows.WorkflowID(s.ref("v1")), "",
		workflows.SignalPolicyChanged, workflows.ActionRequest{Actor: alice, Reason: "policy changed"}))
	s.eventually(20*time.Second, "the policy change applied", func() (bool, string) {
		return s.activityCompleted("v1", "ApplySwitch") || s.activityCompleted("v1", "SyncRoutes"), "not yet"
	})
	assert.Equal(t, before, route(), "nothing written")

	s.deploy("v2")
	s.eventually(30*time.Second, "v1 draining", func() (bool, string) {
		st := s.state("v1").State
		return st == registry.Draining, string(st)
	})
	require.NoError(t, s.temporal.SignalWorkflow(t.Context(), workflows.WorkflowID(s.ref("v1")), "",
		workflows.SignalForceExpire, workflows.ActionRequest{Actor: alice, Reason: "test done"}))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.temporal.GetWorkflow(ctx, workflows.WorkflowID(s.ref("v1")), "").Get(ctx, nil))
	s.history("v1", "policy-changed-while-active")
}

// activityCompleted reports whether an activity of the given type has completed in version's
// workflow.
func (s *stack) activityCompleted(version, activityType string) bool {
	iter := s.temporal.GetWorkflowHistory(s.t.Context(), workflows.WorkflowID(s.ref(version)), "", false, 0)
	scheduled := map[int64]string{}
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			return false
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.GetEventId()] = a.GetActivityType().GetName()
		}
		if c := e.GetActivityTaskCompletedEventAttributes(); c != nil && scheduled[c.GetScheduledEventId()] == activityType {
			return true
		}
	}
	return false
}
