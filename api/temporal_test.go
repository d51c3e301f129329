package api

import (
	"context"
	"errors"
	"testing"

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
					o.WaitForStage == client.WorkflowUpdateStageCompleted && ok && req.Actor == actor && req.Reason == "why"
			})).Return(h, tc.updateErr).Once()
			h.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
				*args.Get(1).(*workflows.ActionResult) = workflows.ActionResult{State: registry.Expired, Message: "expired"}
			}).Return(tc.getErr).Maybe()

			res, err := NewTemporal(c, "skewguard").Act(context.Background(), ref, ActionExpire, ActionRequest{Actor: actor, Reason: "why"})
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
	err := NewTemporal(c, "q").StartVersion(context.Background(), detectStart("shop", "web", "2"))
	require.NoError(t, err)
	c.AssertExpectations(t)
}

func detectStart(ns, app, version string) detect.StartRequest {
	return detect.StartRequest{Ref: registry.VersionRef{Namespace: ns, App: app, Label: version},
		ServiceName: app + "-v" + version, ServicePort: 80, PathPrefix: "/" + app,
		Actor: registry.Actor{Type: registry.ActorPod, ID: ns + "/" + app}}
}
