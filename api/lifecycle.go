package api

import (
	"context"
	"errors"

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

// Lifecycle runs actions on versions' workflows (Temporal Updates waited on until completed).
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
