package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skewguard/skewguard/internal/registry"
)

// Action is a manual action on a version; each is an Update of the version's workflow, so the
// workflow's validator decides, whatever the caller (REST, CLI, Temporal UI).
type Action string

const (
	ActionPromote Action = "promote" // Draining → Active
	ActionExpire  Action = "expire"  // Pending, Staged or Draining → Expired
	ActionApprove Action = "approve" // Staged → Active (PLT_SKEW_REQUIRE_APPROVAL)
	ActionReject  Action = "reject"  // Staged → Expired
)

// actions are routed as POST …/versions/{version}/<action>.
var actions = []Action{ActionPromote, ActionExpire, ActionApprove, ActionReject}

// ActionRequest says who acts and why.
type ActionRequest struct {
	Actor  registry.Actor
	Reason string
}

// ActionResult is the workflow's answer.
type ActionResult struct {
	State   registry.State `json:"state"`
	Message string         `json:"message"`
}

// Lifecycle runs actions on versions' workflows (Temporal Updates waited on until completed,
// or until the wait of PLT_SKEW_ACTION_WAIT_MS ran out: a *PendingError).
type Lifecycle interface {
	Act(ctx context.Context, ref registry.VersionRef, action Action, req ActionRequest) (ActionResult, error)
	// PolicyChanged tells the version's workflow that its app's policy changed; a version
	// with no running workflow is not an error.
	PolicyChanged(ctx context.Context, ref registry.VersionRef, actor registry.Actor) error
}

// ErrWorkflowNotRunning means the version has no running workflow to act on.
var ErrWorkflowNotRunning = errors.New("the version's workflow is not running")

// RejectedError is an action the workflow refused (its Update validator, or the handler,
// failed with this message). It becomes a 409.
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
	Wait     time.Duration // how long the API waited
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("action %s not done within %s (stage %s)", e.UpdateID, e.Wait, e.Stage)
}
