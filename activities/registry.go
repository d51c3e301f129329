package activities

import (
	"context"
	"errors"

	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
)

// ObserveInput is what the lifecycle knows of its version when it starts. Placement and
// Origin are embedded: their fields stand at the top level of the JSON, as in the activity
// inputs recorded before they were types of their own.
type ObserveInput struct {
	Ref registry.VersionRef `json:"ref"`
	registry.Placement
	WorkflowID string         `json:"workflowId"`
	Actor      registry.Actor `json:"actor"`
	// Origin orders versions found together (zero: unknown).
	registry.Origin
}

// Observe records the version in the registry (a new Pending life when the label has no live
// one) and returns its live life, whatever state that is in.
func (a *Activities) Observe(ctx context.Context, in ObserveInput) (registry.Version, error) {
	v, _, err := a.Registry.ObserveVersion(ctx, registry.Observation{
		Ref: in.Ref, Placement: in.Placement, Origin: in.Origin, WorkflowID: in.WorkflowID,
	}, in.Actor)
	return v, classify(err)
}

// LoadPolicy returns the app's effective policy.
func (a *Activities) LoadPolicy(ctx context.Context, app registry.AppRef) (Policy, error) {
	p, err := a.Registry.GetPolicy(ctx, app)
	if err != nil {
		return Policy{}, classify(err)
	}
	return ResolvePolicy(a.Config, p), nil
}

// TransitionInput asks for one state change of one life of a version.
type TransitionInput struct {
	Ref registry.VersionRef `json:"ref"`
	// VersionID is the life the workflow runs; a different newest life is an ErrTypeStaleLife.
	VersionID int64          `json:"versionId"`
	Actor     registry.Actor `json:"actor"`
	Reason    string         `json:"reason"`
	// From is the state the workflow believes the version is in (for the transition metric).
	From registry.State `json:"from,omitempty"`
}

// TransitionResult is the registry's answer. Previous is the version this one superseded (now
// Draining) when the change made this version Active, also when the change had already been
// made by an earlier attempt.
type TransitionResult struct {
	Version    registry.Version  `json:"version"`
	Previous   *registry.Version `json:"previous,omitempty"`
	Generation int64             `json:"generation"`
	Changed    bool              `json:"changed"`
	// KeptBy is the newer version that stayed Active when this one, found together with it,
	// went to Draining instead of taking over.
	KeptBy *registry.Version `json:"keptBy,omitempty"`
	// Capped are the Draining versions the change expired (routes included) because the app's
	// maxVersions was exceeded; their workflows must be told to retire them.
	Capped []registry.Version `json:"capped,omitempty"`
	// CappedBecause is the audited reason of the Capped expiries (maxVersions, or skew protection
	// switched off for the app); empty on a repeat.
	CappedBecause string `json:"cappedBecause,omitempty"`
}

// Activate makes the version Active and its predecessor Draining in one transaction, together
// with the app's routes: the routes are rendered from the snapshot the transaction is about to
// commit and written before it commits, so the version is Active in the registry only if the
// routes that send new visitors to it were written. Routes that cannot be rendered, a route
// write the API server refuses, or a host and path another app holds leave the registry as it
// was and fail with a non-retryable ErrTypeRoutesInvalid, ErrTypeRoutesRefused or
// ErrTypeClaimConflict error; a transient write failure rolls back and is retried. A repeat
// after success returns the same predecessor. If the version has been superseded since this
// activity first succeeded, the result says Draining (with its draining time) instead of failing.
func (a *Activities) Activate(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	t, err := a.flip(ctx, in, registry.OpActivate)
	var ite *registry.IllegalTransitionError
	if errors.As(err, &ite) && ite.From == registry.Draining {
		return a.alreadyActivated(ctx, in)
	}
	return a.finish(ctx, in, t, err)
}

// Promote makes a Draining version Active again, with its routes; the current Active version
// becomes Draining.
func (a *Activities) Promote(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	t, err := a.flip(ctx, in, registry.OpPromote)
	return a.finish(ctx, in, t, err)
}

