package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/internal/registry"
)

// Every state loop waits on the same things, plus a timer or an activity of its own. All
// changes of state happen in the main loop, one at a time: update handlers only queue an action
// and wait for the loop to answer it, so no two steps ever run concurrently.

type eventKind int

const (
	eventTimer eventKind = iota + 1
	eventFuture
	eventAction
	eventSuperseded
	eventForceExpire
	eventPolicyChanged
)

type event struct {
	kind       eventKind
	action     *action
	superseded Superseded
	request    ActionRequest
}

// action is one accepted update, answered by the main loop.
type action struct {
	kind   string
	req    ActionRequest
	done   bool
	result ActionResult
	err    error
}

// wait blocks until the timer at until (if not zero) fires, fut (if not nil) is ready, an
// update is queued or a signal arrives.
func (w *lifecycle) wait(ctx workflow.Context, until time.Time, fut workflow.Future) event {
	var ev event
	sel := workflow.NewSelector(ctx)
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	if !until.IsZero() {
		d := until.Sub(workflow.Now(ctx))
		if d <= 0 {
			return event{kind: eventTimer}
		}
		timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: "until " + stamp(until)})
		sel.AddFuture(timer, func(workflow.Future) { ev.kind = eventTimer })
	}
	if fut != nil {
		sel.AddFuture(fut, func(workflow.Future) { ev.kind = eventFuture })
	}
	sel.AddReceive(w.actions, func(c workflow.ReceiveChannel, _ bool) {
		ev.kind = eventAction
		c.Receive(ctx, &ev.action)
		w.queued--
	})
	sel.AddReceive(w.superseded, func(c workflow.ReceiveChannel, _ bool) {
		ev.kind = eventSuperseded
		c.Receive(ctx, &ev.superseded)
	})
	sel.AddReceive(w.forceExpire, func(c workflow.ReceiveChannel, _ bool) {
		ev.kind = eventForceExpire
		c.Receive(ctx, &ev.request)
	})
	sel.AddReceive(w.policyChanged, func(c workflow.ReceiveChannel, _ bool) {
		ev.kind = eventPolicyChanged
		c.Receive(ctx, &ev.request)
	})
	sel.Select(ctx)
	return ev
}

// pendingEvent returns an update or signal that has arrived and not been handled, if any.
func (w *lifecycle) pendingEvent() (event, bool) {
	var act *action
	if w.actions.ReceiveAsync(&act) {
		w.queued--
		return event{kind: eventAction, action: act}, true
	}
	var s Superseded
	if w.superseded.ReceiveAsync(&s) {
		return event{kind: eventSuperseded, superseded: s}, true
	}
	var req ActionRequest
	if w.forceExpire.ReceiveAsync(&req) {
		return event{kind: eventForceExpire, request: req}, true
	}
	if w.policyChanged.ReceiveAsync(&req) {
		return event{kind: eventPolicyChanged, request: req}, true
	}
	return event{}, false
}

// settle handles every update and signal received so far and waits until no update handler is
// running, so that the run can end (complete or continue as new) without losing any. It reports
// whether it handled something: the caller must then look at the state again.
func (w *lifecycle) settle(ctx workflow.Context) (handled bool, err error) {
	for {
		for {
			ev, ok := w.pendingEvent()
			if !ok {
				break
			}
			handled = true
			if err := w.handle(ctx, ev); err != nil {
				return handled, err
			}
		}
		if workflow.AllHandlersFinished(ctx) {
			return handled, nil
		}
		if err := workflow.Await(ctx, func() bool { return w.queued > 0 || workflow.AllHandlersFinished(ctx) }); err != nil {
			return handled, err
		}
	}
}

// handle applies one update or signal. It returns an error only when the workflow must stop.
func (w *lifecycle) handle(ctx workflow.Context, ev event) error {
	switch ev.kind {
	case eventAction:
		return w.perform(ctx, ev.action)
	case eventSuperseded:
		return w.onSuperseded(ctx, ev.superseded)
	case eventForceExpire:
		return w.onForceExpire(ctx, withDefaults(ev.request))
	case eventPolicyChanged:
		return w.onPolicyChanged(ctx, withDefaults(ev.request))
	}
	return nil
}

// onPolicyChanged reloads the app's policy: a Draining version's timers follow the new values
// at once (its loop recomputes them), and the Active version re-writes the routes (the cookie
// Max-Age is part of them). Since change "app-enabled" the Active version applies the app's
// skew protection switch instead (applySwitch): switched off, the app's Draining versions
// expire with the plain route that replaces their pins, and their workflows retire them.
func (w *lifecycle) onPolicyChanged(ctx workflow.Context, req ActionRequest) error {
	old := w.policy
	if err := w.loadPolicy(ctx); err != nil {
		return err
	}
	w.logger.Info("policy reloaded", "by", describeActor(req.Actor), "old", old, "new", w.policy)
	if w.state == registry.Active {
		if workflow.GetVersion(ctx, "app-enabled", workflow.DefaultVersion, 1) == 1 {
			// The switch (enabled) may have changed: its expiries and the routes go together.
			w.applySwitch(ctx, req.Actor, orDefault(req.Reason, "policy changed"))
		} else {
			w.syncRoutes(ctx, req.Actor, orDefault(req.Reason, "policy changed"))
		}
	}
	return nil
}

// submit is the body of every update handler: queue the action and wait for the main loop.
func (w *lifecycle) submit(ctx workflow.Context, kind string, req ActionRequest) (ActionResult, error) {
	act := &action{kind: kind, req: withDefaults(req)}
	w.queued++
	w.actions.Send(ctx, act)
	if err := workflow.Await(ctx, func() bool { return act.done }); err != nil {
		return ActionResult{}, err
	}
	return act.result, act.err
}

