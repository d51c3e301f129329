package kube

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func TestAdoptedServiceName(t *testing.T) {
	for _, tc := range []struct{ app, version, want string }{
		{"myapp", "v1", "myapp-skew-v1"},
		{"myapp", "sha256-0123456789ab", "myapp-skew-sha256-0123456789ab"},
		// Changed to be a DNS label: the hash of the exact app and version keeps it unique.
		{"myapp", "v1.4.2", "myapp-skew-v1-4-2-"},
		{"myapp", "V1", "myapp-skew-v1-"},
		{"9lives", "v1", "s-9lives-skew-v1-"},
		{strings.Repeat("a", 60), "v1", strings.Repeat("a", 54) + "-"},
	} {
		got, err := AdoptedServiceName(tc.app, tc.version)
		require.NoError(t, err, "%s@%s", tc.app, tc.version)
		assert.Empty(t, validation.IsDNS1035Label(got), "%q is a Service name", got)
		if strings.HasSuffix(tc.want, "-") {
			assert.True(t, strings.HasPrefix(got, tc.want), "%q starts with %q", got, tc.want)
			assert.Len(t, got, len(tc.want)+nameHashLen)
		} else {
			assert.Equal(t, tc.want, got)
		}
		again, _ := AdoptedServiceName(tc.app, tc.version)
		assert.Equal(t, got, again, "deterministic")
	}
	// Versions that read the same once made a DNS label still get different names.
	a, _ := AdoptedServiceName("myapp", "v1.2")
	b, _ := AdoptedServiceName("myapp", "v1_2")
	c, _ := AdoptedServiceName("myapp", "v1-2")
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, a, c)
	assert.NotEqual(t, b, c)

	_, err := AdoptedServiceName("", "v1")
	assert.Error(t, err)
	_, err = AdoptedServiceName("myapp", "")
	assert.Error(t, err)
}

func teamPorts() []corev1.ServicePort {
	return []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP, NodePort: 30080},
		{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090), AppProtocol: ptr.To("http")},
	}
}

func adoption() Adoption {
	return Adoption{Namespace: "ns", App: "myapp", Version: "v1.4.2", Deployment: "myapp",
		PodTemplateHash: "5d8f7c9b6", Ports: teamPorts()}
}

func TestAdoptedServiceSelectsTheAdoptedTemplateOnly(t *testing.T) {
	svc, err := AdoptedService(adoption())
	require.NoError(t, err)
	name, _ := AdoptedServiceName("myapp", "v1.4.2")
	assert.Equal(t, name, svc.Name)
	assert.Equal(t, "ns", svc.Namespace)
	assert.Equal(t, map[string]string{AppLabel: "myapp", PodTemplateHashLabel: "5d8f7c9b6"}, svc.Spec.Selector,
		"the app and the adopted ReplicaSet's pod-template-hash: no pod of a later template, no labelled version")
	assert.Equal(t, map[string]string{AppLabel: "myapp", VersionLabel: "v1.4.2", AdoptedLabel: "true",
		"app.kubernetes.io/managed-by": "skewguard"}, svc.Labels)
	assert.Equal(t, "myapp", svc.Annotations[AdoptedDeploymentAnnotation])
	assert.Equal(t, corev1.ServiceTypeClusterIP, svc.Spec.Type)
	assert.Empty(t, svc.OwnerReferences, "owned by nothing the team's tools manage")
	want := teamPorts()
	want[0].NodePort = 0
	assert.Equal(t, want, svc.Spec.Ports, "the team's ports, targets included; no node port")

	for name, mutate := range map[string]func(*Adoption){
		"no deployment":      func(a *Adoption) { a.Deployment = "" },
		"no hash":            func(a *Adoption) { a.PodTemplateHash = "" },
		"bad hash":           func(a *Adoption) { a.PodTemplateHash = "a/b" },
		"no port":            func(a *Adoption) { a.Ports = nil },
		"bad version":        func(a *Adoption) { a.Version = "v 1" },
		"no version":         func(a *Adoption) { a.Version = "" },
		"version too long":   func(a *Adoption) { a.Version = strings.Repeat("v", 64) },
		"no app":             func(a *Adoption) { a.App = "" },
		"version has slash":  func(a *Adoption) { a.Version = "v1/2" },
		"hash too long here": func(a *Adoption) { a.PodTemplateHash = strings.Repeat("h", 64) },
	} {
		a := adoption()
		mutate(&a)
		_, err := AdoptedService(a)
		assert.Error(t, err, name)
	}
}

