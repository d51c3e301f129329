package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// refusal is a step the registry would not take (the version was not in the state the workflow
// believed); the workflow has re-read the registry. It is reported to the operator who asked,
// and never stops the workflow.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// activate makes the version Active (the registry makes its predecessor Draining in the same
// transaction), writes the routes and tells the predecessor's workflow.
func (w *lifecycle) activate(ctx workflow.Context, actor registry.Actor, reason string) error {
	return w.takeOver(ctx, a.Activate, "activate", actor, reason)
}

// promote makes a Draining version Active again; the current Active version becomes Draining
// and its workflow is told.
func (w *lifecycle) promote(ctx workflow.Context, actor registry.Actor, reason string) error {
	return w.takeOver(ctx, a.Promote, "promote", actor, reason)
}

// takeOver runs a registry step that makes this version Active together with the app's routes
// (one activity: the registry changes only if the routes were written), then tells the version
// it displaced, if any, so that version starts draining only once routing has moved. A version
// whose routes cannot be written never becomes Active: a Pending or Staged one is marked Failed
// and the app keeps serving from its current Active version.
func (w *lifecycle) takeOver(ctx workflow.Context, step any, name string, actor registry.Actor, reason string) error {
	res, err := w.change(ctx, step, name, actor, reason)
	if err != nil {
		return w.cannotRoute(ctx, name, actor, err)
	}
	if res.KeptBy != nil {
		// Found together with a newer version that is Active: this one drains instead.
		w.by = res.KeptBy.Label
	}
	if err := w.adopt(ctx, res.Version, actor, reason); err != nil {
		return err
	}
	atomic := w.atomicFlip(ctx)
	if !atomic {
		w.syncRoutes(ctx, actor, reason) // a run started before the routes moved into the flip
	}
	if res.Previous != nil {
		w.notifySuperseded(ctx, *res.Previous, actor, reason)
	}
	if len(res.Capped) > 0 && workflow.GetVersion(ctx, "max-versions", workflow.DefaultVersion, 1) == 1 {
		why := fmt.Sprintf("maxVersions exceeded by version %s: expired with its activation", w.in.Ref.Label)
		if res.CappedBecause == registry.ReasonProtectionOff {
			why = fmt.Sprintf("%s: expired when version %s was activated", registry.ReasonProtectionOff, w.in.Ref.Label)
		}
		for _, c := range res.Capped {
			w.notifyCapped(ctx, c, actor, why)
		}
	}
	if atomic && w.state == registry.Active {
		w.checkRoutes(ctx)
	}
	return nil
}

// routeCheckWithin bounds how long the lifecycle waits for the Gateways to report on new routes.
const routeCheckWithin = 10 * time.Second

// checkRoutes reads the routes' status back after the flip and shows a Gateway that did not
// accept them (the activity audits it and records an Event); the lifecycle goes on either way.
func (w *lifecycle) checkRoutes(ctx workflow.Context) {
	var acc kube.RouteAcceptance
	opts := workflow.ActivityOptions{StartToCloseTimeout: routeCheckWithin + 20*time.Second, HeartbeatTimeout: lostWorkerWithin, Summary: "check the Gateways accepted the routes",
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2, NonRetryableErrorTypes: permanent}}
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), a.CheckRoutes, activities.RouteCheckInput{
		App: w.in.Ref.AppRef(), Cause: w.in.Ref, Within: routeCheckWithin,
	}).Get(ctx, &acc)
	switch {
	case err != nil:
		w.logger.Warn("route status not read", "error", err)
	case len(acc.Refused) > 0:
		w.lastError = "routes not accepted by a Gateway: " + strings.Join(acc.Refused, "; ")
	case !acc.Accepted:
		w.logger.Info("the Gateways have not reported on the routes yet", "waiting", acc.Waiting)
	}
}

// atomicFlip reports whether this run writes the routes inside each registry step (the
// activities do so since change "atomic-flip"). A run recorded before that wrote them with a
// SyncRoutes activity after each step, and failed an unready version by expiring it; replaying
// its history must make the same calls.
func (w *lifecycle) atomicFlip(ctx workflow.Context) bool {
	return workflow.GetVersion(ctx, "atomic-flip", workflow.DefaultVersion, 1) == 1
}

