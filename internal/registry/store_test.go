//go:build integration

package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

var (
	system = registry.Actor{Type: registry.ActorSystem}
	user   = registry.Actor{Type: registry.ActorUser, ID: "u-1", Name: "alice"}
	app    = registry.AppRef{Namespace: "shop", Name: "web"}
)

func ptr[T any](v T) *T { return &v }

func ref(label string) registry.VersionRef {
	return registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: label}
}

func observe(t *testing.T, s *registry.Store, label string) registry.Version {
	t.Helper()
	v, _, err := s.ObserveVersion(context.Background(), registry.Observation{
		Ref: ref(label), Placement: registry.Placement{ServiceName: "web-v" + label, ServicePort: 3000},
		WorkflowID: "skew/shop/web/" + label}, registry.Actor{Type: registry.ActorPod, ID: "web-v" + label + "-abc"})
	require.NoError(t, err)
	return v
}

func activate(t *testing.T, s *registry.Store, label string) registry.Transition {
	t.Helper()
	tr, err := s.Activate(context.Background(), ref(label), system, "ready endpoints")
	require.NoError(t, err)
	return tr
}

func events(entries []registry.AuditEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Event
	}
	return out
}

func TestObserveVersionIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	o := registry.Observation{Ref: ref("42"), Placement: registry.Placement{ServiceName: "web-v42", ServicePort: 3042, PathPrefix: "/web", Hostname: "shop.example"},
		WorkflowID: "skew/shop/web/42"}

	first, created, err := s.ObserveVersion(ctx, o, system)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, registry.Pending, first.State)
	assert.Equal(t, 1, first.Life)
	assert.Equal(t, "web-v42", first.ServiceName)
	assert.Equal(t, int32(3042), first.ServicePort)
	assert.Equal(t, "/web", first.PathPrefix)
	assert.Equal(t, "shop.example", first.Hostname)
	assert.Equal(t, "skew/shop/web/42", first.WorkflowID)
	assert.False(t, first.PendingAt.IsZero())

	again, created, err := s.ObserveVersion(ctx, o, system)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, first, again)

	live, ok, err := s.LiveVersion(ctx, o.Ref)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, first, live)

	audit, err := s.Audit(ctx, o.Ref)
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved}, events(audit))

	apps, err := s.ListApps(ctx)
	require.NoError(t, err)
	require.Len(t, apps, 1)
	assert.Equal(t, app.Name, apps[0].Name)
	assert.Equal(t, int64(0), apps[0].RouteGeneration, "a pending version is not routed")
}

func TestObserveRefreshesOnlyPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")

	v, created, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref("1"), Placement: registry.Placement{ServiceName: "web-v1-new", PathPrefix: "/shop"}}, system)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, "web-v1-new", v.ServiceName)
	assert.Equal(t, "/shop", v.PathPrefix)
	assert.Equal(t, int32(3000), v.ServicePort, "empty values keep what was recorded")
	assert.Equal(t, "skew/shop/web/1", v.WorkflowID)

	activate(t, s, "1")
	v, _, err = s.ObserveVersion(ctx, registry.Observation{Ref: ref("1"), Placement: registry.Placement{ServiceName: "other"}}, system)
	require.NoError(t, err)
	assert.Equal(t, "web-v1-new", v.ServiceName, "an active version is not changed by an observation")

	audit, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved, registry.EventRefreshed, registry.EventActivated}, events(audit))
	assert.JSONEq(t, `{"serviceName":{"from":"web-v1","to":"web-v1-new"},"pathPrefix":{"from":"","to":"/shop"}}`,
		string(audit[1].Detail))
}