func TestEnsureAdoptedServiceIsIdempotentAndNeverTakesAnotherService(t *testing.T) {
	c := fake.NewClientset()
	w := Workloads{Client: c}
	first, err := w.EnsureAdoptedService(t.Context(), adoption())
	require.NoError(t, err)
	again, err := w.EnsureAdoptedService(t.Context(), adoption())
	require.NoError(t, err, "repeating finds ours")
	assert.Equal(t, first.Name, again.Name)
	list, err := c.CoreV1().Services("ns").List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	rolled := adoption()
	rolled.PodTemplateHash = "77aa88bb9"
	_, err = w.EnsureAdoptedService(t.Context(), rolled)
	assert.True(t, errors.Is(err, ErrAdoptionConflict), "ours never moves to another pod template: %v", err)
	got, _ := c.CoreV1().Services("ns").Get(t.Context(), first.Name, metav1.GetOptions{})
	assert.Equal(t, "5d8f7c9b6", got.Spec.Selector[PodTemplateHashLabel])

	// A Service of the team under that name is left alone.
	a := adoption()
	a.Version = "v2"
	name, _ := AdoptedServiceName("myapp", "v2")
	_, err = c.CoreV1().Services("ns").Create(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name,
		Namespace: "ns", Labels: map[string]string{AppLabel: "myapp"}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = w.EnsureAdoptedService(t.Context(), a)
	assert.True(t, errors.Is(err, ErrAdoptionConflict), "%v", err)
}

// adoptedObjects is a team's Deployment, unlabelled, with its ReplicaSets (hash: revision).
func adoptedObjects(name string, replicas int32, hashes ...string) []runtime.Object {
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid"),
			Labels: map[string]string{AppLabel: "myapp"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{AppLabel: "myapp"}}}},
	}
	out := []runtime.Object{dep}
	for i, h := range hashes {
		out = append(out, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name + "-" + h,
			Labels:      map[string]string{AppLabel: "myapp", PodTemplateHashLabel: h},
			Annotations: map[string]string{revisionAnnotation: string(rune('1' + i))},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name,
				UID: dep.UID, Controller: ptr.To(true)}},
		}})
	}
	return out
}

func TestRetireAnAdoptedVersionScalesTheTeamsDeploymentAndDeletesOnlyOurService(t *testing.T) {
	for _, del := range []bool{false, true} {
		c := fake.NewClientset()
		for _, o := range adoptedObjects("myapp", 3, "5d8f7c9b6") {
			require.NoError(t, c.Tracker().Add(o))
		}
		team := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "myapp"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{AppLabel: "myapp"}, Ports: teamPorts()}}
		require.NoError(t, c.Tracker().Add(team))
		updates := withScale(c)
		w := Workloads{Client: c}
		ours, err := w.EnsureAdoptedService(t.Context(), adoption())
		require.NoError(t, err)

		if del {
			got, err := w.Delete(t.Context(), "ns", "myapp", "v1.4.2")
			require.NoError(t, err)
			assert.Empty(t, got.Deployments, "the team's Deployment is never deleted")
			assert.Equal(t, []string{"myapp"}, got.ScaledDown)
			assert.Equal(t, []string{ours.Name}, got.Services)
			assert.Empty(t, got.Skipped)
		} else {
			got, err := w.ScaleToZero(t.Context(), "ns", "myapp", "v1.4.2")
			require.NoError(t, err)
			assert.Equal(t, []string{"myapp"}, got.Deployments)
			assert.Equal(t, []string{ours.Name}, got.AdoptedServices)
			assert.Empty(t, got.Skipped)
		}
		assert.Equal(t, 1, *updates)
		assert.Equal(t, int32(0), replicas(t, c, "ns", "myapp"), "scaled to 0")
		_, err = c.CoreV1().Services("ns").Get(t.Context(), ours.Name, metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "our Service is deleted")
		_, err = c.CoreV1().Services("ns").Get(t.Context(), "myapp", metav1.GetOptions{})
		assert.NoError(t, err, "the team's Service stays")

		_, err = w.ScaleToZero(t.Context(), "ns", "myapp", "v1.4.2")
		assert.NoError(t, err, "repeating is safe")
	}
}

