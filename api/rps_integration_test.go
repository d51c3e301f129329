//go:build integration

package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/internal/traffic"
)

// TestVersionRPSFromTheStacksPrometheus sends requests through Traefik to one version of an
// app and reads its request-rate series through the API: the query is the Traefik preset the
// lifecycle runs, as a range query against the stack's Prometheus (which scrapes Traefik every
// second). The series has points above zero, none from before the first request (the Service
// had no series then), and a version that got no request has no point at all (unknown, never
// zero).
func TestVersionRPSFromTheStacksPrometheus(t *testing.T) {
	promURL := testenv.Get(t, testenv.PrometheusURL)
	gatewayURL := testenv.Get(t, testenv.GatewayURL)
	c := newCluster(t)
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	ctx := t.Context()

	svc := deployEcho(t, clients, c.ns, "web", "1")
	idle := deployEcho(t, clients, c.ns, "web", "2") // never routed: no request reaches it
	host := c.ns + ".rps.example"
	routeTo(t, clients, c.ns, "web", host, svc)

	store := registrytest.New(t)
	user := registry.Actor{Type: registry.ActorUser, ID: "test"}
	for label, service := range map[string]string{"1": svc, "2": idle} {
		_, _, err := store.ObserveVersion(ctx, registry.Observation{
			Ref:       registry.VersionRef{Namespace: c.ns, App: "web", Label: label},
			Placement: registry.Placement{ServiceName: service, ServicePort: 80}}, user)
		require.NoError(t, err)
	}
	// A short traffic window, so that the rate shows within seconds of the first requests.
	tw := int64(10_000)
	_, err = store.PutPolicy(ctx, registry.AppRef{Namespace: c.ns, Name: "web"}, registry.Policy{TrafficWindowMS: &tw}, user)
	require.NoError(t, err)

	tmpl, err := traffic.Select(traffic.PresetTraefik, "")
	require.NoError(t, err)
	q, err := traffic.NewQuerier(promURL, tmpl)
	require.NoError(t, err)
	srv, err := New(Options{Registry: store, Pods: noPods{}, Detector: noDetector{}, Lifecycle: &fakeLifecycle{},
		Traffic: q, InsecureSkipPodAuth: true, InsecureSkipAPIAuth: true})
	require.NoError(t, err)
	h := srv.Handler()
	series := func(t *testing.T, version, query string) (int, RPSSeries, string) {
		req, err := http.NewRequest(http.MethodGet, "/api/v1/apps/"+c.ns+"/web/versions/"+version+"/rps"+query, nil)
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var s RPSSeries
		if rec.Code == http.StatusOK {
			s = decode[RPSSeries](t, rec)
		}
		return rec.Code, s, rec.Body.String()
	}

	// Before any request: no series, no point.
	code, before, body := series(t, "1", "?window=5m&step=1s")
	require.Equal(t, http.StatusOK, code, body)
	assert.Empty(t, before.Points, "no request yet: unknown, not zero")
	assert.Contains(t, before.Query, "traefik_service_requests_total")
	assert.Contains(t, before.Query, svc)
	assert.Equal(t, float64(10), before.TrafficWindowSeconds, "the app's traffic window")

	firstRequest := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	send := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gatewayURL+"/", nil)
		if err != nil {
			return err
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"version":"1"`) {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	var last RPSSeries
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Traffic goes on while we wait, as it does to a live version (10 requests a round).
		for range 10 {
			if err := send(); err != nil {
				break // the route is not served yet
			}
		}
		code, s, body := series(t, "1", "?window=5m&step=1s")
		require.Equal(t, http.StatusOK, code, body)
		last = s
		if positive(s.Points) >= 3 {
			break
		}
		require.True(t, time.Now().Before(deadline), "not 3 points above zero after 60 s: %s", body)
		time.Sleep(500 * time.Millisecond) // Prometheus scrapes Traefik every second
	}
	t.Logf("%d points, %d above zero, last %+v", len(last.Points), positive(last.Points), last.Points[len(last.Points)-1])
	for _, p := range last.Points {
		// A point covers the traffic window that ends at it; Traefik made the series at the
		// first request, so no point can be earlier than that (with a second of slack for clocks).
		assert.False(t, p.At.Before(firstRequest.Add(-time.Second)), "point at %s before the first request at %s", p.At, firstRequest)
		assert.GreaterOrEqual(t, p.RPS, 0.0)
	}
	assert.WithinDuration(t, time.Now(), last.End, 10*time.Second)
	assert.Equal(t, 5*time.Minute, last.End.Sub(last.Start))

	code, other, body := series(t, "2", "?window=5m&step=1s")
	require.Equal(t, http.StatusOK, code, body)
	assert.Empty(t, other.Points, "a version that got no request has no series: %s", body)

	t.Run("Prometheus down", func(t *testing.T) {
		down, err := traffic.NewQuerier("http://127.0.0.1:1", tmpl)
		require.NoError(t, err)
		srv, err := New(Options{Registry: store, Pods: noPods{}, Detector: noDetector{}, Lifecycle: &fakeLifecycle{},
			Traffic: down, InsecureSkipPodAuth: true, InsecureSkipAPIAuth: true})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		req, _ := http.NewRequest(http.MethodGet, "/api/v1/apps/"+c.ns+"/web/versions/1/rps", nil)
		srv.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		assert.Equal(t, CodePrometheusUnavailable, errorCode(t, rec))
	})
}

type noPods struct{}

func (noPods) PodsNamed(string) []*corev1.Pod { return nil }

type noDetector struct{}

func (noDetector) Detect(context.Context, *corev1.Pod, string, detect.Hint) (detect.Result, error) {
	return detect.Result{}, nil
}
func (noDetector) Enabled() bool { return false }

func positive(pts []traffic.Point) int {
	n := 0
	for _, p := range pts {
		if p.RPS > 0 {
			n++
		}
	}
	return n
}

// deployEcho creates the Deployment and Service of one version running the stack's echo
// backend, waits for its pod to be Ready, and returns the Service's name.
func deployEcho(t *testing.T, c *kube.Clients, ns, app, version string) string {
	t.Helper()
	name := app + "-v" + version
	labels := map[string]string{"app.kubernetes.io/name": app, "plt.dev/version": version}
	one := int32(1)
	ctx := context.Background()
	_, err := c.Kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "skewguard/echo:" + version,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	sel := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: labels})
	require.Eventually(t, func() bool {
		pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
			return false
		}
		for _, cond := range pods.Items[0].Status.Conditions {
			if cond.Type == corev1.PodReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "a Ready pod of %s/%s", ns, name)
	return name
}

// routeTo creates a plain HTTPRoute for host on the stack's Gateway to svc.
func routeTo(t *testing.T, c *kube.Clients, ns, name, host, svc string) {
	t.Helper()
	nsName, section, _ := strings.Cut(testenv.Get(t, testenv.GatewayRef), ":")
	gwNS, gwName, _ := strings.Cut(nsName, "/")
	gns, sec, port := gatewayv1.Namespace(gwNS), gatewayv1.SectionName(section), gatewayv1.PortNumber(80)
	_, err := c.Gateway.GatewayV1().HTTPRoutes(ns).Create(context.Background(), &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: gatewayv1.ObjectName(gwName), Namespace: &gns, SectionName: &sec}}},
			Hostnames: []gatewayv1.Hostname{gatewayv1.Hostname(host)},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: &port}}}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}
