package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// The world is an in-memory registry and cluster that the mocked activities act on, stamped
// with the test environment's clock, so that tests assert when things happened in simulated
// time. Its registry follows the real one's rules (internal/registry): one Active version per
// app, a transition that supersedes makes the previous Active version Draining at the same
// instant, repeats are no-ops, illegal moves are refused.

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const ns, app = "shop", "myapp"

// defaults are the documented defaults (seeds/004).
var defaults = activities.Policy{
	GracePeriod: 30 * time.Minute, MaxAlive: 24 * time.Hour, CheckInterval: time.Minute,
	TrafficWindow: 5 * time.Minute, ReadinessTimeout: 10 * time.Minute,
}

const readyDelay = 10 * time.Second

func ref(label string) registry.VersionRef {
	return registry.VersionRef{Namespace: ns, App: app, Label: label}
}

func input(label string) LifecycleInput {
	return LifecycleInput{Ref: ref(label), Placement: registry.Placement{ServiceName: app + "-" + label, ServicePort: 80},
		Actor: registry.Actor{Type: registry.ActorPod, Name: app + "-" + label + "-pod"}}
}

type (
	routeSync struct {
		At         time.Time
		Generation int64
		Active     string
		Pinned     []string
		Cause      string
	}
	retirement struct {
		At     time.Time
		Label  string
		Delete bool
	}
	auditRow struct {
		At     time.Time
		Label  string
		Event  string
		Actor  registry.Actor
		Reason string
	}
	trafficFunc func(label string, since time.Duration) (rps float64, found bool, err error)
)

type world struct {
	t      testing.TB
	env    *testsuite.TestWorkflowEnvironment
	policy activities.Policy
	// traffic answers a reading of label taken since after the version became Draining.
	traffic trafficFunc
	// failures injects transient failures: activity name → how many attempts fail first.
	failures map[string]int
	// readyWait is how long WaitReady takes; notReady makes it fail at the end of it.
	readyWait time.Duration
	notReady  bool
	// notReadyUntil: WaitReady fails before this instant (zero: see notReady).
	notReadyUntil time.Time
	// unroutable: labels whose routes cannot be rendered (activation refused, nothing changes).
	unroutable map[string]string
	// trafficWait is how long a reading takes.
	trafficWait time.Duration

	mu         sync.Mutex
	lives      []*registry.Version
	gen        int64
	syncs      []routeSync
	retired    []retirement
	audits     []auditRow
	kubeEvents []string // Kubernetes Events reported: "label reason"
	readings   map[string][]time.Time
	inputs     map[string][]activities.TrafficInput // what each version's readings asked for
	attempts   map[string]int
	// retireRefusals: how many Retire attempts the API server refuses for good first.
	retireRefusals int
	// fault, when set, is asked before every counted attempt of an activity (by name, with the
	// world's lock held; it must not take it): an error fails the attempt, before anything
	// changes. Outages of PostgreSQL or the API server, refusals by an admission webhook.
	fault func(name string) error
	// loseExpiries: how many committed expiries the registry loses after acknowledging them.
	loseExpiries int
	// readyAtAdmission: Admit finds the version's Service ready in the readiness cache.
	readyAtAdmission bool
}

func newWorld(t testing.TB, env *testsuite.TestWorkflowEnvironment, policy activities.Policy) *world {
	w := &world{t: t, env: env, policy: policy, failures: map[string]int{}, readings: map[string][]time.Time{},
		inputs:     map[string][]activities.TrafficInput{},
		unroutable: map[string]string{},
		readyWait:  readyDelay,
		attempts:   map[string]int{},
		traffic:    func(string, time.Duration) (float64, bool, error) { return 0, true, nil }}
	w.mock(env)
	return w
}

// quietSuite silences the SDK's per-timer debug logging (thousands of lines for 24 hours).
func quietSuite() *testsuite.WorkflowTestSuite {
	s := &testsuite.WorkflowTestSuite{}
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	return s
}