// stage holds the version at the approval gate, with its pin rule written.
func (w *lifecycle) stage(ctx workflow.Context, reason string) error {
	res, err := w.change(ctx, a.Stage, "stage", w.self, reason+"; approval required")
	if err != nil {
		return w.cannotRoute(ctx, "stage", w.self, err)
	}
	if err := w.adopt(ctx, res.Version, w.self, reason+"; approval required"); err != nil {
		return err
	}
	if !w.atomicFlip(ctx) {
		w.syncRoutes(ctx, w.self, "staged")
	}
	return nil
}

// expire retires the version: the registry and routes without it together, then (only once no
// route references it) its workloads. If the routes cannot be written the version stays as it
// is: nothing the gateway still uses is cut.
func (w *lifecycle) expire(ctx workflow.Context, actor registry.Actor, reason string) error {
	res, err := w.change(ctx, a.Expire, "expire", actor, reason)
	if err != nil {
		var rr *routingRefusal
		if errors.As(err, &rr) {
			w.lastError = expireRefused + rr.msg
			w.retryExpireAt = workflow.Now(ctx).Add(max(w.policy.CheckInterval, time.Second))
			w.expireRefusals++
			// The lifecycle's own attempts are audited once per draining period, not at every
			// attempt (a row a minute for as long as an admission webhook refuses); the details
			// and last error show each one. An operator's is always audited.
			if actor != w.self || w.expireRefusals == 1 || workflow.GetVersion(ctx, "audit-expire-refusal-once", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
				w.audit(ctx, "expire-refused", actor, rr.msg)
			}
			w.logger.Warn("expiry refused: routes not written", "error", rr.msg)
			if actor == w.self {
				return nil
			}
			return &refusal{fmt.Sprintf("cannot expire version %s: %s", w.in.Ref.Label, rr.msg)}
		}
		return w.refused(actor, err)
	}
	w.finalWhy = reason
	if strings.HasPrefix(w.lastError, expireRefused) {
		w.lastError = "" // the routes were written this time
	}
	if err := w.adopt(ctx, res.Version, actor, reason); err != nil {
		return err
	}
	if !w.atomicFlip(ctx) {
		w.syncRoutes(ctx, actor, reason)
	}
	if res.Version.Group != "" && actor == w.self && workflow.GetVersion(ctx, "app-groups", workflow.DefaultVersion, 1) == 1 {
		w.expireGroup(ctx, res.Version, reason)
	}
	w.retire(ctx, actor, reason)
	return nil
}

// expireGroup asks the lifecycles of v's label in the other apps of its app group to expire
// with it: the group's version drains and expires as one (its traffic is the members' summed,
// see activities.GroupSiblings). Only the lifecycle's own expiry (no traffic, max alive)
// spreads; an operator's expiry of one app stays the operator's, and a sibling expired by this
// signal does not signal back (its actor is not its own lifecycle). Pending, Staged and Active
// siblings are left alone (force-expire would refuse an Active one anyway).
func (w *lifecycle) expireGroup(ctx workflow.Context, v registry.Version, reason string) {
	var siblings []registry.Version
	if err := workflow.ExecuteActivity(registryOptions(ctx, "read the app group's versions"), a.GroupSiblings, v).Get(ctx, &siblings); err != nil {
		w.logger.Warn("app group not read: its other apps' versions expire on their own", "group", v.Group, "error", err)
		return
	}
	for _, s := range siblings {
		if s.State != registry.Draining {
			continue
		}
		req := ActionRequest{Actor: w.self, Reason: fmt.Sprintf("app group %s: version %s expired in %s (%s)", v.Group, v.Label, v.App, reason)}
		w.signalVersion(ctx, s, SignalForceExpire, req, "app group sibling")
	}
}

// expireRefused starts the last error of an expiry whose route write was refused.
const expireRefused = "not expired: "

