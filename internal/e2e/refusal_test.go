//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// TestSecondClaimRefused deploys an app on a host and path another app already serves: the newcomer
// is refused (Failed, with the holder named, and a Warning Event on its Deployment) and the holder
// keeps serving every new visitor with its routes untouched. The newcomer lives in the holder's
// namespace, then in another namespace watched by the same skewguard: claims are cluster-wide.
func TestSecondClaimRefused(t *testing.T) {
	for _, sameNamespace := range []bool{true, false} {
		t.Run(fmt.Sprintf("same-namespace=%v", sameNamespace), func(t *testing.T) {
			c := newCluster(t)
			ns := c.namespace(t, "e2e-claim")
			otherNS := ns
			if !sameNamespace {
				otherNS = c.namespace(t, "e2e-claim2")
			}
			dbURL, st := newDatabase(t)
			host := ns + ".refusal.test"
			s := baseSettings(t, ns, dbURL)
			s["PLT_SKEW_NAMESPACES"] = strings.Join(distinct(ns, otherNS), ",")
			startSkewguard(t, s)
			gw := newGateway(t)
			ctx := context.Background()

			first := appVersion{Namespace: ns, App: "first", Version: "1", Hostname: host}
			second := appVersion{Namespace: otherNS, App: "second", Version: "9", Hostname: host}
			c.deploy(t, first)
			gw.waitServedBy(t, host, "/", first, 90*time.Second)
			waitState(t, st, registry.VersionRef{Namespace: ns, App: "first", Label: "1"}, registry.Active, 30*time.Second)
			before := c.managedRoutes(t, ns, otherNS)
			require.NotEmpty(t, before, "first's routes")

			c.deploy(t, second)
			ref := registry.VersionRef{Namespace: otherNS, App: "second", Label: "9"}
			v := waitState(t, st, ref, registry.Failed, 90*time.Second)
			holder := ns + "/first"
			assert.Contains(t, v.Failure, "already claimed", "the reason says why")
			assert.Contains(t, v.Failure, holder, "the reason names the holder")
			assert.Nil(t, v.ActiveAt, "a refused version was never Active")

			ev := c.waitEvent(t, otherNS, second.name(), "VersionFailed", 30*time.Second)
			assert.Equal(t, "Warning", ev.Type)
			assert.Contains(t, ev.Note, holder, "the Event tells the Deployment's owner who holds the host")

			// The holder keeps serving: every new visitor over ~3 s, with its own cookie, and the
			// routes stay exactly as they were (no write, no route for the newcomer).
			deadline := time.Now().Add(3 * time.Second)
			checks := 0
			for time.Now().Before(deadline) {
				r, err := gw.getServed(host, "/", nil)
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, r.Status, "check %d", checks)
				require.True(t, r.servedBy(first), "check %d: served by pod %q version %q, want %s", checks, r.Pod, r.Version, first.name())
				pin, ok := r.pinCookie("__plt_dpl")
				require.True(t, ok && pin == "1", "check %d: new visitor pinned to %q (%v)", checks, pin, r.SetCookie)
				checks++
				time.Sleep(100 * time.Millisecond)
			}
			assert.Equal(t, before, c.managedRoutes(t, ns, otherNS), "routes unchanged by the refused claim")
			t.Logf("%d checks of new visitors over 3s, all served by %s", checks, first.name())

			got, err := st.GetVersion(ctx, registry.VersionRef{Namespace: ns, App: "first", Label: "1"})
			require.NoError(t, err)
			assert.Equal(t, registry.Active, got.State, "the holder is still Active")
			v, err = st.GetVersion(ctx, ref)
			require.NoError(t, err)
			assert.Equal(t, registry.Failed, v.State, "the newcomer stays Failed")
			dep, err := c.kube.AppsV1().Deployments(otherNS).Get(ctx, second.name(), metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, int32(1), *dep.Spec.Replicas, "a failed version's workloads are left alone")
		})
	}
}

