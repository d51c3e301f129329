package activities

import (
	"context"

	"github.com/skewguard/skewguard/internal/registry"
)

// EventInput is a Kubernetes Event to record on a version's Deployments.
type EventInput struct {
	Ref     registry.VersionRef `json:"ref"`
	Type    string              `json:"type"` // Normal or Warning
	Reason  string              `json:"reason"`
	Message string              `json:"message"`
}

// ReportEvent records in on the Deployments that run the version. (placeholder until merged)
func (a *Activities) ReportEvent(ctx context.Context, in EventInput) error {
	a.log().Info("event", "version", in.Ref.String(), "type", in.Type, "reason", in.Reason, "message", in.Message)
	return nil
}
