package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// ReadyInput names the Service whose readiness gates a version, and until when to wait.
type ReadyInput struct {
	Ref         registry.VersionRef `json:"ref"`
	ServiceName string              `json:"serviceName"`
	ServicePort int32               `json:"servicePort"`
	// Deadline is absolute, so a retried attempt does not restart the clock.
	Deadline time.Time `json:"deadline"`
}

// WaitReady returns once the version's Service has a ready endpoint that accepts TCP connections
// on its target port. It looks every ReadyPoll, heartbeats what it saw (the Temporal UI shows it
// as the pending activity's heartbeat details), and fails with a non-retryable ErrTypeNotReady
// error at the deadline.
func (a *Activities) WaitReady(ctx context.Context, in ReadyInput) (kube.Readiness, error) {
	poll := a.ReadyPoll
	if poll <= 0 {
		poll = time.Second
	}
	for {
		r, err := a.Workloads.Readiness(ctx, in.Ref.Namespace, in.ServiceName, in.ServicePort)
		if err != nil && !errors.Is(err, kube.ErrNoService) {
			// A flaky API server is not a reason to give up on the version: keep looking.
			a.log().Warn("readiness check failed", "version", in.Ref.String(), "error", err)
			r.Why = err.Error()
		}
		if r.Ready {
			return r, nil
		}
		activity.RecordHeartbeat(ctx, r)
		left := time.Until(in.Deadline)
		if left <= 0 {
			return r, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("version %s not ready by %s: %s", in.Ref, in.Deadline.UTC().Format(time.RFC3339), r.Why),
				ErrTypeNotReady, nil, r)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(min(poll, left)):
		}
	}
}

// RetireInput says how an expired version's workloads go.
type RetireInput struct {
	Ref registry.VersionRef `json:"ref"`
	// Delete removes the Deployments and Services (PLT_SKEW_AUTO_CLEANUP); otherwise the
	// Deployments are scaled to 0 and left for their owners.
	Delete bool           `json:"delete"`
	Actor  registry.Actor `json:"actor"`
	Reason string         `json:"reason"`
}

// RetireResult names what was scaled down or deleted.
type RetireResult struct {
	ScaledDown []string     `json:"scaledDown,omitempty"`
	Deleted    kube.Deleted `json:"deleted"`
}

// Audit events Retire writes.
const (
	EventScaledDown = "scaled-to-zero"
	EventDeleted    = "workloads-deleted"
)

// Retire scales the version's Deployments to 0, or deletes its Deployments and Services, and
// audits what it did.
func (a *Activities) Retire(ctx context.Context, in RetireInput) (RetireResult, error) {
	var res RetireResult
	var err error
	event, detail := EventScaledDown, map[string]any{}
	if in.Delete {
		event = EventDeleted
		res.Deleted, err = a.Workloads.Delete(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label)
		detail["deployments"], detail["services"] = res.Deleted.Deployments, res.Deleted.Services
	} else {
		res.ScaledDown, err = a.Workloads.ScaleToZero(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label)
		detail["deployments"] = res.ScaledDown
	}
	if err != nil {
		return res, err
	}
	return res, classify(a.Registry.AppendAudit(ctx, in.Ref, event, in.Actor, in.Reason, detail))
}