// A Deployment that rolled to another pod template since its adoption runs another version:
// retiring the adopted one leaves it at its replicas, and still deletes our Service.
func TestRetireAnAdoptedVersionLeavesARolledDeploymentAlone(t *testing.T) {
	c := fake.NewClientset()
	for _, o := range adoptedObjects("myapp", 3, "5d8f7c9b6", "77aa88bb9") {
		require.NoError(t, c.Tracker().Add(o))
	}
	updates := withScale(c)
	w := Workloads{Client: c}
	ours, err := w.EnsureAdoptedService(t.Context(), adoption())
	require.NoError(t, err)

	got, err := w.ScaleToZero(t.Context(), "ns", "myapp", "v1.4.2")
	require.NoError(t, err)
	assert.Empty(t, got.Deployments)
	require.Len(t, got.Skipped, 1)
	assert.Contains(t, got.Skipped[0], `myapp: rolled from pod template 5d8f7c9b6 to "77aa88bb9"`)
	assert.Equal(t, 0, *updates)
	assert.Equal(t, int32(3), replicas(t, c, "ns", "myapp"))
	_, err = c.CoreV1().Services("ns").Get(t.Context(), ours.Name, metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))
}

// An adopted Deployment rolled in place with the same image and a new pod template (an env
// change): the version is the same, and our Service follows the Deployment's newest template,
// once; never to an older one; never a Service that is not ours.
func TestFollowAdoptedTemplateMovesOurServiceToTheNewestTemplateOnly(t *testing.T) {
	c := fake.NewClientset()
	for _, o := range adoptedObjects("myapp", 3, "5d8f7c9b6", "77aa88bb9") {
		require.NoError(t, c.Tracker().Add(o))
	}
	w := Workloads{Client: c}
	ours, err := w.EnsureAdoptedService(t.Context(), adoption())
	require.NoError(t, err)
	conflicts := 0
	c.PrependReactor("update", "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts == 0 {
			conflicts++
			return true, nil, apierrors.NewConflict(corev1.Resource("services"), ours.Name, errors.New("changed"))
		}
		return false, nil, nil
	})

	// A leftover pod of the old template: nothing to do.
	got, err := w.FollowAdoptedTemplate(t.Context(), adoption())
	require.NoError(t, err)
	assert.Equal(t, TemplateFollowed{Service: ours.Name, From: "5d8f7c9b6"}, got)

	rolled := adoption()
	rolled.PodTemplateHash = "77aa88bb9"
	got, err = w.FollowAdoptedTemplate(t.Context(), rolled)
	require.NoError(t, err)
	assert.Equal(t, TemplateFollowed{Service: ours.Name, From: "5d8f7c9b6", Moved: true}, got)
	assert.Equal(t, 1, conflicts, "a conflicting update is read and judged again")
	svc, err := c.CoreV1().Services("ns").Get(t.Context(), ours.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{AppLabel: "myapp", PodTemplateHashLabel: "77aa88bb9"}, svc.Spec.Selector)
	assert.Equal(t, ours.UID, svc.UID, "updated, not replaced")
	assert.Equal(t, ours.Labels, svc.Labels)

	got, err = w.FollowAdoptedTemplate(t.Context(), rolled)
	require.NoError(t, err, "repeating is safe")
	assert.Equal(t, TemplateFollowed{Service: ours.Name, From: "77aa88bb9"}, got)

	// A pod of the older template (still terminating, or seen late) never moves it back.
	got, err = w.FollowAdoptedTemplate(t.Context(), adoption())
	require.NoError(t, err)
	assert.False(t, got.Moved)
	assert.Contains(t, got.Why, `pod template 5d8f7c9b6 is not Deployment myapp's newest revision ("77aa88bb9" is)`)
	svc, _ = c.CoreV1().Services("ns").Get(t.Context(), ours.Name, metav1.GetOptions{})
	assert.Equal(t, "77aa88bb9", svc.Spec.Selector[PodTemplateHashLabel])

	// Another Deployment's pods of the same version do not take our Service.
	other := rolled
	other.Deployment = "someone-else"
	_, err = w.FollowAdoptedTemplate(t.Context(), other)
	assert.True(t, errors.Is(err, ErrAdoptionConflict), "%v", err)

	// A Service of the team under our name is never changed.
	a := adoption()
	a.Version = "v2"
	name, _ := AdoptedServiceName("myapp", "v2")
	_, err = c.CoreV1().Services("ns").Create(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name,
		Namespace: "ns", Labels: map[string]string{AppLabel: "myapp"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{AppLabel: "myapp", PodTemplateHashLabel: "5d8f7c9b6"}}},
		metav1.CreateOptions{})
	require.NoError(t, err)
	a.PodTemplateHash = "77aa88bb9"
	_, err = w.FollowAdoptedTemplate(t.Context(), a)
	assert.True(t, errors.Is(err, ErrAdoptionConflict), "%v", err)
	team, _ := c.CoreV1().Services("ns").Get(t.Context(), name, metav1.GetOptions{})
	assert.Equal(t, "5d8f7c9b6", team.Spec.Selector[PodTemplateHashLabel])

	// No Service of ours (retired): nothing is created.
	a.Version = "v3"
	got, err = w.FollowAdoptedTemplate(t.Context(), a)
	require.NoError(t, err)
	assert.False(t, got.Moved)
	assert.Contains(t, got.Why, "is gone")
}