// newEnv returns a time-skipping environment at t0 with the lifecycle, the fleet harness and
// the world's activities.
func newEnv(t testing.TB, policy activities.Policy) (*testsuite.TestWorkflowEnvironment, *world) {
	env := quietSuite().NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	env.SetTestTimeout(time.Minute)
	env.RegisterWorkflow(VersionLifecycle)
	env.RegisterWorkflow(fleet)
	return env, newWorld(t, env, policy)
}

func (w *world) mock(env *testsuite.TestWorkflowEnvironment) {
	w.env = env
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity(a.Admit, mock.Anything, mock.Anything).Return(w.admit)
	env.OnActivity(a.Observe, mock.Anything, mock.Anything).Return(w.observe)
	env.OnActivity(a.LoadPolicy, mock.Anything, mock.Anything).Return(w.loadPolicy)
	env.OnActivity(a.WaitReady, mock.Anything, mock.Anything).AfterFn(func() time.Duration { return w.readyWait }).Return(w.waitReady)
	env.OnActivity(a.Activate, mock.Anything, mock.Anything).Return(w.activate)
	env.OnActivity(a.Promote, mock.Anything, mock.Anything).Return(w.promote)
	env.OnActivity(a.Stage, mock.Anything, mock.Anything).Return(w.stage)
	env.OnActivity(a.Expire, mock.Anything, mock.Anything).Return(w.expire)
	env.OnActivity(a.Fail, mock.Anything, mock.Anything).Return(w.fail)
	env.OnActivity(a.ReportEvent, mock.Anything, mock.Anything).Return(w.reportEvent)
	env.OnActivity(a.CheckRoutes, mock.Anything, mock.Anything).Return(w.checkRoutes)
	env.OnActivity(a.CurrentVersion, mock.Anything, mock.Anything).Return(w.currentVersion)
	env.OnActivity(a.SyncRoutes, mock.Anything, mock.Anything).Return(w.syncRoutes)
	env.OnActivity(a.ApplySwitch, mock.Anything, mock.Anything).Return(w.applySwitch)
	env.OnActivity(a.ReadTraffic, mock.Anything, mock.Anything).AfterFn(func() time.Duration { return w.trafficWait }).Return(w.readTraffic)
	env.OnActivity(a.Retire, mock.Anything, mock.Anything).Return(w.retire)
	env.OnActivity(a.Audit, mock.Anything, mock.Anything).Return(w.audit)
}

