package detect

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skewguard/skewguard/internal/registry"
)

// watchHarness runs a Watcher over a fake API server.
type watchHarness struct {
	kube    *fake.Clientset
	reg     *fakeRegistry
	starter *fakeStarter
	watcher *Watcher
}

func newWatchHarness(t *testing.T, watchPods bool, objs ...*corev1.Pod) *watchHarness {
	t.Helper()
	return newWatchHarnessWith(t, watchPods, func(*Options) {}, objs...)
}

// newWatchHarnessWith lets a test change the Detector's options (the fakes are already set).
func newWatchHarnessWith(t *testing.T, watchPods bool, configure func(*Options), objs ...*corev1.Pod) *watchHarness {
	t.Helper()
	kube := fake.NewClientset()
	for _, o := range objs {
		_, err := kube.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	c, err := NewCache(kube, nil, 0)
	require.NoError(t, err)
	reg := newFakeRegistry()
	st := &fakeStarter{reg: reg}
	opts := Options{Registry: reg, Starter: st, Lookup: c, Enabled: true}
	configure(&opts)
	d := NewDetector(opts)
	w, err := NewWatcher(c, d, watchPods, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	c.Start(ctx)
	require.True(t, c.WaitForSync(ctx))
	go func() { w.Run(ctx, 2); close(done) }()
	return &watchHarness{kube: kube, reg: reg, starter: st, watcher: w}
}

func (h *watchHarness) startedRefs() []registry.VersionRef {
	var refs []registry.VersionRef
	for _, r := range h.starter.requests() {
		refs = append(refs, r.Ref)
	}
	return refs
}

func TestWatchDetectsReadyPodsAtStart(t *testing.T) {
	now := time.Now()
	h := newWatchHarness(t, true,
		pod("shop", "web-v1-a", versionLabels("web", "1"), true, now),
		pod("shop", "web-v2-a", versionLabels("web", "2"), false, now),
		pod("shop", "plain", nil, true, now))
	_, err := h.kube.CoreV1().Services("shop").Create(context.Background(),
		service("shop", "web-v1", versionLabels("web", "1")), metav1.CreateOptions{})
	require.NoError(t, err)

	want := []registry.VersionRef{{Namespace: "shop", App: "web", Label: "1"}}
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, want, h.startedRefs(), "only the Ready, labelled pod is detected")
}

func TestWatchDetectsAPodTurningReady(t *testing.T) {
	now := time.Now()
	p := pod("shop", "web-v2-a", versionLabels("web", "2"), false, now)
	h := newWatchHarness(t, true, p)
	ctx := context.Background()
	_, err := h.kube.CoreV1().Services("shop").Create(ctx, service("shop", "web-v2", versionLabels("web", "2")), metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Never(t, func() bool { return len(h.startedRefs()) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"a pod that is not Ready is not detected")

	ready := p.DeepCopy()
	ready.Status.Conditions[0].Status = corev1.ConditionTrue
	_, err = h.kube.CoreV1().Pods("shop").UpdateStatus(ctx, ready, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "web-v2", h.starter.requests()[0].ServiceName)
}

func TestWatchDetectsWhenTheServiceArrives(t *testing.T) {
	now := time.Now()
	h := newWatchHarness(t, true, pod("shop", "web-v3-a", versionLabels("web", "3"), true, now))
	// The pod is Ready before its Service exists: nothing can start yet.
	assert.Never(t, func() bool { return len(h.startedRefs()) > 0 }, 200*time.Millisecond, 10*time.Millisecond)
	_, err := h.kube.CoreV1().Services("shop").Create(context.Background(),
		service("shop", "web-v3", versionLabels("web", "3")), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestWatchOffStillRetries(t *testing.T) {
	now := time.Now()
	p := pod("shop", "web-v4-a", versionLabels("web", "4"), true, now)
	h := newWatchHarness(t, false, p)
	assert.Never(t, func() bool { return len(h.startedRefs()) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"with the watch off, Ready pods are not detected")

	h.watcher.Retry(p) // a registration found no Service
	_, err := h.kube.CoreV1().Services("shop").Create(context.Background(),
		service("shop", "web-v4", versionLabels("web", "4")), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 1 }, 10*time.Second, 10*time.Millisecond)
}
