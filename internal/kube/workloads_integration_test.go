//go:build integration

package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/routes"
)

// workloadNamespace creates a fresh namespace on the real API server for one test.
func workloadNamespace(t *testing.T) (*Clients, string) {
	t.Helper()
	return testNamespace(t, "sg-workloads")
}

// deployEcho creates a Deployment running the stack's echo backend (kwok schedules its pods, the
// launcher runs them and they turn Ready once the process answers) and its Service. The app and
// version labels are on the pod template, and on the Deployment only when labelDeployment.
func deployEcho(t *testing.T, c *Clients, ns, name, app, version string, replicas int32, labelDeployment bool) {
	t.Helper()
	lbls := map[string]string{AppLabel: app, VersionLabel: version}
	meta := metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "checkout"}}
	if labelDeployment {
		meta.Labels = lbls
	}
	_, err := c.Kube.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "skewguard/echo:" + version,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.Kube.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: lbls,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// waitFor polls cond every 100 ms until it holds, failing the test at the deadline.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func specReplicas(t *testing.T, c *Clients, ns, name string) int32 {
	t.Helper()
	d, err := c.Kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return *d.Spec.Replicas
}

// A Deployment labelled only in its pod template runs the version all the same: retiring the
// version scales it down (the old code looked for the labels on the Deployment, found nothing
// and reported success).
func TestRetireDeploymentLabelledOnlyInTemplate(t *testing.T) {
	c, ns := workloadNamespace(t)
	ctx := context.Background()
	deployEcho(t, c, ns, "checkout-web", "checkout", "7", 1, false)
	deployEcho(t, c, ns, "checkout-web-8", "checkout", "8", 1, false)
	w := Workloads{Client: c.Kube, Gateway: c.Gateway}
	waitFor(t, 60*time.Second, "the pod of version 7 exists", func() (bool, string) {
		pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: VersionSelector("checkout", "7")})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 1, fmt.Sprintf("%d pods", len(pods.Items))
	})

	got, err := w.ScaleToZero(ctx, ns, "checkout", "7")
	require.NoError(t, err)
	assert.Equal(t, Scaled{Deployments: []string{"checkout-web"}}, got)
	assert.Equal(t, int32(0), specReplicas(t, c, ns, "checkout-web"))
	assert.Equal(t, int32(1), specReplicas(t, c, ns, "checkout-web-8"), "another version is untouched")

	waitFor(t, 60*time.Second, "version 7's pods gone", func() (bool, string) {
		pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: VersionSelector("checkout", "7")})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items))
	})
	owners, err := w.Owners(ctx, ns, "checkout", "7")
	require.NoError(t, err)
	assert.Equal(t, []string{"checkout-web"}, owners.Deployments, "without pods, its ReplicaSet still names it")

	deleted, err := w.Delete(ctx, ns, "checkout", "7")
	require.NoError(t, err)
	assert.Equal(t, []string{"checkout-web"}, deleted.Deployments)
	_, err = c.Kube.AppsV1().Deployments(ns).Get(ctx, "checkout-web", metav1.GetOptions{})
	assert.Error(t, err, "deleted")
}

// The watcher reports a Service ready from its EndpointSlices as soon as the informer event of
// the pods turning Ready arrives; nothing dials the pods unless the probe is on, and a probe
// that cannot connect is reported, never fatal.
func TestReadinessWatcherAgainstAPIServer(t *testing.T) {
	c, ns := workloadNamespace(t)
	w, err := NewReadinessWatcher(c.Kube, []string{ns})
	require.NoError(t, err)
	w.Dial = func(_ context.Context, _, addr string) (net.Conn, error) {
		t.Errorf("the probe is off by default, yet %s was dialled", addr)
		return nil, errors.New("unexpected dial")
	}
	w.Start(t.Context())
	defer w.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	type result struct {
		r   Readiness
		err error
	}
	done := make(chan result, 1)
	var changes int
	go func() {
		r, err := w.Watch(ctx, ns, "shop-v3", 80, func(Readiness) { changes++ })
		done <- result{r, err}
	}()
	// The waiter waits on a synced cache before anything exists.
	waitFor(t, 10*time.Second, "the watcher synced", func() (bool, string) { return w.HasSynced(), "not synced" })
	deployEcho(t, c, ns, "shop-v3", "shop", "3", 1, true)

	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("Wait did not return after the pod turned Ready")
	}
	require.NoError(t, res.err)
	assert.True(t, res.r.Ready, res.r.Why)
	assert.Equal(t, 1, res.r.Endpoints)
	assert.Equal(t, int32(8080), res.r.TargetPort)
	assert.Equal(t, int32(80), res.r.Port)
	assert.Empty(t, res.r.Probed)
	assert.Positive(t, changes, "it reported what it saw while waiting")

	// The probe on, against an address that refuses (as a NetworkPolicy would): still ready.
	probing, err := NewReadinessWatcher(c.Kube, []string{ns})
	require.NoError(t, err)
	defer probing.Stop()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := refused.Addr().String()
	require.NoError(t, refused.Close())
	probing.Prober = Prober{Probe: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, closedAddr)
	}}
	r, err := probing.Current(ctx, ns, "shop-v3", 80)
	require.NoError(t, err)
	assert.True(t, r.Ready)
	assert.Contains(t, r.ProbeError, "accepts TCP connections")
}

