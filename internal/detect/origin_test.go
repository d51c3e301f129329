package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skewguard/skewguard/internal/registry"
)

func deployment(ns, name string, created time.Time) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(created)}}
}

// replicaSet returns a ReplicaSet controlled by owner (nil: none).
func replicaSet(ns, name string, owner *appsv1.Deployment, created time.Time) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(created)}}
	if owner != nil {
		rs.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("Deployment"))}
	}
	return rs
}

func ownedBy(p *corev1.Pod, rs *appsv1.ReplicaSet) *corev1.Pod {
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}
	return p
}

// Three versions found at once (skew protection switched on over running versions): each start
// request carries its Deployment's creation time, whatever order the pods are detected in and
// however their own creation times fall.
func TestStartRequestsCarryDeployTimes(t *testing.T) {
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var objs []runtime.Object
	var pods []*corev1.Pod
	deployed := map[string]time.Time{}
	podCreated := map[string]time.Time{}
	for i, v := range []string{"1", "2", "3"} {
		at := base.Add(time.Duration(i) * time.Hour)
		dep := deployment("shop", "web-v"+v, at)
		rs := replicaSet("shop", "web-v"+v+"-5d8f", dep, at.Add(time.Second))
		// The pods were created in the reverse order (say, v1's were rescheduled last).
		created := base.Add(10*time.Hour - time.Duration(i)*time.Hour)
		p := ownedBy(pod("shop", "web-v"+v+"-5d8f-x", versionLabels("web", v), true, created), rs)
		deployed[v], podCreated[v] = at, created
		objs = append(objs, dep, rs, p, service("shop", "web-v"+v, versionLabels("web", v)))
		pods = append(pods, p)
	}
	c, _ := startedCache(t, objs...)
	reg := newFakeRegistry()
	st := &fakeStarter{reg: reg}
	d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true})
	for _, i := range []int{2, 0, 1} {
		res, err := d.Detect(context.Background(), pods[i], SourcePodWatch, Hint{})
		require.NoError(t, err)
		require.Equal(t, OutcomeStarted, res.Outcome)
	}

	reqs := st.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		assert.Equal(t, deployed[r.Ref.Label], r.DeployedAt, "version %s", r.Ref.Label)
		assert.Equal(t, podCreated[r.Ref.Label], r.PodsCreatedAt, "version %s", r.Ref.Label)
	}
	slices.SortFunc(reqs, func(a, b StartRequest) int { return a.DeployedAt.Compare(b.DeployedAt) })
	var order []string
	for _, r := range reqs {
		order = append(order, r.Ref.Label)
	}
	assert.Equal(t, []string{"1", "2", "3"}, order, "ordered by DeployedAt, the versions come in the order they were deployed")
}

func TestOriginOf(t *testing.T) {
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	dep := deployment("shop", "web-v1", base)
	rs := replicaSet("shop", "web-v1-abc", dep, base.Add(time.Minute))
	orphanRS := replicaSet("shop", "web-v1-bare", nil, base.Add(2*time.Minute))
	lbl := versionLabels("web", "1")
	at := func(d time.Duration) time.Time { return base.Add(d) }

	namesake := replicaSet("shop", "web-v1-abc", dep, base)
	namesake.UID = "uid-of-an-older-namesake"

	tests := []struct {
		name       string
		objs       []runtime.Object
		pod        *corev1.Pod
		deployedAt time.Time
		podCreated time.Time
	}{
		{name: "pod → ReplicaSet → Deployment", objs: []runtime.Object{dep, rs},
			pod: ownedBy(pod("shop", "p", lbl, true, at(time.Hour)), rs), deployedAt: base, podCreated: at(time.Hour)},
		{name: "a ReplicaSet without a Deployment", objs: []runtime.Object{orphanRS},
			pod: ownedBy(pod("shop", "p", lbl, true, at(time.Hour)), orphanRS), deployedAt: at(2 * time.Minute), podCreated: at(time.Hour)},
		{name: "the Deployment is not cached: the ReplicaSet's time", objs: []runtime.Object{rs},
			pod: ownedBy(pod("shop", "p", lbl, true, at(time.Hour)), rs), deployedAt: at(time.Minute), podCreated: at(time.Hour)},
		{name: "a bare pod", pod: pod("shop", "p", lbl, true, at(time.Hour)), podCreated: at(time.Hour)},
		{name: "a ReplicaSet of the same name but another UID is not the owner", objs: []runtime.Object{dep, namesake},
			pod: ownedBy(pod("shop", "p", lbl, true, at(time.Hour)), rs), podCreated: at(time.Hour)},
		{name: "the earliest Ready pod of the version",
			objs: []runtime.Object{
				pod("shop", "older-ready", lbl, true, at(30*time.Minute)),
				pod("shop", "oldest-not-ready", lbl, false, at(10*time.Minute)),
				pod("shop", "other-version", versionLabels("web", "2"), true, at(5*time.Minute)),
			},
			pod: pod("shop", "p", lbl, true, at(time.Hour)), podCreated: at(30 * time.Minute)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := startedCache(t, append(tc.objs, tc.pod)...)
			o := c.OriginOf(tc.pod)
			assert.Equal(t, tc.deployedAt, o.DeployedAt)
			assert.Equal(t, tc.podCreated, o.PodsCreatedAt)
		})
	}
}

