//go:build integration

package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestAppGroupExpiresTogetherOnTheRealStack: front and api are in the app group "shop", v1
// then v2 of both. front's policy gives its Draining versions 3 s of max alive; api keeps the
// 60 s grace period. When front's v1 reaches max alive and expires, api's v1 expires with it
// (told by front's lifecycle), within seconds rather than after its own grace period.
func TestAppGroupExpiresTogetherOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	front, api := registry.AppRef{Namespace: s.ns, Name: "front"}, registry.AppRef{Namespace: s.ns, Name: "api"}
	_, err := s.reg.PutPolicy(t.Context(), front, registry.Policy{GracePeriodMS: ptr.To[int64](1000), MaxAliveMS: ptr.To[int64](3000)}, alice)
	require.NoError(t, err)
	ref := func(app registry.AppRef, v string) registry.VersionRef {
		return registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: v}
	}
	t.Cleanup(func() {
		for _, app := range []registry.AppRef{front, api} {
			for _, v := range []string{"v1", "v2"} {
				_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(ref(app, v)), "", "test done")
			}
		}
	})
	state := func(r registry.VersionRef) registry.State {
		v, err := s.reg.GetVersion(t.Context(), r)
		if err != nil {
			return ""
		}
		return v.State
	}
	for _, v := range []string{"v1", "v2"} {
		s.deployGrouped(front, v, "", "shop")
		s.deployGrouped(api, v, "/api", "shop")
		for _, app := range []registry.AppRef{front, api} {
			s.eventually(30*time.Second, app.Name+" "+v+" active", func() (bool, string) {
				st := state(ref(app, v))
				return st == registry.Active, string(st)
			})
		}
	}
	assert.Equal(t, registry.Draining, state(ref(api, "v1")), "api's v1 drains: its grace period is 60 s")

	// front's v1: max alive 3 s; then api's v1 goes with it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var res workflows.LifecycleResult
	require.NoError(t, s.temporal.GetWorkflow(ctx, workflows.WorkflowID(ref(api, "v1")), "").Get(ctx, &res), "api's v1 workflow ends")
	assert.Equal(t, registry.Expired, res.State)
	assert.Contains(t, res.Reason, "app group shop: version v1 expired in front")
	assert.Equal(t, registry.Expired, state(ref(front, "v1")))
	for _, app := range []registry.AppRef{front, api} {
		assert.Equal(t, registry.Active, state(ref(app, "v2")), "%s v2 stays Active", app.Name)
	}
}

// deployGrouped applies a version of app in app group group (plt.dev/group) at path on the
// stack's host, and starts its lifecycle as detection would.
func (s *stack) deployGrouped(app registry.AppRef, version, path, group string) {
	s.t.Helper()
	name := app.Name + "-" + version
	selector := map[string]string{kube.AppLabel: app.Name, kube.VersionLabel: version}
	labels := map[string]string{kube.AppLabel: app.Name, kube.VersionLabel: version, "plt.dev/group": group}
	_, err := s.kube.Kube.AppsV1().Deployments(s.ns).Create(s.t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "echo",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(s.t, err)
	_, err = s.kube.Kube.CoreV1().Services(s.ns).Create(s.t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: selector,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(s.t, err)
	ref := registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: version}
	_, err = workflows.Start(s.t.Context(), s.temporal, s.cfg.TaskQueue, workflows.LifecycleInput{
		Ref: ref, Placement: registry.Placement{ServiceName: name, ServicePort: 80, Hostname: s.host(), PathPrefix: path, Group: group},
		Actor: registry.Actor{Type: registry.ActorPod, Name: name + "-test"},
	})
	require.NoError(s.t, err)
}
