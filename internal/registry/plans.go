package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"sigs.k8s.io/yaml"
)

// Modes: how far skewguard acts on an app's cluster objects (Policy.Mode, PLT_SKEW_MODE).
const (
	// ModeManage writes the app's HTTPRoutes and retires its workloads (the default).
	ModeManage = "manage"
	// ModeAdvise writes nothing in the cluster but its own status (Kubernetes Events): each
	// step is published as a Plan and the lifecycle waits until the cluster shows it applied.
	ModeAdvise = "advise"
	// ModeObserve records and reports versions and writes nothing to the cluster at all.
	ModeObserve = "observe"
)

// ValidMode reports whether m is one of the modes.
func ValidMode(m string) bool { return m == ModeManage || m == ModeAdvise || m == ModeObserve }

// Steps a plan is made for.
const (
	StepActivate = "activate"
	StepPromote  = "promote"
	StepStage    = "stage"
	StepExpire   = "expire"
	StepRetire   = "retire"
)

// States of a plan.
const (
	PlanPending    = "pending"    // published, not yet seen applied in the cluster
	PlanApplied    = "applied"    // seen applied; the registry committed the step
	PlanSuperseded = "superseded" // withdrawn: a newer version's activation plan replaced it
)

// Plan actions.
const (
	ActionApply  = "apply"  // create or replace Object (server-side apply)
	ActionDelete = "delete" // delete the object
	ActionScale  = "scale"  // set the Deployment's replicas to Replicas
)

// PlanChange is one change a plan asks for.
type PlanChange struct {
	Action     string `json:"action"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Replicas   *int32 `json:"replicas,omitempty"`
	// Object is the complete object to apply (ActionApply), with skewguard's labels and
	// generation annotation, as the manage mode would write it.
	Object json.RawMessage `json:"object,omitempty"`
}

// Plan is the changes one step of a version's lifecycle needs in the cluster, in advise mode.
type Plan struct {
	App        AppRef       `json:"app"`
	Version    string       `json:"version"`
	Step       string       `json:"step"`
	State      string       `json:"state"`
	Generation int64        `json:"generation"`
	Changes    []PlanChange `json:"changes"`
	CreatedAt  time.Time    `json:"createdAt"`
	UpdatedAt  time.Time    `json:"updatedAt"`
}

// PutPlan publishes p as the pending plan of its version and step (p.State is ignored). It
// reports whether anything changed: a plan already pending with the same changes is left as
// it is, a superseded one is not brought back. An activation (or promotion) plan supersedes
// the pending activation and promotion plans of the app's other versions published before it;
// their versions are returned.
func (s *Store) PutPlan(ctx context.Context, p Plan) (changed bool, superseded []string, err error) {
	if err := validateApp(p.App); err != nil {
		return false, nil, err
	}
	if p.Version == "" || p.Step == "" {
		return false, nil, fmt.Errorf("%w: a plan needs a version and a step", ErrInvalid)
	}
	changes, err := json.Marshal(p.Changes)
	if err != nil {
		return false, nil, fmt.Errorf("encode plan: %w", err)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := ensureApp(ctx, tx, p.App)
		if err != nil {
			return err
		}
		var id int64
		err = tx.QueryRow(ctx, `
			INSERT INTO plans (app_id, version, step, state, generation, changes)
			VALUES ($1, $2, $3, 'pending', $4, $5)
			ON CONFLICT (app_id, version, step) DO UPDATE SET
				state = 'pending', generation = excluded.generation, changes = excluded.changes, updated_at = now()
			WHERE plans.state = 'applied' OR (plans.state = 'pending' AND plans.changes <> excluded.changes)
			RETURNING id`, a.ID, p.Version, p.Step, p.Generation, changes).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
		changed = true
		if p.Step != StepActivate && p.Step != StepPromote {
			return nil
		}
		rows, err := tx.Query(ctx, `
			UPDATE plans SET state = 'superseded', updated_at = now()
			WHERE app_id = $1 AND state = 'pending' AND step IN ('activate', 'promote') AND version <> $2 AND id < $3
			RETURNING version`, a.ID, p.Version, id)
		if err != nil {
			return fmt.Errorf("supersede plans: %w", err)
		}
		superseded, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return false, nil, fmt.Errorf("put plan of %s %s: %w", p.App, p.Version, err)
	}
	return changed, superseded, nil
}

// PlanState returns the state of the version's plan for step; ErrNotFound when it has none.
func (s *Store) PlanState(ctx context.Context, ref VersionRef, step string) (string, error) {
	var st string
	err := s.pool.QueryRow(ctx, `
		SELECT p.state FROM plans p JOIN applications a ON a.id = p.app_id
		WHERE a.namespace = $1 AND a.name = $2 AND p.version = $3 AND p.step = $4`,
		ref.Namespace, ref.App, ref.Label, step).Scan(&st)
	if err != nil {
		return "", notFound(err, "plan "+step+" of "+ref.String())
	}
	return st, nil
}

// MarkPlanApplied records that the version's pending plan for step was seen applied.
func (s *Store) MarkPlanApplied(ctx context.Context, ref VersionRef, step string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE plans p SET state = 'applied', updated_at = now()
		FROM applications a WHERE a.id = p.app_id AND a.namespace = $1 AND a.name = $2
			AND p.version = $3 AND p.step = $4 AND p.state = 'pending'`,
		ref.Namespace, ref.App, ref.Label, step)
	if err != nil {
		return fmt.Errorf("mark plan %s of %s applied: %w", step, ref, err)
	}
	return nil
}

