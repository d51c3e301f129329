//go:build integration

package workflows

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/testenv"
)

const queryAccepted = "accepted-updates"

// stuckWorkflow stands for a version's workflow stuck in a long wait: its expire handler
// accepts (unless the reason is "refuse", which its validator refuses) and never finishes.
func stuckWorkflow(ctx workflow.Context) error {
	var accepted []string
	if err := workflow.SetQueryHandler(ctx, queryAccepted, func() ([]string, error) { return accepted, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateExpire,
		func(ctx workflow.Context, _ ActionRequest) (ActionResult, error) {
			accepted = append(accepted, workflow.GetCurrentUpdateInfo(ctx).ID)
			return ActionResult{}, workflow.Await(ctx, func() bool { return false })
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, req ActionRequest) error {
			if req.Reason == "refuse" {
				return temporal.NewApplicationError("refused by the validator", "")
			}
			return nil
		}})
	if err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// TestActionWaitOnRealTemporal: on the stack's Temporal, an action on a workflow whose handler
// never finishes is pending (accepted) once the wait ran out, with the Update's ID; a validator
// refusal is still synchronous; a workflow that no worker runs leaves the action pending (sent).
func TestActionWaitOnRealTemporal(t *testing.T) {
	tc, err := client.Dial(client.Options{
		HostPort:  testenv.Get(t, testenv.TemporalAddr),
		Namespace: envOr("TEMPORAL_NAMESPACE", "default"),
		Logger:    tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	queue := "sgapi-wait-" + randomHex(4)
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(stuckWorkflow, workflow.RegisterOptions{Name: "sgapi-stuck"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	start := func(t *testing.T, queue string) registry.VersionRef {
		ref := registry.VersionRef{Namespace: "sgapi-wait", App: "app-" + randomHex(4), Label: "1"}
		_, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: WorkflowID(ref),
			TaskQueue: queue, WorkflowExecutionTimeout: 5 * time.Minute}, "sgapi-stuck")
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), WorkflowID(ref), "", "test over") })
		return ref
	}
	const wait = 2 * time.Second
	tp := NewClient(tc, queue, wait)

	t.Run("handler never finishes", func(t *testing.T) {
		ref := start(t, queue)
		began := time.Now()
		_, err := tp.Act(context.Background(), ref, UpdateExpire, ActionRequest{Reason: "block"})
		var pending *PendingError
		require.ErrorAs(t, err, &pending)
		assert.Less(t, time.Since(began), wait+5*time.Second)
		assert.Equal(t, StageAccepted, pending.Stage)
		v, err := tc.QueryWorkflow(context.Background(), WorkflowID(ref), "", queryAccepted)
		require.NoError(t, err)
		var ids []string
		require.NoError(t, v.Get(&ids))
		assert.Equal(t, []string{pending.UpdateID}, ids, "the pending update is the one the workflow runs")
	})
	t.Run("validator refuses at once", func(t *testing.T) {
		ref := start(t, queue)
		began := time.Now()
		_, err := tp.Act(context.Background(), ref, UpdateExpire, ActionRequest{Reason: "refuse"})
		var rejected *RejectedError
		require.ErrorAs(t, err, &rejected, "%v", err)
		assert.Equal(t, "refused by the validator", rejected.Message)
		assert.Less(t, time.Since(began), wait, "a refusal does not wait for the wait to run out")
	})
	t.Run("no worker", func(t *testing.T) {
		ref := start(t, queue+"-nobody")
		_, err := tp.Act(context.Background(), ref, UpdateExpire, ActionRequest{Reason: "block"})
		var pending *PendingError
		require.True(t, errors.As(err, &pending), "%v", err)
		assert.Equal(t, StageSent, pending.Stage)
	})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
