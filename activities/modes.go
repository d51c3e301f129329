package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/activity"
	apierrors "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// PlanStore is what advise mode uses of the registry besides Registry; *registry.Store is the
// implementation. A Registry without it cannot run an app in advise mode.
type PlanStore interface {
	PutPlan(ctx context.Context, p registry.Plan) (changed bool, superseded []string, err error)
	PlanState(ctx context.Context, ref registry.VersionRef, step string) (string, error)
	MarkPlanApplied(ctx context.Context, ref registry.VersionRef, step string) error
	PendingActivations(ctx context.Context, app registry.AppRef) ([]string, error)
}

var _ PlanStore = (*registry.Store)(nil)

// Outcomes of a route "write" outside manage mode.
const (
	RoutesObserved  = "observed"  // observe mode: nothing written
	RoutesAdvised   = "advised"   // advise mode: the cluster already shows the plan applied
	RoutesSkipped   = "skipped"   // advise mode, a route sync (drift repair): nothing written
	RoutesWithdrawn = "withdrawn" // advise mode: the step's plan was superseded; the registry moves on alone
)

// Audit events and Kubernetes Event reasons of advise and observe modes.
const (
	EventPlanPublished  = "PlanPublished"
	EventPlanApplied    = "plan-applied"
	EventPlanWithdrawn  = "plan-superseded"
	EventRetireObserved = "retire-observed"
)

// planPoll is how often a step waiting for its plan looks at the cluster.
const planPoll = time.Second

// ModeOf is the app's mode: its policy's, else the configuration's, else manage.
func ModeOf(cfg config.Config, p registry.Policy) string {
	if p.Mode != nil && registry.ValidMode(*p.Mode) {
		return *p.Mode
	}
	if registry.ValidMode(cfg.Mode) {
		return cfg.Mode
	}
	return registry.ModeManage
}

// modeOfApp reads the app's mode from the registry.
func (a *Activities) modeOfApp(ctx context.Context, app registry.AppRef) (string, error) {
	if a.Registry == nil {
		return ModeOf(a.Config, registry.Policy{}), nil
	}
	p, err := a.Registry.GetPolicy(ctx, app)
	if err != nil {
		return "", err
	}
	return ModeOf(a.Config, p), nil
}

// PlanPendingError is a step whose plan the cluster does not show applied yet: the registry
// change is rolled back and the step waits.
type PlanPendingError struct{ Plan registry.Plan }

func (e *PlanPendingError) Error() string {
	return fmt.Sprintf("plan %s of %s/%s %s not applied yet (%d changes)", e.Plan.Step, e.Plan.App.Namespace,
		e.Plan.App.Name, e.Plan.Version, len(e.Plan.Changes))
}

// stepOf names the plan step of a registry operation.
func stepOf(op registry.Op) string { return string(op) }

// RoutePlan is the plan that makes the app's live HTTPRoutes equal desired: every desired route
// applied as rendered (labels and generation annotation included), every other route of ours
// deleted. It is empty when live already matches (specs and our labels; the generation
// annotation is not compared, so that a pipeline's apply of an older rendering of the same
// routes counts).
func RoutePlan(app registry.AppRef, desired []gatewayv1.HTTPRoute, live []gatewayv1.HTTPRoute) ([]registry.PlanChange, error) {
	byName := make(map[string]*gatewayv1.HTTPRoute, len(live))
	for i := range live {
		byName[live[i].Name] = &live[i]
	}
	var changes []registry.PlanChange
	for i := range desired {
		want := desired[i]
		if l, ok := byName[want.Name]; ok {
			delete(byName, want.Name)
			if apierrors.Semantic.DeepEqual(l.Spec, want.Spec) && labels.SelectorFromSet(want.Labels).Matches(labels.Set(l.Labels)) {
				continue
			}
		}
		want.TypeMeta = metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"}
		want.Namespace = app.Namespace
		obj, err := applyObject(want)
		if err != nil {
			return nil, fmt.Errorf("encode HTTPRoute %s: %w", want.Name, err)
		}
		changes = append(changes, registry.PlanChange{Action: registry.ActionApply, APIVersion: gatewayv1.GroupVersion.String(),
			Kind: "HTTPRoute", Namespace: app.Namespace, Name: want.Name, Object: obj})
	}
	var gone []string
	for name := range byName {
		gone = append(gone, name)
	}
	sort.Strings(gone)
	for _, name := range gone {
		changes = append(changes, registry.PlanChange{Action: registry.ActionDelete, APIVersion: gatewayv1.GroupVersion.String(),
			Kind: "HTTPRoute", Namespace: app.Namespace, Name: name})
	}
	return changes, nil
}

