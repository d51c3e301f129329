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

// The adopted Deployment rolls in place with the same image and a new pod template (an env
// change): the version is the same, and when a pod of the new template is Ready, our Service
// moves to it (audited), so the version keeps Ready pods when the old ones go. A pod of the old
// template seen afterwards never moves it back; in advise mode nothing moves.
func TestDetectFollowsTheAdoptedDeploymentToItsNewTemplate(t *testing.T) {
	for _, mode := range []string{"manage", "advise"} {
		t.Run(mode, func(t *testing.T) {
			cache, kc := startedCache(t, unversioned(true)...)
			reg := newFakeRegistry()
			starter := &fakeStarter{reg: reg}
			type entry struct {
				ref           registry.VersionRef
				event, reason string
			}
			var audited []entry
			d := NewDetector(Options{Registry: reg, Starter: starter, Lookup: cache, Enabled: true,
				Adopter: kube.Workloads{Client: kc},
				ModeOf:  func(context.Context, registry.AppRef) (string, error) { return mode, nil },
				Audit: func(_ context.Context, ref registry.VersionRef, event string, _ registry.Actor, reason string, _ any) error {
					audited = append(audited, entry{ref, event, reason})
					return nil
				}})
			ours, _ := kube.AdoptedServiceName("myapp", "v1.4.2")
			ref := registry.VersionRef{Namespace: "ns", App: "myapp", Label: "v1.4.2"}
			old, _ := cache.Pod("ns", "myapp-5d8f7c9b6-abcde")
			if mode == "manage" {
				res, err := d.Detect(t.Context(), old, SourcePodWatch, Hint{})
				require.NoError(t, err)
				require.Equal(t, OutcomeStarted, res.Outcome, res.Reason)
			} else {
				// Adopted while the app was managed; switched to advise since.
				_, err := kc.CoreV1().Services("ns").Create(t.Context(), &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: ours, Namespace: "ns", Labels: map[string]string{LabelApp: "myapp",
						LabelVersion: "v1.4.2", kube.AdoptedLabel: "true", "app.kubernetes.io/managed-by": "skewguard"},
						Annotations: map[string]string{kube.AdoptedDeploymentAnnotation: "myapp"}},
					Spec: corev1.ServiceSpec{Selector: map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "5d8f7c9b6"},
						Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, metav1.CreateOptions{})
				require.NoError(t, err)
			}
			reg.put(registry.Version{ID: 1, AppID: 1, Namespace: "ns", App: "myapp", Label: "v1.4.2", Life: 1,
				State: registry.Active, Placement: registry.Placement{ServiceName: ours, ServicePort: 8080,
					AdoptedDeployment: "myapp"}})

			// The rollout: a new ReplicaSet (revision 2) with the same image, its first pod Ready.
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "myapp-77aa88bb9", UID: "rs2-uid",
				Labels:      map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "77aa88bb9"},
				Annotations: map[string]string{"deployment.kubernetes.io/revision": "2"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "myapp",
					UID: "dep-uid", Controller: ptr.To(true)}}}}
			_, err := kc.AppsV1().ReplicaSets("ns").Create(t.Context(), rs, metav1.CreateOptions{})
			require.NoError(t, err)
			np := pod("ns", "myapp-77aa88bb9-fghij", map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "77aa88bb9"},
				true, time.Unix(2000, 0))
			np.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name,
				UID: "rs2-uid", Controller: ptr.To(true)}}
			np.Spec.Containers = []corev1.Container{{Name: "app", Image: "echo:v1.4.2"}}
			_, err = kc.CoreV1().Pods("ns").Create(t.Context(), np, metav1.CreateOptions{})
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				p, ok := cache.Pod("ns", np.Name)
				if !ok {
					return false
				}
				_, adopting := cache.AdoptionOf(p)
				return adopting
			}, 5*time.Second, 10*time.Millisecond)
			p, _ := cache.Pod("ns", np.Name)
			require.True(t, d.Watchable(p))

			res, err := d.Detect(t.Context(), p, SourcePodWatch, Hint{})
			require.NoError(t, err)
			assert.Equal(t, OutcomeFastPath, res.Outcome, "the same live version")
			assert.Equal(t, ref, res.Ref)
			svc, err := kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
			require.NoError(t, err)
			if mode == "advise" {
				assert.Equal(t, "5d8f7c9b6", svc.Spec.Selector[kube.PodTemplateHashLabel], "advise writes nothing")
				assert.Empty(t, audited)
				return
			}
			assert.Equal(t, map[string]string{LabelApp: "myapp", kube.PodTemplateHashLabel: "77aa88bb9"}, svc.Spec.Selector,
				"our Service follows the Deployment's new template")
			require.Len(t, audited, 1)
			assert.Equal(t, ref, audited[0].ref)
			assert.Equal(t, AuditTemplateFollowed, audited[0].event)
			assert.Contains(t, audited[0].reason, "moved from pod template 5d8f7c9b6")
			assert.Len(t, starter.requests(), 1, "no new version is started")

			// Once the cache has the move, pods of either template cost no write, and the old
			// template never takes it back.
			require.Eventually(t, func() bool {
				s, ok := cache.Service("ns", ours)
				return ok && s.Spec.Selector[kube.PodTemplateHashLabel] == "77aa88bb9"
			}, 5*time.Second, 10*time.Millisecond)
			for _, q := range []*corev1.Pod{p, old} {
				_, err = d.Detect(t.Context(), q, SourcePodWatch, Hint{})
				require.NoError(t, err)
			}
			svc, _ = kc.CoreV1().Services("ns").Get(t.Context(), ours, metav1.GetOptions{})
			assert.Equal(t, "77aa88bb9", svc.Spec.Selector[kube.PodTemplateHashLabel])
			assert.Len(t, audited, 1)
		})
	}
}
