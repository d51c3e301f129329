// Package workflows owns the durable lifecycle of a version: one VersionLifecycle workflow per
// version label (ID skew/<namespace>/<app>/<version>), driving it through
// pending → (staged →) active → draining → expired with activities, steered by signals and
// updates, and visible in the Temporal UI through search attributes, details and a query.
//
// # Timing of Draining
//
// The draining clock starts when the version became Draining in the registry (its draining_at,
// carried by the superseded signal or returned by the activity that demoted it); workflow code
// only ever reads workflow.Now. Then:
//
//   - Grace period: one durable timer, no checks at all.
//   - After it, a check every check interval, on the grid grace end + k·interval (k ≥ 1):
//     past max alive → expire; drained for less than the traffic window counted from the end of
//     the grace period → wait (so a reading never covers the unconditional grace period; those
//     checks are skipped rather than woken up for); else read the version's request rate.
//   - The draining versions of one app share their Prometheus query: a reading may come from
//     the app's query of up to one interval ago, but never from one evaluated before its first
//     reading instant, nor from the query of its previous reading (activities.NewTrafficInput).
//   - Two consecutive zero readings → expire. A reading with traffic resets the streak. A failed
//     query, or one that finds no series for the version, counts as nothing: neither zero nor
//     traffic, and the streak is kept.
//   - Max alive is measured from the draining start and always wins: the workflow wakes up at
//     that instant even between two checks.
//
// With the documented defaults (grace 30 min, window 5 min, interval 1 min) and no traffic, the
// first reading is at drained+35 min (zero #1), the second at +36 min (zero #2), and the version
// expires at exactly drained+36 min = grace period + traffic window + the second zero check.
//
// The loop continues as new when the SDK suggests it, carrying the draining time, the zero
// streak, the recent readings and the policy (Resume).
package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// a is how workflow code names activities: methods of a nil *Activities (the worker registers a
// real one), so the compiler checks every name and signature.
var a *activities.Activities

// zeroReadingsToExpire is how many consecutive zero readings expire a Draining version.
const zeroReadingsToExpire = 2

// keptReadings is how many recent readings the state view (and continue-as-new) keeps.
const keptReadings = 10

// historyLimit continues as new even if the server never suggests it.
const historyLimit = 20000

// VersionLifecycle is the durable lifecycle of one version. See the package documentation for
// the timing of Draining.
func VersionLifecycle(ctx workflow.Context, in LifecycleInput) (LifecycleResult, error) {
	if err := in.validate(); err != nil {
		return LifecycleResult{}, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidInput, err)
	}
	w := newLifecycle(ctx, in)
	if err := w.setup(ctx); err != nil {
		return LifecycleResult{}, err
	}
	return w.run(ctx)
}

type lifecycle struct {
	in     LifecycleInput
	id     string
	self   registry.Actor // the workflow itself, for its own decisions
	logger log.Logger

	versionID   int64
	life        int
	state       registry.State
	transitions []StateChange
	policy      activities.Policy

	// Draining.
	drainingAt time.Time
	by         string
	zeroStreak int
	readings   []Reading
	nextCheck  time.Time

	waitingFor string
	lastError  string
	finalWhy   string
	runs       int

	// readyAtAdmission is the Service's readiness found ready by Admit, acted on by pending
	// instead of waiting.
	readyAtAdmission *kube.Readiness

	// Failed: why, and whether the version failed only for want of ready endpoints (then it
	// keeps waiting for them and is activated when they come).
	failure       string
	failedUnready bool
	// retryExpireAt holds back the lifecycle's own expiry after its route write was refused;
	// expireRefusals counts those refusals in this draining period.
	retryExpireAt  time.Time
	expireRefusals int
	// redeploy is the input of a new life of this label, received while retiring this one.
	redeploy *LifecycleInput

	actions       workflow.Channel // *action, from the update handlers
	queued        int              // actions sent and not yet received
	superseded    workflow.ReceiveChannel
	forceExpire   workflow.ReceiveChannel
	policyChanged workflow.ReceiveChannel
}