func TestActivateSupersedesPreviousActive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	v1 := observe(t, s, "1")

	tr := activate(t, s, "1")
	assert.True(t, tr.Changed)
	assert.Nil(t, tr.Previous)
	assert.Equal(t, registry.Active, tr.Version.State)
	assert.Equal(t, v1.ID, tr.Version.ID)
	assert.NotNil(t, tr.Version.ActiveAt)
	assert.Equal(t, int64(1), tr.Generation)

	observe(t, s, "2")
	tr = activate(t, s, "2")
	assert.True(t, tr.Changed)
	require.NotNil(t, tr.Previous)
	assert.Equal(t, v1.ID, tr.Previous.ID)
	assert.Equal(t, registry.Draining, tr.Previous.State)
	require.NotNil(t, tr.Previous.DrainingAt)
	assert.Equal(t, *tr.Version.ActiveAt, *tr.Previous.DrainingAt, "one transaction, one clock reading")
	assert.Equal(t, int64(2), tr.Generation)

	// Repeating the activation (a retried activity) changes nothing and audits nothing.
	again := activate(t, s, "2")
	assert.False(t, again.Changed)
	assert.Nil(t, again.Previous)
	assert.Equal(t, tr.Version, again.Version)
	assert.Equal(t, int64(2), again.Generation)

	a1, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved, registry.EventActivated, registry.EventSuperseded}, events(a1))
	last := a1[2]
	assert.Equal(t, registry.Active, *last.FromState)
	assert.Equal(t, registry.Draining, *last.ToState)
	assert.Equal(t, "superseded by version 2", last.Reason)
	a2, err := s.Audit(ctx, ref("2"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved, registry.EventActivated}, events(a2))
	assert.Equal(t, "ready endpoints", a2[1].Reason)
	assert.Equal(t, system, a2[1].Actor)
}

func TestStagePromoteExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")
	activate(t, s, "1")
	observe(t, s, "2")

	tr, err := s.Stage(ctx, ref("2"), user, "waiting for approval")
	require.NoError(t, err)
	assert.True(t, tr.Changed)
	assert.Equal(t, registry.Staged, tr.Version.State)
	assert.NotNil(t, tr.Version.StagedAt)
	assert.Equal(t, int64(2), tr.Generation, "a staged version gets a pin rule")

	again, err := s.Stage(ctx, ref("2"), user, "twice")
	require.NoError(t, err)
	assert.False(t, again.Changed)

	tr, err = s.Activate(ctx, ref("2"), user, "approved")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, tr.Version.State)
	require.NotNil(t, tr.Previous)
	assert.Equal(t, "1", tr.Previous.Label)

	tr, err = s.Promote(ctx, ref("1"), user, "roll back")
	require.NoError(t, err)
	assert.True(t, tr.Changed)
	assert.Equal(t, registry.Active, tr.Version.State)
	assert.Nil(t, tr.Version.DrainingAt, "an active version is not draining")
	require.NotNil(t, tr.Previous)
	assert.Equal(t, "2", tr.Previous.Label)
	assert.Equal(t, registry.Draining, tr.Previous.State)
	assert.Equal(t, int64(4), tr.Generation)

	tr, err = s.Expire(ctx, ref("2"), system, "no traffic")
	require.NoError(t, err)
	assert.True(t, tr.Changed)
	assert.Equal(t, registry.Expired, tr.Version.State)
	assert.NotNil(t, tr.Version.ExpiredAt)
	assert.Equal(t, int64(5), tr.Generation)

	again, err = s.Expire(ctx, ref("2"), system, "again")
	require.NoError(t, err)
	assert.False(t, again.Changed)
	assert.Equal(t, int64(5), again.Generation)

	audit, err := s.Audit(ctx, ref("2"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved, registry.EventStaged, registry.EventActivated,
		registry.EventSuperseded, registry.EventExpired}, events(audit))
	assert.Equal(t, user, audit[1].Actor)
	assert.Equal(t, "waiting for approval", audit[1].Reason)
}

