package kube

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestReadinessWatcherWakesOnEvents(t *testing.T) {
	c := fake.NewClientset()
	w, err := NewReadinessWatcher(c, []string{"ns"})
	require.NoError(t, err)
	w.Dial = noDial(t) // the probe is off by default: nothing dials the pod
	defer w.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	seen := make(chan Readiness, 16)
	type result struct {
		r   Readiness
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := w.Watch(ctx, "ns", "myapp-42", 80, func(r Readiness) { seen <- r })
		done <- result{r, err}
	}()

	// Each step is an informer event that wakes the waiter, which reports what it now sees.
	next := func(want string) {
		t.Helper()
		select {
		case r := <-seen:
			assert.Equal(t, want, r.Why)
		case <-ctx.Done():
			t.Fatalf("no readiness reported; want %q", want)
		}
	}
	next("Service ns/myapp-42 does not exist yet")
	_, err = c.CoreV1().Services("ns").Create(ctx, service("ns", "myapp-42", corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{})
	require.NoError(t, err)
	next("Service ns/myapp-42 has no ready endpoint for port 80")
	es := slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(false)))
	es, err = c.DiscoveryV1().EndpointSlices("ns").Create(ctx, es, metav1.CreateOptions{})
	require.NoError(t, err)
	next("Service ns/myapp-42 has no ready endpoint for port 80")

	es.Endpoints[0].Conditions.Ready = ptr.To(true)
	_, err = c.DiscoveryV1().EndpointSlices("ns").Update(ctx, es, metav1.UpdateOptions{})
	require.NoError(t, err)
	select {
	case res := <-done:
		require.NoError(t, res.err)
		assert.Equal(t, Readiness{Ready: true, Port: 80, Endpoints: 1, TargetPort: 8080}, res.r)
	case <-ctx.Done():
		t.Fatal("Wait did not return after the endpoint turned ready")
	}
}

func TestReadinessWatcherDeadlineAndScope(t *testing.T) {
	c := fake.NewClientset(service("ns", "myapp-42", corev1.ServicePort{Name: "http", Port: 80}))
	w, err := NewReadinessWatcher(c, []string{"ns"})
	require.NoError(t, err)
	defer w.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	r, err := w.Wait(ctx, "ns", "myapp-42", 80)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, r.Ready)
	assert.Equal(t, "Service ns/myapp-42 has no ready endpoint for port 80", r.Why, "the last readiness seen")

	assert.True(t, w.Watches("ns"))
	assert.False(t, w.Watches("other"))
	_, err = w.Wait(t.Context(), "other", "myapp-42", 80)
	assert.ErrorIs(t, err, ErrNotWatched)
	_, err = w.Wait(t.Context(), "ns", "", 80)
	assert.Error(t, err)
}

func TestReadinessWatcherNeverSynced(t *testing.T) {
	// A cache that never syncs (here: informers stopped before they start) ends with ctx, and
	// says so.
	w, err := NewReadinessWatcher(fake.NewClientset(), nil)
	require.NoError(t, err)
	w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = w.Wait(ctx, "ns", "myapp-42", 80)
	assert.ErrorIs(t, err, ErrNotSynced)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestReadinessKey(t *testing.T) {
	key, ok := readinessKey(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x",
		Labels: map[string]string{discoveryv1.LabelServiceName: "myapp-42"}}})
	assert.True(t, ok)
	assert.Equal(t, "ns/myapp-42", key)
	_, ok = readinessKey(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x"}})
	assert.False(t, ok, "a slice of no Service")
}

func TestReadinessWatcherPods(t *testing.T) {
	pod := func(name, addr string, ready *bool) discoveryv1.Endpoint {
		e := endpoint(addr, ready)
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name}
		return e
	}
	v4 := slice("ns", "myapp-42", "s4", "http", 8080, pod("a", "10.0.0.1", ptr.To(true)), pod("b", "10.0.0.2", ptr.To(false)),
		pod("c", "10.0.0.3", nil), endpoint("10.0.0.9", ptr.To(true)))
	// The same pods in the IPv6 slice count once; b is ready there (a race between slices).
	v6 := slice("ns", "myapp-42", "s6", "http", 8080, pod("a", "fd00::1", ptr.To(true)), pod("b", "fd00::2", ptr.To(true)))
	v6.AddressType = discoveryv1.AddressTypeIPv6
	other := slice("ns", "other", "o1", "http", 8080, pod("z", "10.0.1.1", ptr.To(true)))
	c := fake.NewClientset(service("ns", "myapp-42", corev1.ServicePort{Name: "http", Port: 80}), v4, v6, other)
	w, err := NewReadinessWatcher(c, []string{"ns"})
	require.NoError(t, err)
	defer w.Stop()

	_, ok := w.Pods("ns", "myapp-42")
	assert.False(t, ok, "unknown before the informers list")
	w.Start(t.Context())
	require.Eventually(t, w.HasSynced, 10*time.Second, 10*time.Millisecond)

	n, ok := w.Pods("ns", "myapp-42")
	require.True(t, ok)
	assert.Equal(t, PodCount{Ready: 4, Total: 4}, n, "a, b (ready in one slice), c (no condition) and one bare address")
	_, ok = w.Pods("ns", "other")
	assert.False(t, ok, "slices without their Service in the cache: unknown")
	_, ok = w.Pods("elsewhere", "myapp-42")
	assert.False(t, ok, "a namespace not watched: unknown")

	// Counts follow the cache.
	v4.Endpoints[0].Conditions.Ready = ptr.To(false)
	v6.Endpoints[0].Conditions.Ready = ptr.To(false)
	_, err = c.DiscoveryV1().EndpointSlices("ns").Update(t.Context(), v4, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = c.DiscoveryV1().EndpointSlices("ns").Update(t.Context(), v6, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { n, _ := w.Pods("ns", "myapp-42"); return n == PodCount{Ready: 3, Total: 4} },
		10*time.Second, 10*time.Millisecond)
}
