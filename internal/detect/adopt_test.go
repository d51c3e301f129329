package detect

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// unversioned is a team's app as it runs before adoption: a Deployment (annotated for
// adoption when adopt), its ReplicaSet, one Ready pod of image echo:v1.4.2 without the version
// label, and a Service that selects every pod of the app.
func unversioned(adopt bool) []runtime.Object {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "myapp", UID: "dep-uid"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelApp: "myapp"}}}}
	if adopt {
		dep.Annotations = map[string]string{AnnotationAdopt: "true"}
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "myapp-5d8f7c9b6", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "myapp",
			UID: "dep-uid", Controller: ptr.To(true)}}}}
	p := pod("ns", "myapp-5d8f7c9b6-abcde", map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "5d8f7c9b6"},
		true, time.Unix(1000, 0))
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name,
		UID: types.UID("rs-uid"), Controller: ptr.To(true)}}
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "echo:v1.4.2"}}
	team := service("ns", "myapp", map[string]string{LabelApp: "myapp"}, corev1.ServicePort{Name: "http", Port: 8080})
	return []runtime.Object{dep, rs, p, team}
}

func TestDetectAdoptsAnAnnotatedDeployment(t *testing.T) {
	cache, kc := startedCache(t, unversioned(true)...)
	reg := newFakeRegistry()
	starter := &fakeStarter{reg: reg}
	d := NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true,
		Adopter: kube.Workloads{Client: kc}})
	p, ok := cache.Pod("ns", "myapp-5d8f7c9b6-abcde")
	require.True(t, ok)
	assert.True(t, d.Watchable(p), "the pod watch looks at an adopted Deployment's pods")

	res, err := d.Detect(t.Context(), p, SourcePodWatch, Hint{})
	require.NoError(t, err)
	require.Equal(t, OutcomeStarted, res.Outcome, res.Reason)
	assert.Equal(t, registry.VersionRef{Namespace: "ns", App: "myapp", Label: "v1.4.2"}, res.Ref)
	ours, err := kube.AdoptedServiceName("myapp", "v1.4.2")
	require.NoError(t, err)
	require.Len(t, starter.requests(), 1)
	req := starter.requests()[0]
	assert.Equal(t, registry.Placement{ServiceName: ours, ServicePort: 8080, AdoptedDeployment: "myapp"}, req.Placement)
	svc, err := kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
	require.NoError(t, err, "our Service is created before the version starts")
	assert.Equal(t, map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "5d8f7c9b6"}, svc.Spec.Selector)
	team, err := kc.CoreV1().Services("ns").Get(t.Context(), "myapp", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{LabelApp: "myapp"}, team.Spec.Selector, "the team's Service is untouched")

	// Our Service in the cache is never taken for the team's.
	require.Eventually(t, func() bool { _, ok := cache.TeamServiceFor(p); return ok }, 5*time.Second, 10*time.Millisecond)
	got, _ := cache.TeamServiceFor(p)
	assert.Equal(t, "myapp", got.Name)
}

func TestDetectDoesNotAdoptWithoutTheAnnotation(t *testing.T) {
	cache, kc := startedCache(t, unversioned(false)...)
	reg := newFakeRegistry()
	starter := &fakeStarter{reg: reg}
	d := NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true,
		Adopter: kube.Workloads{Client: kc}})
	p, ok := cache.Pod("ns", "myapp-5d8f7c9b6-abcde")
	require.True(t, ok)
	assert.False(t, d.Watchable(p))
	res, err := d.Detect(t.Context(), p, SourceAgent, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeNoLabels, res.Outcome)
	assert.Empty(t, starter.requests())
	ours, _ := kube.AdoptedServiceName("myapp", "v1.4.2")
	_, err = kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "nothing is written unless asked")

	// The global version-from-image setting alone does not adopt: the team's Service selects
	// the whole app, so no Service is found, and nothing is created.
	d = NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true, VersionFromImage: true,
		Adopter: kube.Workloads{Client: kc}})
	res, err = d.Detect(t.Context(), p, SourceAgent, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeNoService, res.Outcome)
	_, err = kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))
}

// A Service of that name that is not ours for the version is never taken over: the version
// waits (no Service), and the retry queue tries again.
func TestDetectAdoptionConflictIsNoService(t *testing.T) {
	ours, _ := kube.AdoptedServiceName("myapp", "v1.4.2")
	objs := append(unversioned(true), service("ns", ours, map[string]string{LabelApp: "other"}))
	cache, kc := startedCache(t, objs...)
	reg := newFakeRegistry()
	starter := &fakeStarter{reg: reg}
	d := NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true,
		Adopter: kube.Workloads{Client: kc}})
	p, _ := cache.Pod("ns", "myapp-5d8f7c9b6-abcde")
	res, err := d.Detect(t.Context(), p, SourcePodWatch, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeNoService, res.Outcome)
	assert.Contains(t, res.Reason, "adoption conflict")
	assert.Empty(t, starter.requests())
}

// Adoption writes a Service: in advise and observe modes it is refused with the reason, and
// nothing is created or started; in manage mode (and by default) the same pod is adopted.
func TestDetectAdoptsInManageModeOnly(t *testing.T) {
	for _, mode := range []string{"advise", "observe", "manage"} {
		t.Run(mode, func(t *testing.T) {
			cache, kc := startedCache(t, unversioned(true)...)
			reg := newFakeRegistry()
			starter := &fakeStarter{reg: reg}
			var asked registry.AppRef
			d := NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true,
				Adopter: kube.Workloads{Client: kc},
				ModeOf: func(_ context.Context, app registry.AppRef) (string, error) {
					asked = app
					return mode, nil
				}})
			p, _ := cache.Pod("ns", "myapp-5d8f7c9b6-abcde")
			res, err := d.Detect(t.Context(), p, SourcePodWatch, Hint{})
			require.NoError(t, err)
			assert.Equal(t, registry.AppRef{Namespace: "ns", Name: "myapp"}, asked)
			ours, _ := kube.AdoptedServiceName("myapp", res.Ref.Label)
			_, getErr := kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
			if mode == "manage" {
				assert.Equal(t, OutcomeStarted, res.Outcome, res.Reason)
				assert.NoError(t, getErr, "our Service is created in manage mode")
				return
			}
			assert.Equal(t, OutcomeNoService, res.Outcome)
			assert.Contains(t, res.Reason, "mode "+mode+" does not allow")
			assert.True(t, apierrors.IsNotFound(getErr), "no Service is created in %s mode: %v", mode, getErr)
			assert.Empty(t, starter.requests())
		})
	}
}
