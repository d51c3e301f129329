//go:build integration

package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/internal/testenv"
)

// The keep-alive tests run activities with a short heartbeat timeout and a long start-to-close
// timeout, as the lifecycle does, on the real Temporal server.
const (
	holdHeartbeat    = 2 * time.Second
	holdStartToClose = 10 * time.Minute
)

// holdInput: the activity runs for Run; on attempt 1 with Forever set, until cancelled.
type holdInput struct {
	Run     time.Duration
	Forever bool
}

// hold neither heartbeats nor returns quickly: only the worker's keepAlive keeps it alive.
func hold(ctx context.Context, in holdInput) (int32, error) {
	attempt := activity.GetInfo(ctx).Attempt
	if in.Forever && attempt == 1 {
		<-ctx.Done()
		return attempt, ctx.Err()
	}
	select {
	case <-ctx.Done():
		return attempt, ctx.Err()
	case <-time.After(in.Run):
	}
	return attempt, nil
}

func holdWorkflow(ctx workflow.Context, in holdInput) (int32, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: holdStartToClose,
		HeartbeatTimeout:    holdHeartbeat,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 100 * time.Millisecond, MaximumAttempts: 3},
	})
	var attempt int32
	err := workflow.ExecuteActivity(ctx, hold, in).Get(ctx, &attempt)
	return attempt, err
}

func holdWorker(c client.Client, queue string) worker.Worker {
	w := worker.New(c, queue, worker.Options{Interceptors: []interceptor.WorkerInterceptor{&keepAlive{}}})
	w.RegisterWorkflow(holdWorkflow)
	w.RegisterActivity(hold)
	return w
}

const keepAliveChildEnv = "SKEWGUARD_TEST_KEEPALIVE_WORKER"

// TestMain runs the test binary as a bare worker process when asked to (the killed worker of
// TestActivitiesOfAKilledWorkerAreRetriedWithinTheHeartbeatTimeout), else the tests.
func TestMain(m *testing.M) {
	if queue := os.Getenv(keepAliveChildEnv); queue != "" {
		c, err := client.Dial(client.Options{HostPort: os.Getenv(testenv.TemporalAddr), Logger: quietTemporal()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := holdWorker(c, queue).Run(worker.InterruptCh()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func quietTemporal() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func dialTemporal(t *testing.T) (client.Client, string) {
	t.Helper()
	addr := testenv.Require(t, testenv.TemporalAddr)[0]
	c, err := client.Dial(client.Options{HostPort: addr, Logger: quietTemporal()})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, fmt.Sprintf("skewguard-keepalive-%08x", rand.Uint32())
}

// An activity that runs three heartbeat timeouts without heartbeating itself finishes in its
// first attempt: the worker heartbeats it. Without keepAlive, Temporal times it out after one
// heartbeat timeout, and every retry the same way.
func TestKeepAliveHeartbeatsALongActivity(t *testing.T) {
	c, queue := dialTemporal(t)
	w := holdWorker(c, queue)
	require.NoError(t, w.Start())
	defer w.Stop()

	run, err := c.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{TaskQueue: queue}, holdWorkflow,
		holdInput{Run: 3 * holdHeartbeat})
	require.NoError(t, err)
	var attempt int32
	require.NoError(t, run.Get(t.Context(), &attempt), "the activity outlives its heartbeat timeout only if heartbeated")
	assert.Equal(t, int32(1), attempt)
}

// A worker killed with SIGKILL while it runs an activity stops heartbeating it, so Temporal
// retries the activity on another worker after the heartbeat timeout, not after the
// start-to-close timeout (ten minutes here).
func TestActivitiesOfAKilledWorkerAreRetriedWithinTheHeartbeatTimeout(t *testing.T) {
	c, queue := dialTemporal(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), keepAliveChildEnv+"="+queue)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	run, err := c.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{TaskQueue: queue}, holdWorkflow,
		holdInput{Forever: true, Run: 10 * time.Millisecond})
	require.NoError(t, err)
	started := func() bool {
		d, err := c.DescribeWorkflowExecution(t.Context(), run.GetID(), run.GetRunID())
		if err != nil || len(d.GetPendingActivities()) == 0 {
			return false
		}
		return d.GetPendingActivities()[0].GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED
	}
	require.Eventually(t, started, 30*time.Second, 50*time.Millisecond, "the child worker runs the activity")
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()

	w := holdWorker(c, queue)
	require.NoError(t, w.Start())
	defer w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), holdStartToClose/4)
	defer cancel()
	var attempt int32
	require.NoError(t, run.Get(ctx, &attempt), "retried long before the start-to-close timeout")
	assert.Equal(t, int32(2), attempt, "the killed worker's attempt timed out on its heartbeat and was retried once")
}