// perform runs an accepted action, unless the state changed since it was validated.
func (w *lifecycle) perform(ctx workflow.Context, act *action) error {
	defer func() { act.done = true }()
	if err := w.allowed(act.kind, act.req); err != nil {
		act.err = err
		return nil
	}
	actor, reason := act.req.Actor, act.req.Reason
	var err error
	switch act.kind {
	case UpdateExpire:
		err = w.expire(ctx, actor, orDefault(reason, "expired by "+describeActor(actor)))
	case UpdatePromote:
		err = w.promote(ctx, actor, orDefault(reason, "promoted by "+describeActor(actor)))
	case UpdateApprove:
		err = w.activate(ctx, actor, orDefault(reason, "approved by "+describeActor(actor)))
	case UpdateReject:
		err = w.expire(ctx, actor, orDefault(reason, "rejected by "+describeActor(actor)))
	}
	if r, ok := err.(*refusal); ok {
		act.err = r
		return nil
	}
	if err != nil {
		act.err = fmt.Errorf("%s failed: %w", act.kind, err)
		return err
	}
	act.result = ActionResult{State: w.state, Message: fmt.Sprintf("version %s is now %s", w.in.Ref.Label, w.state)}
	return nil
}

// onSuperseded moves an Active version to Draining. Signals for another life, or arriving when
// the version is not Active (a repeat, or one overtaken by a promote), are ignored.
func (w *lifecycle) onSuperseded(ctx workflow.Context, s Superseded) error {
	if s.VersionID != 0 && s.VersionID != w.versionID {
		w.logger.Info("ignoring superseded signal for another life", "signalVersionId", s.VersionID)
		return nil
	}
	if w.state != registry.Active {
		w.logger.Info("ignoring superseded signal", "state", w.state, "by", s.By)
		return nil
	}
	reason := orDefault(s.Reason, "superseded by "+s.By)
	return w.enterDraining(ctx, s.DrainingAt, s.By, s.Actor, reason)
}

// onForceExpire expires the version, unless it is Active (or already Expired): a signal cannot
// be refused, so the refusal is logged, audited and shown in the state view.
func (w *lifecycle) onForceExpire(ctx workflow.Context, req ActionRequest) error {
	if w.state == registry.Active && workflow.GetVersion(ctx, "force-expire-rereads-active", workflow.DefaultVersion, 1) == 1 {
		// The registry may be further along than this workflow: superseded and then expired for
		// maxVersions by two flips whose signals crossed. Expire only what the registry no
		// longer has Active.
		if err := w.resync(ctx); err != nil {
			return err
		}
		if w.state == registry.Expired {
			err := w.expire(ctx, req.Actor, orDefault(req.Reason, "force-expire signal from "+describeActor(req.Actor)))
			if _, ok := err.(*refusal); ok {
				return nil
			}
			return err
		}
	}
	if err := w.allowed(UpdateExpire, req); err != nil {
		w.logger.Warn("force-expire ignored", "reason", err.Error())
		w.lastError = "force-expire ignored: " + err.Error()
		w.audit(ctx, "force-expire-refused", req.Actor, err.Error())
		return nil
	}
	err := w.expire(ctx, req.Actor, orDefault(req.Reason, "force-expire signal from "+describeActor(req.Actor)))
	if _, ok := err.(*refusal); ok {
		return nil
	}
	return err
}

// allowed is the validator of every action: it reads the state and changes nothing.
func (w *lifecycle) allowed(kind string, req ActionRequest) error {
	switch req.Actor.Type {
	case "", registry.ActorUser, registry.ActorSystem, registry.ActorPod, registry.ActorWorkflow:
	default:
		return fmt.Errorf("unknown actor type %q (use user, system, pod or workflow)", req.Actor.Type)
	}
	v, s := w.in.Ref.Label, w.state
	switch kind {
	case UpdateExpire:
		switch s {
		case registry.Pending, registry.Staged, registry.Draining, registry.Failed:
			return nil
		case registry.Active:
			return fmt.Errorf("version %s is the Active version of %s and cannot be expired: deploy or promote another version first", v, w.in.Ref.AppRef())
		}
	case UpdatePromote:
		switch s {
		case registry.Draining:
			return nil
		case registry.Active:
			return fmt.Errorf("version %s is already the Active version", v)
		case registry.Staged:
			return fmt.Errorf("version %s is staged: approve it instead", v)
		case registry.Pending:
			return fmt.Errorf("version %s is pending (not ready yet): only a Draining version can be promoted", v)
		case registry.Failed:
			return fmt.Errorf("version %s is failed: approve it to retry its activation", v)
		}
	case UpdateApprove, UpdateReject:
		if s == registry.Staged || s == registry.Failed {
			return nil
		}
		if s != registry.Expired {
			return fmt.Errorf("version %s is %s: only a Staged or Failed version can be %s", v, s, pastTense(kind))
		}
	default:
		return fmt.Errorf("unknown action %q", kind)
	}
	return fmt.Errorf("version %s is already expired", v)
}

// withDefaults names an operator who did not name themselves (the Temporal UI sends no actor).
func withDefaults(req ActionRequest) ActionRequest {
	if req.Actor.Type == "" {
		req.Actor = registry.Actor{Type: registry.ActorUser, Name: "temporal"}
	}
	return req
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func pastTense(kind string) string {
	if kind == UpdateApprove {
		return "approved"
	}
	return "rejected"
}