// register makes the world's functions the activities themselves, without mocks: no simulated
// delays, but none of testify's argument matching on every call either (the benchmark's
// harness).
func (w *world) register(env *testsuite.TestWorkflowEnvironment) {
	w.env = env
	for name, fn := range map[string]any{
		"Admit": w.admit, "Observe": w.observe, "LoadPolicy": w.loadPolicy, "WaitReady": w.waitReady, "Activate": w.activate,
		"Promote": w.promote, "Stage": w.stage, "Expire": w.expire, "CurrentVersion": w.currentVersion,
		"SyncRoutes": w.syncRoutes, "ApplySwitch": w.applySwitch, "ReadTraffic": w.readTraffic, "Retire": w.retire, "Audit": w.audit,
		"Fail": w.fail, "ReportEvent": w.reportEvent, "CheckRoutes": w.checkRoutes,
	} {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

func (w *world) now() time.Time { return w.env.Now().UTC() }

// attempt counts an attempt of the named activity and fails it while failures are injected.
func (w *world) attempt(name string) error {
	w.attempts[name]++
	if w.fault != nil {
		if err := w.fault(name); err != nil {
			return err
		}
	}
	if w.failures[name] > 0 {
		w.failures[name]--
		return fmt.Errorf("%s: injected transient failure", name)
	}
	return nil
}

func illegal(ref registry.VersionRef, from, to registry.State) error {
	return temporal.NewNonRetryableApplicationError(
		(&registry.IllegalTransitionError{Version: ref, From: from, To: to}).Error(),
		activities.ErrTypeIllegalTransition, nil)
}

// newest returns the newest life of label (nil if none).
func (w *world) newest(label string) *registry.Version {
	for i := len(w.lives) - 1; i >= 0; i-- {
		if w.lives[i].Label == label {
			return w.lives[i]
		}
	}
	return nil
}

func (w *world) active() *registry.Version {
	for _, v := range w.lives {
		if v.State == registry.Active {
			return v
		}
	}
	return nil
}

func (w *world) observe(_ context.Context, in activities.ObserveInput) (registry.Version, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("Observe"); err != nil {
		return registry.Version{}, err
	}
	if v := w.newest(in.Ref.Label); v != nil && v.State.Live() {
		return *v, nil
	}
	life := 1
	if v := w.newest(in.Ref.Label); v != nil {
		life = v.Life + 1
	}
	v := &registry.Version{ID: int64(len(w.lives) + 1), Namespace: ns, App: app, Label: in.Ref.Label, Life: life,
		State: registry.Pending, Placement: registry.Placement{ServiceName: in.ServiceName, ServicePort: in.ServicePort}, WorkflowID: in.WorkflowID,
		PendingAt: w.now()}
	w.lives = append(w.lives, v)
	w.auditLocked(in.Ref.Label, "observed", in.Actor, "")
	return *v, nil
}

// admit is Admit: Observe and LoadPolicy (each counted, and faulted, under its own name), and
// the readiness cache, which knows the version ready only when readyAtAdmission says so (else
// the lifecycle waits with WaitReady, whose timing the tests steer).
func (w *world) admit(ctx context.Context, in activities.ObserveInput) (activities.AdmitResult, error) {
	v, err := w.observe(ctx, in)
	if err != nil {
		return activities.AdmitResult{}, err
	}
	p, err := w.loadPolicy(ctx, in.Ref.AppRef())
	if err != nil {
		return activities.AdmitResult{}, err
	}
	res := activities.AdmitResult{Version: v, Policy: p}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts["Admit"]++
	if w.readyAtAdmission {
		res.Readiness = &kube.Readiness{Ready: true, Endpoints: 1, Port: in.ServicePort, TargetPort: 8080}
	}
	return res, nil
}

func (w *world) loadPolicy(context.Context, registry.AppRef) (activities.Policy, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.policy, w.attempt("LoadPolicy")
}

func (w *world) waitReady(_ context.Context, in activities.ReadyInput) (kube.Readiness, error) {
	if w.notReady || w.now().Before(w.notReadyUntil) {
		r := kube.Readiness{Port: in.ServicePort, Why: "Service shop/" + in.ServiceName + " has no ready endpoint for port 80"}
		return r, temporal.NewNonRetryableApplicationError("not ready by the deadline: "+r.Why, activities.ErrTypeNotReady, nil, r)
	}
	return kube.Readiness{Ready: true, Endpoints: 1, Port: in.ServicePort, TargetPort: 8080, Probed: "198.19.0.1:8080"}, nil
}

// change applies one move of the state machine to the newest life, like registry.apply.
func (w *world) change(in activities.TransitionInput, name string, from []registry.State, to registry.State, supersede bool) (activities.TransitionResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt(name); err != nil {
		return activities.TransitionResult{}, err
	}
	v := w.newest(in.Ref.Label)
	if v == nil {
		return activities.TransitionResult{}, temporal.NewNonRetryableApplicationError("no such version", activities.ErrTypeNotFound, nil)
	}
	if in.VersionID != 0 && v.ID != in.VersionID {
		return activities.TransitionResult{}, temporal.NewNonRetryableApplicationError("stale life", activities.ErrTypeStaleLife, nil)
	}
	if v.State == to {
		res := activities.TransitionResult{Version: *v, Generation: w.gen}
		if to == registry.Active {
			res.Previous = w.supersededBy(v)
		}
		return res, nil
	}
	if name == "Activate" && v.State == registry.Draining && v.ActiveAt != nil {
		return activities.TransitionResult{Version: *v, Previous: w.supersededBy(v), Generation: w.gen}, nil
	}
	if !slices.Contains(from, v.State) {
		return activities.TransitionResult{}, illegal(in.Ref, v.State, to)
	}
	if why, ok := w.unroutable[in.Ref.Label]; ok && to == registry.Active {
		// Like the real activity: the routes are rendered before anything is committed.
		return activities.TransitionResult{}, temporal.NewNonRetryableApplicationError(
			"routes cannot be rendered: "+why, activities.ErrTypeRoutesInvalid, nil)
	}
	now := w.now()
	res := activities.TransitionResult{Changed: true}
	if supersede {
		if prev := w.active(); prev != nil {
			prev.State, prev.DrainingAt = registry.Draining, &now
			p := *prev
			res.Previous = &p
		}
	}
	fromState := v.State
	v.State = to
	switch to {
	case registry.Staged:
		v.StagedAt = &now
	case registry.Active:
		v.ActiveAt, v.DrainingAt = &now, nil
	case registry.Expired:
		v.ExpiredAt = &now
	case registry.Failed:
		v.FailedAt, v.Failure = &now, in.Reason
	}
	if to != registry.Failed {
		w.gen++
	}
	res.Version, res.Generation = *v, w.gen
	w.auditLocked(v.Label, fmt.Sprintf("%s→%s", fromState, to), in.Actor, in.Reason)
	if to != registry.Failed {
		// Like the real activity, the routes are written in the same step as the change.
		w.recordSyncLocked(in.Ref.Label)
	}
	w.checkInvariants()
	return res, nil
}

func (w *world) supersededBy(v *registry.Version) *registry.Version {
	for _, p := range w.lives {
		if p.State == registry.Draining && p.DrainingAt != nil && v.ActiveAt != nil && p.DrainingAt.Equal(*v.ActiveAt) && p.ID != v.ID {
			c := *p
			return &c
		}
	}
	return nil
}

func (w *world) checkInvariants() {
	n := 0
	for _, v := range w.lives {
		if v.State == registry.Active {
			n++
		}
	}
	if n > 1 {
		w.t.Errorf("%d Active versions at %s", n, w.now())
	}
}

func (w *world) activate(_ context.Context, in activities.TransitionInput) (activities.TransitionResult, error) {
	return w.change(in, "Activate", []registry.State{registry.Pending, registry.Staged, registry.Failed}, registry.Active, true)
}

func (w *world) fail(_ context.Context, in activities.TransitionInput) (activities.TransitionResult, error) {
	return w.change(in, "Fail", []registry.State{registry.Pending, registry.Staged}, registry.Failed, false)
}

func (w *world) checkRoutes(context.Context, activities.RouteCheckInput) (kube.RouteAcceptance, error) {
	return kube.RouteAcceptance{Accepted: true}, nil
}

func (w *world) reportEvent(_ context.Context, in activities.EventInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kubeEvents = append(w.kubeEvents, in.Ref.Label+" "+in.Reason)
	return nil
}

func (w *world) promote(_ context.Context, in activities.TransitionInput) (activities.TransitionResult, error) {
	return w.change(in, "Promote", []registry.State{registry.Draining}, registry.Active, true)
}

func (w *world) stage(_ context.Context, in activities.TransitionInput) (activities.TransitionResult, error) {
	return w.change(in, "Stage", []registry.State{registry.Pending}, registry.Staged, false)
}

func (w *world) expire(_ context.Context, in activities.TransitionInput) (activities.TransitionResult, error) {
	w.mu.Lock()
	var before registry.State
	if v := w.newest(in.Ref.Label); v != nil {
		before = v.State
	}
	w.mu.Unlock()
	res, err := w.change(in, "Expire", []registry.State{registry.Pending, registry.Staged, registry.Draining, registry.Failed}, registry.Expired, false)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && res.Changed && w.loseExpiries > 0 {
		// Acknowledged, then lost: a failover to a replica the commit had not reached.
		w.loseExpiries--
		v := w.newest(in.Ref.Label)
		v.State, v.ExpiredAt = before, nil
	}
	return res, err
}

func (w *world) currentVersion(_ context.Context, r registry.VersionRef) (registry.Version, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("CurrentVersion"); err != nil {
		return registry.Version{}, err
	}
	if v := w.newest(r.Label); v != nil {
		return *v, nil
	}
	return registry.Version{}, temporal.NewNonRetryableApplicationError("no such version", activities.ErrTypeNotFound, nil)
}

func (w *world) syncRoutes(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("SyncRoutes"); err != nil {
		return activities.SyncResult{}, err
	}
	w.recordSyncLocked(in.Cause.Label)
	return activities.SyncResult{Generation: w.gen, Write: activities.RouteOutcome{Outcome: activities.RoutesApplied}}, nil
}

// applySwitch is registry.ApplySwitch with the routes: while the world's policy is off, every
// Draining version expires, then the routes are written.
func (w *world) applySwitch(_ context.Context, in activities.SyncInput) (activities.SwitchResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("ApplySwitch"); err != nil {
		return activities.SwitchResult{}, err
	}
	res := activities.SwitchResult{Off: w.policy.ProtectionOff}
	if res.Off {
		for _, v := range w.lives {
			if v.State == registry.Draining {
				v.State, v.ExpiredAt = registry.Expired, ptr(w.now())
				res.Expired = append(res.Expired, *v)
			}
		}
		if len(res.Expired) > 0 {
			w.gen++
		}
	}
	w.recordSyncLocked(in.Cause.Label)
	res.Routes = activities.SyncResult{Generation: w.gen, Write: activities.RouteOutcome{Outcome: activities.RoutesApplied}}
	return res, nil
}

// recordSyncLocked records the routes as the registry has them now.
func (w *world) recordSyncLocked(cause string) {
	s := routeSync{At: w.now(), Generation: w.gen, Cause: cause}
	for _, v := range w.lives {
		switch {
		case v.State == registry.Active:
			s.Active = v.Label
		case v.State.Pinned():
			s.Pinned = append(s.Pinned, v.Label)
		}
	}
	w.syncs = append(w.syncs, s)
}

func (w *world) readTraffic(_ context.Context, in activities.TrafficInput) (activities.TrafficReading, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	w.readings[in.Ref.Label] = append(w.readings[in.Ref.Label], now)
	if w.inputs == nil {
		w.inputs = map[string][]activities.TrafficInput{}
	}
	w.inputs[in.Ref.Label] = append(w.inputs[in.Ref.Label], in)
	v := w.newest(in.Ref.Label)
	since := time.Duration(0)
	if v != nil && v.DrainingAt != nil {
		since = now.Sub(*v.DrainingAt)
	}
	rps, found, err := w.traffic(in.Ref.Label, since)
	if err != nil {
		return activities.TrafficReading{}, err
	}
	return activities.TrafficReading{At: now, RPS: rps, Found: found}, nil
}

func (w *world) retire(_ context.Context, in activities.RetireInput) (activities.RetireResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("Retire"); err != nil {
		return activities.RetireResult{}, err
	}
	if w.retireRefusals > 0 {
		w.retireRefusals--
		return activities.RetireResult{}, temporal.NewNonRetryableApplicationError(
			"retire refused: deployments.apps \"web-"+in.Ref.Label+"\" is forbidden", activities.ErrTypeWorkloadsRefused, nil)
	}
	w.retired = append(w.retired, retirement{At: w.now(), Label: in.Ref.Label, Delete: in.Delete})
	return activities.RetireResult{ScaledDown: []string{app + "-" + in.Ref.Label}}, nil
}

func (w *world) audit(_ context.Context, in activities.AuditInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.attempt("Audit"); err != nil {
		return err
	}
	w.auditLocked(in.Ref.Label, in.Event, in.Actor, in.Reason)
	return nil
}

func (w *world) auditLocked(label, event string, actor registry.Actor, reason string) {
	w.audits = append(w.audits, auditRow{At: w.now(), Label: label, Event: event, Actor: actor, Reason: reason})
}

// version returns a copy of the newest life of label, failing the test if there is none.
func (w *world) version(label string) registry.Version {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.newest(label)
	require.NotNil(w.t, v, "version %s", label)
	return *v
}

func (w *world) lifeOf(label string, life int) registry.Version {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.lives {
		if v.Label == label && v.Life == life {
			return *v
		}
	}
	w.t.Fatalf("no life %d of %s", life, label)
	return registry.Version{}
}

// supersede makes label Draining now, as another version's activation would.
func (w *world) supersede(label string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.newest(label)
	now := w.now()
	v.State, v.DrainingAt = registry.Draining, &now
	w.gen++
	return now
}

func (w *world) readingsOf(label string) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.readings[label])
}