// liveRoutes lists the app's HTTPRoutes that carry our labels.
func (a *Activities) liveRoutes(ctx context.Context, app registry.AppRef) ([]gatewayv1.HTTPRoute, error) {
	if a.Workloads.Gateway == nil {
		return nil, errors.New("advise mode needs the Gateway API client")
	}
	list, err := a.Workloads.Gateway.GatewayV1().HTTPRoutes(app.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(routes.Labels(app.Name)).String()})
	if err != nil {
		return nil, fmt.Errorf("list HTTPRoutes of %s: %w", app, err)
	}
	return list.Items, nil
}

// advisePublish is publish in advise mode: it writes nothing, and fails with a
// *PlanPendingError while the live routes differ from snap's rendering.
func (a *Activities) advisePublish(ctx context.Context, snap registry.Snapshot, version, step string, desired []gatewayv1.HTTPRoute) (SyncResult, error) {
	app := registry.AppRef{Namespace: snap.App.Namespace, Name: snap.App.Name}
	res := SyncResult{Generation: snap.Generation, Write: RouteOutcome{Outcome: RoutesAdvised}}
	for _, r := range desired {
		res.Routes = append(res.Routes, r.Name)
	}
	if step == "" { // a route sync: drift is the pipeline's to repair
		res.Write.Outcome = RoutesSkipped
		return res, nil
	}
	live, err := a.liveRoutes(ctx, app)
	if err != nil {
		return SyncResult{}, err
	}
	changes, err := RoutePlan(app, desired, live)
	if err != nil {
		return SyncResult{}, err
	}
	if len(changes) == 0 {
		return res, nil
	}
	return SyncResult{}, &PlanPendingError{Plan: registry.Plan{App: app, Version: version, Step: step,
		Generation: snap.Generation, Changes: changes}}
}

// awaitPlan publishes a pending plan (registry, audit, Kubernetes Event, heartbeat) and waits
// one poll. It returns withdrawn=true when the plan was superseded by a newer version's
// activation plan and that plan is no longer pending: the caller then commits the registry
// change alone.
func (a *Activities) awaitPlan(ctx context.Context, ref registry.VersionRef, actor registry.Actor, plan registry.Plan) (withdrawn bool, err error) {
	ps, ok := a.Registry.(PlanStore)
	if !ok {
		return false, errors.New("advise mode: the registry keeps no plans")
	}
	state, err := ps.PlanState(ctx, ref, plan.Step)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return false, err
	}
	if state == registry.PlanSuperseded {
		pending, err := ps.PendingActivations(ctx, ref.AppRef())
		if err != nil {
			return false, err
		}
		if len(pending) == 0 {
			return true, nil
		}
		activity.RecordHeartbeat(ctx, map[string]any{"plan": registry.PlanSuperseded, "waitingFor": pending})
	} else {
		changed, superseded, err := ps.PutPlan(ctx, plan)
		if err != nil {
			return false, err
		}
		if changed {
			msg := fmt.Sprintf("advise mode: plan %q of version %s published (%d changes); fetch it with skewguard plan %s/%s %s -o yaml",
				plan.Step, ref.Label, len(plan.Changes), ref.Namespace, ref.App, ref.Label)
			if err := a.Registry.AppendAudit(ctx, ref, EventPlanPublished, actor, msg, plan); err != nil {
				return false, err
			}
			_ = a.ReportEvent(ctx, EventInput{Ref: ref, Type: "Normal", Reason: EventPlanPublished, Message: msg})
			for _, old := range superseded {
				oref := registry.VersionRef{Namespace: ref.Namespace, App: ref.App, Label: old}
				_ = a.Registry.AppendAudit(ctx, oref, EventPlanWithdrawn, actor, "superseded by the plan of version "+ref.Label, nil)
			}
		}
		activity.RecordHeartbeat(ctx, plan)
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-time.After(planPoll): // bounded poll of the cluster the pipeline changes
	}
	return false, nil
}

