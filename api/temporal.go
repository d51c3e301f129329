package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// Temporal drives versions' workflows through a Temporal client: it starts them (the
// detect.Starter of registrations) and runs manual actions as Updates (the Lifecycle of the
// management API). Every call waits at most the configured wait (PLT_SKEW_ACTION_WAIT_MS): an
// action that is not done by then is a *PendingError, which the API answers with 202.
type Temporal struct {
	client    client.Client
	taskQueue string
	wait      time.Duration
}

// DefaultActionWait is the wait of a Temporal made with a zero wait (the default of
// PLT_SKEW_ACTION_WAIT_MS).
const DefaultActionWait = 10 * time.Second

// NewTemporal returns a Temporal on c, starting workflows on taskQueue and waiting at most wait
// (0: DefaultActionWait) for any answer of Temporal or of a workflow.
func NewTemporal(c client.Client, taskQueue string, wait time.Duration) *Temporal {
	if wait <= 0 {
		wait = DefaultActionWait
	}
	return &Temporal{client: c, taskQueue: taskQueue, wait: wait}
}

// StartVersion starts the version's workflow, or finds it running (USE_EXISTING).
func (t *Temporal) StartVersion(ctx context.Context, req detect.StartRequest) error {
	ctx, cancel := context.WithTimeout(ctx, t.wait)
	defer cancel()
	_, err := workflows.Start(ctx, t.client, t.taskQueue, workflows.LifecycleInput{
		Ref: req.Ref, Placement: req.Placement, Actor: req.Actor,
		// The registry orders versions found together by these times.
		Origin:  req.Origin,
		Invalid: req.Invalid,
		After:   req.After,
	})
	return err
}

var updateNames = map[Action]string{
	ActionPromote: workflows.UpdatePromote,
	ActionExpire:  workflows.UpdateExpire,
	ActionApprove: workflows.UpdateApprove,
	ActionReject:  workflows.UpdateReject,
}

// Act runs action as an Update of the version's workflow, waiting at most the Temporal's wait
// in all. The Update is first awaited until the workflow accepted it, so a refusal by its
// validator is still a synchronous *RejectedError; then its result is awaited for the rest of
// the wait. Not done in time: a *PendingError with the Update's ID (the action goes on in the
// workflow). A refusal by the handler is a *RejectedError; no running workflow is
// ErrWorkflowNotRunning.
func (t *Temporal) Act(ctx context.Context, ref registry.VersionRef, action Action, req ActionRequest) (ActionResult, error) {
	name, ok := updateNames[action]
	if !ok {
		return ActionResult{}, fmt.Errorf("unknown action %q", action)
	}
	wctx, cancel := context.WithTimeout(ctx, t.wait)
	defer cancel()
	updateID := newUpdateID(action)
	handle, err := t.client.UpdateWorkflow(wctx, client.UpdateWorkflowOptions{
		UpdateID:     updateID,
		WorkflowID:   workflows.WorkflowID(ref),
		UpdateName:   name,
		Args:         []any{workflows.ActionRequest{Actor: req.Actor, Reason: req.Reason}},
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err != nil {
		err = updateError(ref, name, err)
		if !waitRanOut(ctx, wctx, err) {
			return ActionResult{}, err
		}
		// Not accepted in time: the workflow is not taking workflow tasks (its worker is down,
		// or its task fails), or Temporal itself does not answer. Only the first is pending.
		if herr := t.Ping(context.WithoutCancel(ctx)); herr != nil {
			return ActionResult{}, fmt.Errorf("%s of %s: not accepted within %s, and Temporal does not answer: %w", name, ref, t.wait, herr)
		}
		return ActionResult{}, &PendingError{UpdateID: updateID, Stage: StageSent, Wait: t.wait}
	}
	var res workflows.ActionResult
	if err := handle.Get(wctx, &res); err != nil {
		err = updateError(ref, name, err)
		if waitRanOut(ctx, wctx, err) {
			return ActionResult{}, &PendingError{UpdateID: updateID, Stage: StageAccepted, Wait: t.wait}
		}
		return ActionResult{}, err
	}
	return ActionResult{State: res.State, Message: res.Message}, nil
}

// waitRanOut tells an error caused by the end of our wait (wctx) from any other: the caller's
// own context is still alive, and the workflow gave no answer of its own.
func waitRanOut(ctx, wctx context.Context, err error) bool {
	var rejected *RejectedError
	if ctx.Err() != nil || errors.As(err, &rejected) || errors.Is(err, ErrWorkflowNotRunning) {
		return false
	}
	if wctx.Err() != nil {
		return true
	}
	// gRPC and the server work to the same deadline and may answer DEADLINE_EXCEEDED a moment
	// before our context's own timer fires: that too is our wait running out.
	var timeout *client.WorkflowUpdateServiceTimeoutOrCanceledError
	var deadline *serviceerror.DeadlineExceeded
	return errors.As(err, &timeout) || errors.As(err, &deadline) || errors.Is(err, context.DeadlineExceeded)
}

// newUpdateID names an Update: chosen here, so that a pending action can be reported by its ID.
func newUpdateID(action Action) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "skewguard-" + string(action) + "-" + hex.EncodeToString(b)
}

// PolicyChanged signals the version's workflow to reload its app's policy.
func (t *Temporal) PolicyChanged(ctx context.Context, ref registry.VersionRef, actor registry.Actor) error {
	ctx, cancel := context.WithTimeout(ctx, t.wait)
	defer cancel()
	err := t.client.SignalWorkflow(ctx, workflows.WorkflowID(ref), "", workflows.SignalPolicyChanged,
		workflows.ActionRequest{Actor: actor, Reason: "policy changed"})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Ping checks that Temporal answers (for /readyz), within the wait at most.
func (t *Temporal) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(t.wait, pingTimeout))
	defer cancel()
	_, err := t.client.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// pingTimeout bounds a health check of Temporal: it answers at once when it answers at all.
const pingTimeout = 3 * time.Second

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
