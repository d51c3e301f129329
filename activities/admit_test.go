package activities

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// admitRegistry records the version and serves a policy.
type admitRegistry struct {
	fakeRegistry
	observed  int
	policyErr error
}

func (r *admitRegistry) ObserveVersion(_ context.Context, o registry.Observation, _ registry.Actor) (registry.Version, bool, error) {
	r.observed++
	return registry.Version{ID: 7, Life: 1, Namespace: o.Ref.Namespace, App: o.Ref.App, Label: o.Ref.Label,
		State: registry.Pending, Placement: registry.Placement{ServiceName: o.ServiceName, ServicePort: o.ServicePort}}, true, nil
}

func (r *admitRegistry) GetPolicy(context.Context, registry.AppRef) (registry.Policy, error) {
	return registry.Policy{GracePeriodMS: ptr.To(int64(90_000))}, r.policyErr
}

func TestAdmit(t *testing.T) {
	ref := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"}
	in := ObserveInput{Ref: ref, Placement: registry.Placement{ServiceName: "myapp-1", ServicePort: 80}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	slice := func(ready bool) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1-x", Labels: map[string]string{discoveryv1.LabelServiceName: "myapp-1"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.19.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
		}
	}
	watcher := func(t *testing.T, ready bool) *kube.ReadinessWatcher {
		w, err := kube.NewReadinessWatcher(fake.NewClientset(svc, slice(ready)), []string{"shop"})
		require.NoError(t, err)
		t.Cleanup(w.Stop)
		w.Start(context.Background())
		require.Eventually(t, w.HasSynced, 5*time.Second, 5*time.Millisecond)
		return w
	}

	t.Run("records, loads the policy, and finds the Service ready", func(t *testing.T) {
		reg := &admitRegistry{}
		a := &Activities{Registry: reg, Config: config.Config{}, Readiness: watcher(t, true)}
		res, err := a.Admit(t.Context(), in)
		require.NoError(t, err)
		assert.Equal(t, 1, reg.observed)
		assert.Equal(t, int64(7), res.Version.ID)
		assert.Equal(t, 90*time.Second, res.Policy.GracePeriod, "the app's own policy, resolved")
		require.NotNil(t, res.Readiness)
		assert.True(t, res.Readiness.Ready)
		assert.Equal(t, 1, res.Readiness.Endpoints)
	})
	t.Run("not ready: nothing to act on", func(t *testing.T) {
		a := &Activities{Registry: &admitRegistry{}, Readiness: watcher(t, false)}
		res, err := a.Admit(t.Context(), in)
		require.NoError(t, err)
		assert.Nil(t, res.Readiness, "the lifecycle waits with WaitReady")
	})
	t.Run("no watcher, or a namespace it does not watch: unknown", func(t *testing.T) {
		res, err := (&Activities{Registry: &admitRegistry{}}).Admit(t.Context(), in)
		require.NoError(t, err)
		assert.Nil(t, res.Readiness)
		other := in
		other.Ref.Namespace = "elsewhere"
		res, err = (&Activities{Registry: &admitRegistry{}, Readiness: watcher(t, true)}).Admit(t.Context(), other)
		require.NoError(t, err)
		assert.Nil(t, res.Readiness)
	})
	t.Run("a watcher not synced yet is not waited for", func(t *testing.T) {
		w, err := kube.NewReadinessWatcher(fake.NewClientset(svc, slice(true)), []string{"shop"})
		require.NoError(t, err)
		defer w.Stop()
		res, err := (&Activities{Registry: &admitRegistry{}, Readiness: w}).Admit(t.Context(), in)
		require.NoError(t, err)
		assert.Nil(t, res.Readiness)
	})
	t.Run("a registry failure fails it, to be retried", func(t *testing.T) {
		_, err := (&Activities{Registry: &admitRegistry{policyErr: errors.New("connection refused")}}).Admit(t.Context(), in)
		require.ErrorContains(t, err, "connection refused")
	})
}