// fail marks the version Failed: it is never routed and its workloads are left alone. unready
// says it failed only for want of ready endpoints (it keeps waiting for them).
func (w *lifecycle) fail(ctx workflow.Context, actor registry.Actor, reason string, unready bool) error {
	res, err := w.change(ctx, a.Fail, "fail", actor, reason)
	if err != nil {
		return w.refused(actor, err)
	}
	w.failure, w.failedUnready = reason, unready
	w.lastError = reason
	if err := w.adopt(ctx, res.Version, actor, reason); err != nil {
		return err
	}
	w.report(ctx, "Warning", "VersionFailed", fmt.Sprintf("version %s of %s was not made Active: %s", w.in.Ref.Label, w.in.Ref.App, reason))
	return nil
}

// cannotRoute handles a step that failed: a routing refusal (routes that cannot be rendered or
// were refused, a claimed host and path) marks a Pending or Staged version Failed, and is
// reported to an operator who asked; anything else goes through refused.
func (w *lifecycle) cannotRoute(ctx workflow.Context, name string, actor registry.Actor, err error) error {
	var rr *routingRefusal
	if !errors.As(err, &rr) {
		return w.refused(actor, err)
	}
	reason := fmt.Sprintf("cannot %s: %s", name, rr.msg)
	switch w.state {
	case registry.Pending, registry.Staged:
		if err := w.fail(ctx, actor, reason, false); err != nil {
			return err
		}
	default:
		w.lastError = reason
		w.audit(ctx, name+"-refused", actor, rr.msg)
	}
	if actor == w.self {
		return nil
	}
	return &refusal{fmt.Sprintf("version %s: %s", w.in.Ref.Label, reason)}
}

// routingRefusal is a step refused because the app's routes could not be written with it.
type routingRefusal struct{ kind, msg string }

func (r *routingRefusal) Error() string { return r.msg }

// refused passes a refusal back to the operator who asked for the step; a step the workflow
// decided itself is nobody's error: the workflow has adopted the registry's state and carries on
// from there.
func (w *lifecycle) refused(actor registry.Actor, err error) error {
	var r *refusal
	if actor == w.self && errors.As(err, &r) {
		w.logger.Warn("registry refused the lifecycle's own step", "error", r.msg)
		return nil
	}
	return err
}

// enterDraining starts the draining clock at drainingAt (the registry's time of the change).
func (w *lifecycle) enterDraining(ctx workflow.Context, drainingAt time.Time, by string, actor registry.Actor, reason string) error {
	if err := w.loadPolicy(ctx); err != nil {
		return err
	}
	if drainingAt.IsZero() { // a sender that did not say when: start the clock now, not in year 1
		drainingAt = workflow.Now(ctx)
	}
	w.drainingAt, w.by = drainingAt, by
	w.zeroStreak, w.readings, w.nextCheck = 0, nil, time.Time{}
	w.expireRefusals = 0
	return w.enter(ctx, registry.Draining, drainingAt, actor, reason)
}

// change runs one registry transition of this life. A refusal by the registry re-reads the
// registry and comes back as a *refusal; losing the life (a newer one exists, or none) ends
// the lifecycle and also comes back as a *refusal. Other errors stop the workflow.
func (w *lifecycle) change(ctx workflow.Context, step any, name string, actor registry.Actor, reason string) (activities.TransitionResult, error) {
	var res activities.TransitionResult
	w.advisePlan(ctx, name)
	err := workflow.ExecuteActivity(planOptions(ctx, registryOptions, name), step, activities.TransitionInput{
		Ref: w.in.Ref, VersionID: w.versionID, Actor: actor, Reason: reason, From: w.state,
	}).Get(ctx, &res)
	if err == nil {
		return res, nil
	}
	var app *temporal.ApplicationError
	if !errors.As(err, &app) {
		return res, fmt.Errorf("%s %s: %w", name, w.in.Ref, err)
	}
	switch app.Type() {
	case activities.ErrTypeIllegalTransition:
		if err := w.resync(ctx); err != nil {
			return res, err
		}
		return res, &refusal{fmt.Sprintf("cannot %s version %s: %s; it is %s", name, w.in.Ref.Label, app.Message(), w.state)}
	case activities.ErrTypeStaleLife, activities.ErrTypeNotFound:
		w.lost(ctx, app.Message())
		return res, &refusal{fmt.Sprintf("cannot %s version %s: %s", name, w.in.Ref.Label, app.Message())}
	case activities.ErrTypeRoutesInvalid, activities.ErrTypeRoutesRefused, activities.ErrTypeClaimConflict:
		return res, &routingRefusal{kind: app.Type(), msg: app.Message()}
	}
	return res, fmt.Errorf("%s %s: %w", name, w.in.Ref, err)
}