// PendingActivations lists the versions of the app with a pending activation or promotion plan.
func (s *Store) PendingActivations(ctx context.Context, app AppRef) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT p.version FROM plans p JOIN applications a ON a.id = p.app_id
		WHERE a.namespace = $1 AND a.name = $2 AND p.state = 'pending' AND p.step IN ('activate', 'promote')
		ORDER BY p.id`, app.Namespace, app.Name)
	if err != nil {
		return nil, fmt.Errorf("pending plans of %s: %w", app, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// PendingPlan returns the version's pending plan (the newest, if several steps are pending);
// ErrNotFound when it has none.
func (s *Store) PendingPlan(ctx context.Context, ref VersionRef) (Plan, error) {
	p := Plan{App: ref.AppRef(), Version: ref.Label}
	var changes []byte
	err := s.pool.QueryRow(ctx, `
		SELECT p.step, p.state, p.generation, p.changes, p.created_at, p.updated_at
		FROM plans p JOIN applications a ON a.id = p.app_id
		WHERE a.namespace = $1 AND a.name = $2 AND p.version = $3 AND p.state = 'pending'
		ORDER BY p.updated_at DESC, p.id DESC LIMIT 1`, ref.Namespace, ref.App, ref.Label).
		Scan(&p.Step, &p.State, &p.Generation, &changes, &p.CreatedAt, &p.UpdatedAt)
	if err != nil {
		return Plan{}, notFound(err, "pending plan of "+ref.String())
	}
	if err := json.Unmarshal(changes, &p.Changes); err != nil {
		return Plan{}, fmt.Errorf("decode plan of %s: %w", ref, err)
	}
	return p, nil
}

// YAML renders the plan as multi-document YAML a pipeline can give to `kubectl apply -f -`:
// one document per object to apply. The changes apply cannot express (a scale to 0, a delete)
// are listed in a comment at the top, each with the kubectl command that makes it.
func (p Plan) YAML() ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# skewguard plan %q of %s %s (state %s, generation %d)\n", p.Step, p.App, p.Version, p.State, p.Generation)
	for _, c := range p.Changes {
		switch c.Action {
		case ActionScale:
			fmt.Fprintf(&b, "# scale: kubectl -n %s scale %s/%s --replicas=%d\n", c.Namespace, strings.ToLower(c.Kind), c.Name, ptrOr(c.Replicas))
		case ActionDelete:
			fmt.Fprintf(&b, "# delete: kubectl -n %s delete %s/%s\n", c.Namespace, strings.ToLower(c.Kind), c.Name)
		}
	}
	for _, c := range p.Changes {
		if c.Action != ActionApply {
			continue
		}
		doc, err := yaml.JSONToYAML(c.Object)
		if err != nil {
			return nil, fmt.Errorf("plan of %s %s: %s %s: %w", p.App, p.Version, c.Kind, c.Name, err)
		}
		b.WriteString("---\n")
		b.Write(doc)
	}
	return []byte(b.String()), nil
}

func ptrOr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
