package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func TestVersionSelector(t *testing.T) {
	assert.Equal(t, "app.kubernetes.io/name=myapp,plt.dev/version=1.2.3", VersionSelector("myapp", "1.2.3"))
}

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{AppLabel: "myapp", VersionLabel: "42"}},
		Spec: corev1.ServiceSpec{Ports: ports}}
}

func slice(ns, svc, name, portName string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port)}},
		Endpoints:   eps,
	}
}

func endpoint(addr string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

// dialer accepts connections only to the listed addresses.
func dialer(open ...string) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, _, addr string) (net.Conn, error) {
		for _, o := range open {
			if o == addr {
				c1, c2 := net.Pipe()
				_ = c2.Close()
				return c1, nil
			}
		}
		return nil, errors.New("connection refused")
	}
}

// noDial fails the test if the probe dials: it is off by default.
func noDial(t *testing.T) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, _, addr string) (net.Conn, error) {
		t.Errorf("the probe dialled %s although it is off", addr)
		return nil, errors.New("unexpected dial")
	}
}

func TestReadiness(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80}
	metrics := corev1.ServicePort{Name: "metrics", Port: 9090}
	tests := []struct {
		name    string
		objects []runtime.Object
		port    int32
		probe   bool
		open    []string
		want    Readiness
	}{
		{
			name:    "no endpoint slice",
			objects: []runtime.Object{service("ns", "myapp-42", http)},
			port:    80,
			want:    Readiness{Port: 80, Why: "Service ns/myapp-42 has no ready endpoint for port 80"},
		},
		{
			name: "endpoint not ready",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.2", ptr.To(false)))},
			port: 80,
			want: Readiness{Port: 80, Why: "Service ns/myapp-42 has no ready endpoint for port 80"},
		},
		{
			name: "a nil ready condition means ready, as the API defines it",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", nil), endpoint("10.0.0.2", ptr.To(false)))},
			port: 80,
			want: Readiness{Ready: true, Port: 80, Endpoints: 1, TargetPort: 8080},
		},
		{
			name: "ready without a probe: nothing dials the pod",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(true)))},
			port: 80,
			want: Readiness{Ready: true, Port: 80, Endpoints: 1, TargetPort: 8080},
		},
		{
			name: "a failing probe is reported, never fatal",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(true)))},
			port:  80,
			probe: true,
			want: Readiness{Ready: true, Port: 80, Endpoints: 1, TargetPort: 8080,
				ProbeError: "none of 1 ready endpoint(s) accepts TCP connections on port 8080 from here"},
		},
		{
			name: "the probe names the second address that listens",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(true))),
				slice("ns", "myapp-42", "s2", "http", 8080, endpoint("10.0.0.2", ptr.To(true)))},
			port:  80,
			probe: true,
			open:  []string{"10.0.0.2:8080"},
			want:  Readiness{Ready: true, Port: 80, Endpoints: 2, TargetPort: 8080, Probed: "10.0.0.2:8080"},
		},
		{
			name: "the asked port, not another one, decides",
			objects: []runtime.Object{service("ns", "myapp-42", http, metrics),
				slice("ns", "myapp-42", "s1", "metrics", 9100, endpoint("10.0.0.1", ptr.To(true)))},
			port: 80,
			want: Readiness{Port: 80, Why: "Service ns/myapp-42 has no ready endpoint for port 80"},
		},
		{
			name: "port 0 means the first port",
			objects: []runtime.Object{service("ns", "myapp-42", http, metrics),
				slice("ns", "myapp-42", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(true)))},
			port: 0,
			want: Readiness{Ready: true, Port: 80, Endpoints: 1, TargetPort: 8080},
		},
		{
			name:    "unknown service port",
			objects: []runtime.Object{service("ns", "myapp-42", http)},
			port:    81,
			want:    Readiness{Port: 81, Why: "Service ns/myapp-42 has no port 81"},
		},
		{
			name: "another Service's slice does not count",
			objects: []runtime.Object{service("ns", "myapp-42", http),
				slice("ns", "myapp-41", "s1", "http", 8080, endpoint("10.0.0.1", ptr.To(true)))},
			port: 80,
			want: Readiness{Port: 80, Why: "Service ns/myapp-42 has no ready endpoint for port 80"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dial := noDial(t)
			if tt.probe {
				dial = dialer(tt.open...)
			}
			w := Workloads{Client: fake.NewClientset(tt.objects...), Prober: Prober{Probe: tt.probe, Dial: dial}}
			got, err := w.Readiness(t.Context(), "ns", "myapp-42", tt.port)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			// The watcher computes the same from its informers.
			rw, err := NewReadinessWatcher(fake.NewClientset(tt.objects...), nil)
			require.NoError(t, err)
			rw.Prober = Prober{Probe: tt.probe, Dial: dial}
			defer rw.Stop()
			got, err = rw.Current(t.Context(), "ns", "myapp-42", tt.port)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "watcher")
		})
	}
}

