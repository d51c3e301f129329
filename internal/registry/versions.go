package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/validate"
)

// Observation is what a pod's labels and its Service say about a version: where it is
// reached, when it came to be, and the workflow that runs its lifecycle.
type Observation struct {
	Ref VersionRef
	Placement
	Origin
	WorkflowID string
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (o Observation) validate() error {
	if err := validateRef(o.Ref); err != nil {
		return err
	}
	if o.Group != "" {
		if err := validate.LabelValue(o.Group); err != nil {
			return invalid("version %s: group %q: %v", o.Ref, o.Group, err)
		}
	}
	return o.checkPort(o.Ref)
}

// refreshes reports whether o carries a value that differs from v's. Empty values never clear
// what an earlier observation recorded.
func (o Observation) refreshes(v Version) bool {
	return (o.ServiceName != "" && o.ServiceName != v.ServiceName) ||
		(o.ServicePort != 0 && o.ServicePort != v.ServicePort) ||
		(o.PathPrefix != "" && o.PathPrefix != v.PathPrefix) ||
		(o.Hostname != "" && o.Hostname != v.Hostname) ||
		(o.WorkflowID != "" && o.WorkflowID != v.WorkflowID) ||
		(o.Group != "" && o.Group != v.Group)
}

// Transition is the outcome of a state change. Changed is false when the version was already in
// the requested state; then nothing was written and Generation is the current one.
type Transition struct {
	Version    Version
	Previous   *Version // the version that was Active before and is now Draining, if any
	Generation int64    // the app's route generation after the change
	Changed    bool
	// KeptBy is set when an activation found a newer version Active that had been detected
	// together with this one: that version stays Active and this one went to Draining.
	KeptBy *Version
	// Capped are the Draining versions this change expired because the app's maxVersions was
	// exceeded, oldest first; their routes are gone in the same transaction, and their
	// workflows still have to retire their workloads. A repeat of an activation (Changed=false)
	// returns the versions the activation capped.
	Capped []Version
	// CappedBecause is the reason the Capped versions were expired (as audited): the cap, or
	// ReasonProtectionOff. Empty on a repeat of the activation.
	CappedBecause string
}

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ObserveVersion records that a version exists. It is idempotent: when the label has a live
// (not expired) life, that row is returned with created=false, and a Pending row takes any new
// non-empty Service, path, hostname or workflow id from o. Otherwise a new Pending life is
// inserted (the first, audited "observed", or the next after an expired one, audited
// "redeployed"; the old lives and their audit are kept), creating the application if needed.
func (s *Store) ObserveVersion(ctx context.Context, o Observation, actor Actor) (v Version, created bool, err error) {
	if err := errors.Join(o.validate(), validateActor(actor)); err != nil {
		return Version{}, false, err
	}
	live, ok, err := s.LiveVersion(ctx, o.Ref)
	if err != nil {
		return Version{}, false, err
	}
	if ok && (live.State != Pending || !o.refreshes(live)) {
		return live, false, nil
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		app, err := ensureApp(ctx, tx, o.Ref.AppRef())
		if err != nil {
			return err
		}
		// Another registration may have won the lock first.
		v, ok, err = lockLive(ctx, tx, app.ID, o.Ref)
		if err != nil {
			return err
		}
		if ok {
			if v.State == Pending && o.refreshes(v) {
				v, err = refresh(ctx, tx, v, o, actor)
			}
			return err
		}
		v, err = insertLife(ctx, tx, app.ID, o, actor)
		created = err == nil
		return err
	})
	if err != nil {
		return Version{}, false, fmt.Errorf("observe version %s: %w", o.Ref, err)
	}
	return v, created, nil
}