func newLifecycle(ctx workflow.Context, in LifecycleInput) *lifecycle {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	return &lifecycle{
		in:            in,
		id:            id,
		self:          registry.Actor{Type: registry.ActorWorkflow, ID: id},
		logger:        log.With(workflow.GetLogger(ctx), "version", in.Ref.String()),
		state:         registry.Pending,
		actions:       workflow.NewBufferedChannel(ctx, 64),
		superseded:    workflow.GetSignalChannel(ctx, SignalSuperseded),
		forceExpire:   workflow.GetSignalChannel(ctx, SignalForceExpire),
		policyChanged: workflow.GetSignalChannel(ctx, SignalPolicyChanged),
	}
}

// setup registers the query and update handlers and the search attributes.
func (w *lifecycle) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (StateView, error) { return w.view(), nil }); err != nil {
		return err
	}
	for _, kind := range []string{UpdateExpire, UpdatePromote, UpdateApprove, UpdateReject} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, kind,
			func(ctx workflow.Context, req ActionRequest) (ActionResult, error) { return w.submit(ctx, kind, req) },
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req ActionRequest) error {
				return w.allowed(kind, req)
			}})
		if err != nil {
			return err
		}
	}
	if r := w.in.Resume; r != nil {
		w.versionID, w.life, w.state = r.VersionID, r.Life, r.State
		w.transitions = append([]StateChange(nil), r.Transitions...)
		w.drainingAt, w.by, w.zeroStreak = r.DrainingAt, r.By, r.ZeroStreak
		w.readings = append([]Reading(nil), r.Readings...)
		w.policy, w.runs = r.Policy, r.Runs
	}
	return workflow.UpsertTypedSearchAttributes(ctx,
		NamespaceKey.ValueSet(w.in.Ref.Namespace), AppKey.ValueSet(w.in.Ref.App),
		VersionKey.ValueSet(w.in.Ref.Label), StateKey.ValueSet(string(w.state)))
}

// run reads like the life of a version.
func (w *lifecycle) run(ctx workflow.Context) (LifecycleResult, error) {
	if w.in.Resume == nil {
		if err := w.observe(ctx); err != nil {
			return w.result(), err
		}
	}
	for {
		var err error
		switch w.state {
		case registry.Pending:
			err = w.pending(ctx)
		case registry.Staged:
			err = w.staged(ctx)
		case registry.Active:
			err = w.active(ctx)
		case registry.Draining:
			err = w.draining(ctx)
		case registry.Failed:
			err = w.failed(ctx)
		default:
			res, err := w.finish(ctx)
			if errors.Is(err, errResume) {
				continue
			}
			return res, err
		}
		if err != nil {
			return w.result(), err
		}
	}
}

// observe records the version in the registry and adopts whatever state its live life is in
// (a fresh Pending one, or further along when the workflow was restarted for a known version).
//
// Since change "admit" it does so in one local activity that also looks at the readiness cache,
// inside the first workflow task: recording, the policy and readiness cost no round trip through
// Temporal's matching, and a version whose pods are ready already is activated by the next
// step. A run recorded before that made two activities (Observe, LoadPolicy); replaying its
// history must make the same calls.
func (w *lifecycle) observe(ctx workflow.Context) error {
	in := activities.ObserveInput{
		Ref: w.in.Ref, Placement: w.in.Placement, Origin: w.in.Origin, WorkflowID: w.id, Actor: w.in.Actor,
	}
	var v registry.Version
	if workflow.GetVersion(ctx, "admit", workflow.DefaultVersion, 1) == 1 {
		var res activities.AdmitResult
		if err := workflow.ExecuteLocalActivity(admitOptions(ctx), a.Admit, in).Get(ctx, &res); err != nil {
			return fmt.Errorf("record version %s: %w", w.in.Ref, err)
		}
		v, w.policy = res.Version, res.Policy
		if res.Readiness != nil && res.Readiness.Ready {
			w.readyAtAdmission = res.Readiness
		}
	} else {
		err := workflow.ExecuteActivity(registryOptions(ctx, "record version"), a.Observe, in).Get(ctx, &v)
		if err != nil {
			return fmt.Errorf("record version %s: %w", w.in.Ref, err)
		}
		if err := w.loadPolicy(ctx); err != nil {
			return err
		}
	}
	w.versionID, w.life = v.ID, v.Life
	if err := w.adopt(ctx, v, w.in.Actor, "detected"); err != nil {
		return err
	}
	if w.state == registry.Failed {
		w.failure = v.Failure
	}
	if w.in.Invalid != "" && w.state == registry.Pending {
		// Checked at detection: its routes cannot be rendered, so it must never become Active.
		return w.fail(ctx, w.self, "routes cannot be rendered: "+w.in.Invalid, false)
	}
	return nil
}