func TestReadinessMissingService(t *testing.T) {
	w := Workloads{Client: fake.NewClientset()}
	r, err := w.Readiness(t.Context(), "ns", "myapp-42", 80)
	assert.ErrorIs(t, err, ErrNoService)
	assert.False(t, r.Ready)
	assert.Contains(t, r.Why, "does not exist yet")
}

func TestReadinessProbesForReal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	w := Workloads{Client: fake.NewClientset(service("ns", "myapp-42", corev1.ServicePort{Name: "http", Port: 80}),
		slice("ns", "myapp-42", "s1", "http", port, endpoint("127.0.0.1", ptr.To(true)))), Prober: Prober{Probe: true}}
	r, err := w.Readiness(t.Context(), "ns", "myapp-42", 80)
	require.NoError(t, err)
	assert.True(t, r.Ready, r.Why)
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", port), r.Probed)
	assert.Empty(t, r.ProbeError)
}

func deployment(ns, name, app, version string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{AppLabel: app, VersionLabel: version}},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
	}
}

// withScale makes the fake serve the scale subresource from the Deployment's replicas and counts
// the scale updates.
func withScale(c *fake.Clientset) *int {
	updates := new(int)
	gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	c.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		name := a.(k8stesting.GetAction).GetName()
		obj, err := c.Tracker().Get(gvr, a.GetNamespace(), name)
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment)
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name},
			Spec: autoscalingv1.ScaleSpec{Replicas: *d.Spec.Replicas}}, nil
	})
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		scale := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		obj, err := c.Tracker().Get(gvr, a.GetNamespace(), scale.Name)
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment).DeepCopy()
		d.Spec.Replicas = ptr.To(scale.Spec.Replicas)
		*updates++
		return true, scale, c.Tracker().Update(gvr, d, a.GetNamespace())
	})
	return updates
}

func replicas(t *testing.T, c *fake.Clientset, ns, name string) int32 {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return *d.Spec.Replicas
}

func TestScaleToZero(t *testing.T) {
	c := fake.NewClientset(
		deployment("ns", "myapp-42", "myapp", "42", 3),
		deployment("ns", "myapp-42-worker", "myapp", "42", 1),
		deployment("ns", "myapp-43", "myapp", "43", 2),
		deployment("other", "myapp-42", "myapp", "42", 2),
	)
	updates := withScale(c)
	w := Workloads{Client: c}

	got, err := w.ScaleToZero(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err)
	assert.Equal(t, Scaled{Deployments: []string{"myapp-42", "myapp-42-worker"}}, got)
	assert.Equal(t, int32(0), replicas(t, c, "ns", "myapp-42"))
	assert.Equal(t, int32(0), replicas(t, c, "ns", "myapp-42-worker"))
	assert.Equal(t, int32(2), replicas(t, c, "ns", "myapp-43"), "another version is untouched")
	assert.Equal(t, int32(2), replicas(t, c, "other", "myapp-42"), "another namespace is untouched")
	assert.Equal(t, 2, *updates)

	got, err = w.ScaleToZero(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err, "repeating is safe")
	assert.Len(t, got.Deployments, 2)
	assert.Equal(t, 2, *updates, "a Deployment already at 0 is not written again")
}

