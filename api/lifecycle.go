package api

import (
	"context"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// Lifecycle runs actions on versions' workflows: workflows.Client in production. An action is
// the name of one of workflows.Actions, waited on until completed or until the wait of
// PLT_SKEW_ACTION_WAIT_MS ran out (a *workflows.PendingError); a refusal of the workflow is a
// *workflows.RejectedError, a version with no running workflow workflows.ErrWorkflowNotRunning.
type Lifecycle interface {
	Act(ctx context.Context, ref registry.VersionRef, update string, req workflows.ActionRequest) (workflows.ActionResult, error)
	// PolicyChanged tells the version's workflow that its app's policy changed; a version
	// with no running workflow is not an error.
	PolicyChanged(ctx context.Context, ref registry.VersionRef, actor registry.Actor) error
}
