//go:build integration

package activities

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// realActivities returns activities on a fresh database and a fresh namespace of the real API
// server. Routes name a Gateway that does not exist, so the shared data plane ignores them.
func realActivities(t *testing.T) (*Activities, *kube.Clients, string) {
	t.Helper()
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	ns := fmt.Sprintf("sg-activities-%08x", rand.Uint32())
	_, err = clients.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	cfg, err := config.LoadFrom(t.Context(), mapLookuper{"PLT_FEATURE_SKEW_PROTECTION": "true", "PLT_SKEW_GATEWAY_PARENT_REFS": ns + "/no-such-gateway"})
	require.NoError(t, err)
	return &Activities{Registry: registrytest.New(t), Config: cfg, Workloads: kube.Workloads{Client: clients.Kube},
		Routes: kube.NewRouteWriter(clients.Gateway), Claims: claims.AllowAll()}, clients, ns
}

// TestActivitiesAreIdempotent repeats every step, as a retry after a lost reply would, and checks
// that the repeat changes nothing and answers the same.
func TestActivitiesAreIdempotent(t *testing.T) {
	a, clients, ns := realActivities(t)
	ctx := t.Context()
	wf := registry.Actor{Type: registry.ActorWorkflow, ID: "test"}
	ref := func(l string) registry.VersionRef { return registry.VersionRef{Namespace: ns, App: "myapp", Label: l} }
	observe := func(l string) registry.Version {
		// A hostname of the test's own: the shared Gateway may serve another myapp at /myapp.
		in := ObserveInput{Ref: ref(l), Placement: registry.Placement{ServiceName: "myapp-" + l, ServicePort: 80, Hostname: ns + ".activities.test"}, WorkflowID: "skew/" + ns + "/myapp/" + l,
			Actor: wf}
		v, err := a.Observe(ctx, in)
		require.NoError(t, err)
		again, err := a.Observe(ctx, in)
		require.NoError(t, err)
		assert.Equal(t, v, again, "observing twice records one life")
		return v
	}
	v1, v2 := observe("1"), observe("2")

	t1, err := a.Activate(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err)
	assert.True(t, t1.Changed)
	assert.Nil(t, t1.Previous)

	t2, err := a.Activate(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	require.NoError(t, err)
	require.NotNil(t, t2.Previous)
	assert.Equal(t, "1", t2.Previous.Label)
	again, err := a.Activate(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	require.NoError(t, err)
	assert.False(t, again.Changed, "a repeated activation changes nothing")
	require.NotNil(t, again.Previous, "and still names whom it superseded, to signal it")
	assert.Equal(t, t2.Previous.ID, again.Previous.ID)
	assert.Equal(t, t2.Generation, again.Generation)

	late, err := a.Activate(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err, "a late retry of v1's activation, after v2 superseded it")
	assert.Equal(t, registry.Draining, late.Version.State, "reports it Draining instead of failing")
	assert.Equal(t, t2.Generation, late.Generation, "without changing anything")

	s1, err := a.SyncRoutes(ctx, SyncInput{App: ref("2").AppRef(), Cause: ref("2"), Actor: wf})
	require.NoError(t, err)
	assert.Equal(t, RoutesUnchanged, s1.Write.Outcome, "the activations wrote the routes already")
	s2, err := a.SyncRoutes(ctx, SyncInput{App: ref("2").AppRef(), Cause: ref("2"), Actor: wf})
	require.NoError(t, err)
	assert.Equal(t, RoutesUnchanged, s2.Write.Outcome, "writing the same snapshot again writes nothing")
	assert.Equal(t, s1.Routes, s2.Routes)

	p, err := a.Promote(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err)
	require.NotNil(t, p.Previous)
	assert.Equal(t, "2", p.Previous.Label)
	pAgain, err := a.Promote(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err)
	assert.False(t, pAgain.Changed)
	require.NotNil(t, pAgain.Previous)
	assert.Equal(t, p.Previous.ID, pAgain.Previous.ID)

	e, err := a.Expire(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf, Reason: "no traffic"})
	require.NoError(t, err)
	assert.True(t, e.Changed)
	eAgain, err := a.Expire(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	require.NoError(t, err)
	assert.False(t, eAgain.Changed)
	assert.Equal(t, e.Generation, eAgain.Generation)

	_, err = a.Expire(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	assertAppError(t, err, ErrTypeIllegalTransition)
	_, err = a.Expire(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID + 100, Actor: wf})
	assertAppError(t, err, ErrTypeStaleLife)
	_, err = a.Activate(ctx, TransitionInput{Ref: ref("nope"), Actor: wf})
	assertAppError(t, err, ErrTypeNotFound)
	_, err = a.Activate(ctx, TransitionInput{Ref: ref("1"), Actor: registry.Actor{Type: "robot"}})
	assertAppError(t, err, ErrTypeInvalidInput)

	// Retiring twice.
	_, err = clients.Kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "myapp-2", Labels: map[string]string{kube.AppLabel: "myapp", kube.VersionLabel: "2"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "echo"}}}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	for range 2 {
		res, err := a.Retire(ctx, RetireInput{Ref: ref("2"), Actor: wf, Reason: "no traffic"})
		require.NoError(t, err)
		assert.Equal(t, []string{"myapp-2"}, res.ScaledDown)
		d, err := clients.Kube.AppsV1().Deployments(ns).Get(ctx, "myapp-2", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, int32(0), *d.Spec.Replicas, "scaled through the scale subresource of the real API server")
	}
}

func assertAppError(t *testing.T, err error, typ string) {
	t.Helper()
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, typ, app.Type())
	assert.True(t, app.NonRetryable())
}