func (w *lifecycle) loadPolicy(ctx workflow.Context) error {
	err := workflow.ExecuteActivity(registryOptions(ctx, "load policy"), a.LoadPolicy, w.in.Ref.AppRef()).Get(ctx, &w.policy)
	if err != nil {
		return fmt.Errorf("load policy of %s: %w", w.in.Ref.AppRef(), err)
	}
	return nil
}

// pending waits, bounded by the readiness timeout, for the version's Service to have a ready
// endpoint (the EndpointSlice's ready condition); then the version is staged (approval required) or
// activated. Expire (update or signal) ends the wait.
func (w *lifecycle) pending(ctx workflow.Context) error {
	if r := w.readyAtAdmission; r != nil {
		// Ready already when it was recorded: no wait at all.
		w.readyAtAdmission = nil
		return w.readyWith(ctx, *r)
	}
	deadline := workflow.Now(ctx).Add(w.policy.ReadinessTimeout)
	w.setDetails(ctx, fmt.Sprintf("**Pending**: waiting for Service `%s` to have a ready endpoint, until %s (readiness timeout %s; after it the version is Failed, not retired).",
		w.in.ServiceName, stamp(deadline), w.policy.ReadinessTimeout))
	actCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	ready := workflow.ExecuteActivity(readyOptions(actCtx, w.policy.ReadinessTimeout), a.WaitReady, activities.ReadyInput{
		Ref: w.in.Ref, ServiceName: w.in.ServiceName, ServicePort: w.in.ServicePort, Deadline: deadline,
	})
	for w.state == registry.Pending {
		ev := w.wait(ctx, time.Time{}, ready)
		if ev.kind != eventFuture {
			if err := w.handle(ctx, ev); err != nil {
				return err
			}
			continue
		}
		var r kube.Readiness
		if err := ready.Get(ctx, &r); err != nil {
			if !w.atomicFlip(ctx) {
				return w.expire(ctx, w.self, fmt.Sprintf("not ready within the readiness timeout (%s): %s",
					w.policy.ReadinessTimeout, failureMessage(err)))
			}
			// Never retire a version that was never ready: the user owns its Deployment.
			return w.fail(ctx, w.self, fmt.Sprintf("not ready within the readiness timeout (%s): %s",
				w.policy.ReadinessTimeout, failureMessage(err)), true)
		}
		return w.readyWith(ctx, r)
	}
	return nil
}

// readyWith moves on a Pending version found ready, first recording the Service port found
// with the endpoints when none was detected.
func (w *lifecycle) readyWith(ctx workflow.Context, r kube.Readiness) error {
	if w.in.ServicePort == 0 && r.Port != 0 {
		w.in.ServicePort = r.Port
		if err := w.refreshPort(ctx); err != nil {
			return err
		}
	}
	return w.ready(ctx, r)
}

// ready moves a version whose Service has ready endpoints on: staged when approval is
// required, else Active.
func (w *lifecycle) ready(ctx workflow.Context, r kube.Readiness) error {
	reason := fmt.Sprintf("ready: %d ready endpoint(s)", r.Endpoints)
	switch {
	case r.Probed != "":
		reason += ", " + r.Probed + " accepts connections"
	case r.ProbeError != "":
		reason += " (TCP probe failed, not fatal: " + r.ProbeError + ")"
	}
	if w.policy.RequireApproval {
		return w.stage(ctx, reason)
	}
	return w.activate(ctx, w.self, reason)
}