func TestScaleToZeroToleratesDeletion(t *testing.T) {
	c := fake.NewClientset(deployment("ns", "myapp-42", "myapp", "42", 3))
	withScale(c)
	c.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, "myapp-42")
	})
	_, err := Workloads{Client: c}.ScaleToZero(t.Context(), "ns", "myapp", "42")
	assert.NoError(t, err)
}

func TestDelete(t *testing.T) {
	c := fake.NewClientset(
		deployment("ns", "myapp-42", "myapp", "42", 3),
		deployment("ns", "myapp-43", "myapp", "43", 2),
		service("ns", "myapp-42", corev1.ServicePort{Port: 80}),
	)
	w := Workloads{Client: c}
	got, err := w.Delete(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err)
	assert.Equal(t, Deleted{Deployments: []string{"myapp-42"}, Services: []string{"myapp-42"}}, got)

	_, err = c.AppsV1().Deployments("ns").Get(t.Context(), "myapp-42", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))
	_, err = c.AppsV1().Deployments("ns").Get(t.Context(), "myapp-43", metav1.GetOptions{})
	assert.NoError(t, err, "another version is untouched")

	got, err = w.Delete(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err, "repeating is safe")
	assert.Empty(t, got.Deployments)
}

func TestDeleteRaceIsSuccess(t *testing.T) {
	c := fake.NewClientset(deployment("ns", "myapp-42", "myapp", "42", 3))
	c.PrependReactor("delete", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, "myapp-42")
	})
	got, err := Workloads{Client: c}.Delete(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err, "NotFound on delete is success")
	assert.Equal(t, []string{"myapp-42"}, got.Deployments)
}

// unlabelledDeployment runs app with a pod template that carries no version label (its
// version, if any, is derived from its image).
func unlabelledDeployment(ns, name, app, image string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{AppLabel: app}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{AppLabel: app, "instance": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}},
	}
}

// A version derived from the image has no label that finds its Deployments: retiring it never
// scales down or deletes one (not even the one running that very image), and says so.
func TestRetireOfAVersionFromTheImageTouchesNothingAndReports(t *testing.T) {
	c := fake.NewClientset(
		unlabelledDeployment("ns", "web-a1", "web", "web:v3", 2),
		unlabelledDeployment("ns", "web-b2", "web", "web:v4", 2),
		unlabelledDeployment("ns", "blog", "blog", "blog:v3", 1),
		service("ns", "web-a1", corev1.ServicePort{Port: 80}),
	)
	updates := withScale(c)
	w := Workloads{Client: c}

	scaled, err := w.ScaleToZero(t.Context(), "ns", "web", "v3", "web-a1")
	require.NoError(t, err)
	assert.Empty(t, scaled.Deployments)
	require.Len(t, scaled.Skipped, 2, "the app's unlabelled Deployments are reported, another app's are not")
	assert.Contains(t, scaled.Skipped[0], "web-a1: its pod template carries no plt.dev/version label")
	assert.Contains(t, scaled.Skipped[1], "web-b2: ")
	assert.Equal(t, 0, *updates)
	assert.Equal(t, int32(2), replicas(t, c, "ns", "web-a1"))

	deleted, err := w.Delete(t.Context(), "ns", "web", "v3", "web-a1")
	require.NoError(t, err)
	assert.Empty(t, deleted.Deployments)
	assert.Empty(t, deleted.Services, "the recorded Service is not the version's by any label: it stays")
	assert.Len(t, deleted.Skipped, 2)
	for _, name := range []string{"web-a1", "web-b2"} {
		_, err := c.AppsV1().Deployments("ns").Get(t.Context(), name, metav1.GetOptions{})
		assert.NoError(t, err, "%s is not deleted", name)
	}
	_, err = c.CoreV1().Services("ns").Get(t.Context(), "web-a1", metav1.GetOptions{})
	assert.NoError(t, err)
}
