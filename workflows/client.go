package workflows

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
)

// Actions are the Updates an operator runs on a version (promote, expire, approve, reject), in
// the order the management API routes them (POST …/versions/{version}/<update>). Each is an
// Update of the version's workflow, so the workflow's validator decides whatever the caller
// (REST, CLI, Temporal UI).
var Actions = []string{UpdatePromote, UpdateExpire, UpdateApprove, UpdateReject}

// Client drives versions' workflows through a Temporal client: it starts them (the
// detect.Starter of registrations and of the pod watch) and runs manual actions as Updates
// (the api.Lifecycle of the management API). Every call waits at most the configured wait
// (PLT_SKEW_ACTION_WAIT_MS): an action that is not done by then is a *PendingError, which the
// API answers with 202.
type Client struct {
	client    client.Client
	taskQueue string
	wait      time.Duration
}

// DefaultActionWait is the wait of a Client made with a zero wait (the default of
// PLT_SKEW_ACTION_WAIT_MS).
const DefaultActionWait = 10 * time.Second

// NewClient returns a Client on c, starting workflows on taskQueue and waiting at most wait
// (0: DefaultActionWait) for any answer of Temporal or of a workflow.
func NewClient(c client.Client, taskQueue string, wait time.Duration) *Client {
	if wait <= 0 {
		wait = DefaultActionWait
	}
	return &Client{client: c, taskQueue: taskQueue, wait: wait}
}

// StartVersion starts the version's workflow, or finds it running (USE_EXISTING).
func (c *Client) StartVersion(ctx context.Context, req detect.StartRequest) error {
	ctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	_, err := Start(ctx, c.client, c.taskQueue, LifecycleInput{
		Ref: req.Ref, Placement: req.Placement, Actor: req.Actor,
		// The registry orders versions found together by these times.
		Origin:  req.Origin,
		Invalid: req.Invalid,
		After:   req.After,
	})
	return err
}

// ErrWorkflowNotRunning means the version has no running workflow to act on.
var ErrWorkflowNotRunning = errors.New("the version's workflow is not running")

// RejectedError is an action the workflow refused (its Update validator, or the handler,
// failed with this message). The API answers it with 409.
type RejectedError struct{ Message string }

func (e *RejectedError) Error() string { return e.Message }

// Stages of a pending action (PendingError.Stage).
const (
	// StageAccepted: the workflow accepted the action (its validator passed) and is carrying
	// it out; it had not finished when the wait ran out.
	StageAccepted = "accepted"
	// StageSent: the action was sent to the workflow, which had not taken it up when the wait
	// ran out (its worker is down or busy, or its workflow task fails). It is validated and
	// carried out when the workflow runs again; Temporal keeps such an action in memory only,
	// so a restart of Temporal before then loses it: poll the version and act again if needed.
	StageSent = "sent"
)

// PendingError is an action that was not done within the wait: it goes on in the workflow.
// The API answers it with 202 Accepted and a link to the version, whose state tells the end.
type PendingError struct {
	UpdateID string        // the Temporal Update's ID
	Stage    string        // StageAccepted or StageSent
	Wait     time.Duration // how long the caller waited
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("action %s not done within %s (stage %s)", e.UpdateID, e.Wait, e.Stage)
}

// Act runs update (one of Actions) on the version's workflow, waiting at most the Client's
// wait in all. The Update is first awaited until the workflow accepted it, so a refusal by its
// validator is still a synchronous *RejectedError; then its result is awaited for the rest of
// the wait. Not done in time: a *PendingError with the Update's ID (the action goes on in the
// workflow). A refusal by the handler is a *RejectedError; no running workflow is
// ErrWorkflowNotRunning.
func (c *Client) Act(ctx context.Context, ref registry.VersionRef, update string, req ActionRequest) (ActionResult, error) {
	if !slices.Contains(Actions, update) {
		return ActionResult{}, fmt.Errorf("unknown action %q", update)
	}
	wctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	updateID := newUpdateID(update)
	handle, err := c.client.UpdateWorkflow(wctx, client.UpdateWorkflowOptions{
		UpdateID:     updateID,
		WorkflowID:   WorkflowID(ref),
		UpdateName:   update,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err != nil {
		err = updateError(ref, update, err)
		if !waitRanOut(ctx, wctx, err) {
			return ActionResult{}, err
		}
		// Not accepted in time: the workflow is not taking workflow tasks (its worker is down,
		// or its task fails), or Temporal itself does not answer. Only the first is pending.
		if herr := c.Ping(context.WithoutCancel(ctx)); herr != nil {
			return ActionResult{}, fmt.Errorf("%s of %s: not accepted within %s, and Temporal does not answer: %w", update, ref, c.wait, herr)
		}
		return ActionResult{}, &PendingError{UpdateID: updateID, Stage: StageSent, Wait: c.wait}
	}
	var res ActionResult
	if err := handle.Get(wctx, &res); err != nil {
		err = updateError(ref, update, err)
		if waitRanOut(ctx, wctx, err) {
			return ActionResult{}, &PendingError{UpdateID: updateID, Stage: StageAccepted, Wait: c.wait}
		}
		return ActionResult{}, err
	}
	return res, nil
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
func newUpdateID(update string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "skewguard-" + update + "-" + hex.EncodeToString(b)
}

// PolicyChanged signals the version's workflow to reload its app's policy; a version with no
// running workflow is not an error.
func (c *Client) PolicyChanged(ctx context.Context, ref registry.VersionRef, actor registry.Actor) error {
	ctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	err := c.client.SignalWorkflow(ctx, WorkflowID(ref), "", SignalPolicyChanged,
		ActionRequest{Actor: actor, Reason: "policy changed"})
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Ping checks that Temporal answers (for /readyz), within the wait at most.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(c.wait, pingTimeout))
	defer cancel()
	_, err := c.client.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// pingTimeout bounds a health check of Temporal: it answers at once when it answers at all.
const pingTimeout = 3 * time.Second

func updateError(ref registry.VersionRef, update string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%s of %s: %w", update, ref, ErrWorkflowNotRunning)
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return &RejectedError{Message: app.Message()}
	}
	return fmt.Errorf("%s of %s: %w", update, ref, err)
}

// State asks the version's running workflow for its StateView (the "state" query), bounded by
// the client's wait. A version with no running workflow is ErrWorkflowNotRunning.
func (c *Client) State(ctx context.Context, ref registry.VersionRef) (StateView, error) {
	wctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	resp, err := c.client.QueryWorkflow(wctx, WorkflowID(ref), "", QueryState)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return StateView{}, ErrWorkflowNotRunning
		}
		return StateView{}, err
	}
	var v StateView
	if err := resp.Get(&v); err != nil {
		return StateView{}, err
	}
	return v, nil
}
