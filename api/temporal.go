package api

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// Temporal drives versions' workflows through a Temporal client: it starts them (the
// detect.Starter of registrations) and runs manual actions as Updates (the Lifecycle of the
// management API), waiting until each Update completed.
type Temporal struct {
	client    client.Client
	taskQueue string
}

// NewTemporal returns a Temporal on c, starting workflows on taskQueue.
func NewTemporal(c client.Client, taskQueue string) *Temporal {
	return &Temporal{client: c, taskQueue: taskQueue}
}

// StartVersion starts the version's workflow, or finds it running (USE_EXISTING).
func (t *Temporal) StartVersion(ctx context.Context, req detect.StartRequest) error {
	_, err := workflows.Start(ctx, t.client, t.taskQueue, workflows.LifecycleInput{
		Ref:         req.Ref,
		ServiceName: req.ServiceName,
		ServicePort: req.ServicePort,
		PathPrefix:  req.PathPrefix,
		Hostname:    req.Hostname,
		Actor:       req.Actor,
		// The registry orders versions found together by these times.
		DeployedAt:    req.DeployedAt,
		PodsCreatedAt: req.PodCreatedAt,
		Invalid:       req.Invalid,
		After:         req.After,
	})
	return err
}

var updateNames = map[Action]string{
	ActionPromote: workflows.UpdatePromote,
	ActionExpire:  workflows.UpdateExpire,
	ActionApprove: workflows.UpdateApprove,
	ActionReject:  workflows.UpdateReject,
}

// Act runs action as an Update of the version's workflow. A refusal by the workflow (its
// validator, or its handler) is a *RejectedError; no running workflow is ErrWorkflowNotRunning.
func (t *Temporal) Act(ctx context.Context, ref registry.VersionRef, action Action, req ActionRequest) (ActionResult, error) {
	name, ok := updateNames[action]
	if !ok {
		return ActionResult{}, fmt.Errorf("unknown action %q", action)
	}
	handle, err := t.client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.WorkflowID(ref),
		UpdateName:   name,
		Args:         []any{workflows.ActionRequest{Actor: req.Actor, Reason: req.Reason}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return ActionResult{}, updateError(ref, name, err)
	}
	var res workflows.ActionResult
	if err := handle.Get(ctx, &res); err != nil {
		return ActionResult{}, updateError(ref, name, err)
	}
	return ActionResult{State: res.State, Message: res.Message}, nil
}

// PolicyChanged signals the version's workflow to reload its app's policy.
func (t *Temporal) PolicyChanged(ctx context.Context, ref registry.VersionRef, actor registry.Actor) error {
	err := t.client.SignalWorkflow(ctx, workflows.WorkflowID(ref), "", workflows.SignalPolicyChanged,
		workflows.ActionRequest{Actor: actor, Reason: "policy changed"})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Ping checks that Temporal answers (for /readyz).
func (t *Temporal) Ping(ctx context.Context) error {
	_, err := t.client.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

func updateError(ref registry.VersionRef, name string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%s of %s: %w", name, ref, ErrWorkflowNotRunning)
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return &RejectedError{Message: app.Message()}
	}
	return fmt.Errorf("%s of %s: %w", name, ref, err)
}
