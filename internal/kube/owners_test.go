package kube

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skewguard/skewguard/internal/routes"
)

func versionLabels(app, version string) map[string]string {
	return map[string]string{AppLabel: app, VersionLabel: version}
}

// templated is a Deployment labelled only in its pod template.
func templated(name string, templateLabels map[string]string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"team": "a"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}}},
	}
}

func controlledBy(apiVersion, kind, name string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true)}}
}

func replicaSet(name, deployment string, lbls map[string]string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls,
		OwnerReferences: controlledBy("apps/v1", "Deployment", deployment)}}
}

func pod(name, rs string, lbls map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls,
		OwnerReferences: controlledBy("apps/v1", "ReplicaSet", rs)}}
}

func TestOwners(t *testing.T) {
	v42, v43 := versionLabels("myapp", "42"), versionLabels("myapp", "43")
	tests := []struct {
		name    string
		objects []runtime.Object
		want    Owners
	}{
		{
			name: "labelled only in the pod template, found through its running pods",
			objects: []runtime.Object{templated("web", v42, 2),
				replicaSet("web-abc", "web", map[string]string{"pod-template-hash": "abc"}), // relabelled ReplicaSet
				pod("web-abc-1", "web-abc", v42)},
			want: Owners{Deployments: []string{"web"}},
		},
		{
			name:    "labelled only in the pod template, scaled to 0 before: found through its ReplicaSet",
			objects: []runtime.Object{templated("web", v42, 0), replicaSet("web-abc", "web", v42)},
			want:    Owners{Deployments: []string{"web"}},
		},
		{
			name: "labelled on the Deployment and owning the pods: once",
			objects: []runtime.Object{deployment("ns", "myapp-42", "myapp", "42", 1), replicaSet("myapp-42-x", "myapp-42", v42),
				pod("myapp-42-x-1", "myapp-42-x", v42)},
			want: Owners{Deployments: []string{"myapp-42"}},
		},
		{
			name: "a Deployment that moved on to another version is never retired with the old one",
			objects: []runtime.Object{templated("web", v43, 2), replicaSet("web-old", "web", v42), replicaSet("web-new", "web", v43),
				pod("web-new-1", "web-new", v43)},
			want: Owners{Deployments: []string{}, Skipped: []string{`web: its pod template now runs version "43"`}},
		},
		{
			name: "a bare ReplicaSet's pods and another version's Deployment are not the version's",
			objects: []runtime.Object{templated("other", v43, 1), replicaSet("other-x", "other", v43), pod("other-x-1", "other-x", v43),
				&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bare", Labels: v42}},
				pod("bare-1", "bare", v42)},
			want: Owners{Deployments: []string{}},
		},
		{
			name:    "nothing runs the version",
			objects: []runtime.Object{deployment("ns", "myapp-43", "myapp", "43", 1)},
			want:    Owners{Deployments: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Workloads{Client: fake.NewClientset(tt.objects...)}.Owners(t.Context(), "ns", "myapp", "42")
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestScaleToZeroDeploymentLabelledOnlyInTemplate(t *testing.T) {
	c := fake.NewClientset(templated("web", versionLabels("myapp", "42"), 3),
		replicaSet("web-abc", "web", versionLabels("myapp", "42")), pod("web-abc-1", "web-abc", versionLabels("myapp", "42")))
	updates := withScale(c)
	got, err := Workloads{Client: c}.ScaleToZero(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err)
	assert.Equal(t, Scaled{Deployments: []string{"web"}}, got)
	assert.Equal(t, int32(0), replicas(t, c, "ns", "web"))
	assert.Equal(t, 1, *updates)
}

func route(name string, lbls map[string]string, refs ...gatewayv1.HTTPBackendRef) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: lbls},
		Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: refs}}}}
}

func backend(name string, mod func(*gatewayv1.BackendObjectReference)) gatewayv1.HTTPBackendRef {
	ref := gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(80))}
	if mod != nil {
		mod(&ref)
	}
	return gatewayv1.HTTPBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: ref}}
}

func TestRoutesReferencing(t *testing.T) {
	ours := routes.Labels("myapp")
	deleting := route("myapp--pins-2", ours, backend("myapp-42", nil))
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	deleting.Finalizers = []string{"example.com/hold"}
	mirror := route("mirror", routes.Labels("shadow"))
	mirror.Spec.Rules[0].Filters = []gatewayv1.HTTPRouteFilter{{Type: gatewayv1.HTTPRouteFilterRequestMirror,
		RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: backend("myapp-42", nil).BackendObjectReference}}}
	gw := gatewayfake.NewSimpleClientset(
		route("myapp", ours, backend("myapp-43", nil), backend("myapp-42", nil)),
		route("myapp--pins-1", ours, backend("myapp-42", func(r *gatewayv1.BackendObjectReference) {
			r.Kind, r.Group = ptr.To(gatewayv1.Kind("Service")), ptr.To(gatewayv1.Group(""))
		})),
		deleting,
		mirror,
		route("hand-written", map[string]string{"team": "a"}, backend("myapp-42", nil)),
		route("other-kind", ours, backend("myapp-42", func(r *gatewayv1.BackendObjectReference) {
			r.Kind, r.Group = ptr.To(gatewayv1.Kind("ServiceImport")), ptr.To(gatewayv1.Group("multicluster.x-k8s.io"))
		})),
		route("other-namespace", ours, backend("myapp-42", func(r *gatewayv1.BackendObjectReference) {
			r.Namespace = ptr.To(gatewayv1.Namespace("elsewhere"))
		})),
	)
	w := Workloads{Client: fake.NewClientset(), Gateway: gw}
	got, err := w.RoutesReferencing(t.Context(), "ns", "myapp-42")
	require.NoError(t, err)
	assert.Equal(t, []string{"mirror", "myapp", "myapp--pins-1"}, got,
		"managed, live, naming the core Service in the namespace (backends and mirrors)")

	got, err = w.RoutesReferencing(t.Context(), "ns", "myapp-41")
	require.NoError(t, err)
	assert.Empty(t, got)

	got, err = Workloads{Client: fake.NewClientset()}.RoutesReferencing(t.Context(), "ns", "myapp-42")
	require.NoError(t, err)
	assert.Empty(t, got, "no Gateway client (skew protection off): no route can reference it")
}

