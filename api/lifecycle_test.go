package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestActionAnswers202WhenTheWorkflowIsStuck is the API's answer to an action on a workflow
// whose Update handler blocks: 202 within the wait, with the update ID and a link (body and
// Location) to the version, which a GET then shows.
func TestActionAnswers202WhenTheWorkflowIsStuck(t *testing.T) {
	c := &mocks.Client{}
	h := &mocks.WorkflowUpdateHandle{}
	var sentID string
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		sentID = args.Get(1).(client.UpdateWorkflowOptions).UpdateID
	}).Return(h, nil).Once()
	h.On("Get", mock.Anything, mock.Anything).Run(blockUntilDone).Return(context.DeadlineExceeded).Once()
	hs := newHarness(t, harnessOptions{lifecycle: workflows.NewClient(c, "q", 200*time.Millisecond)})
	hs.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "1", State: registry.Draining})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := hs.request("POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, `{"reason":"stuck"}`).WithContext(ctx)
	rec := hs.serve(req)
	require.NoError(t, ctx.Err(), "the action waited until the test's deadline")
	require.Equal(t, http.StatusAccepted, rec.Code, "body: %s", rec.Body.String())
	assert.Equal(t, "/api/v1/apps/shop/web/versions/1", rec.Header().Get("Location"))
	out := decode[ActionOutcome](t, rec)
	assert.Equal(t, ActionOutcome{Version: "1", Code: CodeActionPending, Action: workflows.UpdateExpire, UpdateID: sentID,
		Stage: workflows.StageAccepted, Link: "/api/v1/apps/shop/web/versions/1", Message: out.Message}, out)
	assert.Contains(t, out.Message, "within 200ms")
	assert.NotEmpty(t, sentID)

	got := hs.do(t, "GET", rec.Header().Get("Location"), tokenAdmin, "")
	require.Equal(t, http.StatusOK, got.Code, "the link resolves: %s", got.Body.String())
	assert.Equal(t, registry.Draining, decode[registry.Version](t, got).State)
}

// blockUntilDone makes a mocked call wait, like a Temporal long poll, until its context ends.
func blockUntilDone(args mock.Arguments) { <-args.Get(0).(context.Context).Done() }