// TestInvalidHostnameNeverTakesTraffic deploys v2 of a serving app with a plt.dev/hostname that is
// a valid label value but not a hostname. v2 must fail at once with the reason recorded, and v1 must
// keep every new visitor and its replicas, also past the max alive of a draining version (which v1
// would reach had v2 been made Active and v1 Draining).
func TestInvalidHostnameNeverTakesTraffic(t *testing.T) {
	const badHost = "Web_App.example.com"
	c := newCluster(t)
	ns := c.namespace(t, "e2e-badhost")
	dbURL, st := newDatabase(t)
	host := ns + ".refusal.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "1000"
	s["PLT_SKEW_HTTP_MAX_ALIVE_MS"] = "4000"
	startSkewguard(t, s)
	gw := newGateway(t)
	ctx := context.Background()

	v1 := appVersion{Namespace: ns, App: "web", Version: "1", Hostname: host}
	v2 := appVersion{Namespace: ns, App: "web", Version: "2", Hostname: badHost}
	ref1 := registry.VersionRef{Namespace: ns, App: "web", Label: "1"}
	ref2 := registry.VersionRef{Namespace: ns, App: "web", Label: "2"}
	c.deploy(t, v1)
	gw.waitServedBy(t, host, "/", v1, 90*time.Second)
	waitState(t, st, ref1, registry.Active, 30*time.Second)

	c.deploy(t, v2)
	failed := waitState(t, st, ref2, registry.Failed, 90*time.Second)
	assert.Contains(t, failed.Failure, "routes cannot be rendered")
	assert.Contains(t, failed.Failure, badHost)

	audit, err := st.Audit(ctx, ref2)
	require.NoError(t, err)
	var events []string
	var failedEntry *registry.AuditEntry
	for i, e := range audit {
		events = append(events, e.Event)
		if e.Event == registry.EventFailed {
			failedEntry = &audit[i]
		}
	}
	require.NotNil(t, failedEntry, "v2 audit has a failed event; events: %v", events)
	assert.Contains(t, failedEntry.Reason, "routes cannot be rendered")
	assert.Contains(t, failedEntry.Reason, badHost)
	assert.NotContains(t, events, registry.EventActivated, "v2 was never activated")

	// Over 6 s, longer than a draining version may live: v1 serves every new visitor and stays Active.
	start := time.Now()
	checks := 0
	for time.Since(start) < 6*time.Second {
		r, err := gw.getServed(host, "/", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.Status, "check %d at %s", checks, time.Since(start))
		require.True(t, r.servedBy(v1), "check %d at %s: served by pod %q version %q", checks, time.Since(start), r.Pod, r.Version)
		got, err := st.GetVersion(ctx, ref1)
		require.NoError(t, err)
		require.Equal(t, registry.Active, got.State, "check %d at %s: v1 state", checks, time.Since(start))
		checks++
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d checks over 6s, all served by v1", checks)

	dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, v1.name(), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(1), *dep.Spec.Replicas, "v1 keeps its replicas")
	pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=1"})
	require.NoError(t, err)
	assert.Len(t, pods.Items, 1, "v1's pod still runs")

	ev := c.waitEvent(t, ns, v2.name(), "VersionFailed", 30*time.Second)
	assert.Equal(t, "Warning", ev.Type)
	assert.Contains(t, ev.Note, badHost)

	// No route names the bad host: it was never written anywhere.
	for _, r := range c.managedRoutes(t, ns) {
		assert.NotContains(t, r, badHost)
	}
}

// managedRoutes returns a comparable view of every HTTPRoute skewguard wrote in the namespaces,
// sorted: its identity (a delete and re-create changes the UID), the generation of its spec and
// skewguard's route generation. Not the resourceVersion: the Gateway writes route status.
func (c *cluster) managedRoutes(t testing.TB, namespaces ...string) []string {
	t.Helper()
	var out []string
	for _, ns := range distinct(namespaces...) {
		list, err := c.gw.GatewayV1().HTTPRoutes(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: routes.ManagedByLabel + "=" + routes.ManagedByValue,
		})
		require.NoError(t, err)
		for _, r := range list.Items {
			out = append(out, fmt.Sprintf("%s/%s uid=%s generation=%d route-generation=%s app=%s hosts=%v",
				r.Namespace, r.Name, r.UID, r.Generation, r.Annotations[routes.GenerationAnnotation],
				r.Labels[routes.AppLabel], r.Spec.Hostnames))
		}
	}
	sort.Strings(out)
	return out
}

// distinct returns the names once each, sorted.
func distinct(names ...string) []string {
	return slices.Compact(slices.Sorted(slices.Values(names)))
}
