package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
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

// readyKeepAlive is how often WaitReady heartbeats while nothing changes, well inside the
// workflow's heartbeat timeout (10s).
const readyKeepAlive = 3 * time.Second

// WaitReady returns once the version's Service has a ready endpoint (by its EndpointSlice
// conditions) for the port. With a ReadinessWatcher it is woken by the watcher's informer
// events; without one it looks every ReadyPoll. It heartbeats what it sees (the Temporal UI
// shows it as the pending activity's heartbeat details) and fails with a non-retryable
// ErrTypeNotReady error at the deadline.
func (a *Activities) WaitReady(ctx context.Context, in ReadyInput) (kube.Readiness, error) {
	if a.Readiness != nil && a.Readiness.Watches(in.Ref.Namespace) {
		return a.waitReadyWatching(ctx, in)
	}
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
		if time.Until(in.Deadline) <= 0 {
			return r, notReady(in, r)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(min(poll, time.Until(in.Deadline))):
		}
	}
}

// waitReadyWatching waits on the watcher until the deadline, heartbeating each readiness it
// computes and, between events, the last one every readyKeepAlive.
func (a *Activities) waitReadyWatching(ctx context.Context, in ReadyInput) (kube.Readiness, error) {
	wctx, cancel := context.WithDeadline(ctx, in.Deadline)
	defer cancel()
	var mu sync.Mutex
	last := kube.Readiness{Port: in.ServicePort, Why: "waiting for the readiness informers to sync"}
	beat := func() {
		mu.Lock()
		r := last
		mu.Unlock()
		activity.RecordHeartbeat(ctx, r)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(readyKeepAlive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	r, err := a.Readiness.Watch(wctx, in.Ref.Namespace, in.ServiceName, in.ServicePort, func(r kube.Readiness) {
		mu.Lock()
		last = r
		mu.Unlock()
		beat()
	})
	switch {
	case err == nil && r.Ready:
		if r.ProbeError != "" {
			a.log().Warn("version ready, but the optional TCP probe failed", "version", in.Ref.String(), "probe", r.ProbeError)
		}
		return r, nil
	case ctx.Err() != nil: // the activity itself was cancelled or timed out
		return r, ctx.Err()
	case wctx.Err() != nil: // the deadline
		return r, notReady(in, r)
	default:
		return r, err
	}
}

func notReady(in ReadyInput, r kube.Readiness) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("version %s not ready by %s: %s", in.Ref, in.Deadline.UTC().Format(time.RFC3339), r.Why),
		ErrTypeNotReady, nil, r)
}

// ErrTypeStillRouted: Retire found a managed HTTPRoute still referencing the version's Service
// and touched nothing. It is retryable (the routes converge); details: the StillRouted.
const ErrTypeStillRouted = "StillRouted"

// ErrTypeWorkloadsRefused: the API server (RBAC, an admission webhook) refused to scale or
// delete the version's workloads. Not retried as is: the workflow reports it and tries again
// later, or at once on force-expire.
const ErrTypeWorkloadsRefused = "WorkloadsRefused"

// permanentKubeError reports whether an API server error is a refusal that a retry of the same
// request cannot fix.
func permanentKubeError(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) ||
		apierrors.IsUnauthorized(err) || apierrors.IsMethodNotSupported(err)
}

// StillRouted is the detail of an ErrTypeStillRouted error.
type StillRouted struct {
	Service string   `json:"service"`
	Routes  []string `json:"routes"`
}

// RetireInput says how an expired version's workloads go.
type RetireInput struct {
	Ref registry.VersionRef `json:"ref"`
	// ServiceName is the Service recorded for the version, checked against the live routes
	// besides the Services labelled with or selecting the version (optional).
	ServiceName string `json:"serviceName,omitempty"`
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
	// Skipped names Deployments that own old pods or ReplicaSets of the version but now run
	// another version, left alone.
	Skipped []string `json:"skipped,omitempty"`
	// NothingFound is true when no Deployment runs the version (nor, deleting, any Service is
	// labelled with it): already retired, or never created as expected.
	NothingFound bool `json:"nothingFound,omitempty"`
}

// Audit events Retire writes.
const (
	EventScaledDown   = "scaled-to-zero"
	EventDeleted      = "workloads-deleted"
	EventNothingFound = "nothing-to-retire"
)