// failedReadyWait is how long one wait for a Failed version's endpoints lasts before the
// next one starts (each is one activity; the version keeps waiting as long as it is Failed).
const failedReadyWait = 6 * time.Hour

// failed holds a version that could not be made Active. Its workloads are left alone. If it
// failed for want of ready endpoints, it keeps waiting for them and is activated when they
// come; an operator can retry the activation (approve) or retire it (expire, reject).
func (w *lifecycle) failed(ctx workflow.Context) error {
	what := "an operator: update `approve` retries the activation, `expire` or `reject` retires it"
	if w.failedUnready {
		what = "ready endpoints (then it is activated), or " + what
	}
	w.setDetails(ctx, fmt.Sprintf("**Failed** since %s: %s. Not routed; its workloads are left as they are. Waiting for %s.",
		stamp(w.since()), w.failure, what))
	for w.state == registry.Failed {
		var ready workflow.Future
		cancel := func() {}
		if w.failedUnready {
			var actCtx workflow.Context
			actCtx, cancel = workflow.WithCancel(ctx)
			ready = workflow.ExecuteActivity(readyOptions(actCtx, failedReadyWait), a.WaitReady, activities.ReadyInput{
				Ref: w.in.Ref, ServiceName: w.in.ServiceName, ServicePort: w.in.ServicePort,
				Deadline: workflow.Now(ctx).Add(failedReadyWait),
			})
		}
		for w.state == registry.Failed {
			ev := w.wait(ctx, time.Time{}, ready)
			if ev.kind != eventFuture {
				if err := w.handle(ctx, ev); err != nil {
					cancel()
					return err
				}
				continue
			}
			var r kube.Readiness
			if err := ready.Get(ctx, &r); err != nil {
				break // still not ready: wait again
			}
			cancel()
			return w.ready(ctx, r)
		}
		cancel()
	}
	return nil
}

// refreshPort records the Service port found while waiting, when none was detected (the
// registry takes new values of a Pending version).
func (w *lifecycle) refreshPort(ctx workflow.Context) error {
	err := workflow.ExecuteActivity(registryOptions(ctx, "record Service port"), a.Observe, activities.ObserveInput{
		Ref: w.in.Ref, Placement: registry.Placement{ServiceName: w.in.ServiceName, ServicePort: w.in.ServicePort},
		WorkflowID: w.id, Actor: w.self,
	}).Get(ctx, nil)
	if err != nil {
		return fmt.Errorf("record Service port of %s: %w", w.in.Ref, err)
	}
	return nil
}

// staged waits for an operator to approve or reject the version.
func (w *lifecycle) staged(ctx workflow.Context) error {
	w.setDetails(ctx, fmt.Sprintf("**Staged** since %s: reachable only by an explicit pin; waiting for the update `approve` (make it Active) or `reject` (expire it).",
		stamp(w.since())))
	for w.state == registry.Staged {
		if err := w.handle(ctx, w.wait(ctx, time.Time{}, nil)); err != nil {
			return err
		}
	}
	return nil
}

// active serves new sessions until a newer version supersedes this one.
func (w *lifecycle) active(ctx workflow.Context) error {
	w.setDetails(ctx, fmt.Sprintf("**Active** since %s: new sessions are routed here; waiting for a newer version to supersede it (signal `superseded`), or a manual action.",
		stamp(w.since())))
	for w.state == registry.Active {
		if err := w.handle(ctx, w.wait(ctx, time.Time{}, nil)); err != nil {
			return err
		}
	}
	return nil
}