func TestRetireRefusesWhileRouted(t *testing.T) {
	// The Service the route uses selects the version without carrying its labels.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{Selector: versionLabels("myapp", "42")}}
	c := fake.NewClientset(deployment("ns", "myapp-42", "myapp", "42", 3), svc)
	updates := withScale(c)
	gw := gatewayfake.NewSimpleClientset(route("myapp", routes.Labels("myapp"), backend("web", nil)))
	w := Workloads{Client: c, Gateway: gw}

	_, err := w.ScaleToZero(t.Context(), "ns", "myapp", "42")
	require.ErrorIs(t, err, ErrStillRouted)
	assert.EqualError(t, err, "Service ns/web is still referenced by HTTPRoute myapp; waiting for routes to converge")
	assert.Equal(t, 0, *updates, "nothing scaled")
	_, err = w.Delete(t.Context(), "ns", "myapp", "42")
	require.ErrorIs(t, err, ErrStillRouted)
	assert.Equal(t, int32(3), replicas(t, c, "ns", "myapp-42"), "nothing deleted")

	// A Service named by the caller counts too, labelled or not.
	gw2 := gatewayfake.NewSimpleClientset(route("myapp", routes.Labels("myapp"), backend("recorded", nil)))
	_, err = Workloads{Client: c, Gateway: gw2}.ScaleToZero(t.Context(), "ns", "myapp", "42", "recorded")
	require.ErrorIs(t, err, ErrStillRouted)

	// Once the route moved on, retiring goes ahead.
	gw3 := gatewayfake.NewSimpleClientset(route("myapp", routes.Labels("myapp"), backend("myapp-43", nil)))
	got, err := Workloads{Client: c, Gateway: gw3}.ScaleToZero(t.Context(), "ns", "myapp", "42", "recorded")
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp-42"}, got.Deployments)
	assert.Equal(t, int32(0), replicas(t, c, "ns", "myapp-42"))
}

func TestVersionServices(t *testing.T) {
	c := fake.NewClientset(
		service("ns", "labelled"), // myapp@42 labels
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "selects"}, Spec: corev1.ServiceSpec{Selector: versionLabels("myapp", "42")}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "all-versions"}, Spec: corev1.ServiceSpec{Selector: map[string]string{AppLabel: "myapp"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other-app"}, Spec: corev1.ServiceSpec{Selector: versionLabels("shop", "42")}},
	)
	got, err := Workloads{Client: c}.VersionServices(t.Context(), "ns", "myapp", "42")
	require.NoError(t, err)
	assert.Equal(t, []string{"labelled", "selects"}, got)
}

func TestRecordEvent(t *testing.T) {
	c := fake.NewClientset(templated("web", versionLabels("myapp", "42"), 1), replicaSet("web-abc", "web", versionLabels("myapp", "42")),
		deployment("ns", "myapp-43", "myapp", "43", 1))
	creates := 0
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		creates++
		return false, nil, nil
	})
	w := Workloads{Client: c}
	require.NoError(t, w.RecordEvent(t.Context(), "ns", "myapp", "42", corev1.EventTypeNormal, "Retired", "scaled to 0: no traffic"))
	list, err := c.EventsV1().Events("ns").List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	ev := list.Items[0]
	assert.Equal(t, corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "ns", Name: "web", UID: "uid-web"}, ev.Regarding)
	assert.Equal(t, EventReportingController, ev.ReportingController)
	assert.NotEmpty(t, ev.ReportingInstance)
	assert.Equal(t, "Retired", ev.Reason)
	assert.Equal(t, "scaled to 0: no traffic", ev.Note)
	assert.Equal(t, corev1.EventTypeNormal, ev.Type)

	require.NoError(t, w.RecordEvent(t.Context(), "ns", "myapp", "42", corev1.EventTypeNormal, "Retired", "scaled to 0: no traffic"),
		"recording the same again (a retry) is success")
	assert.Equal(t, 2, creates)
	list, err = c.EventsV1().Events("ns").List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1, "and records it once")

	err = w.RecordEvent(t.Context(), "ns", "myapp", "41", corev1.EventTypeNormal, "Retired", "x")
	assert.ErrorIs(t, err, ErrNoDeployment)
	err = w.RecordEvent(t.Context(), "ns", "myapp", "42", "Info", "Retired", "x")
	assert.ErrorIs(t, err, ErrInvalidEvent)
	err = w.RecordEvent(t.Context(), "ns", "myapp", "42", corev1.EventTypeWarning, "", "x")
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

func TestEventName(t *testing.T) {
	a := eventName("web", "uid", "Retired", "m1")
	assert.Regexp(t, `^web\.[0-9a-f]{16}$`, a)
	assert.NotEqual(t, a, eventName("web", "uid", "Retired", "m2"))
	assert.NotEqual(t, a, eventName("web", "uid2", "Retired", "m1"), "a new Deployment of the same name gets its own Event")
	long := eventName(strings.Repeat("a", 235)+"-"+strings.Repeat("b", 17), "uid", "R", "m")
	assert.Regexp(t, `^a{235}\.[0-9a-f]{16}$`, long, "cut to 253 characters, never ending a part in '-'")
}