// An adopted version's pods are gone for good only when its Deployment's newest revision is
// another template and no pod of its own template is left (terminating ones do not count).
func TestAdoptedBackendGone(t *testing.T) {
	podOf := func(name, hash string, terminating bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Labels: map[string]string{AppLabel: "myapp", PodTemplateHashLabel: hash}}}
		if terminating {
			p.DeletionTimestamp = &metav1.Time{}
			p.Finalizers = []string{"test"}
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		hashes []string // the Deployment's ReplicaSets, by revision; nil: no Deployment
		pods   []*corev1.Pod
		gone   string // "" : not gone
	}{
		{"still runs the adopted template", []string{"5d8f7c9b6"}, nil, ""},
		{"still runs it, beside a later one", []string{"77aa88bb9", "5d8f7c9b6"}, nil, ""},
		{"rolled, an old pod left", []string{"5d8f7c9b6", "77aa88bb9"}, []*corev1.Pod{podOf("a", "5d8f7c9b6", false)}, ""},
		{"rolled, old pods terminating", []string{"5d8f7c9b6", "77aa88bb9"},
			[]*corev1.Pod{podOf("a", "5d8f7c9b6", true), podOf("b", "77aa88bb9", false)},
			"Deployment myapp rolled in place from pod template 5d8f7c9b6 to 77aa88bb9 and no pod of 5d8f7c9b6 is left"},
		{"Deployment deleted, no pod", nil, nil, "Deployment myapp is gone and no pod of pod template 5d8f7c9b6 is left"},
		{"Deployment deleted, a pod left", nil, []*corev1.Pod{podOf("a", "5d8f7c9b6", false)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset()
			if tc.hashes != nil {
				for _, o := range adoptedObjects("myapp", 2, tc.hashes...) {
					require.NoError(t, c.Tracker().Add(o))
				}
			}
			for _, p := range tc.pods {
				require.NoError(t, c.Tracker().Add(p))
			}
			w := Workloads{Client: c}
			_, err := w.EnsureAdoptedService(t.Context(), adoption())
			require.NoError(t, err)
			gone, why, err := w.AdoptedBackendGone(t.Context(), "ns", "myapp", "v1.4.2", "myapp")
			require.NoError(t, err)
			assert.Equal(t, tc.gone != "", gone, why)
			assert.Equal(t, tc.gone, why)
		})
	}
	gone, why, err := Workloads{Client: fake.NewClientset()}.AdoptedBackendGone(t.Context(), "ns", "myapp", "v1.4.2", "myapp")
	require.NoError(t, err)
	assert.True(t, gone, "our Service deleted")
	assert.Contains(t, why, "is gone")
}