// draining keeps the version for its pinned sessions until its traffic stops or max alive.
func (w *lifecycle) draining(ctx workflow.Context) error {
	for w.state == registry.Draining {
		now := workflow.Now(ctx)
		graceEnd, firstRead, maxAt := w.timeline()
		if now.Before(w.retryExpireAt) {
			// The last expiry could not write the routes: wait before trying again.
			w.nextCheck = w.retryExpireAt
			w.setDetails(ctx, fmt.Sprintf("**Draining** since %s (superseded by `%s`): due to expire, but %s (%d attempt(s)); it stays routed meanwhile. Next attempt at %s, after a fresh traffic check.",
				stamp(w.drainingAt), w.by, strings.TrimPrefix(w.lastError, expireRefused), w.expireRefusals, stamp(w.retryExpireAt)))
			if ev := w.wait(ctx, w.retryExpireAt, nil); ev.kind != eventTimer {
				if err := w.handle(ctx, ev); err != nil {
					return err
				}
			}
			continue
		}
		if !now.Before(maxAt) {
			return w.expire(ctx, w.self, fmt.Sprintf("max alive %s reached (draining since %s)", w.policy.MaxAlive, stamp(w.drainingAt)))
		}
		adopted := w.watchesAdoptedPods(ctx)
		if adopted {
			if gone, why := w.adoptedBackendGone(ctx); gone {
				return w.expire(ctx, w.self, "adopted pods gone: "+why)
			}
		}
		if now.Before(graceEnd) {
			w.nextCheck = minTime(graceEnd, maxAt)
			if adopted {
				// The adopted Deployment may roll away during the grace period: look again
				// every check interval.
				w.nextCheck = minTime(w.nextCheck, now.Add(w.checkInterval()))
			}
			w.setDetails(ctx, fmt.Sprintf("**Draining** since %s (superseded by `%s`): grace period, no traffic checks until %s. Expires at the latest at %s (max alive %s).",
				stamp(w.drainingAt), w.by, stamp(w.nextCheck), stamp(maxAt), w.policy.MaxAlive))
			if ev := w.wait(ctx, w.nextCheck, nil); ev.kind != eventTimer {
				if err := w.handle(ctx, ev); err != nil {
					return err
				}
			}
			continue
		}
		if w.shouldContinueAsNew(ctx) {
			if done, err := w.continueAsNew(ctx); done {
				return err
			}
			continue
		}
		w.nextCheck = minTime(w.checkAfter(now, graceEnd, firstRead), maxAt)
		w.setDetails(ctx, fmt.Sprintf("**Draining** since %s (superseded by `%s`): next traffic check at %s (zero readings in a row: %d of %d). Expires at the latest at %s (max alive %s).%s",
			stamp(w.drainingAt), w.by, stamp(w.nextCheck), w.zeroStreak, zeroReadingsToExpire, stamp(maxAt), w.policy.MaxAlive, w.drainingNote()))
		if ev := w.wait(ctx, w.nextCheck, nil); ev.kind != eventTimer {
			if err := w.handle(ctx, ev); err != nil {
				return err
			}
			continue
		}
		now = workflow.Now(ctx)
		if !now.Before(maxAt) || now.Before(firstRead) {
			continue // max alive is handled at the top; before the window nothing is read
		}
		if w.check(ctx, maxAt) {
			return w.expire(ctx, w.self, fmt.Sprintf("no traffic: %d consecutive zero readings (last at %s)",
				zeroReadingsToExpire, stamp(w.readings[len(w.readings)-1].At)))
		}
	}
	return nil
}

// watchesAdoptedPods reports whether the Draining version is adopted (its backend is the pods
// of a Deployment's pod template, which an in-place rollout of that Deployment removes) and
// runs code that looks for that: then it is expired at once when its pods are gone for good,
// since a request pinned to it could only get a 503, while the Active version would serve it.
func (w *lifecycle) watchesAdoptedPods(ctx workflow.Context) bool {
	return w.in.AdoptedDeployment != "" &&
		workflow.GetVersion(ctx, "adopted-rollout", workflow.DefaultVersion, 1) == 1
}

