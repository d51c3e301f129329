//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// neverReadyProgram is a launcher program name the stack's launcher does not know: it logs "pod not
// launched" and starts nothing, so kwok's Running pod keeps Ready=False for good (no process that
// exits and restarts, no port that answers).
const neverReadyProgram = "e2e-never-ready"

// TestNeverReadyIsLeftAlone deploys, as the app's first and only version, a version whose pods never
// become Ready. After the readiness timeout it must be Failed with a reason naming the timeout, and
// stay that way: never routed, its Deployment never scaled down (the user owns a version that never
// served), a Warning Event on the Deployment.
//
// The pod watch detects Ready pods only, so such a version is found by its agent's registration,
// which a Watt app's agent sends as it boots, before the app listens: the test sends it as the agent
// would (pod authentication off).
func TestNeverReadyIsLeftAlone(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-neverready")
	dbURL, st := newDatabase(t)
	host := ns + ".safety.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_READINESS_TIMEOUT_MS"] = "3000"
	s["PLT_SKEW_INSECURE_SKIP_POD_AUTH"] = "true"
	sg := startSkewguard(t, s)
	gw := newGateway(t)
	ctx := context.Background()

	v1 := appVersion{Namespace: ns, App: "stuck", Version: "1", Hostname: host, Launch: neverReadyProgram}
	c.deploy(t, v1)
	// The premise: the pod runs (kwok) but is not Ready, so the launcher really left it alone.
	var pod string
	waitFor(t, 60*time.Second, "a Running pod of v1", func() (bool, string) {
		pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=1"})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprint(err)
		}
		pod = pods.Items[0].Name
		return pods.Items[0].Status.Phase == "Running", string(pods.Items[0].Status.Phase)
	})
	sg.registerPod(t, pod)

	ref := registry.VersionRef{Namespace: ns, App: "stuck", Label: "1"}
	failed := waitState(t, st, ref, registry.Failed, 60*time.Second)
	assert.Contains(t, failed.Failure, "readiness timeout", "the reason says why it failed")
	assert.NotNil(t, failed.FailedAt)
	assert.Nil(t, failed.ActiveAt, "a version that was never ready was never Active")

	// A negative over a span: for a few seconds after the failure, check every time that the
	// version is still Failed, its Deployment still wants 1 replica, its pod is still there and not
	// Ready, and no HTTPRoute sends traffic to its Service.
	svc := v1.name()
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		v, err := st.GetVersion(ctx, ref)
		require.NoError(t, err)
		require.Equal(t, registry.Failed, v.State, "a failed version stays failed while its pods are not Ready")
		dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, v1.name(), metav1.GetOptions{})
		require.NoError(t, err, "the Deployment of a failed version is not deleted")
		require.NotNil(t, dep.Spec.Replicas)
		require.Equal(t, int32(1), *dep.Spec.Replicas, "the Deployment of a version that never served is not scaled down")
		pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=1"})
		require.NoError(t, err)
		require.Len(t, pods.Items, 1)
		require.False(t, podReady(&pods.Items[0]), "the premise: the pod never becomes Ready")
		routed := routedServices(t, c, ns)
		require.False(t, routed[svc], "no HTTPRoute may route a failed version; routes send to %v", routed)
	}
	// Nothing serves the app's host: its only version is not routed.
	r, err := gw.get(host, "/", nil)
	require.NoError(t, err)
	assert.Empty(t, r.Version, "no backend serves %s (status %d)", host, r.Status)

	audit, err := st.Audit(ctx, ref)
	require.NoError(t, err)
	assert.Contains(t, auditEvents(audit), registry.EventFailed)
	assert.NotContains(t, auditEvents(audit), registry.EventActivated)

	// The operator learns of it where they look: a Warning Event on the Deployment.
	waitFor(t, 30*time.Second, "a VersionFailed Event on the Deployment", func() (bool, string) {
		evs, err := c.kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			seen = append(seen, e.Reason+" on "+e.Regarding.Kind+"/"+e.Regarding.Name)
			if e.Reason == "VersionFailed" && e.Type == "Warning" && e.Regarding.Kind == "Deployment" && e.Regarding.Name == v1.name() {
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	})
}

