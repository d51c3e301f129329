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

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/metrics"
)

func TestNewRegistersTheLifecycle(t *testing.T) {
	lazy, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	defer lazy.Close()
	w := New(lazy, "skewguard-worker-test", &activities.Activities{}, Options{})
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
