package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

func defaultConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(t.Context(), lookuper(env))
	require.NoError(t, err)
	return cfg
}

type lookuper map[string]string

func (l lookuper) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func TestActivitiesNeedTheirClients(t *testing.T) {
	cfg := defaultConfig(t, nil)
	_, err := newActivities(cfg, workerDeps{})
	require.Error(t, err)
	for _, want := range []string{"no Temporal client", "no registry", "no Kubernetes client"} {
		assert.ErrorContains(t, err, want)
	}

	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer lazy.Close()
	deps := workerDeps{Temporal: lazy, Registry: &registry.Store{}, Kube: &kube.Clients{Kube: fake.NewClientset()}}
	on := defaultConfig(t, map[string]string{"PLT_FEATURE_SKEW_PROTECTION": "true", "PLT_SKEW_GATEWAY_PARENT_REFS": "gw/main"})
	_, err = newActivities(on, deps)
	assert.ErrorContains(t, err, "no Gateway API client", "routes need the Gateway API when the feature is on")

	acts, err := newActivities(cfg, deps)
	require.NoError(t, err)
	assert.Nil(t, acts.Routes, "feature off: no route writer at all")
	assert.Nil(t, acts.Traffic, "no PROMETHEUS_URL: no querier")

	withProm := defaultConfig(t, map[string]string{"PROMETHEUS_URL": "http://127.0.0.1:9090", "PLT_SKEW_TRAFFIC_PRESET": "traefik"})
	acts, err = newActivities(withProm, deps)
	require.NoError(t, err)
	require.NotNil(t, acts.Traffic)
	assert.Contains(t, acts.Traffic.Template().String(), "traefik_service_requests_total")

	// In one process (serve) the worker waits on the informer cache the API counts pods from.
	shared, err := kube.NewReadinessWatcher(deps.Kube.Kube, nil)
	require.NoError(t, err)
	withShared := deps
	withShared.Readiness = shared
	acts, err = newActivities(cfg, withShared)
	require.NoError(t, err)
	assert.Same(t, shared, acts.Readiness)
	acts, err = newActivities(cfg, deps)
	require.NoError(t, err)
	assert.NotSame(t, shared, acts.Readiness)

	bad := defaultConfig(t, map[string]string{"PROMETHEUS_URL": "http://127.0.0.1:9090", "PLT_SKEW_TRAFFIC_QUERY": "{{.Nope}}"})
	_, err = newActivities(bad, deps)
	assert.ErrorContains(t, err, "render traffic query")
}

func TestNewWorkerRegistersTheLifecycle(t *testing.T) {
	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer lazy.Close()
	w, err := newWorker(defaultConfig(t, nil), workerDeps{Temporal: lazy, Registry: &registry.Store{}, Kube: &kube.Clients{Kube: fake.NewClientset()}})
	require.NoError(t, err)
	require.NotNil(t, w)
}