// Stage holds a Pending version at the approval gate, with its pin rule written.
func (a *Activities) Stage(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	t, err := a.flip(ctx, in, registry.OpStage)
	return a.finish(ctx, in, t, err)
}

// Expire retires the version in the registry together with routes that no longer reference
// it: if the routes cannot be written, the version stays as it was. A repeat is a no-op
// (Changed=false).
func (a *Activities) Expire(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	t, err := a.flip(ctx, in, registry.OpExpire)
	return a.finish(ctx, in, t, err)
}

// Fail marks a Pending or Staged version Failed with the reason; nothing routed changes.
func (a *Activities) Fail(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	t, err := a.flip(ctx, in, registry.OpFail)
	return a.finish(ctx, in, t, err)
}

// flip runs one registry operation with the app's routes published inside its transaction.
func (a *Activities) flip(ctx context.Context, in TransitionInput, op registry.Op) (registry.Transition, error) {
	req := registry.FlipRequest{Ref: in.Ref, Op: op, Actor: in.Actor, Reason: in.Reason, MaxVersions: a.Config.MaxVersions}
	var written SyncResult
	if err := a.checkAllowed(ctx, in.Ref, op); err != nil {
		return registry.Transition{}, err
	}
	withdrawn := false // advise mode: the step's plan was superseded; commit the registry alone
	if op != registry.OpFail {
		req.ClaimOf = ClaimOf
		req.OwnCookie = OwnCookieName(a.Config.CookieName, in.Ref.AppRef())
		req.CheckClaim = func(_ context.Context, c registry.Claim) error { return a.checkClaim(in.Ref.AppRef(), c) }
		req.Publish = func(ctx context.Context, snap registry.Snapshot) error {
			if withdrawn {
				written = SyncResult{Generation: snap.Generation, Write: RouteOutcome{Outcome: RoutesWithdrawn}}
				return nil
			}
			var err error
			written, err = a.publish(ctx, snap, in.Ref.Label, stepOf(op))
			return err
		}
	}
	var t registry.Transition
	var err error
	for {
		t, err = a.Registry.Flip(ctx, req)
		if errors.Is(err, errRoutesAhead) {
			if _, err = a.Registry.BumpGeneration(ctx, in.Ref.AppRef()); err == nil {
				t, err = a.Registry.Flip(ctx, req)
			}
		}
		var pending *PlanPendingError
		if !errors.As(err, &pending) {
			break
		}
		// Advise mode: the plan is published and the step waits, without writing, until the
		// cluster shows it applied (the next Flip renders again from the registry, so a change
		// of mode or of the app's versions meanwhile takes effect), or until it is superseded.
		if withdrawn, err = a.awaitPlan(ctx, in.Ref, in.Actor, pending.Plan); err != nil {
			return registry.Transition{}, err
		}
	}
	if err == nil && (written.Write.Outcome == RoutesAdvised || written.Write.Outcome == RoutesWithdrawn) {
		a.planApplied(ctx, in.Ref, in.Actor, stepOf(op))
	}
	if err == nil && t.Changed && req.Publish != nil {
		// The audit says which routes the change wrote, as a separate route write did before.
		detail := map[string]any{"generation": written.Generation, "routes": written.Routes, "outcome": written.Write.Outcome}
		if aerr := a.Registry.AppendAudit(ctx, in.Ref, EventRoutesSynced, in.Actor, in.Reason, detail); aerr != nil {
			a.log().Warn("routes written but not audited", "version", in.Ref.String(), "error", aerr)
		}
	}
	return t, err
}