// insertLife inserts the next Pending life of the label and audits it.
func insertLife(ctx context.Context, tx pgx.Tx, appID int64, o Observation, actor Actor) (Version, error) {
	v, err := scanVersion(tx.QueryRow(ctx, `
		WITH ins AS (
			INSERT INTO versions (app_id, label, life, state, service_name, service_port, path_prefix, hostname, workflow_id,
				deployed_at, pods_created_at, adopted_deployment, app_group)
			SELECT $1::bigint, $2::text, coalesce(max(life), 0) + 1, 'pending', $3::text, $4::integer, $5::text, $6::text, $7::text,
				$8::timestamptz, $9::timestamptz, $10::text, $11::text
			FROM versions WHERE app_id = $1::bigint AND label = $2::text
			RETURNING *)
		SELECT `+versionColumns+` FROM ins v JOIN applications a ON a.id = v.app_id`,
		appID, o.Ref.Label, o.ServiceName, o.ServicePort, o.PathPrefix, o.Hostname, o.WorkflowID,
		optTime(o.DeployedAt), optTime(o.PodsCreatedAt), o.AdoptedDeployment, o.Group))
	if err != nil {
		return Version{}, fmt.Errorf("insert version: %w", err)
	}
	event := EventObserved
	if v.Life > 1 {
		event = EventRedeployed
	}
	to := Pending
	detail := map[string]any{"serviceName": v.ServiceName, "servicePort": v.ServicePort,
		"pathPrefix": v.PathPrefix, "hostname": v.Hostname, "workflowId": v.WorkflowID}
	if v.AdoptedDeployment != "" {
		detail["adoptedDeployment"] = v.AdoptedDeployment
	}
	if v.Group != "" {
		detail["group"] = v.Group
	}
	return v, insertAudit(ctx, tx, v, event, nil, &to, actor, "", detail)
}

// refresh updates a Pending row with the new values of o and audits what changed.
func refresh(ctx context.Context, tx pgx.Tx, v Version, o Observation, actor Actor) (Version, error) {
	changed := map[string]any{}
	note := func(name string, before, after any, set bool) {
		if set && before != after {
			changed[name] = map[string]any{"from": before, "to": after}
		}
	}
	note("serviceName", v.ServiceName, o.ServiceName, o.ServiceName != "")
	note("servicePort", v.ServicePort, o.ServicePort, o.ServicePort != 0)
	note("pathPrefix", v.PathPrefix, o.PathPrefix, o.PathPrefix != "")
	note("hostname", v.Hostname, o.Hostname, o.Hostname != "")
	note("workflowId", v.WorkflowID, o.WorkflowID, o.WorkflowID != "")
	note("group", v.Group, o.Group, o.Group != "")
	nv, err := scanVersion(tx.QueryRow(ctx, `
		UPDATE versions v SET
			service_name = coalesce(nullif($2, ''), v.service_name),
			service_port = coalesce(nullif($3::integer, 0), v.service_port),
			path_prefix  = coalesce(nullif($4, ''), v.path_prefix),
			hostname     = coalesce(nullif($5, ''), v.hostname),
			workflow_id  = coalesce(nullif($6, ''), v.workflow_id),
			app_group    = coalesce(nullif($7, ''), v.app_group)
		FROM applications a
		WHERE a.id = v.app_id AND v.id = $1 AND v.state = 'pending'
		RETURNING `+versionColumns,
		v.ID, o.ServiceName, o.ServicePort, o.PathPrefix, o.Hostname, o.WorkflowID, o.Group))
	if err != nil {
		return Version{}, fmt.Errorf("refresh version: %w", err)
	}
	return nv, insertAudit(ctx, tx, nv, EventRefreshed, nil, nil, actor, "", changed)
}

// Op names an operation on the state machine.
type Op string

// The operations Flip performs.
const (
	OpActivate Op = "activate" // Pending, Staged or Failed → Active; the Active one → Draining
	OpPromote  Op = "promote"  // Draining → Active; the Active one → Draining
	OpStage    Op = "stage"    // Pending or Failed → Staged
	OpExpire   Op = "expire"   // Pending, Staged, Draining or Failed → Expired
	OpFail     Op = "fail"     // Pending, Staged → Failed, with the reason kept on the row
)

// move is one operation on the state machine: which states it moves from, and to which.
// The transitions table says what is legal at all; an operation may be narrower.
type move struct {
	op    Op
	from  []State
	to    State
	event string
	// supersede: the app's current Active version becomes Draining in the same transaction.
	supersede bool
}

var moves = map[Op]move{
	// Activate never revives a Draining version: a retried activation of a version that has
	// since been superseded must not take routing back (that is Promote, an explicit decision).
	OpActivate: {op: OpActivate, from: []State{Pending, Staged, Failed}, to: Active, event: EventActivated, supersede: true},
	OpPromote:  {op: OpPromote, from: []State{Draining}, to: Active, event: EventPromoted, supersede: true},
	OpStage:    {op: OpStage, from: []State{Pending, Failed}, to: Staged, event: EventStaged},
	OpExpire:   {op: OpExpire, from: []State{Pending, Staged, Draining, Failed}, to: Expired, event: EventExpired},
	OpFail:     {op: OpFail, from: []State{Pending, Staged}, to: Failed, event: EventFailed},
}