func (w *world) retiredOf(label string) []retirement {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []retirement
	for _, r := range w.retired {
		if r.Label == label {
			out = append(out, r)
		}
	}
	return out
}

func (w *world) lastSync() routeSync {
	w.mu.Lock()
	defer w.mu.Unlock()
	require.NotEmpty(w.t, w.syncs)
	return w.syncs[len(w.syncs)-1]
}

func (w *world) events(label string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, a := range w.audits {
		if a.Label == label {
			out = append(out, a.Event)
		}
	}
	return out
}

// The fleet harness deploys versions at given simulated offsets, as the API would: one
// lifecycle workflow per version, with Start's ID, conflict and reuse policies.

type deploy struct {
	Label string
	At    time.Duration
}

type fleetInput struct {
	Deploys []deploy
	Until   time.Duration
}

func fleet(ctx workflow.Context, in fleetInput) error {
	start := workflow.Now(ctx)
	for _, d := range in.Deploys {
		if wait := start.Add(d.At).Sub(workflow.Now(ctx)); wait > 0 {
			if err := workflow.Sleep(ctx, wait); err != nil {
				return err
			}
		}
		li := input(d.Label)
		opts := StartOptions("test", li)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            opts.ID,
			WorkflowIDReusePolicy: opts.WorkflowIDReusePolicy,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_TERMINATE,
		})
		var exec workflow.Execution
		err := workflow.ExecuteChildWorkflow(cctx, VersionLifecycle, li).GetChildWorkflowExecution().Get(ctx, &exec)
		var running *temporal.ChildWorkflowExecutionAlreadyStartedError
		if err != nil && !errors.As(err, &running) { // already running: USE_EXISTING attaches
			return fmt.Errorf("start %s: %w", d.Label, err)
		}
	}
	return workflow.Sleep(ctx, start.Add(in.Until).Sub(workflow.Now(ctx)))
}

