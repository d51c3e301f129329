package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

func TestTemporalAct(t *testing.T) {
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	actor := registry.Actor{Type: registry.ActorUser, ID: "alice"}
	tests := []struct {
		name      string
		updateErr error // from UpdateWorkflow
		getErr    error // from the handle
		wantErr   func(t *testing.T, err error)
	}{
		{name: "completed"},
		{name: "validator refused", getErr: temporal.NewApplicationError("version 1 is the Active version", ""),
			wantErr: func(t *testing.T, err error) {
				var rej *RejectedError
				require.ErrorAs(t, err, &rej)
				assert.Equal(t, "version 1 is the Active version", rej.Message)
			}},
		{name: "workflow gone", updateErr: serviceerror.NewNotFound("workflow execution already completed"),
			wantErr: func(t *testing.T, err error) { assert.ErrorIs(t, err, ErrWorkflowNotRunning) }},
		{name: "unavailable", updateErr: serviceerror.NewUnavailable("connection refused"),
			wantErr: func(t *testing.T, err error) {
				var rej *RejectedError
				assert.False(t, errors.As(err, &rej))
				assert.NotErrorIs(t, err, ErrWorkflowNotRunning)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &mocks.Client{}
			h := &mocks.WorkflowUpdateHandle{}
			c.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
				req, ok := o.Args[0].(workflows.ActionRequest)
				return o.WorkflowID == "skew/shop/web/1" && o.UpdateName == workflows.UpdateExpire &&
					o.WaitForStage == client.WorkflowUpdateStageAccepted && o.UpdateID != "" && ok && req.Actor == actor && req.Reason == "why"
			})).Return(h, tc.updateErr).Once()
			h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
				*args.Get(1).(*workflows.ActionResult) = workflows.ActionResult{State: registry.Expired, Message: "expired"}
			}).Return(tc.getErr).Maybe()

			res, err := NewTemporal(c, "skewguard", 0).Act(context.Background(), ref, ActionExpire, ActionRequest{Actor: actor, Reason: "why"})
			c.AssertExpectations(t)
			if tc.wantErr != nil {
				require.Error(t, err)
				tc.wantErr(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, ActionResult{State: registry.Expired, Message: "expired"}, res)
		})
	}
}

func TestTemporalStartVersion(t *testing.T) {
	c := &mocks.Client{}
	c.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
		return o.ID == "skew/shop/web/2" && o.TaskQueue == "q"
	}), workflows.WorkflowType, mock.MatchedBy(func(in workflows.LifecycleInput) bool {
		return in.ServiceName == "web-v2" && in.ServicePort == 80 && in.PathPrefix == "/web"
	})).Return(&mocks.WorkflowRun{}, nil).Once()
	err := NewTemporal(c, "q", 0).StartVersion(context.Background(), detectStart("shop", "web", "2"))
	require.NoError(t, err)
	c.AssertExpectations(t)
}

func detectStart(ns, app, version string) detect.StartRequest {
	return detect.StartRequest{Ref: registry.VersionRef{Namespace: ns, App: app, Label: version},
		Placement: registry.Placement{ServiceName: app + "-v" + version, ServicePort: 80, PathPrefix: "/" + app},
		Actor:     registry.Actor{Type: registry.ActorPod, ID: ns + "/" + app}}
}

// blockUntilDone makes a mocked call wait, like a Temporal long poll, until its context ends.
func blockUntilDone(args mock.Arguments) { <-args.Get(0).(context.Context).Done() }

// TestTemporalActWaitRunsOut: every wait of Act ends with the Temporal's wait. An Update the
// workflow accepted but did not finish is pending at stage accepted; one it never took up is
// pending at stage sent while Temporal answers, and an error when Temporal does not.
func TestTemporalActWaitRunsOut(t *testing.T) {
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	tests := []struct {
		name      string
		accepted  bool  // UpdateWorkflow returns (the workflow accepted the Update)
		healthErr error // of CheckHealth, when not accepted
		wantStage string
	}{
		{name: "handler blocks", accepted: true, wantStage: StageAccepted},
		{name: "never accepted", wantStage: StageSent},
		{name: "never accepted, Temporal down", healthErr: serviceerror.NewUnavailable("connection refused")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &mocks.Client{}
			h := &mocks.WorkflowUpdateHandle{}
			var sentID string
			call := c.On("UpdateWorkflow", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
				sentID = args.Get(1).(client.UpdateWorkflowOptions).UpdateID
			})
			if tc.accepted {
				call.Return(h, nil).Once()
				h.On("Get", mock.Anything, mock.Anything).Run(blockUntilDone).Return(context.DeadlineExceeded).Once()
			} else {
				call.Run(func(args mock.Arguments) {
					sentID = args.Get(1).(client.UpdateWorkflowOptions).UpdateID
					blockUntilDone(args)
				}).Return(nil, context.DeadlineExceeded).Once()
				c.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, tc.healthErr).Once()
			}
			// The test's own deadline: far beyond the wait, hit only if Act does not bound it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := NewTemporal(c, "q", 100*time.Millisecond).Act(ctx, ref, ActionExpire, ActionRequest{})
			require.NoError(t, ctx.Err(), "Act waited until the caller's deadline")
			assert.Less(t, time.Since(start), 3*time.Second)
			c.AssertExpectations(t)
			var pending *PendingError
			if tc.wantStage == "" {
				require.Error(t, err)
				assert.False(t, errors.As(err, &pending), "Temporal down is not pending: %v", err)
				return
			}
			require.ErrorAs(t, err, &pending)
			assert.Equal(t, tc.wantStage, pending.Stage)
			assert.Equal(t, sentID, pending.UpdateID)
			assert.Contains(t, pending.UpdateID, "skewguard-expire-")
			assert.Equal(t, 100*time.Millisecond, pending.Wait)
		})
	}
}