// FlipRequest asks for one state change of the newest life of a version, made together with
// the routes that follow from it.
type FlipRequest struct {
	Ref    VersionRef
	Op     Op
	Actor  Actor
	Reason string
	// ClaimOf returns the host and path prefix a version's routes serve. When set, a version
	// that becomes Active (or Staged while the app claims nothing) makes the app claim them;
	// a claim another application holds refuses the change with a *ClaimConflictError.
	ClaimOf func(Version) Claim
	// OwnCookie is the pin cookie name the app takes when its claim nests with another
	// application's that uses the default name on a shared host (so that pins never cross
	// apps). It is chosen once and kept.
	OwnCookie string
	// CheckClaim, when set, is asked when the app takes a claim it does not hold yet, after the
	// registry's own claims were checked and before anything commits: it refuses (with a
	// *ClaimConflictError) a host and path something outside the registry serves, such as
	// another team's HTTPRoute on the same Gateway.
	CheckClaim func(ctx context.Context, c Claim) error
	// Publish, when set, is called inside the transaction with the snapshot as it will be
	// committed (generation bumped); if it fails, nothing is committed and its error is
	// returned. This is how the registry flip and the route write succeed or fail together.
	Publish func(ctx context.Context, snap Snapshot) error
	// MaxVersions is the global cap on the app's Draining versions (PLT_SKEW_MAX_VERSIONS),
	// applied when the app's policy sets no maxVersions of its own; 0 is no cap. An Activate or
	// Promote that leaves more Draining versions than the cap expires those Draining the longest
	// in its own transaction: never the Active version, never the version being
	// flipped, never a Pending, Staged or Failed one.
	MaxVersions int64
}

// ClaimConflictError refuses a change that would make an app claim a host and path prefix
// another application already holds.
type ClaimConflictError struct {
	Claim  Claim
	Holder AppRef
	// Route, when set, is the HTTPRoute (namespace/name) outside the registry that holds it.
	Route string
}

func (e *ClaimConflictError) Error() string {
	if e.Route != "" {
		return fmt.Sprintf("host and path %s are already served by HTTPRoute %s on the same Gateway", e.Claim, e.Route)
	}
	return fmt.Sprintf("host and path %s are already claimed by application %s", e.Claim, e.Holder)
}

// Activate makes a Pending, Staged or Failed version Active; the previous Active version becomes
// Draining in the same transaction, the route generation is bumped and both moves are audited.
// Already Active: nothing changes (Changed=false). Draining or Expired: *IllegalTransitionError.
//
// Versions found together: when an automatic activation (not a user's) meets an Active
// version that became Active after this version was detected, and that version is newer (by
// the creation times of their Deployments, then of their pods), this version does not take
// over: it goes straight to Draining (Transition.KeptBy names the newer version). So whatever
// the order in which versions found at once become ready, the newest ends up Active.
func (s *Store) Activate(ctx context.Context, ref VersionRef, actor Actor, reason string) (Transition, error) {
	return s.Flip(ctx, FlipRequest{Ref: ref, Op: OpActivate, Actor: actor, Reason: reason})
}

// Stage holds a Pending version at the approval gate, reachable by pin only; the route
// generation is bumped because the version gets a pin rule.
func (s *Store) Stage(ctx context.Context, ref VersionRef, actor Actor, reason string) (Transition, error) {
	return s.Flip(ctx, FlipRequest{Ref: ref, Op: OpStage, Actor: actor, Reason: reason})
}

// Promote makes a Draining version Active again; the current Active version becomes Draining.
func (s *Store) Promote(ctx context.Context, ref VersionRef, actor Actor, reason string) (Transition, error) {
	return s.Flip(ctx, FlipRequest{Ref: ref, Op: OpPromote, Actor: actor, Reason: reason})
}

// Expire retires a Pending, Staged, Draining or Failed version and bumps the route generation.
// The Active version cannot expire (activate another first): *IllegalTransitionError. Already
// Expired: nothing changes.
func (s *Store) Expire(ctx context.Context, ref VersionRef, actor Actor, reason string) (Transition, error) {
	return s.Flip(ctx, FlipRequest{Ref: ref, Op: OpExpire, Actor: actor, Reason: reason})
}