// Retire touches nothing while one of our HTTPRoutes still sends traffic to the version's
// Service, and goes ahead once the route is gone.
func TestRetireRefusesWhileRoutedAgainstAPIServer(t *testing.T) {
	c, ns := workloadNamespace(t)
	ctx := context.Background()
	deployEcho(t, c, ns, "cart-v5", "cart", "5", 1, true)
	rendered, err := routes.Render(routes.Input{
		Namespace: ns, App: "cart", Generation: 1,
		ParentRefs: []routes.ParentRef{{Namespace: ns, Name: "no-such-gateway"}}, // the shared data plane ignores it
		CookieName: "__plt_dpl", CookieMaxAge: 60,
		Active: &routes.Backend{Version: "5", ServiceName: "cart-v5", Port: 80},
	})
	require.NoError(t, err)
	rw := NewRouteWriter(c.Gateway)
	_, err = rw.ApplyRoutes(ctx, ns, "cart", 1, rendered)
	require.NoError(t, err)
	w := Workloads{Client: c.Kube, Gateway: c.Gateway}

	refs, err := w.RoutesReferencing(ctx, ns, "cart-v5")
	require.NoError(t, err)
	assert.Equal(t, []string{"cart"}, refs)

	_, err = w.ScaleToZero(ctx, ns, "cart", "5")
	require.ErrorIs(t, err, ErrStillRouted)
	assert.Contains(t, err.Error(), "still referenced by HTTPRoute cart")
	_, err = w.Delete(ctx, ns, "cart", "5")
	require.ErrorIs(t, err, ErrStillRouted)
	assert.Equal(t, int32(1), specReplicas(t, c, ns, "cart-v5"), "nothing touched")

	_, err = rw.ApplyRoutes(ctx, ns, "cart", 2, nil) // the routes converge: the version is unrouted
	require.NoError(t, err)
	got, err := w.ScaleToZero(ctx, ns, "cart", "5")
	require.NoError(t, err)
	assert.Equal(t, []string{"cart-v5"}, got.Deployments)
	assert.Equal(t, int32(0), specReplicas(t, c, ns, "cart-v5"))
}

// RecordEvent's Event is on the version's Deployment, as `kubectl describe deployment` shows it
// (core/v1 view of the events.k8s.io/v1 Event), and recording it again adds nothing.
func TestRecordEventAgainstAPIServer(t *testing.T) {
	c, ns := workloadNamespace(t)
	ctx := context.Background()
	deployEcho(t, c, ns, "blog-web", "blog", "2", 0, false) // labelled only in its template, never run
	w := Workloads{Client: c.Kube}
	waitFor(t, 30*time.Second, "the Deployment's ReplicaSet exists", func() (bool, string) {
		o, err := w.Owners(ctx, ns, "blog", "2")
		if err != nil {
			return false, err.Error()
		}
		return len(o.Deployments) == 1, fmt.Sprintf("%+v", o)
	})
	for range 2 {
		require.NoError(t, w.RecordEvent(ctx, ns, "blog", "2", corev1.EventTypeNormal, "Activated", "version 2 is Active: ready, 1 endpoint"))
	}
	list, err := c.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.SelectorFromSet(fields.Set{
		"involvedObject.kind": "Deployment", "involvedObject.name": "blog-web"}).String()})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	ev := list.Items[0]
	assert.Equal(t, "Activated", ev.Reason)
	assert.Equal(t, "version 2 is Active: ready, 1 endpoint", ev.Message)
	assert.Equal(t, EventReportingController, ev.ReportingController)
	assert.Equal(t, corev1.EventTypeNormal, ev.Type)

	err = w.RecordEvent(ctx, ns, "blog", "9", corev1.EventTypeWarning, "NotReady", "x")
	assert.ErrorIs(t, err, ErrNoDeployment)
}
