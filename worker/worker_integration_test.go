//go:build integration

package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// TestRunStopsWhenItsContextEnds runs the worker against the real Temporal server, waits until
// it polls its task queue, then cancels its context (what SIGTERM does in the binary): Run must
// return nil, and the worker stop polling.
func TestRunStopsWhenItsContextEnds(t *testing.T) {
	vals := testenv.Require(t, testenv.TemporalAddr, testenv.Kubeconfig)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := client.Dial(client.Options{HostPort: vals[0], Logger: tlog.NewStructuredLogger(quiet)})
	require.NoError(t, err)
	defer c.Close()
	clients, err := kube.NewClients(vals[1])
	require.NoError(t, err)
	queue := fmt.Sprintf("skewguard-worker-test-%08x", rand.Uint32())
	acts := &activities.Activities{Registry: registrytest.New(t), Workloads: kube.Workloads{Client: clients.Kube}, Log: quiet}
	w := New(c, queue, acts, Options{Logger: quiet, StopTimeout: time.Second})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	polling := func() bool {
		d, err := c.DescribeTaskQueue(t.Context(), queue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		return err == nil && len(d.GetPollers()) > 0
	}
	require.Eventually(t, polling, 20*time.Second, 100*time.Millisecond, "the worker polls its task queue")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "a cancelled context is a clean stop")
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
