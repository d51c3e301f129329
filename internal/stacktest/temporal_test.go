//go:build integration

package stacktest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/internal/testenv"
)

// The search attributes hack/stack.sh registers; a workflow that upserts an unregistered one
// fails its workflow task forever, so this workflow completing proves they exist.
var (
	saNamespace = temporal.NewSearchAttributeKeyKeyword("SkewNamespace")
	saApp       = temporal.NewSearchAttributeKeyKeyword("SkewApp")
	saVersion   = temporal.NewSearchAttributeKeyKeyword("SkewVersion")
	saState     = temporal.NewSearchAttributeKeyKeyword("SkewState")
)

func smokeWorkflow(ctx workflow.Context, name string) (string, error) {
	err := workflow.UpsertTypedSearchAttributes(ctx,
		saNamespace.ValueSet("stacktest"), saApp.ValueSet(name), saVersion.ValueSet("1"), saState.ValueSet("Active"))
	if err != nil {
		return "", err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var greeting string
	err = workflow.ExecuteActivity(ctx, smokeActivity, name).Get(ctx, &greeting)
	return greeting, err
}

func smokeActivity(_ context.Context, name string) (string, error) {
	return "hello " + name, nil
}

func TestTemporalWorkflowRunsToCompletion(t *testing.T) {
	quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	c, err := client.Dial(client.Options{HostPort: testenv.Get(t, testenv.TemporalAddr), Namespace: "default", Logger: quiet})
	require.NoError(t, err, "dial the stack's Temporal")
	defer c.Close()

	queue := "stacktest-" + randomSuffix(t)
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflow(smokeWorkflow)
	w.RegisterActivity(smokeActivity)
	require.NoError(t, w.Start())
	defer w.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: queue, TaskQueue: queue}, smokeWorkflow, queue)
	require.NoError(t, err)
	var got string
	require.NoError(t, run.Get(ctx, &got), "workflow result")
	assert.Equal(t, "hello "+queue, got)

	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, desc.GetWorkflowExecutionInfo().GetStatus())
	fields := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	for _, k := range []string{"SkewNamespace", "SkewApp", "SkewVersion", "SkewState"} {
		assert.Contains(t, fields, k, fmt.Sprintf("search attribute %s recorded", k))
	}
}