// TestTemporalActCallerGone: the caller's own context ending is not a pending action.
func TestTemporalActCallerGone(t *testing.T) {
	c := &mocks.Client{}
	h := &mocks.WorkflowUpdateHandle{}
	c.On("UpdateWorkflow", mock.Anything, mock.Anything).Return(h, nil).Once()
	ctx, cancel := context.WithCancel(context.Background())
	h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		cancel()
		blockUntilDone(args)
	}).Return(context.Canceled).Once()
	_, err := NewTemporal(c, "q", time.Minute).Act(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "1"},
		ActionExpire, ActionRequest{})
	require.Error(t, err)
	var pending *PendingError
	assert.False(t, errors.As(err, &pending))
}

// TestTemporalCallsBounded: starting a workflow, signalling one and the health check end with
// the wait too, whatever the caller's context.
func TestTemporalCallsBounded(t *testing.T) {
	c := &mocks.Client{}
	c.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).Run(blockUntilDone).
		Return(nil, context.DeadlineExceeded).Once()
	c.On("SignalWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).Run(blockUntilDone).
		Return(context.DeadlineExceeded).Once()
	c.On("CheckHealth", mock.Anything, mock.Anything).Run(blockUntilDone).Return(nil, context.DeadlineExceeded).Once()
	tp := NewTemporal(c, "q", 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	assert.Error(t, tp.StartVersion(ctx, detectStart("shop", "web", "1")))
	assert.Error(t, tp.PolicyChanged(ctx, ref, registry.Actor{}))
	assert.Error(t, tp.Ping(ctx))
	require.NoError(t, ctx.Err(), "a call waited until the caller's deadline")
	c.AssertExpectations(t)
}

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
	hs := newHarness(t, harnessOptions{lifecycle: NewTemporal(c, "q", 200*time.Millisecond)})
	hs.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "1", State: registry.Draining})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := hs.request("POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, `{"reason":"stuck"}`).WithContext(ctx)
	rec := hs.serve(req)
	require.NoError(t, ctx.Err(), "the action waited until the test's deadline")
	require.Equal(t, http.StatusAccepted, rec.Code, "body: %s", rec.Body.String())
	assert.Equal(t, "/api/v1/apps/shop/web/versions/1", rec.Header().Get("Location"))
	out := decode[ActionOutcome](t, rec)
	assert.Equal(t, ActionOutcome{Version: "1", Code: CodeActionPending, Action: ActionExpire, UpdateID: sentID,
		Stage: StageAccepted, Link: "/api/v1/apps/shop/web/versions/1", Message: out.Message}, out)
	assert.Contains(t, out.Message, "within 200ms")
	assert.NotEmpty(t, sentID)

	got := hs.do(t, "GET", rec.Header().Get("Location"), tokenAdmin, "")
	require.Equal(t, http.StatusOK, got.Code, "the link resolves: %s", got.Body.String())
	assert.Equal(t, registry.Draining, decode[registry.Version](t, got).State)
}

// The server (or gRPC) answers DEADLINE_EXCEEDED to the same deadline as our wait, sometimes a
// moment before our context's own timer fires: that answer is the wait running out too, not an
// error (seen once on the real Temporal: the action answered 500 instead of 202).
func TestWaitRanOutBeforeOurTimer(t *testing.T) {
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, time.Hour) // not expired yet
	defer cancel()
	for _, err := range []error{
		client.NewWorkflowUpdateServiceTimeoutOrCanceledError(context.DeadlineExceeded),
		fmt.Errorf("expire of x: %w", client.NewWorkflowUpdateServiceTimeoutOrCanceledError(context.DeadlineExceeded)),
		serviceerror.NewDeadlineExceeded("deadline exceeded"),
	} {
		assert.True(t, waitRanOut(ctx, wctx, err), "%v", err)
	}
	assert.False(t, waitRanOut(ctx, wctx, errors.New("connection refused")), "any other error is an error")
	assert.False(t, waitRanOut(ctx, wctx, &RejectedError{Message: "no"}), "a refusal is an answer")
	gone, stop := context.WithCancel(ctx)
	stop()
	assert.False(t, waitRanOut(gone, wctx, client.NewWorkflowUpdateServiceTimeoutOrCanceledError(context.Canceled)),
		"the caller went away: not pending")
}