// Fail marks a Pending or Staged version Failed with reason (kept on the row). Already Failed:
// nothing changes.
func (s *Store) Fail(ctx context.Context, ref VersionRef, actor Actor, reason string) (Transition, error) {
	return s.Flip(ctx, FlipRequest{Ref: ref, Op: OpFail, Actor: actor, Reason: reason})
}

// Flip performs req.Op on the newest life of req.Ref under the app lock, then (when set) the
// claim check and req.Publish, all in one transaction.
func (s *Store) Flip(ctx context.Context, req FlipRequest) (Transition, error) {
	m, ok := moves[req.Op]
	if !ok {
		return Transition{}, invalid("unknown operation %q", req.Op)
	}
	ref, actor, reason := req.Ref, req.Actor, req.Reason
	if err := errors.Join(validateRef(ref), validateActor(actor)); err != nil {
		return Transition{}, err
	}
	var t Transition
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		t = Transition{}
		app, err := lockApp(ctx, tx, ref.AppRef())
		if err != nil {
			return err
		}
		v, err := scanVersion(tx.QueryRow(ctx, `SELECT `+versionColumns+versionsFrom+`
			WHERE v.app_id = $1 AND v.label = $2 ORDER BY v.life DESC LIMIT 1`, app.ID, ref.Label))
		if err != nil {
			return notFound(err, "version "+ref.String())
		}
		if v.State == m.to {
			t = Transition{Version: v, Generation: app.RouteGeneration}
			if m.supersede {
				t.Capped, err = cappedWith(ctx, tx, app.ID, v)
			}
			return err
		}
		if err := CheckTransition(ref, v.State, m.to); err != nil {
			return err
		}
		if !slices.Contains(m.from, v.State) {
			return &IllegalTransitionError{Version: ref, From: v.State, To: m.to, Op: string(m.op)}
		}
		to, event := m.to, m.event
		var detail any
		if m.supersede {
			cur, err := activeVersion(ctx, tx, app.ID)
			if err != nil {
				return err
			}
			if cur != nil && keepsActive(m, actor, v, *cur) {
				// Found together with a newer version that is already Active: drain instead.
				to, event, t.KeptBy = Draining, EventSuperseded, cur
				reason = fmt.Sprintf("found together with the newer version %s, which stays Active (%s)", cur.Label, reason)
				detail = map[string]any{"keptBy": cur.Label, "keptByLife": cur.Life}
			} else if cur != nil {
				if t.Previous, err = supersede(ctx, tx, *cur, v, actor); err != nil {
					return err
				}
			}
		}
		if req.ClaimOf != nil && (to == Active || (to == Staged && app.Claim == nil)) {
			c := req.ClaimOf(v)
			held := app.Claim != nil && *app.Claim == c
			// The registry's own claims first: the holder's HTTPRoutes are on the Gateway too,
			// and the registry's refusal names the holding application, not just its route.
			if app, err = claim(ctx, tx, app, c, req.OwnCookie); err != nil {
				return err
			}
			if req.CheckClaim != nil && !held {
				if err := req.CheckClaim(ctx, c); err != nil {
					return err
				}
			}
		}
		from := v.State
		failure := ""
		if to == Failed {
			failure = reason
		}
		if v, err = setState(ctx, tx, v, to, failure); err != nil {
			return err
		}
		if err := insertAudit(ctx, tx, v, event, &from, &to, actor, reason, detail); err != nil {
			return err
		}
		if m.supersede {
			if t.Capped, t.CappedBecause, err = enforceMaxVersions(ctx, tx, app.ID, v, req.MaxVersions, actor); err != nil {
				return err
			}
		}
		t.Version, t.Changed = v, true
		if to == Failed {
			t.Generation = app.RouteGeneration // nothing routed changed
			return nil
		}
		if t.Generation, err = bumpGeneration(ctx, tx, app.ID); err != nil {
			return err
		}
		app.RouteGeneration = t.Generation
		snap, err := readSnapshot(ctx, tx, app)
		if err != nil {
			return err
		}
		if !snap.Routed() && app.Claim != nil {
			// Nothing is routed any more: the app lets go of its host and path.
			if _, err := tx.Exec(ctx, `UPDATE applications SET claim_host = NULL, claim_path = NULL WHERE id = $1`, app.ID); err != nil {
				return fmt.Errorf("release claim: %w", err)
			}
			snap.App.Claim = nil
		}
		if req.Publish != nil {
			return req.Publish(withLock(ctx, snap), snap)
		}
		return nil
	})
	if err != nil {
		var ite *IllegalTransitionError
		var cce *ClaimConflictError
		if errors.As(err, &ite) || errors.As(err, &cce) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			return Transition{}, err
		}
		return Transition{}, fmt.Errorf("%s version %s: %w", m.op, ref, err)
	}
	return t, nil
}