func (a *Activities) finish(ctx context.Context, in TransitionInput, t registry.Transition, err error) (TransitionResult, error) {
	if err != nil {
		return TransitionResult{}, classify(err)
	}
	if in.VersionID != 0 && t.Version.ID != in.VersionID {
		return TransitionResult{}, staleLife(in.Ref, in.VersionID, t.Version.ID)
	}
	res := TransitionResult{Version: t.Version, Previous: t.Previous, Generation: t.Generation, Changed: t.Changed,
		KeptBy: t.KeptBy, Capped: t.Capped, CappedBecause: t.CappedBecause}
	if t.Changed {
		if in.From != "" {
			metrics.Transition(string(in.From), string(t.Version.State))
		}
		if t.Previous != nil {
			metrics.Transition(string(registry.Active), string(registry.Draining))
		}
		for range t.Capped {
			metrics.Transition(string(registry.Draining), string(registry.Expired))
		}
	}
	if !t.Changed && t.Version.State == registry.Active && res.Previous == nil {
		// An earlier attempt made the change: find whom it superseded.
		if res.Previous, err = a.supersededBy(ctx, t.Version); err != nil {
			return TransitionResult{}, classify(err)
		}
	}
	return res, nil
}

// alreadyActivated answers an Activate that finds its version Draining: an earlier attempt
// activated it and a newer version has superseded it since.
func (a *Activities) alreadyActivated(ctx context.Context, in TransitionInput) (TransitionResult, error) {
	v, err := a.Registry.GetVersion(ctx, in.Ref)
	if err != nil {
		return TransitionResult{}, classify(err)
	}
	if in.VersionID != 0 && v.ID != in.VersionID {
		return TransitionResult{}, staleLife(in.Ref, in.VersionID, v.ID)
	}
	if v.ActiveAt == nil {
		return TransitionResult{}, classify(&registry.IllegalTransitionError{Version: in.Ref, From: v.State, To: registry.Active, Op: "activate"})
	}
	prev, err := a.supersededBy(ctx, v)
	if err != nil {
		return TransitionResult{}, classify(err)
	}
	gen, err := a.Registry.Generation(ctx, in.Ref.AppRef())
	if err != nil {
		return TransitionResult{}, classify(err)
	}
	return TransitionResult{Version: v, Previous: prev, Generation: gen}, nil
}

// supersededBy finds the version v superseded when it became Active: the Draining version whose
// draining time is v's activation time (both are the same transaction's clock).
func (a *Activities) supersededBy(ctx context.Context, v registry.Version) (*registry.Version, error) {
	if v.ActiveAt == nil {
		return nil, nil
	}
	snap, err := a.Registry.Snapshot(ctx, v.Ref().AppRef())
	if err != nil {
		return nil, err
	}
	for _, p := range snap.Pinned {
		if p.State == registry.Draining && p.DrainingAt != nil && p.DrainingAt.Equal(*v.ActiveAt) && p.ID != v.ID {
			return &p, nil
		}
	}
	return nil, nil
}

// AuditInput is one audit entry that is not a state change.
type AuditInput struct {
	Ref    registry.VersionRef `json:"ref"`
	Event  string              `json:"event"`
	Actor  registry.Actor      `json:"actor"`
	Reason string              `json:"reason,omitempty"`
	Detail map[string]any      `json:"detail,omitempty"`
}

// Audit appends an entry to the version's audit trail.
func (a *Activities) Audit(ctx context.Context, in AuditInput) error {
	var detail any
	if len(in.Detail) > 0 {
		detail = in.Detail
	}
	return classify(a.Registry.AppendAudit(ctx, in.Ref, in.Event, in.Actor, in.Reason, detail))
}

// CurrentVersion returns the newest life of the label, whatever its state.
func (a *Activities) CurrentVersion(ctx context.Context, ref registry.VersionRef) (registry.Version, error) {
	v, err := a.Registry.GetVersion(ctx, ref)
	return v, classify(err)
}

// GroupSiblings returns the live versions of v's label in the other apps of v's app group
// (plt.dev/group), by app name; none when v is in no group. The lifecycle of a group's version
// that expires on its own (no traffic, max alive) signals them to expire with it.
func (a *Activities) GroupSiblings(ctx context.Context, v registry.Version) ([]registry.Version, error) {
	vs, err := a.groupSiblings(ctx, v)
	return vs, classify(err)
}
