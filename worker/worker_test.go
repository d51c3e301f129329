package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
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
	_, err := Activities(cfg, Deps{})
	require.Error(t, err)
	for _, want := range []string{"no Temporal client", "no registry", "no Kubernetes client"} {
		assert.ErrorContains(t, err, want)
	}

	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer lazy.Close()
	deps := Deps{Temporal: lazy, Registry: &registry.Store{}, Kube: &kube.Clients{Kube: fake.NewClientset()}}
	on := defaultConfig(t, map[string]string{"PLT_FEATURE_SKEW_PROTECTION": "true", "PLT_SKEW_GATEWAY_PARENT_REFS": "gw/main"})
	_, err = Activities(on, deps)
	assert.ErrorContains(t, err, "no Gateway API client", "routes need the Gateway API when the feature is on")

	acts, err := Activities(cfg, deps)
	require.NoError(t, err)
	assert.Nil(t, acts.Routes, "feature off: no route writer at all")
	assert.Nil(t, acts.Traffic, "no PROMETHEUS_URL: no querier")

	withProm := defaultConfig(t, map[string]string{"PROMETHEUS_URL": "http://127.0.0.1:9090", "PLT_SKEW_TRAFFIC_PRESET": "traefik"})
	acts, err = Activities(withProm, deps)
	require.NoError(t, err)
	require.NotNil(t, acts.Traffic)
	assert.Contains(t, acts.Traffic.Template().String(), "traefik_service_requests_total")

	bad := defaultConfig(t, map[string]string{"PROMETHEUS_URL": "http://127.0.0.1:9090", "PLT_SKEW_TRAFFIC_QUERY": "{{.Nope}}"})
	_, err = Activities(bad, deps)
	assert.ErrorContains(t, err, "render traffic query")
}

func TestNewRegistersTheLifecycle(t *testing.T) {
	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer lazy.Close()
	w, err := New(defaultConfig(t, nil), Deps{Temporal: lazy, Registry: &registry.Store{}, Kube: &kube.Clients{Kube: fake.NewClientset()}})
	require.NoError(t, err)
	require.NotNil(t, w)
}

func TestFailedActivityAttemptsAreCounted(t *testing.T) {
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&failureCounter{}}})
	flaky := func(_ context.Context, fail bool) error {
		if fail {
			return errors.New("boom")
		}
		return nil
	}
	env.RegisterActivityWithOptions(flaky, activity.RegisterOptions{Name: "flaky"})
	counter := metrics.ActivityFailures.WithLabelValues("flaky")
	before := count(t, counter)

	_, err := env.ExecuteActivity("flaky", true)
	require.Error(t, err)
	assert.Equal(t, before+1, count(t, counter))
	_, err = env.ExecuteActivity("flaky", false)
	require.NoError(t, err)
	assert.Equal(t, before+1, count(t, counter), "a success is not counted")
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