// Retire scales the Deployments that run the version to 0, or deletes them and the version's
// Services, and audits what it did. While a managed HTTPRoute still references the version's
// Service it touches nothing and fails with a retryable ErrTypeStillRouted error: scaling down a
// version that still gets traffic would cut it.
//
// The app's mode is read first: observe touches nothing (audited); advise publishes the plan
// (scale to 0, or delete) and waits until the cluster shows it done.
func (a *Activities) Retire(ctx context.Context, in RetireInput) (RetireResult, error) {
	var res RetireResult
	mode, err := a.modeOfApp(ctx, in.Ref.AppRef())
	if err != nil {
		return res, classify(err)
	}
	switch mode {
	case registry.ModeObserve:
		return res, classify(a.Registry.AppendAudit(ctx, in.Ref, EventRetireObserved, in.Actor,
			"observe mode: the workloads are left as they are", nil))
	case registry.ModeAdvise:
		return a.adviseRetire(ctx, in)
	}
	event, detail := EventScaledDown, map[string]any{}
	if in.Delete {
		event = EventDeleted
		res.Deleted, err = a.Workloads.Delete(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label, in.ServiceName)
		res.Skipped = res.Deleted.Skipped
		res.NothingFound = len(res.Deleted.Deployments)+len(res.Deleted.Services) == 0
		detail["deployments"], detail["services"] = res.Deleted.Deployments, res.Deleted.Services
		if len(res.Deleted.ScaledDown) > 0 {
			// An adopted version: the team's Deployment is scaled to 0, never deleted.
			res.ScaledDown = res.Deleted.ScaledDown
			detail["scaledDown"] = res.Deleted.ScaledDown
		}
	} else {
		var s kube.Scaled
		s, err = a.Workloads.ScaleToZero(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label, in.ServiceName)
		res.ScaledDown, res.Skipped = s.Deployments, s.Skipped
		res.NothingFound = len(s.Deployments)+len(s.AdoptedServices) == 0
		detail["deployments"] = res.ScaledDown
		if len(s.AdoptedServices) > 0 {
			detail["adoptedServices"] = s.AdoptedServices
		}
	}
	if sr := (*kube.StillRoutedError)(nil); errors.As(err, &sr) {
		return RetireResult{}, temporal.NewApplicationError(err.Error(), ErrTypeStillRouted,
			StillRouted{Service: sr.Service, Routes: sr.Routes})
	}
	if err != nil && permanentKubeError(err) {
		// RBAC that does not cover the namespace, an admission webhook that refuses the scale or
		// the delete: retrying as is cannot help; the workflow reports it and tries again later.
		metrics.Refusal(ErrTypeWorkloadsRefused)
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("retire %s refused: %v", in.Ref, err), ErrTypeWorkloadsRefused, err)
	}
	if err != nil {
		return res, err
	}
	if len(res.Skipped) > 0 {
		detail["skipped"] = res.Skipped
	}
	if res.NothingFound {
		event = EventNothingFound
		a.log().Warn("nothing to retire: no Deployment runs the version", "version", in.Ref.String(), "skipped", res.Skipped)
	}
	return res, classify(a.Registry.AppendAudit(ctx, in.Ref, event, in.Actor, in.Reason, detail))
}

// EventInput is a Kubernetes Event to record on the Deployments that run a version.
type EventInput struct {
	Ref registry.VersionRef `json:"ref"`
	// Type is Normal or Warning; Reason a short CamelCase word (e.g. "Activated").
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// ReportEvent records a Kubernetes Event on the Deployments that run the version, so that
// `kubectl describe deployment` tells what skewguard did. Events are a courtesy: a version
// without a Deployment is logged and the activity succeeds; invalid input is non-retryable.
func (a *Activities) ReportEvent(ctx context.Context, in EventInput) error {
	if mode, err := a.modeOfApp(ctx, in.Ref.AppRef()); err != nil {
		return classify(err)
	} else if mode == registry.ModeObserve {
		return nil // observe mode writes nothing to the API server, Events included
	}
	err := a.Workloads.RecordEvent(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label, in.Type, in.Reason, in.Message)
	switch {
	case errors.Is(err, kube.ErrNoDeployment):
		a.log().Info("no Deployment to record the event on", "version", in.Ref.String(), "reason", in.Reason)
		return nil
	case errors.Is(err, kube.ErrInvalidEvent):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	}
	return err
}

// AdoptedGoneInput names an adopted version and the Deployment it was adopted from.
type AdoptedGoneInput struct {
	Ref        registry.VersionRef `json:"ref"`
	Deployment string              `json:"deployment"`
}

// AdoptedGone says whether an adopted version lost its pods for good, and why.
type AdoptedGone struct {
	Gone   bool   `json:"gone"`
	Reason string `json:"reason,omitempty"`
}

// AdoptedBackendGone reports whether the adopted version in.Ref lost its pods for good: its
// Deployment rolled in place to another pod template and no pod of the adopted one is left
// (kube.Workloads.AdoptedBackendGone). A Draining version in that state is expired at once:
// its pinned requests then go to the Active version instead of getting 503.
func (a *Activities) AdoptedBackendGone(ctx context.Context, in AdoptedGoneInput) (AdoptedGone, error) {
	gone, why, err := a.Workloads.AdoptedBackendGone(ctx, in.Ref.Namespace, in.Ref.App, in.Ref.Label, in.Deployment)
	return AdoptedGone{Gone: gone, Reason: why}, err
}