// TestIllegalTransitionsChangeNothing puts a version in each state and asks for every move the
// operations refuse: the error is typed and the row, the generation and the audit stay as they were.
func TestIllegalTransitionsChangeNothing(t *testing.T) {
	t.Parallel()
	type op func(context.Context, *registry.Store, registry.VersionRef) (registry.Transition, error)
	var (
		activateOp = func(ctx context.Context, s *registry.Store, r registry.VersionRef) (registry.Transition, error) {
			return s.Activate(ctx, r, user, "test")
		}
		stageOp = func(ctx context.Context, s *registry.Store, r registry.VersionRef) (registry.Transition, error) {
			return s.Stage(ctx, r, user, "test")
		}
		promoteOp = func(ctx context.Context, s *registry.Store, r registry.VersionRef) (registry.Transition, error) {
			return s.Promote(ctx, r, user, "test")
		}
		expireOp = func(ctx context.Context, s *registry.Store, r registry.VersionRef) (registry.Transition, error) {
			return s.Expire(ctx, r, user, "test")
		}
	)
	tests := []struct {
		name  string
		state registry.State // the state version "x" is put in
		op    op
		to    registry.State
		byOp  string // set when the table allows the move but the operation does not make it
	}{
		{"stage active", registry.Active, stageOp, registry.Staged, ""},
		{"expire active", registry.Active, expireOp, registry.Expired, ""},
		{"promote pending", registry.Pending, promoteOp, registry.Active, "promote"},
		{"promote staged", registry.Staged, promoteOp, registry.Active, "promote"},
		{"stage staged twice is fine, stage draining is not", registry.Draining, stageOp, registry.Staged, ""},
		{"activate draining", registry.Draining, activateOp, registry.Active, "activate"},
		{"activate expired", registry.Expired, activateOp, registry.Active, ""},
		{"stage expired", registry.Expired, stageOp, registry.Staged, ""},
		{"promote expired", registry.Expired, promoteOp, registry.Active, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := registrytest.New(t)
			putInState(t, s, "x", tc.state)
			before, err := s.GetVersion(ctx, ref("x"))
			require.NoError(t, err)
			require.Equal(t, tc.state, before.State)
			genBefore, err := s.Generation(ctx, app)
			require.NoError(t, err)
			auditBefore, err := s.AppAudit(ctx, app, 1000)
			require.NoError(t, err)

			_, err = tc.op(ctx, s, ref("x"))

			var ite *registry.IllegalTransitionError
			require.True(t, errors.As(err, &ite), "want *IllegalTransitionError, got %v", err)
			assert.Equal(t, registry.IllegalTransitionError{Version: ref("x"), From: tc.state, To: tc.to, Op: tc.byOp}, *ite)
			after, err := s.GetVersion(ctx, ref("x"))
			require.NoError(t, err)
			assert.Equal(t, before, after)
			genAfter, err := s.Generation(ctx, app)
			require.NoError(t, err)
			assert.Equal(t, genBefore, genAfter)
			auditAfter, err := s.AppAudit(ctx, app, 1000)
			require.NoError(t, err)
			assert.Equal(t, auditBefore, auditAfter)
		})
	}
}

// putInState observes label and moves it to state through the public operations. Another
// version "base" is made Active first when needed.
func putInState(t *testing.T, s *registry.Store, label string, state registry.State) {
	t.Helper()
	ctx := context.Background()
	observe(t, s, label)
	switch state {
	case registry.Pending:
	case registry.Staged:
		_, err := s.Stage(ctx, ref(label), system, "")
		require.NoError(t, err)
	case registry.Active:
		activate(t, s, label)
	case registry.Draining:
		activate(t, s, label)
		observe(t, s, "base")
		activate(t, s, "base")
	case registry.Expired:
		_, err := s.Expire(ctx, ref(label), system, "")
		require.NoError(t, err)
	}
}

func TestRedeployExpiredLabelKeepsHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	first := observe(t, s, "1")
	activate(t, s, "1")
	observe(t, s, "2")
	activate(t, s, "2")
	_, err := s.Expire(ctx, ref("1"), system, "drained")
	require.NoError(t, err)

	_, ok, err := s.LiveVersion(ctx, ref("1"))
	require.NoError(t, err)
	assert.False(t, ok, "an expired label has no live life")

	v, created, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref("1"), Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 3000}}, system)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 2, v.Life)
	assert.Equal(t, registry.Pending, v.State)
	assert.NotEqual(t, first.ID, v.ID)
	assert.Nil(t, v.ActiveAt)

	tr := activate(t, s, "1")
	assert.Equal(t, v.ID, tr.Version.ID)
	assert.Equal(t, "2", tr.Previous.Label)

	lives, err := s.ListVersions(ctx, app)
	require.NoError(t, err)
	require.Len(t, lives, 3)
	assert.Equal(t, []int64{v.ID, lives[1].ID, first.ID}, []int64{lives[0].ID, lives[1].ID, lives[2].ID}, "newest first")
	assert.Equal(t, registry.Expired, lives[2].State, "the old life is kept as it was")
	assert.NotNil(t, lives[2].ActiveAt)

	audit, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	assert.Equal(t, []string{registry.EventObserved, registry.EventActivated, registry.EventSuperseded,
		registry.EventExpired, registry.EventRedeployed, registry.EventActivated}, events(audit))
	for i, e := range audit {
		want := 1
		if i >= 4 {
			want = 2
		}
		assert.Equal(t, want, e.Life, "entry %d (%s)", i, e.Event)
	}
}

func TestUnknownRefsAreNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")
	missingApp := registry.AppRef{Namespace: "shop", Name: "nope"}
	missing := ref("404")

	_, err := s.Activate(ctx, missing, system, "")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.Activate(ctx, registry.VersionRef{Namespace: "shop", App: "nope", Label: "1"}, system, "")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.Expire(ctx, missing, system, "")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.GetVersion(ctx, missing)
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.Audit(ctx, missing)
	assert.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorIs(t, s.AppendAudit(ctx, missing, "routes-written", system, "", nil), registry.ErrNotFound)
	assert.ErrorIs(t, s.RecordTraffic(ctx, missing, 1, time.Time{}), registry.ErrNotFound)
	_, err = s.Snapshot(ctx, missingApp)
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.Generation(ctx, missingApp)
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.BumpGeneration(ctx, missingApp)
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, ok, err := s.LiveVersion(ctx, missing)
	assert.NoError(t, err)
	assert.False(t, ok)
	vs, err := s.ListVersions(ctx, missingApp)
	assert.NoError(t, err)
	assert.Empty(t, vs)
}

func TestInvalidInputIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	_, _, err := s.ObserveVersion(ctx, registry.Observation{Ref: registry.VersionRef{Namespace: "shop", App: "web"}}, system)
	assert.ErrorIs(t, err, registry.ErrInvalid)
	_, _, err = s.ObserveVersion(ctx, registry.Observation{Ref: ref("1"), Placement: registry.Placement{ServicePort: 70000}}, system)
	assert.ErrorIs(t, err, registry.ErrInvalid)
	_, _, err = s.ObserveVersion(ctx, registry.Observation{Ref: ref("1")}, registry.Actor{Type: "robot"})
	assert.ErrorIs(t, err, registry.ErrInvalid)
	observe(t, s, "1")
	assert.ErrorIs(t, s.AppendAudit(ctx, ref("1"), "x", system, "", json.RawMessage(`{`)), registry.ErrInvalid)
	assert.ErrorIs(t, s.RecordTraffic(ctx, ref("1"), -1, time.Time{}), registry.ErrInvalid)
	assert.ErrorIs(t, s.UpsertPod(ctx, registry.Pod{ID: "p"}), registry.ErrInvalid)
	apps, err := s.ListApps(ctx)
	require.NoError(t, err)
	assert.Len(t, apps, 1, "nothing was written for the refused observations")
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	for _, l := range []string{"1", "2", "3"} {
		observe(t, s, l)
		activate(t, s, l)
	}
	_, err := s.Expire(ctx, ref("1"), system, "")
	require.NoError(t, err)
	observe(t, s, "4")
	_, err = s.Stage(ctx, ref("4"), system, "")
	require.NoError(t, err)
	observe(t, s, "5") // pending: not routed
	_, err = s.PutPolicy(ctx, app, registry.Policy{CookieMaxAge: ptr[int64](600)}, user)
	require.NoError(t, err)

	snap, err := s.Snapshot(ctx, app)
	require.NoError(t, err)
	require.NotNil(t, snap.Active)
	assert.Equal(t, "3", snap.Active.Label)
	labels := []string{}
	for _, v := range snap.Pinned {
		labels = append(labels, v.Label)
	}
	assert.Equal(t, []string{"2", "4"}, labels)
	gen, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, gen, snap.Generation)
	assert.Equal(t, gen, snap.App.RouteGeneration)
	assert.Equal(t, int64(6), gen, "3 activations, 1 expiry, 1 stage, 1 cookie Max-Age")
	require.NotNil(t, snap.Policy.CookieMaxAge)
	assert.Equal(t, int64(600), *snap.Policy.CookieMaxAge)
}