// TestFoundTogetherNewestIsActive deploys three versions of one app while skewguard is not running,
// one after another (Deployments created at least a second apart, every pod Ready; then the older
// versions' pods are replaced so that pod age orders them the other way), then starts skewguard on
// a fresh database: it finds all three at once and must make the newest by Deployment creation
// Active and drain the other two. The labels are rotated each round so that neither the labels'
// order nor the order the API server lists the Deployments in (by name) gives the answer.
func TestFoundTogetherNewestIsActive(t *testing.T) {
	names := []string{"alpha", "bravo", "charlie"}
	for round := range 3 {
		// Deployment order for this round: names rotated by round, the last one deployed newest.
		order := append(append([]string{}, names[round:]...), names[:round]...)
		t.Run(fmt.Sprintf("order=%s", strings.Join(order, ",")), func(t *testing.T) {
			foundTogether(t, order)
		})
	}
}

func foundTogether(t *testing.T, order []string) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-together")
	dbURL, st := newDatabase(t)
	host := ns + ".safety.test"
	ctx := context.Background()

	var created []time.Time
	for i, label := range order {
		if i > 0 {
			// Creation times have a resolution of one second: keep the versions apart in time so
			// their order is unambiguous (a precondition, not an event to await).
			time.Sleep(time.Until(created[i-1].Add(1100 * time.Millisecond)))
		}
		v := appVersion{Namespace: ns, App: "trio", Version: label, Hostname: host}
		c.deploy(t, v)
		dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, v.name(), metav1.GetOptions{})
		require.NoError(t, err)
		created = append(created, dep.CreationTimestamp.Time)
		if i > 0 {
			require.True(t, created[i].After(created[i-1]), "creation times %v are not strictly ordered", created)
		}
	}
	for _, label := range order {
		c.waitPodsReady(t, appVersion{Namespace: ns, App: "trio", Version: label}, 90*time.Second)
	}
	// Then make the pods' order the opposite of the Deployments': replace the pods of the older
	// versions, the oldest last. The rule is the Deployment's creation time first, so the newest
	// Deployment must win even though its pods are now the oldest (a rule by pod age would pick
	// the oldest Deployment).
	for i := len(order) - 2; i >= 0; i-- {
		v := appVersion{Namespace: ns, App: "trio", Version: order[i]}
		time.Sleep(1100 * time.Millisecond) // creation times have a resolution of one second
		require.NoError(t, c.kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: "plt.dev/version=" + order[i]}))
		c.waitPodsReady(t, v, 90*time.Second)
	}

	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000" // the drained versions stay Draining while checked
	startSkewguard(t, s)
	gw := newGateway(t)

	newest := order[len(order)-1]
	ref := func(label string) registry.VersionRef {
		return registry.VersionRef{Namespace: ns, App: "trio", Label: label}
	}
	waitState(t, st, ref(newest), registry.Active, 90*time.Second)
	for _, older := range order[:len(order)-1] {
		waitState(t, st, ref(older), registry.Draining, 90*time.Second)
	}
	gw.waitServed(t, host, newest, 60*time.Second)

	// The end state holds and is the only one: exactly one Active version, the newest.
	vs, err := st.ListVersions(ctx, registry.AppRef{Namespace: ns, Name: "trio"})
	require.NoError(t, err)
	states := map[string]registry.State{}
	for _, v := range vs {
		states[v.Label] = v.State
	}
	want := map[string]registry.State{newest: registry.Active}
	for _, older := range order[:len(order)-1] {
		want[older] = registry.Draining
	}
	assert.Equal(t, want, states)

	for _, older := range order[:len(order)-1] {
		audit, err := st.Audit(ctx, ref(older))
		require.NoError(t, err)
		var superseded *registry.AuditEntry
		for i := range audit {
			if audit[i].Event == registry.EventSuperseded {
				superseded = &audit[i]
			}
		}
		require.NotNil(t, superseded, "%s: no superseded entry in %v", older, auditEvents(audit))
		// Either straight to Draining (kept out by the Active newest: keptBy) or briefly Active
		// and superseded by a newer one (supersededBy) when its readiness was seen first.
		var detail map[string]any
		require.NoError(t, json.Unmarshal(superseded.Detail, &detail))
		t.Logf("%s: %v, last supersede detail %v", older, auditEvents(audit), detail)
		if by, ok := detail["keptBy"]; ok {
			// Kept out by whichever version was Active then: it must be a newer one (the newest
			// may not have been ready yet, and takes over from that one later).
			assert.Greater(t, slices.Index(order, fmt.Sprint(by)), slices.Index(order, older),
				"%s was kept out by %v, which is not newer (deployment order %v)", older, by, order)
		}

		// A session pinned to an older version still reaches it.
		waitFor(t, 30*time.Second, "the pin of "+older, func() (bool, string) {
			r, err := gw.get(host, "/", withCookie("__plt_dpl="+older))
			if err != nil {
				return false, err.Error()
			}
			return r.Version == older, fmt.Sprintf("status %d version %q", r.Status, r.Version)
		})
	}
}