// keepsActive reports whether cur, the app's Active version, stays Active when v is activated:
// only for an automatic activation of a version that was running before cur became Active (found
// together), when cur is the newer of the two. An operator's activation always takes over.
func keepsActive(m move, actor Actor, v, cur Version) bool {
	return m.op == OpActivate && actor.Type != ActorUser && cur.ActiveAt != nil &&
		runningSince(v).Before(*cur.ActiveAt) && cur.newerThan(v)
}

// runningSince is when v was there to be found: its pods' creation time when known and earlier
// than its recording. The recording (PendingAt) trails detection by however long the version's
// workflow took to start: seconds when skewguard starts over many running versions, long enough
// for a newer version found at the same moment to become Active first, after which the older one,
// recorded late, would take over as if freshly deployed. A redeploy or a scale-up creates new pods,
// so it still counts as later than the Active version.
func runningSince(v Version) time.Time {
	if v.PodsCreatedAt != nil && !v.PodsCreatedAt.IsZero() && v.PodsCreatedAt.Before(v.PendingAt) {
		return *v.PodsCreatedAt
	}
	return v.PendingAt
}

// activeVersion reads the app's Active version, if any; the caller holds the app lock.
func activeVersion(ctx context.Context, tx pgx.Tx, appID int64) (*Version, error) {
	cur, err := scanVersion(tx.QueryRow(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.state = 'active'`, appID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read active version: %w", err)
	}
	return &cur, nil
}

// supersede moves cur, the app's Active version, to Draining because next takes its place.
func supersede(ctx context.Context, tx pgx.Tx, cur, next Version, actor Actor) (*Version, error) {
	if err := CheckTransition(cur.Ref(), cur.State, Draining); err != nil {
		return nil, err
	}
	cur, err := setState(ctx, tx, cur, Draining, "")
	if err != nil {
		return nil, err
	}
	from, to := Active, Draining
	reason := fmt.Sprintf("superseded by version %s", next.Label)
	detail := map[string]any{"supersededBy": next.Label, "supersededByLife": next.Life}
	if err := insertAudit(ctx, tx, cur, EventSuperseded, &from, &to, actor, reason, detail); err != nil {
		return nil, err
	}
	return &cur, nil
}

// enforceMaxVersions expires the oldest Draining versions of the app beyond its maxVersions
// (the policy's, else global; 0 is no cap) now that by, the version just flipped, is Active or
// Draining. Oldest means Draining the longest (then recorded first): after a rollback, the
// version just displaced has the most recent sessions pinned to it and is kept, where the age
// of its deployment would have made it the first to go. by itself is counted but never expired; the caller holds the app lock. Each expiry
// is audited with the cap and the version that exceeded it.
//
// While the app's skew protection is off (Policy.Enabled false) the cap is 0, whatever
// maxVersions says: every Draining version but by is expired, the version just superseded
// included, audited with ReasonProtectionOff. The reason of the expiries is returned with them.
func enforceMaxVersions(ctx context.Context, tx pgx.Tx, appID int64, by Version, global int64, actor Actor) ([]Version, string, error) {
	p, err := readPolicy(ctx, tx, appID)
	if err != nil {
		return nil, "", err
	}
	limit := global
	if p.MaxVersions != nil {
		limit = *p.MaxVersions
	}
	limit = bounds.MaxVersions.Clamp(limit)
	reason := fmt.Sprintf("maxVersions %d exceeded by version %s", limit, by.Label)
	detail := map[string]any{"maxVersions": limit, "exceededBy": by.Label, "exceededByLife": by.Life}
	switch {
	case p.ProtectionOff():
		// Skew protection is off for the app: nothing drains, every Draining version goes now.
		limit, reason = 0, ReasonProtectionOff
		detail = map[string]any{"enabled": false, "activated": by.Label, "activatedLife": by.Life}
	case limit == 0:
		return nil, "", nil
	}
	rows, err := tx.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.state = 'draining' ORDER BY v.draining_at, v.id`, appID)
	if err != nil {
		return nil, "", fmt.Errorf("read draining versions: %w", err)
	}
	draining, err := collectVersions(rows)
	if err != nil {
		return nil, "", fmt.Errorf("read draining versions: %w", err)
	}
	excess := int64(len(draining)) - limit
	var capped []Version
	from, to := Draining, Expired
	for _, old := range draining {
		if int64(len(capped)) >= excess {
			break
		}
		if old.ID == by.ID {
			continue
		}
		nv, err := setState(ctx, tx, old, Expired, "")
		if err != nil {
			return nil, "", err
		}
		if err := insertAudit(ctx, tx, nv, EventExpired, &from, &to, actor, reason, detail); err != nil {
			return nil, "", err
		}
		capped = append(capped, nv)
	}
	if len(capped) == 0 {
		reason = ""
	}
	return capped, reason, nil
}

// cappedWith returns the versions the flip that made v Active expired for maxVersions: those
// expired in that transaction, whose expiry time (the transaction's clock) is v's activation
// time. Nothing else expires in the transaction of an activation.
func cappedWith(ctx context.Context, tx pgx.Tx, appID int64, v Version) ([]Version, error) {
	if v.State != Active || v.ActiveAt == nil {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.state = 'expired' AND v.expired_at = $2 AND v.id <> $3
		ORDER BY v.draining_at, v.id`, appID, *v.ActiveAt, v.ID)
	if err != nil {
		return nil, fmt.Errorf("read capped versions: %w", err)
	}
	capped, err := collectVersions(rows)
	if err != nil {
		return nil, fmt.Errorf("read capped versions: %w", err)
	}
	return capped, nil
}

// claim makes app hold c, refusing a claim another application holds, and gives the app a
// pin cookie of its own (ownCookie) when c nests with a claim of an app that uses the default
// name. The caller holds the app lock; the unique index settles a race between two apps.
func claim(ctx context.Context, tx pgx.Tx, app Application, c Claim, ownCookie string) (Application, error) {
	rows, err := tx.Query(ctx, `SELECT namespace, name, claim_host, claim_path, cookie_name FROM applications
		WHERE id <> $1 AND claim_path IS NOT NULL AND (claim_host = $2 OR claim_host = '' OR $2 = '')`, app.ID, c.Host)
	if err != nil {
		return app, fmt.Errorf("read claims: %w", err)
	}
	type other struct {
		ref    AppRef
		claim  Claim
		cookie string
	}
	others, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (other, error) {
		var o other
		err := r.Scan(&o.ref.Namespace, &o.ref.Name, &o.claim.Host, &o.claim.Path, &o.cookie)
		return o, err
	})
	if err != nil {
		return app, fmt.Errorf("read claims: %w", err)
	}
	cookie := app.CookieName
	for _, o := range others {
		if o.claim == c {
			return app, &ClaimConflictError{Claim: c, Holder: o.ref}
		}
		if cookie == "" && ownCookie != "" && o.cookie == "" && o.claim.Nests(c) {
			cookie = ownCookie
		}
	}
	_, err = tx.Exec(ctx, `UPDATE applications SET claim_host = $2, claim_path = $3, cookie_name = $4 WHERE id = $1`,
		app.ID, c.Host, c.Path, cookie)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// Another app took it since the read above: the unique index refuses the second claim.
		return app, &ClaimConflictError{Claim: c, Holder: AppRef{Name: "(another application)"}}
	}
	if err != nil {
		return app, fmt.Errorf("claim %s: %w", c, err)
	}
	app.Claim, app.CookieName = &c, cookie
	return app, nil
}

// setState moves v to state to and stamps the time it entered it (database clock); failure is
// kept when to is Failed, and cleared when the version becomes Active. The row must still be in
// v.State; the caller holds the app lock, so anything else is a bug worth an error.
func setState(ctx context.Context, tx pgx.Tx, v Version, to State, failure string) (Version, error) {
	nv, err := scanVersion(tx.QueryRow(ctx, `
		UPDATE versions v SET
			state       = $3,
			staged_at   = CASE WHEN $3 = 'staged'   THEN now() ELSE v.staged_at END,
			active_at   = CASE WHEN $3 = 'active'   THEN now() ELSE v.active_at END,
			draining_at = CASE WHEN $3 = 'draining' THEN now() WHEN $3 = 'active' THEN NULL ELSE v.draining_at END,
			expired_at  = CASE WHEN $3 = 'expired'  THEN now() ELSE v.expired_at END,
			failed_at   = CASE WHEN $3 = 'failed'   THEN now() ELSE v.failed_at END,
			failure     = CASE WHEN $3 = 'failed'   THEN $4 WHEN $3 = 'active' THEN '' ELSE v.failure END,
			last_rps    = CASE WHEN $3 = 'draining' THEN NULL ELSE v.last_rps END,
			last_rps_at = CASE WHEN $3 = 'draining' THEN NULL ELSE v.last_rps_at END
		FROM applications a
		WHERE a.id = v.app_id AND v.id = $1 AND v.state = $2
		RETURNING `+versionColumns, v.ID, string(v.State), string(to), failure))
	if err != nil {
		return Version{}, fmt.Errorf("move version %s from %s to %s: %w", v.Ref(), v.State, to, err)
	}
	return nv, nil
}

// lockLive reads and locks the live life of ref, if any.
func lockLive(ctx context.Context, tx pgx.Tx, appID int64, ref VersionRef) (Version, bool, error) {
	v, err := scanVersion(tx.QueryRow(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.label = $2 AND v.state <> 'expired' FOR UPDATE OF v`, appID, ref.Label))
	if errors.Is(err, pgx.ErrNoRows) {
		return Version{}, false, nil
	}
	if err != nil {
		return Version{}, false, fmt.Errorf("read version %s: %w", ref, err)
	}
	return v, true, nil
}