// resync adopts the registry's view of this life.
func (w *lifecycle) resync(ctx workflow.Context) error {
	var v registry.Version
	err := workflow.ExecuteActivity(registryOptions(ctx, "re-read version"), a.CurrentVersion, w.in.Ref).Get(ctx, &v)
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == activities.ErrTypeNotFound {
		w.lost(ctx, app.Message())
		return nil
	}
	if err != nil {
		return fmt.Errorf("re-read version %s: %w", w.in.Ref, err)
	}
	if v.ID != w.versionID {
		w.lost(ctx, fmt.Sprintf("the registry's newest life of %s is #%d, not #%d", w.in.Ref, v.Life, w.life))
		return nil
	}
	return w.adopt(ctx, v, registry.Actor{Type: registry.ActorSystem, Name: "registry"}, "re-read from the registry")
}

// lost ends a lifecycle whose life the registry no longer has as its newest.
func (w *lifecycle) lost(ctx workflow.Context, why string) {
	w.logger.Warn("life no longer current in the registry: ending", "why", why)
	w.finalWhy = why
	_ = w.enter(ctx, registry.Expired, workflow.Now(ctx), registry.Actor{Type: registry.ActorSystem, Name: "registry"}, why)
}

// adopt takes the state of a registry row, with the registry's time of its last change.
func (w *lifecycle) adopt(ctx workflow.Context, v registry.Version, actor registry.Actor, reason string) error {
	if v.State == w.state && len(w.transitions) > 0 {
		return nil
	}
	at := workflow.Now(ctx)
	switch {
	case v.State == registry.Pending:
		at = v.PendingAt
	case v.State == registry.Staged && v.StagedAt != nil:
		at = *v.StagedAt
	case v.State == registry.Active && v.ActiveAt != nil:
		at = *v.ActiveAt
	case v.State == registry.Expired && v.ExpiredAt != nil:
		at = *v.ExpiredAt
	case v.State == registry.Failed && v.FailedAt != nil:
		at = *v.FailedAt
	case v.State == registry.Draining && v.DrainingAt != nil:
		// Superseded since: its successor's signal will find it Draining and be ignored.
		return w.enterDraining(ctx, *v.DrainingAt, orDefault(w.by, "a newer version"), actor, reason)
	}
	return w.enter(ctx, v.State, at, actor, reason)
}

// enter records a state change and publishes it to visibility.
func (w *lifecycle) enter(ctx workflow.Context, state registry.State, at time.Time, actor registry.Actor, reason string) error {
	w.state = state
	w.transitions = append(w.transitions, StateChange{State: state, At: at, Actor: actor, Reason: reason})
	w.logger.Info("state changed", "state", state, "at", at, "reason", reason)
	return workflow.UpsertTypedSearchAttributes(ctx, StateKey.ValueSet(string(state)))
}

// syncRoutes writes the app's routes from the registry (after a policy change). Transient
// failures are retried by the activity; a permanent one is recorded and the lifecycle goes on:
// routing keeps its last good state.
func (w *lifecycle) syncRoutes(ctx workflow.Context, actor registry.Actor, reason string) {
	err := workflow.ExecuteActivity(kubeOptions(ctx, "write routes"), a.SyncRoutes, activities.SyncInput{
		App: w.in.Ref.AppRef(), Cause: w.in.Ref, Actor: actor, Reason: reason,
	}).Get(ctx, nil)
	if err != nil {
		w.lastError = "routes not written: " + failureMessage(err)
		w.logger.Error("routes not written", "error", err)
	}
}