func TestGenerationBump(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")
	g, err := s.BumpGeneration(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(1), g)
	g, err = s.BumpGeneration(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(2), g)
	g, err = s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(2), g)
}

func TestAuditQueriesAndAppend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")
	activate(t, s, "1")
	require.NoError(t, s.AppendAudit(ctx, ref("1"), "routes-written", registry.Actor{Type: registry.ActorWorkflow,
		ID: "skew/shop/web/1"}, "generation 1", map[string]any{"routes": []string{"web"}, "generation": 1}))
	require.NoError(t, s.AppendAudit(ctx, ref("1"), "note", user, "", json.RawMessage(`{"a":1}`)))

	audit, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	require.Len(t, audit, 4)
	w := audit[2]
	assert.Equal(t, "routes-written", w.Event)
	assert.Nil(t, w.FromState)
	assert.Nil(t, w.ToState)
	assert.Equal(t, registry.ActorWorkflow, w.Actor.Type)
	assert.JSONEq(t, `{"routes":["web"],"generation":1}`, string(w.Detail))
	assert.Equal(t, ref("1"), w.Version)
	assert.Equal(t, audit[0].VersionID, w.VersionID)
	assert.False(t, w.At.Before(audit[1].At))

	observe(t, s, "2")
	recent, err := s.AppAudit(ctx, app, 2)
	require.NoError(t, err)
	require.Len(t, recent, 2)
	assert.Equal(t, ref("2"), recent[0].Version, "newest first")
	assert.Equal(t, registry.EventObserved, recent[0].Event)
	assert.Equal(t, "note", recent[1].Event)
	all, err := s.AppAudit(ctx, app, 0)
	require.NoError(t, err)
	assert.Len(t, all, 5)
}

// TestAuditIsAppendOnly goes around the Store: the database itself refuses to rewrite history.
func TestAuditIsAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := registrytest.NewURL(t)
	s, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	observe(t, s, "1")

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, stmt := range []string{
		`UPDATE version_audit SET reason = 'rewritten'`,
		`DELETE FROM version_audit`,
		`TRUNCATE version_audit`,
	} {
		_, err := conn.Exec(ctx, stmt)
		assert.ErrorContains(t, err, "append-only", stmt)
	}
	audit, err := s.Audit(ctx, ref("1"))
	require.NoError(t, err)
	require.Len(t, audit, 1)
	assert.Empty(t, audit[0].Reason)
}

// TestIndexesBackTheInvariants writes around the Store too: a second Active row or a second live
// row for a label is refused by the database.
func TestIndexesBackTheInvariants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := registrytest.NewURL(t)
	s, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	v1 := observe(t, s, "1")
	activate(t, s, "1")
	v2 := observe(t, s, "2")

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, `UPDATE versions SET state = 'active' WHERE id = $1`, v2.ID)
	assert.ErrorContains(t, err, "versions_one_active_per_app")
	_, err = conn.Exec(ctx, `INSERT INTO versions (app_id, label, life, state) VALUES ($1, '1', 2, 'pending')`, v1.AppID)
	assert.ErrorContains(t, err, "versions_one_live_per_label")
}