// adoptedBackendGone asks whether the adopted version's pods are gone for good (see
// activities.AdoptedBackendGone). A failed check says no: the version keeps draining as before.
func (w *lifecycle) adoptedBackendGone(ctx workflow.Context) (bool, string) {
	actCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    lostWorkerWithin,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
		Summary:             "look for the adopted pods",
	})
	var r activities.AdoptedGone
	err := workflow.ExecuteActivity(actCtx, a.AdoptedBackendGone, activities.AdoptedGoneInput{Ref: w.in.Ref,
		Deployment: w.in.AdoptedDeployment}).Get(ctx, &r)
	if err != nil {
		w.logger.Warn("looking for the adopted pods failed; the version keeps draining", "error", err)
		return false, ""
	}
	return r.Gone, r.Reason
}

// checkInterval is the policy's check interval, a minute if unset.
func (w *lifecycle) checkInterval() time.Duration {
	if w.policy.CheckInterval <= 0 {
		return time.Minute
	}
	return w.policy.CheckInterval
}

// timeline returns when the grace period ends, when the first reading may be taken (grace end +
// traffic window) and when max alive is reached.
func (w *lifecycle) timeline() (graceEnd, firstRead, maxAt time.Time) {
	graceEnd = w.drainingAt.Add(w.policy.GracePeriod)
	return graceEnd, graceEnd.Add(w.policy.TrafficWindow), w.drainingAt.Add(w.policy.MaxAlive)
}

// checkAfter is the first check instant after now on the grid graceEnd + k·interval (k ≥ 1)
// that is not before firstRead: checks inside the window would only wait, so they are skipped.
func (w *lifecycle) checkAfter(now, graceEnd, firstRead time.Time) time.Time {
	interval := w.policy.CheckInterval
	if interval <= 0 { // the registry and the configuration refuse it; never divide by zero
		interval = time.Minute
	}
	k := now.Sub(graceEnd)/interval + 1
	if lead := firstRead.Sub(graceEnd); graceEnd.Add(k * interval).Before(firstRead) {
		k = (lead + interval - 1) / interval
	}
	return graceEnd.Add(k * interval)
}

// check takes one reading and reports whether the version has now had enough zero readings. A
// reading still running at max alive (Prometheus hanging) is abandoned: max alive always wins,
// at its instant.
func (w *lifecycle) check(ctx workflow.Context, maxAt time.Time) bool {
	actCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	var r activities.TrafficReading
	_, firstRead, _ := w.timeline()
	fut := workflow.ExecuteActivity(trafficOptions(actCtx, w.policy.CheckInterval), a.ReadTraffic,
		activities.NewTrafficInput(w.in.Ref, w.in.ServiceName, w.policy, firstRead, w.lastTaken()))
	if left := maxAt.Sub(workflow.Now(ctx)); left < readingBound(w.policy.CheckInterval) &&
		workflow.GetVersion(ctx, "reading-bounded-by-max-alive", workflow.DefaultVersion, 1) == 1 {
		// Only a reading that may outlast max alive races it (a timer on every check would
		// double the history of a long drain).
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		defer cancelTimer()
		cut := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(fut, func(workflow.Future) {})
		sel.AddFuture(workflow.NewTimerWithOptions(timerCtx, left, workflow.TimerOptions{Summary: "max alive " + stamp(maxAt)}),
			func(workflow.Future) { cut = true })
		sel.Select(ctx)
		if cut {
			w.logger.Info("traffic reading abandoned at max alive")
			return false // the loop expires the version
		}
	}
	err := fut.Get(ctx, &r)
	reading := Reading{At: workflow.Now(ctx), RPS: r.RPS, Taken: r.At}
	switch {
	case err != nil:
		reading.Verdict, reading.Error = VerdictFailed, failureMessage(err)
	case !r.Found:
		reading.Verdict = VerdictUnknown
	case r.RPS == 0:
		reading.Verdict = VerdictZero
		w.zeroStreak++
	default:
		reading.Verdict = VerdictTraffic
		w.zeroStreak = 0
	}
	switch {
	case err != nil:
		w.lastError = readingFailed + reading.Error
	case strings.HasPrefix(w.lastError, readingFailed):
		w.lastError = "" // Prometheus answers again
	}
	w.readings = append(w.readings, reading)
	if len(w.readings) > keptReadings {
		w.readings = w.readings[len(w.readings)-keptReadings:]
	}
	return w.zeroStreak >= zeroReadingsToExpire
}