// applySwitch applies the app's skew protection switch (ApplySwitch: while off, the Draining
// versions expire and the routes become one plain route to this version, in one transaction;
// while on, the routes get their pins back), then tells each expired version's workflow to
// retire it, as for a version capped by maxVersions. A failed write is recorded and the
// lifecycle goes on: nothing changed, and the next policy change or activation applies it.
func (w *lifecycle) applySwitch(ctx workflow.Context, actor registry.Actor, reason string) {
	var res activities.SwitchResult
	err := workflow.ExecuteActivity(kubeOptions(ctx, "apply the skew protection switch"), a.ApplySwitch, activities.SyncInput{
		App: w.in.Ref.AppRef(), Cause: w.in.Ref, Actor: actor, Reason: reason,
	}).Get(ctx, &res)
	if err != nil {
		w.lastError = "skew protection switch not applied: " + failureMessage(err)
		w.logger.Error("skew protection switch not applied", "error", err)
		return
	}
	for _, v := range res.Expired {
		w.notifyCapped(ctx, v, actor, registry.ReasonProtectionOff)
	}
}

// Pauses before retiring again after the API server refused it (RBAC, an admission webhook).
const (
	retireRetryFirst = time.Minute
	retireRetryMax   = time.Hour
)

// retire scales the version's Deployments to 0, or deletes its Deployments and Services. A
// refusal is not retried as is: it is audited, reported as a Kubernetes Event, shown in the
// workflow's details and last error, and tried again after a pause that doubles up to an hour,
// or at once on force-expire (an operator who fixed the cause). A redeploy of this life ends
// the attempts: the new life runs on those workloads.
func (w *lifecycle) retire(ctx workflow.Context, actor registry.Actor, reason string) {
	pause := retireRetryFirst
	for refused := 0; ; refused++ {
		w.advisePlan(ctx, "retire")
		err := workflow.ExecuteActivity(planOptions(ctx, kubeOptions, "retire workloads"), a.Retire, activities.RetireInput{
			Ref: w.in.Ref, ServiceName: w.in.ServiceName, Delete: w.policy.AutoCleanup, Actor: actor, Reason: reason,
		}).Get(ctx, nil)
		if err == nil {
			if refused > 0 {
				w.lastError = ""
			}
			return
		}
		w.lastError = "workloads not retired: " + failureMessage(err)
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != activities.ErrTypeWorkloadsRefused {
			w.logger.Error("workloads not retired", "error", err)
			return
		}
		w.logger.Warn("retirement refused; trying again later", "error", app.Message(), "pause", pause)
		if refused == 0 {
			w.audit(ctx, "retire-refused", actor, app.Message())
			w.report(ctx, "Warning", "RetireRefused", fmt.Sprintf("version %s of %s was not retired: %s",
				w.in.Ref.Label, w.in.Ref.App, app.Message()))
		}
		w.setDetails(ctx, fmt.Sprintf("**Expired**, workloads not retired: %s. Next attempt at %s, or at once on signal `%s`.",
			app.Message(), stamp(workflow.Now(ctx).Add(pause)), SignalForceExpire))
		if w.awaitRetireRetry(ctx, pause) {
			return
		}
		pause = min(2*pause, retireRetryMax)
	}
}

// awaitRetireRetry waits for the next attempt to retire: the pause, or a force-expire. It
// reports true when a redeploy of this life came instead (kept for finish).
func (w *lifecycle) awaitRetireRetry(ctx workflow.Context, pause time.Duration) (redeployed bool) {
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	done := false
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, pause), func(workflow.Future) { done = true })
	sel.AddReceive(w.forceExpire, func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(ctx, nil)
		done = true
	})
	sel.AddReceive(workflow.GetSignalChannel(ctx, SignalRedeploy), func(c workflow.ReceiveChannel, _ bool) {
		var r Redeploy
		c.Receive(ctx, &r)
		if r.After == w.versionID && w.versionID != 0 {
			w.redeploy, redeployed, done = &r.Input, true, true
		}
	})
	for !done {
		sel.Select(ctx)
	}
	return redeployed
}

