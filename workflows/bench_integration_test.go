//go:build integration

package workflows_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/workflows"
)

const flips = 20

// activationFlips measures n activations on the real registry and API server, the way the
// lifecycle performs them: one registry transaction (the version Active, the other Draining,
// the generation bumped), then the app's HTTPRoutes rendered from a snapshot and written.
func activationFlips(tb testing.TB, n int) []time.Duration {
	tb.Helper()
	kubeconfig := testenv.Get(tb, testenv.Kubeconfig)
	clients, err := kube.NewClients(kubeconfig)
	require.NoError(tb, err)
	ctx := context.Background()
	ns := fmt.Sprintf("sg-activation-%08x", rand.Uint32())
	_, err = clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(tb, err)
	tb.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})

	// The routes name a Gateway that does not exist, so the stack's data plane, shared with other
	// tests, ignores them: this measures skewguard's side only.
	cfg, err := config.LoadFrom(ctx, lookuper{"PLT_FEATURE_SKEW_PROTECTION": "true", "PLT_SKEW_GATEWAY_PARENT_REFS": ns + "/no-such-gateway"})
	require.NoError(tb, err)
	reg := registrytest.New(tb)
	acts := &activities.Activities{Registry: reg, Config: cfg, Routes: kube.NewRouteWriter(clients.Gateway),
		Claims: claims.AllowAll()}
	labels := []string{"a", "b"}
	actor := registry.Actor{Type: registry.ActorWorkflow, ID: "bench"}
	for _, l := range labels {
		_, err := acts.Observe(ctx, activities.ObserveInput{Ref: registry.VersionRef{Namespace: ns, App: app, Label: l},
			Placement: registry.Placement{ServiceName: app + "-" + l, ServicePort: 80}, Actor: actor})
		require.NoError(tb, err)
	}
	out := make([]time.Duration, 0, n)
	for i := range n {
		ref := registry.VersionRef{Namespace: ns, App: app, Label: labels[i%2]}
		in := activities.TransitionInput{Ref: ref, Actor: actor, Reason: "flip"}
		start := time.Now()
		step := acts.Activate
		if i >= 2 {
			step = acts.Promote // from the third flip on, the other version is Draining
		}
		res, err := step(ctx, in) // the registry transaction and the route write, together
		require.NoError(tb, err)
		out = append(out, time.Since(start))
		require.Equal(tb, registry.Active, res.Version.State)
		// Untimed: the flip wrote exactly the routes of its generation, so a sync finds nothing to do.
		sync, err := acts.SyncRoutes(ctx, activities.SyncInput{App: ref.AppRef(), Cause: ref, Actor: actor})
		require.NoError(tb, err)
		require.Equal(tb, res.Generation, sync.Generation)
		require.Equal(tb, activities.RoutesUnchanged, sync.Write.Outcome)
	}
	return out
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchmarkActivationOnTheRealStack reports the p50 and p99 latency of an activation
// (registry transaction + routes written) over 20 flips between two versions.
func BenchmarkActivationOnTheRealStack(b *testing.B) {
	var all []time.Duration
	for b.Loop() {
		all = append(all, activationFlips(b, flips)...)
	}
	b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
}

// TestActivationLatencyOnTheRealStack runs the benchmark's measurement once in `make test` and
// logs the figures; it asserts correctness, never timing.
func TestActivationLatencyOnTheRealStack(t *testing.T) {
	ds := activationFlips(t, flips)
	t.Logf("activation (registry + routes written) over %d flips: p50 %s, p99 %s, min %s, max %s",
		len(ds), percentile(ds, 0.5), percentile(ds, 0.99), slices.Min(ds), slices.Max(ds))
}

// TestPromoteLatencyOnTheRealStack measures a promote through Temporal end to end: the Update
// round trip, in which the workflow runs the registry transaction, writes the routes and signals
// the demoted version's workflow.
func TestPromoteLatencyOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "600000", "PLT_SKEW_HTTP_MAX_ALIVE_MS": "600000"})
	s.deploy("v1")
	s.waitRouting(routing{Default: "myapp-v1"})
	s.deploy("v2")
	s.waitRouting(routing{Default: "myapp-v2", Pinned: []string{"myapp-v1"}})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	var ds []time.Duration
	for i := range flips {
		target, other := "v1", "v2"
		if i%2 == 1 {
			target, other = "v2", "v1"
		}
		s.eventually(10*time.Second, target+" draining", func() (bool, string) {
			st := s.state(target).State
			return st == registry.Draining, string(st)
		})
		start := time.Now()
		res := s.update(target, workflows.UpdatePromote, alice)
		ds = append(ds, time.Since(start))
		require.Equal(t, registry.Active, res.State)
		s.waitRouting(routing{Default: "myapp-" + target, Pinned: []string{"myapp-" + other}})
	}
	t.Logf("promote update round trip (registry + routes + signal, through Temporal) over %d flips: p50 %s, p99 %s, min %s, max %s",
		len(ds), percentile(ds, 0.5), percentile(ds, 0.99), slices.Min(ds), slices.Max(ds))
	for _, v := range []string{"v1", "v2"} {
		_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(v)), "", "test done")
	}
}