func TestCacheSlimsOwners(t *testing.T) {
	now := time.Now()
	dep := deployment("shop", "web-v1", now)
	dep.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	dep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	dep.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "img"}}
	rs := replicaSet("shop", "web-v1-abc", dep, now)
	rs.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "img"}}
	rs.Labels = map[string]string{"pod-template-hash": "abc"}
	c, _ := startedCache(t, dep, rs)

	gotDep, ok := c.deployment("shop", "web-v1")
	require.True(t, ok)
	assert.Empty(t, gotDep.Annotations)
	assert.Empty(t, gotDep.ManagedFields)
	assert.Empty(t, gotDep.Spec.Template.Spec.Containers)
	assert.Equal(t, dep.UID, gotDep.UID)
	gotRS, ok := c.replicaSet("shop", "web-v1-abc")
	require.True(t, ok)
	assert.Empty(t, gotRS.Spec.Template.Spec.Containers)
	assert.Empty(t, gotRS.Labels)
	assert.Equal(t, rs.OwnerReferences, gotRS.OwnerReferences, "the owner chain is kept")
	assert.Equal(t, rs.CreationTimestamp, gotRS.CreationTimestamp)
}

// A version validation refuses is started all the same, with the reason, so that the workflow
// records it; the outcome says so.
func TestValidateRefusalIsStartedWithItsReason(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		validate func(StartRequest) error
		outcome  Outcome
		invalid  string
	}{
		{name: "no validation", outcome: OutcomeStarted},
		{name: "accepted", validate: func(StartRequest) error { return nil }, outcome: OutcomeStarted},
		{name: "refused", outcome: OutcomeInvalid, invalid: `path prefix "/a b" is not a valid path`,
			validate: func(r StartRequest) error {
				if r.ServiceName != "web-v9" {
					return fmt.Errorf("validation saw service %q", r.ServiceName)
				}
				return errors.New(`path prefix "/a b" is not a valid path`)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("shop", "web-v9-a", versionLabels("web", "9"), true, now)
			c, _ := startedCache(t, p, service("shop", "web-v9", versionLabels("web", "9")))
			reg := newFakeRegistry()
			st := &fakeStarter{reg: reg}
			d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true, Validate: tc.validate})
			res, err := d.Detect(context.Background(), p, SourceAgent, Hint{})
			require.NoError(t, err)
			assert.Equal(t, tc.outcome, res.Outcome)
			assert.Equal(t, "9", res.DeploymentVersion)
			require.Len(t, st.requests(), 1, "refused or not, the version is started")
			assert.Equal(t, tc.invalid, st.requests()[0].Invalid)
			assert.Equal(t, tc.invalid, res.Reason)
			assert.Equal(t, registry.VersionRef{Namespace: "shop", App: "web", Label: "9"}, st.requests()[0].Ref)
		})
	}
}