// notifySuperseded tells the version this one superseded that it is now Draining. A workflow
// that no longer runs is not an error.
func (w *lifecycle) notifySuperseded(ctx workflow.Context, prev registry.Version, actor registry.Actor, reason string) {
	if prev.ID == w.versionID || prev.DrainingAt == nil {
		return
	}
	sig := Superseded{VersionID: prev.ID, DrainingAt: *prev.DrainingAt, By: w.in.Ref.Label, Actor: actor,
		Reason: fmt.Sprintf("superseded by %s (%s)", w.in.Ref.Label, reason)}
	w.signalVersion(ctx, prev, SignalSuperseded, sig, "superseded version")
}

// notifyCapped tells the workflow of a version the registry expired for maxVersions when this
// one took over, or because the app's skew protection is off (its routes are already gone), to
// retire it; reason is the one the registry audited: force-expire finds it Expired in
// the registry and goes on to its workloads, as for any expiry. A workflow that no longer runs
// is not an error; one that misses the signal finds the expiry at its next step.
func (w *lifecycle) notifyCapped(ctx workflow.Context, v registry.Version, actor registry.Actor, reason string) {
	w.signalVersion(ctx, v, SignalForceExpire, ActionRequest{Actor: actor, Reason: reason}, "capped version")
}

// signalVersion sends the signal name with arg to v's workflow and waits for it to be delivered.
// A workflow that no longer runs is not an error (logged, as is any other failure); who names v
// in the logs.
func (w *lifecycle) signalVersion(ctx workflow.Context, v registry.Version, name string, arg any, who string) {
	id := cmp.Or(v.WorkflowID, WorkflowID(v.Ref()))
	err := workflow.SignalExternalWorkflow(ctx, id, "", name, arg).Get(ctx, nil)
	var unknown *temporal.UnknownExternalWorkflowExecutionError
	switch {
	case errors.As(err, &unknown):
		w.logger.Info(who+" has no running workflow", "workflowId", id)
	case err != nil:
		w.logger.Warn("could not signal the "+who, "workflowId", id, "error", err)
	}
}

// report records a Kubernetes Event on the version's Deployments; a failure is logged only.
func (w *lifecycle) report(ctx workflow.Context, eventType, reason, message string) {
	err := workflow.ExecuteActivity(kubeOptions(ctx, "report event"), a.ReportEvent, activities.EventInput{
		Ref: w.in.Ref, Type: eventType, Reason: reason, Message: message,
	}).Get(ctx, nil)
	if err != nil {
		w.logger.Warn("event not recorded", "reason", reason, "error", err)
	}
}

// audit appends an entry that is not a state change; a failure is logged only.
func (w *lifecycle) audit(ctx workflow.Context, event string, actor registry.Actor, reason string) {
	err := workflow.ExecuteActivity(registryOptions(ctx, "audit"), a.Audit, activities.AuditInput{
		Ref: w.in.Ref, Event: event, Actor: actor, Reason: reason,
	}).Get(ctx, nil)
	if err != nil {
		w.logger.Warn("audit not written", "event", event, "error", err)
	}
}

// advisePlan, in advise mode, says in the workflow's details that the step's plan is published
// and awaited (the step's activity publishes it and waits until the cluster shows it applied).
// The details are metadata, not a command: replay is unaffected. The mode is the one the
// lifecycle last loaded; the activity reads the app's current mode itself.
func (w *lifecycle) advisePlan(ctx workflow.Context, step string) {
	if w.policy.Mode != registry.ModeAdvise {
		return
	}
	w.setDetails(ctx, fmt.Sprintf("**%s**, advise mode: the `%s` step is published as a plan (`skewguard plan %s/%s %s -o yaml`, "+
		"`GET …/versions/%s/plan`, Event `PlanPublished`); waiting until the cluster shows it applied, or a newer plan supersedes it.",
		stateTitle(cmp.Or(w.state, registry.Pending)), step, w.in.Ref.Namespace, w.in.Ref.App, w.in.Ref.Label, w.in.Ref.Label))
}

// stateTitle is a state as the details write it: "Active" for active.
func stateTitle(s registry.State) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(string(s[:1])) + string(s[1:])
}