// lastTaken is when the query of the version's last successful reading was evaluated (zero if
// none is kept): the next reading comes from a later one.
func (w *lifecycle) lastTaken() time.Time {
	for i := len(w.readings) - 1; i >= 0; i-- {
		if !w.readings[i].Taken.IsZero() {
			return w.readings[i].Taken
		}
	}
	return time.Time{}
}

// readingFailed starts the last error of a traffic reading that failed.
const readingFailed = "traffic reading failed (counts as nothing; max alive still applies): "

// drainingNote tells, for the details, why the version is still Draining when something failed:
// its expiry was refused, or its last reading counted as nothing.
func (w *lifecycle) drainingNote() string {
	if strings.HasPrefix(w.lastError, expireRefused) {
		return fmt.Sprintf(" The last expiry was refused (%d attempt(s)): %s.", w.expireRefusals, strings.TrimPrefix(w.lastError, expireRefused))
	}
	if len(w.readings) == 0 {
		return ""
	}
	r := w.readings[len(w.readings)-1]
	switch r.Verdict {
	case VerdictFailed:
		failed := 0
		for _, x := range w.readings {
			if x.Verdict == VerdictFailed {
				failed++
			}
		}
		return fmt.Sprintf(" The last reading failed (at %s, %d of the last %d failed): %s. A failed reading counts as nothing.",
			stamp(r.At), failed, len(w.readings), r.Error)
	case VerdictUnknown:
		return fmt.Sprintf(" The last reading (at %s) found no series for the version: it counts as nothing.", stamp(r.At))
	}
	return ""
}

// shouldContinueAsNew is asked only where the loop holds no pending work.
func (w *lifecycle) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > historyLimit
}

// continueAsNew hands the Draining state to a new run, once every signal and update received
// so far has been handled (done=false means something came in: handle it first).
func (w *lifecycle) continueAsNew(ctx workflow.Context) (done bool, err error) {
	if handled, err := w.settle(ctx); handled || err != nil {
		return err != nil, err
	}
	next := w.in
	next.Resume = &Resume{
		VersionID: w.versionID, Life: w.life, State: w.state, Transitions: w.transitions,
		DrainingAt: w.drainingAt, By: w.by, ZeroStreak: w.zeroStreak, Readings: w.readings,
		Policy: w.policy, Runs: w.runs + 1,
	}
	w.logger.Info("continuing as new", "zeroStreak", w.zeroStreak, "runs", w.runs+1)
	return true, workflow.NewContinueAsNewError(ctx, WorkflowType, next)
}

// errResume: finish found this life live again in the registry; the lifecycle goes on.
var errResume = errors.New("the registry has the version live again")

// finish answers whatever is still queued, and hands over to a new life of the label if one was
// deployed while this one was expiring.
func (w *lifecycle) finish(ctx workflow.Context) (LifecycleResult, error) {
	w.setDetails(ctx, fmt.Sprintf("**Expired** at %s: %s", stamp(w.since()), w.finalWhy))
	if _, err := w.settle(ctx); err != nil {
		return w.result(), err
	}
	if next, ok := w.redeployed(ctx); ok {
		return w.continueAsRedeploy(ctx, next)
	}
	var newest registry.Version
	err := workflow.ExecuteActivity(registryOptions(ctx, "look for a redeploy"), a.CurrentVersion, w.in.Ref).Get(ctx, &newest)
	if err == nil && newest.ID == w.versionID && newest.State.Live() &&
		workflow.GetVersion(ctx, "registry-lost-expiry", workflow.DefaultVersion, 1) == 1 {
		// The registry has this life live again: it acknowledged the expiry and then lost it
		// (restored, or failed over to a replica the commit had not reached). Ending here would
		// leave it live with nothing to ever expire it; take it up from the registry's state.
		w.logger.Warn("the registry lost this version's expiry: taking it up again", "state", newest.State)
		w.lastError = fmt.Sprintf("the registry lost the expiry (it shows the version %s again): expiring it again", newest.State)
		w.state = newest.State
		return w.result(), errResume
	}
	if err == nil && newest.ID != w.versionID && newest.State.Live() {
		// The label was deployed again while this life was expiring: a Start with USE_EXISTING
		// attached to this run, so this run carries on as the new life.
		w.logger.Info("label redeployed while expiring: continuing as the new life", "life", newest.Life)
		return w.result(), workflow.NewContinueAsNewError(ctx, WorkflowType, LifecycleInput{
			Ref: w.in.Ref, Placement: newest.Placement,
			Actor: registry.Actor{Type: registry.ActorSystem, Name: "redeploy"},
		})
	}
	// Once more, last: a redeploy signalled while the activity above ran is in this workflow task
	// and would otherwise be dropped with the run.
	if next, ok := w.redeployed(ctx); ok {
		return w.continueAsRedeploy(ctx, next)
	}
	return w.result(), nil
}

