package detect

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// A version started, recorded and expired moments ago comes back as soon as a new pod of it
// registers: scaling an expired Deployment from 0 to 1 is a new life, whatever the dedupe
// window of the last start.
func TestDetectNewLifeRightAfterExpiry(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "5"}
	first := pod("shop", "web-v5-a", versionLabels("web", "5"), true, base.Add(-time.Minute))
	c, _ := startedCache(t, first, service("shop", "web-v5", versionLabels("web", "5")))
	reg := newFakeRegistry()
	st := &fakeStarter{reg: reg}
	clock := base
	d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true, DedupeTTL: 30 * time.Second,
		Now: func() time.Time { return clock }})

	res, err := d.Detect(context.Background(), first, SourcePodWatch, Hint{})
	require.NoError(t, err)
	require.Equal(t, OutcomeStarted, res.Outcome)

	// Expired five seconds later (well inside the 30 s window of the first start), scaled to 0
	// and back to 1: the new pod is created after the expiry.
	reg.expire(t, ref, base.Add(5*time.Second+400*time.Millisecond))
	clock = base.Add(8 * time.Second)
	second := pod("shop", "web-v5-b", versionLabels("web", "5"), true, base.Add(7*time.Second))
	res, err = d.Detect(context.Background(), second, SourcePodWatch, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeStarted, res.Outcome, "the new life starts at once")
	require.Len(t, st.requests(), 2)
	assert.Equal(t, ref, st.requests()[1].Ref)

	// Its replicas are still started once.
	third := pod("shop", "web-v5-c", versionLabels("web", "5"), true, base.Add(7*time.Second))
	res, err = d.Detect(context.Background(), third, SourcePodWatch, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeFastPath, res.Outcome)
	assert.Len(t, st.requests(), 2)
}

// The API server keeps creation times in whole seconds, the registry keeps the expiry to the
// microsecond: a pod created in the very second of the expiry, after it, is a new life.
func TestDetectPodCreatedInTheSecondOfTheExpiry(t *testing.T) {
	expiredAt := time.Date(2026, 11, 23, 10, 0, 0, 400_000_000, time.UTC)
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "6"}
	for _, tc := range []struct {
		name    string
		created time.Time
		outcome Outcome
	}{
		{"created in the second of the expiry", expiredAt.Truncate(time.Second), OutcomeStarted},
		{"created the second before", expiredAt.Truncate(time.Second).Add(-time.Second), OutcomeStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("shop", "web-v6-a", versionLabels("web", "6"), true, tc.created)
			c, _ := startedCache(t, p, service("shop", "web-v6", versionLabels("web", "6")))
			reg := newFakeRegistry()
			reg.put(registry.Version{ID: 3, AppID: 1, Namespace: ref.Namespace, App: ref.App, Label: ref.Label, Life: 1,
				State: registry.Expired, ExpiredAt: &expiredAt})
			d := NewDetector(Options{Registry: reg, Starter: &fakeStarter{reg: reg}, Lookup: c, Enabled: true,
				Now: func() time.Time { return expiredAt.Add(time.Second) }})
			res, err := d.Detect(context.Background(), p, SourcePodWatch, Hint{})
			require.NoError(t, err)
			assert.Equal(t, tc.outcome, res.Outcome)
		})
	}
}

// Through the pod watch: Deployment at 1, version recorded, expired, scaled to 0, scaled to 1 →
// the new pod turning Ready starts the version again.
func TestWatchScaleUpAfterExpiry(t *testing.T) {
	ctx := context.Background()
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "7"}
	old := pod("shop", "web-v7-a", versionLabels("web", "7"), true, time.Now().Add(-time.Minute))
	h := newWatchHarness(t, true, old)
	_, err := h.kube.CoreV1().Services("shop").Create(ctx, service("shop", "web-v7", versionLabels("web", "7")), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 1 }, 5*time.Second, 5*time.Millisecond)

	h.reg.expire(t, ref, time.Now())
	require.NoError(t, h.kube.CoreV1().Pods("shop").Delete(ctx, old.Name, metav1.DeleteOptions{}))
	fresh := pod("shop", "web-v7-b", versionLabels("web", "7"), false, time.Now())
	_, err = h.kube.CoreV1().Pods("shop").Create(ctx, fresh, metav1.CreateOptions{})
	require.NoError(t, err)
	fresh.Status.Conditions[0].Status = corev1.ConditionTrue
	_, err = h.kube.CoreV1().Pods("shop").UpdateStatus(ctx, fresh, metav1.UpdateOptions{})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return len(h.startedRefs()) == 2 }, 5*time.Second, 5*time.Millisecond,
		"the scaled-up pod starts the expired version's next life")
	assert.Equal(t, []registry.VersionRef{ref, ref}, h.startedRefs())
}

// A deduped detection is a promise that another one starts the life. When that start left no
// life behind, the deduped pod is looked at again once the reservation lapses.
func TestWatchLooksAgainAtADedupedPod(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	h := newWatchHarnessWith(t, true, func(o *Options) { o.DedupeTTL = time.Second })
	h.starter.mu.Lock()
	h.starter.forgetful = true
	h.starter.mu.Unlock()
	_, err := h.kube.CoreV1().Services("shop").Create(ctx, service("shop", "web-v8", versionLabels("web", "8")), metav1.CreateOptions{})
	require.NoError(t, err)
	for _, name := range []string{"web-v8-a", "web-v8-b"} {
		_, err := h.kube.CoreV1().Pods("shop").Create(ctx, pod("shop", name, versionLabels("web", "8"), true, now), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(h.startedRefs()) >= 2 }, 10*time.Second, 10*time.Millisecond,
		"the second pod starts the version once the first start's reservation lapsed")
}