// runFleet runs the harness and fails the test if it does not complete cleanly.
func runFleet(t testing.TB, env *testsuite.TestWorkflowEnvironment, until time.Duration, deploys ...deploy) {
	t.Helper()
	env.ExecuteWorkflow(fleet, fleetInput{Deploys: deploys, Until: until})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
}

// at registers fn to run at offset from t0 in simulated time.
func at(env *testsuite.TestWorkflowEnvironment, offset time.Duration, fn func()) {
	env.RegisterDelayedCallback(fn, offset)
}

// queryState queries a version's workflow.
func queryState(t testing.TB, env *testsuite.TestWorkflowEnvironment, label string) StateView {
	t.Helper()
	val, err := env.QueryWorkflowByID(WorkflowID(ref(label)), QueryState)
	require.NoError(t, err)
	var v StateView
	require.NoError(t, val.Get(&v))
	return v
}

// update sends an update to a version's workflow and records how it ended.
type updateOutcome struct {
	accepted, rejected bool
	err                error
	result             ActionResult
	done               bool
}

// updateSeq makes update IDs unique: the test environment deduplicates updates by ID.
var updateSeq int

func sendUpdate(env *testsuite.TestWorkflowEnvironment, label, name string, req any) *updateOutcome {
	out := &updateOutcome{}
	args := []any{}
	if req != nil {
		args = append(args, req)
	}
	updateSeq++
	err := env.UpdateWorkflowByID(WorkflowID(ref(label)), name, fmt.Sprintf("update-%d", updateSeq), &testsuite.TestUpdateCallback{
		OnAccept: func() { out.accepted = true },
		OnReject: func(err error) { out.rejected, out.err, out.done = true, err, true },
		OnComplete: func(r any, err error) {
			out.done, out.err = true, err
			if res, ok := r.(ActionResult); ok {
				out.result = res
			}
		},
	}, args...)
	if err != nil {
		out.rejected, out.err, out.done = true, err, true
	}
	return out
}

// lastAudit returns the newest audit row of label with event, failing the test if there is none.
func (w *world) lastAudit(label, event string) auditRow {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.audits) - 1; i >= 0; i-- {
		if w.audits[i].Label == label && w.audits[i].Event == event {
			return w.audits[i]
		}
	}
	w.t.Fatalf("no %q audit for %s", event, label)
	return auditRow{}
}