// TestPolicyChangeReachesDrainingVersion replaces the app's policy while v1 drains with a 60 s
// grace period: the new, shorter values apply to the draining version at once (it expires within
// 20 s of the PUT), and its audit shows why.
func TestPolicyChangeReachesDrainingVersion(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-policy")
	dbURL, st := newDatabase(t)
	host := ns + ".safety.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "60000"
	sg := startSkewguard(t, s)
	gw := newGateway(t)
	ctx := context.Background()

	c.deploy(t, appVersion{Namespace: ns, App: "tuned", Version: "1", Hostname: host})
	gw.waitServed(t, host, "1", 90*time.Second)
	c.deploy(t, appVersion{Namespace: ns, App: "tuned", Version: "2", Hostname: host})
	gw.waitServed(t, host, "2", 90*time.Second)
	ref := registry.VersionRef{Namespace: ns, App: "tuned", Label: "1"}
	draining := waitState(t, st, ref, registry.Draining, 30*time.Second)

	put := time.Now()
	sg.putPolicy(t, registry.AppRef{Namespace: ns, Name: "tuned"}, `{"gracePeriodMs":1000,"maxAliveMs":2000}`)
	expired := waitState(t, st, ref, registry.Expired, 20*time.Second)
	t.Logf("v1 expired %s after the policy PUT (draining since %s)", time.Since(put).Round(time.Millisecond), draining.DrainingAt)
	require.NotNil(t, draining.DrainingAt)
	require.NotNil(t, expired.ExpiredAt)
	assert.Less(t, expired.ExpiredAt.Sub(*draining.DrainingAt), 60*time.Second,
		"v1 expired before the old grace period could have run out")

	audit, err := st.Audit(ctx, ref)
	require.NoError(t, err)
	assert.Contains(t, auditEvents(audit), registry.EventPolicyChanged)

	v2, err := st.GetVersion(ctx, registry.VersionRef{Namespace: ns, App: "tuned", Label: "2"})
	require.NoError(t, err)
	assert.Equal(t, registry.Active, v2.State, "the Active version is not expired by a shorter max alive")
	gw.waitServed(t, host, "2", 10*time.Second)
}

