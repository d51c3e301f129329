package registry

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Events the registry itself writes to the audit trail. Other packages append their own
// (routes written, scaled, cleaned up...) with AppendAudit.
const (
	EventObserved   = "observed"   // first life of a label: → pending
	EventRedeployed = "redeployed" // a new life of an expired label: → pending
	EventRefreshed  = "refreshed"  // a pending version's Service, path or hostname changed
	EventStaged     = "staged"     // pending → staged
	EventActivated  = "activated"  // pending|staged → active
	EventSuperseded = "superseded" // active → draining, because another version became active
	EventPromoted   = "promoted"   // draining → active
	EventExpired    = "expired"    // pending|staged|draining|failed → expired
	EventFailed     = "failed"     // pending|staged → failed: could not be made Active, and why
	// EventPolicyChanged: the app's policy overrides were replaced (detail: from, to).
	EventPolicyChanged = "policy-changed"
)

// DefaultAuditLimit is how many entries AppAudit returns when asked for no particular number.
const DefaultAuditLimit = 100

// insertAudit appends one entry for v. detail is marshalled to JSON (a json.RawMessage is
// stored as is; nil stores NULL).
func insertAudit(ctx context.Context, q querier, v Version, event string, from, to *State,
	actor Actor, reason string, detail any) error {
	raw, err := marshalDetail(detail)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `
		INSERT INTO version_audit (app_id, version_id, event, from_state, to_state,
			actor_type, actor_id, actor_name, reason, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		v.AppID, v.ID, event, from, to, string(actor.Type), actor.ID, actor.Name, reason, raw)
	if err != nil {
		return fmt.Errorf("audit %s of %s: %w", event, v.Ref(), err)
	}
	return nil
}

func marshalDetail(detail any) (json.RawMessage, error) {
	switch d := detail.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if len(d) == 0 {
			return nil, nil
		}
		if !json.Valid(d) {
			return nil, invalid("audit detail is not valid JSON")
		}
		return d, nil
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return nil, invalid("audit detail: %v", err)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	return raw, nil
}

// AppendAudit records an event that is not a state change (routes written, scaled, cleaned
// up...) on the newest life of ref.
func (s *Store) AppendAudit(ctx context.Context, ref VersionRef, event string, actor Actor, reason string, detail any) error {
	if err := validateRef(ref); err != nil {
		return err
	}
	if err := validateActor(actor); err != nil {
		return err
	}
	if event == "" {
		return invalid("audit event of %s must not be empty", ref)
	}
	v, err := s.GetVersion(ctx, ref)
	if err != nil {
		return err
	}
	return insertAudit(ctx, s.pool, v, event, nil, nil, actor, reason, detail)
}

const auditColumns = `au.id, au.version_id, a.namespace, a.name, v.label, v.life, au.event,
	au.from_state, au.to_state, au.actor_type, au.actor_id, au.actor_name, au.reason, au.detail, au.at`

const auditFrom = ` FROM version_audit au
	JOIN versions v ON v.id = au.version_id
	JOIN applications a ON a.id = au.app_id `

func scanAudit(r pgx.CollectableRow) (AuditEntry, error) {
	var e AuditEntry
	var from, to *string
	err := r.Scan(&e.ID, &e.VersionID, &e.Version.Namespace, &e.Version.App, &e.Version.Label, &e.Life,
		&e.Event, &from, &to, &e.Actor.Type, &e.Actor.ID, &e.Actor.Name, &e.Reason, &e.Detail, &e.At)
	e.FromState, e.ToState = statePtr(from), statePtr(to)
	return e, err
}

func statePtr(s *string) *State {
	if s == nil {
		return nil
	}
	st := State(*s)
	return &st
}

// Audit returns the audit trail of every life of the label, oldest first.
func (s *Store) Audit(ctx context.Context, ref VersionRef) ([]AuditEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+auditFrom+`
		WHERE a.namespace = $1 AND a.name = $2 AND v.label = $3 ORDER BY au.id`,
		ref.Namespace, ref.App, ref.Label)
	if err != nil {
		return nil, fmt.Errorf("audit of %s: %w", ref, err)
	}
	entries, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("audit of %s: %w", ref, err)
	}
	if len(entries) == 0 { // every version has at least its "observed" entry
		if _, err := s.GetVersion(ctx, ref); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// AppAudit returns the newest limit entries of every version of app, newest first
// (DefaultAuditLimit when limit ≤ 0). An unknown app has none.
func (s *Store) AppAudit(ctx context.Context, app AppRef, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+auditFrom+`
		WHERE au.app_id = (SELECT id FROM applications WHERE namespace = $1 AND name = $2)
		ORDER BY au.id DESC LIMIT $3`, app.Namespace, app.Name, limit)
	if err != nil {
		return nil, fmt.Errorf("audit of %s: %w", app, err)
	}
	entries, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("audit of %s: %w", app, err)
	}
	return entries, nil
}