// LiveVersion returns the live (not expired) life of ref, if any, in one indexed query: the
// fast path of every registration.
func (s *Store) LiveVersion(ctx context.Context, ref VersionRef) (Version, bool, error) {
	v, err := scanVersion(s.pool.QueryRow(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE a.namespace = $1 AND a.name = $2 AND v.label = $3 AND v.state <> 'expired'`,
		ref.Namespace, ref.App, ref.Label))
	if errors.Is(err, pgx.ErrNoRows) {
		return Version{}, false, nil
	}
	if err != nil {
		return Version{}, false, fmt.Errorf("read version %s: %w", ref, err)
	}
	return v, true, nil
}

// GetVersion returns the newest life of ref, whatever its state.
func (s *Store) GetVersion(ctx context.Context, ref VersionRef) (Version, error) {
	v, err := scanVersion(s.pool.QueryRow(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE a.namespace = $1 AND a.name = $2 AND v.label = $3 ORDER BY v.life DESC LIMIT 1`,
		ref.Namespace, ref.App, ref.Label))
	if err != nil {
		return Version{}, notFound(err, "version "+ref.String())
	}
	return v, nil
}

// ListVersions returns every life of every label of app, newest first. An unknown app has none.
func (s *Store) ListVersions(ctx context.Context, app AppRef) ([]Version, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE a.namespace = $1 AND a.name = $2 ORDER BY v.id DESC`, app.Namespace, app.Name)
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", app, err)
	}
	vs, err := collectVersions(rows)
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", app, err)
	}
	return vs, nil
}

// RecordTraffic stores the last request-rate reading of the live life of ref, taken at at
// (the database clock when at is zero).
func (s *Store) RecordTraffic(ctx context.Context, ref VersionRef, rps float64, at time.Time) error {
	if err := validateRef(ref); err != nil {
		return err
	}
	if rps < 0 || math.IsNaN(rps) || math.IsInf(rps, 0) {
		return invalid("version %s: request rate %v is not a non-negative number", ref, rps)
	}
	var when *time.Time
	if !at.IsZero() {
		when = &at
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE versions v SET last_rps = $4, last_rps_at = coalesce($5, now())
		FROM applications a
		WHERE a.id = v.app_id AND a.namespace = $1 AND a.name = $2 AND v.label = $3 AND v.state <> 'expired'`,
		ref.Namespace, ref.App, ref.Label, rps, when)
	if err != nil {
		return fmt.Errorf("record traffic of %s: %w", ref, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("live version %s: %w", ref, ErrNotFound)
	}
	return nil
}