// TestScaledUpAfterExpiryIsANewLife lets v1 expire and be scaled to 0, then scales its Deployment
// back up: that is a new deploy of v1 (life 2), the newest version detected, so it becomes Active,
// v2 drains, and new visitors get v1 again.
func TestScaledUpAfterExpiryIsANewLife(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-relife")
	dbURL, st := newDatabase(t)
	host := ns + ".safety.test"
	s := baseSettings(t, ns, dbURL) // 2 s grace, no traffic: v1 expires by itself
	sg := startSkewguard(t, s)
	gw := newGateway(t)
	ctx := context.Background()

	v1 := appVersion{Namespace: ns, App: "phoenix", Version: "1", Hostname: host}
	c.deploy(t, v1)
	gw.waitServed(t, host, "1", 90*time.Second)
	c.deploy(t, appVersion{Namespace: ns, App: "phoenix", Version: "2", Hostname: host})
	gw.waitServed(t, host, "2", 90*time.Second)
	ref1 := registry.VersionRef{Namespace: ns, App: "phoenix", Label: "1"}
	ref2 := registry.VersionRef{Namespace: ns, App: "phoenix", Label: "2"}
	first := waitState(t, st, ref1, registry.Expired, 2*time.Minute)
	require.Equal(t, 1, first.Life)
	waitFor(t, 30*time.Second, "v1 scaled to 0 and its pods gone", func() (bool, string) {
		dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, v1.name(), metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=1"})
		if err != nil {
			return false, err.Error()
		}
		return *dep.Spec.Replicas == 0 && len(pods.Items) == 0, fmt.Sprintf("replicas %d, %d pods", *dep.Spec.Replicas, len(pods.Items))
	})

	// From here on v2 must stay Draining while checked: lengthen the grace period for the app
	// (the policy applies to the next drain, v2's).
	sg.putPolicy(t, registry.AppRef{Namespace: ns, Name: "phoenix"}, `{"gracePeriodMs":600000}`)

	_, err := c.kube.AppsV1().Deployments(ns).UpdateScale(ctx, v1.name(), &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: v1.name(), Namespace: ns},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 1},
	}, metav1.UpdateOptions{})
	require.NoError(t, err)

	waitFor(t, 90*time.Second, "a second life of v1 Active", func() (bool, string) {
		v, err := st.GetVersion(ctx, ref1)
		if err != nil {
			return false, err.Error()
		}
		return v.Life == 2 && v.State == registry.Active, fmt.Sprintf("life %d %s", v.Life, v.State)
	})
	waitState(t, st, ref2, registry.Draining, 30*time.Second)
	gw.waitServed(t, host, "1", 60*time.Second)
	waitFor(t, 30*time.Second, "the pin of v2", func() (bool, string) {
		r, err := gw.get(host, "/", withCookie("__plt_dpl=2"))
		if err != nil {
			return false, err.Error()
		}
		return r.Version == "2", fmt.Sprintf("status %d version %q", r.Status, r.Version)
	})

	// The first life is history, not rewritten.
	vs, err := st.ListVersions(ctx, registry.AppRef{Namespace: ns, Name: "phoenix"})
	require.NoError(t, err)
	lives := map[int]registry.State{}
	for _, v := range vs {
		if v.Label == "1" {
			lives[v.Life] = v.State
		}
	}
	assert.Equal(t, map[int]registry.State{1: registry.Expired, 2: registry.Active}, lives)
	audit, err := st.Audit(ctx, ref1)
	require.NoError(t, err)
	assert.Contains(t, auditEvents(audit), registry.EventRedeployed)
}

// registerPod sends the agent's registration for pod, as Platformatic's agent does when the pod's
// process starts, until skewguard's pod cache knows the pod and answers 200.
func (s *skewguard) registerPod(t testing.TB, pod string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the registration of pod "+pod, func() (bool, string) {
		resp, err := http.Post(s.url+"/control-plane/pods/"+pod+"/instance", "application/json",
			bytes.NewBufferString(`{"podId":"`+pod+`","apiVersion":"v3"}`))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, answer)
	})
}

// putPolicy replaces an app's policy overrides through the management API (the harness runs
// skewguard with API authentication off).
func (s *skewguard) putPolicy(t testing.TB, app registry.AppRef, body string) {
	t.Helper()
	u := s.url + "/api/v1/apps/" + url.PathEscape(app.Namespace) + "/" + url.PathEscape(app.Name) + "/policy"
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "PUT %s: %s", u, answer)
}

// routedServices returns the Services that the HTTPRoutes of ns send traffic to.
func routedServices(t testing.TB, c *cluster, ns string) map[string]bool {
	t.Helper()
	list, err := c.gw.GatewayV1().HTTPRoutes(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]bool{}
	for _, r := range list.Items {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				out[string(b.Name)] = true
			}
		}
	}
	return out
}

func auditEvents(entries []registry.AuditEntry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Event)
	}
	return out
}
