package workflows

import (
	"context"
	"errors"
	"fmt"
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
				req, ok := o.Args[0].(ActionRequest)
				return o.WorkflowID == "skew/shop/web/1" && o.UpdateName == UpdateExpire &&
					o.WaitForStage == client.WorkflowUpdateStageAccepted && o.UpdateID != "" && ok && req.Actor == actor && req.Reason == "why"
			})).Return(h, tc.updateErr).Once()
			h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
				*args.Get(1).(*ActionResult) = ActionResult{State: registry.Expired, Message: "expired"}
			}).Return(tc.getErr).Maybe()

			res, err := NewClient(c, "skewguard", 0).Act(context.Background(), ref, UpdateExpire, ActionRequest{Actor: actor, Reason: "why"})
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
	}), WorkflowType, mock.MatchedBy(func(in LifecycleInput) bool {
		return in.ServiceName == "web-v2" && in.ServicePort == 80 && in.PathPrefix == "/web"
	})).Return(&mocks.WorkflowRun{}, nil).Once()
	err := NewClient(c, "q", 0).StartVersion(context.Background(), detectStart("shop", "web", "2"))
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
			_, err := NewClient(c, "q", 100*time.Millisecond).Act(ctx, ref, UpdateExpire, ActionRequest{})
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
	_, err := NewClient(c, "q", time.Minute).Act(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "1"},
		UpdateExpire, ActionRequest{})
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
	tp := NewClient(c, "q", 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	assert.Error(t, tp.StartVersion(ctx, detectStart("shop", "web", "1")))
	assert.Error(t, tp.PolicyChanged(ctx, ref, registry.Actor{}))
	assert.Error(t, tp.Ping(ctx))
	require.NoError(t, ctx.Err(), "a call waited until the caller's deadline")
	c.AssertExpectations(t)
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