// continueAsRedeploy ends this run and carries on as the new life of the label whose start
// attached to it (its first activity records it in the registry).
func (w *lifecycle) continueAsRedeploy(ctx workflow.Context, next LifecycleInput) (LifecycleResult, error) {
	w.logger.Info("label redeployed while expiring: continuing as the new life", "service", next.ServiceName)
	next.Resume, next.After = nil, 0
	return w.result(), workflow.NewContinueAsNewError(ctx, WorkflowType, next)
}

// redeployed drains SignalRedeploy and returns the input of the newest redeploy that follows
// this life. Signals about another life (the one a fresh run was started after) are stale.
// A signal that arrives while this run completes fails the completion, so it is seen here on
// the retried workflow task.
func (w *lifecycle) redeployed(ctx workflow.Context) (LifecycleInput, bool) {
	ch := workflow.GetSignalChannel(ctx, SignalRedeploy)
	var next LifecycleInput
	found := false
	if w.redeploy != nil {
		next, found = *w.redeploy, true
	}
	for {
		var r Redeploy
		if !ch.ReceiveAsync(&r) {
			return next, found
		}
		if r.After == w.versionID && w.versionID != 0 {
			next, found = r.Input, true
		}
	}
}

func (w *lifecycle) result() LifecycleResult {
	return LifecycleResult{Ref: w.in.Ref, VersionID: w.versionID, Life: w.life, State: w.state,
		Reason: w.finalWhy, Transitions: w.transitions}
}

// since is when the current state began.
func (w *lifecycle) since() time.Time {
	if n := len(w.transitions); n > 0 {
		return w.transitions[n-1].At
	}
	return time.Time{}
}

func (w *lifecycle) setDetails(ctx workflow.Context, details string) {
	w.waitingFor = details
	workflow.SetCurrentDetails(ctx, details)
}

func (w *lifecycle) view() StateView {
	v := StateView{
		Ref: w.in.Ref, VersionID: w.versionID, Life: w.life, State: w.state, Since: w.since(),
		Transitions: w.transitions, Policy: w.policy, ZeroStreak: w.zeroStreak, Readings: w.readings,
		WaitingFor: w.waitingFor, LastError: w.lastError, Runs: w.runs, Failure: w.failure,
	}
	if w.state == registry.Draining {
		graceEnd, firstRead, maxAt := w.timeline()
		v.DrainingAt, v.SupersededBy = ptr(w.drainingAt), w.by
		v.GraceEndsAt, v.FirstReadAt, v.MaxAliveAt = ptr(graceEnd), ptr(firstRead), ptr(maxAt)
		if !w.nextCheck.IsZero() {
			v.NextCheckAt = ptr(w.nextCheck)
		}
	}
	return v
}

func ptr[T any](v T) *T { return &v }

func minTime(x, y time.Time) time.Time {
	if y.Before(x) {
		return y
	}
	return x
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "(unknown)"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 MST")
}

// failureMessage is the innermost message of an activity failure (without the wrapping).
func failureMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "timed out (" + timeout.TimeoutType().String() + ")"
	}
	return err.Error()
}