func TestRecordTraffic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	observe(t, s, "1")
	activate(t, s, "1")
	observe(t, s, "2")
	activate(t, s, "2")

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, s.RecordTraffic(ctx, ref("1"), 0.25, at))
	v, err := s.GetVersion(ctx, ref("1"))
	require.NoError(t, err)
	require.NotNil(t, v.LastRPS)
	assert.Equal(t, 0.25, *v.LastRPS)
	assert.True(t, at.Equal(*v.LastRPSAt))

	require.NoError(t, s.RecordTraffic(ctx, ref("1"), 0, time.Time{}))
	v, err = s.GetVersion(ctx, ref("1"))
	require.NoError(t, err)
	assert.Equal(t, 0.0, *v.LastRPS)
	assert.True(t, v.LastRPSAt.After(at), "zero time means the database clock")

	_, err = s.Expire(ctx, ref("1"), system, "")
	require.NoError(t, err)
	assert.ErrorIs(t, s.RecordTraffic(ctx, ref("1"), 1, at), registry.ErrNotFound, "an expired version takes no readings")
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)

	p, err := s.GetPolicy(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, registry.Policy{}, p, "unknown app: inherit everything")

	bad := registry.Policy{GracePeriodMS: ptr[int64](-1), MaxAliveMS: ptr[int64](0)}
	_, err = s.PutPolicy(ctx, app, bad, user)
	var pe *registry.PolicyError
	require.True(t, errors.As(err, &pe), "want *PolicyError, got %v", err)
	assert.Len(t, pe.Problems, 2)
	apps, err := s.ListApps(ctx)
	require.NoError(t, err)
	assert.Empty(t, apps, "a refused policy writes nothing")

	want := registry.Policy{GracePeriodMS: ptr[int64](1000), MaxAliveMS: ptr[int64](5000),
		RequireApproval: ptr(true), AutoCleanup: ptr(false)}
	_, err = s.PutPolicy(ctx, app, want, user)
	require.NoError(t, err)
	got, err := s.GetPolicy(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	gen, err := s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(0), gen, "no routing change")

	cookie := registry.Policy{CookieMaxAge: ptr[int64](60)}
	_, err = s.PutPolicy(ctx, app, cookie, user)
	require.NoError(t, err)
	got, err = s.GetPolicy(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, cookie, got, "put replaces: unset fields inherit again")
	gen, err = s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(1), gen, "the cookie Max-Age is rendered into the routes")
	_, err = s.PutPolicy(ctx, app, cookie, user)
	require.NoError(t, err)
	gen, err = s.Generation(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, int64(1), gen, "same cookie Max-Age: no bump")
}

func TestPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := registrytest.New(t)
	v := observe(t, s, "1")

	_, err := s.GetPod(ctx, "web-v1-abc")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	assert.ErrorIs(t, s.RecordPodState(ctx, "web-v1-abc", json.RawMessage(`{}`)), registry.ErrNotFound)

	require.NoError(t, s.UpsertPod(ctx, registry.Pod{ID: "web-v1-abc", Namespace: "shop", AppID: &v.AppID,
		VersionID: &v.ID, Metadata: json.RawMessage(`{"image":"web:1"}`)}))
	first, err := s.GetPod(ctx, "web-v1-abc")
	require.NoError(t, err)
	assert.Equal(t, "shop", first.Namespace)
	assert.Equal(t, v.ID, *first.VersionID)
	assert.Equal(t, v.AppID, *first.AppID)
	assert.JSONEq(t, `{"image":"web:1"}`, string(first.Metadata))
	assert.Equal(t, first.FirstSeen, first.LastSeen)

	require.NoError(t, s.UpsertPod(ctx, registry.Pod{ID: "web-v1-abc", Namespace: "shop"}))
	second, err := s.GetPod(ctx, "web-v1-abc")
	require.NoError(t, err)
	assert.Equal(t, first.FirstSeen, second.FirstSeen, "first_seen is kept")
	assert.True(t, second.LastSeen.After(first.LastSeen))
	assert.Equal(t, v.ID, *second.VersionID, "nil fields keep what was recorded")
	assert.JSONEq(t, `{"image":"web:1"}`, string(second.Metadata))

	require.NoError(t, s.RecordPodState(ctx, "web-v1-abc", json.RawMessage(`{"status":"ready","threads":4}`)))
	third, err := s.GetPod(ctx, "web-v1-abc")
	require.NoError(t, err)
	assert.JSONEq(t, `{"status":"ready","threads":4}`, string(third.Metadata))
	assert.True(t, third.LastSeen.After(second.LastSeen))
	assert.Equal(t, first.FirstSeen, third.FirstSeen)
}