// planApplied records that the step's plan (if it had one) is applied.
func (a *Activities) planApplied(ctx context.Context, ref registry.VersionRef, actor registry.Actor, step string) {
	ps, ok := a.Registry.(PlanStore)
	if !ok {
		return
	}
	if st, err := ps.PlanState(ctx, ref, step); err != nil || st != registry.PlanPending {
		return
	}
	if err := ps.MarkPlanApplied(ctx, ref, step); err != nil {
		a.log().Warn("plan applied but not recorded", "version", ref.String(), "error", err)
		return
	}
	_ = a.Registry.AppendAudit(ctx, ref, EventPlanApplied, actor, "the cluster shows the plan "+step+" applied", nil)
}

// retirePlan is the plan of an expired version's workloads: each Deployment that runs it
// scaled to 0, or with delete the Deployments and the version's Services deleted. It is empty
// once the cluster shows that done.
func (a *Activities) retirePlan(ctx context.Context, in RetireInput) ([]registry.PlanChange, error) {
	sel := labels.SelectorFromSet(labels.Set{kube.AppLabel: in.Ref.App, kube.VersionLabel: in.Ref.Label}).String()
	deps, err := a.Workloads.Client.AppsV1().Deployments(in.Ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list Deployments of %s: %w", in.Ref, err)
	}
	var changes []registry.PlanChange
	for _, d := range deps.Items {
		switch {
		case in.Delete:
			changes = append(changes, registry.PlanChange{Action: registry.ActionDelete, APIVersion: "apps/v1", Kind: "Deployment",
				Namespace: d.Namespace, Name: d.Name})
		case d.Spec.Replicas == nil || *d.Spec.Replicas != 0:
			zero := int32(0)
			changes = append(changes, registry.PlanChange{Action: registry.ActionScale, APIVersion: "apps/v1", Kind: "Deployment",
				Namespace: d.Namespace, Name: d.Name, Replicas: &zero})
		}
	}
	if in.Delete {
		svcs, err := a.Workloads.Client.CoreV1().Services(in.Ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("list Services of %s: %w", in.Ref, err)
		}
		for _, s := range svcs.Items {
			changes = append(changes, registry.PlanChange{Action: registry.ActionDelete, APIVersion: "v1", Kind: "Service",
				Namespace: s.Namespace, Name: s.Name})
		}
	}
	return changes, nil
}

// adviseRetire waits until the cluster shows the version's workloads retired, publishing the
// plan until then.
func (a *Activities) adviseRetire(ctx context.Context, in RetireInput) (RetireResult, error) {
	for {
		changes, err := a.retirePlan(ctx, in)
		if err != nil {
			return RetireResult{}, err
		}
		if len(changes) == 0 {
			a.planApplied(ctx, in.Ref, in.Actor, registry.StepRetire)
			return RetireResult{}, nil
		}
		gen, err := a.Registry.Generation(ctx, in.Ref.AppRef())
		if err != nil {
			return RetireResult{}, classify(err)
		}
		plan := registry.Plan{App: in.Ref.AppRef(), Version: in.Ref.Label, Step: registry.StepRetire, Generation: gen, Changes: changes}
		if _, err := a.awaitPlan(ctx, in.Ref, in.Actor, plan); err != nil {
			return RetireResult{}, classify(err)
		}
	}
}

// applyObject encodes obj as a pipeline would commit it: without status and without the
// empty creationTimestamp that metav1.ObjectMeta always encodes.
func applyObject(obj any) (json.RawMessage, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	return json.Marshal(m)
}
