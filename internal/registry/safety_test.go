//go:build integration

package registry_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

var podActor = registry.Actor{Type: registry.ActorPod, ID: "pod"}

// observeAt records a version whose Deployment was created at deployed, its pods a second later.
func observeAt(t *testing.T, s *registry.Store, a registry.AppRef, label string, deployed time.Time) registry.Version {
	t.Helper()
	return observePods(t, s, a, label, deployed, deployed.Add(time.Second))
}

// observePods records a version whose Deployment was created at deployed and its pods at pods.
func observePods(t *testing.T, s *registry.Store, a registry.AppRef, label string, deployed, pods time.Time) registry.Version {
	t.Helper()
	v, _, err := s.ObserveVersion(context.Background(), registry.Observation{
		Ref: registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: label}, Placement: registry.Placement{ServiceName: a.Name + "-v" + label, ServicePort: 80},
		Origin: registry.Origin{DeployedAt: deployed, PodsCreatedAt: pods}}, podActor)
	require.NoError(t, err)
	return v
}

func states(t *testing.T, s *registry.Store, a registry.AppRef, labels ...string) map[string]registry.State {
	t.Helper()
	out := map[string]registry.State{}
	for _, l := range labels {
		v, err := s.GetVersion(context.Background(), registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l})
		require.NoError(t, err)
		out[l] = v.State
	}
	return out
}

// TestFoundTogetherTheNewestIsActive: three running versions found at once (skew protection
// switched on, a restart) become ready in any order; the newest by its Deployment's creation
// time ends Active every time, the others Draining. Without the ordering rule the last one
// activated wins, which is the oldest in half of these orders.
func TestFoundTogetherTheNewestIsActive(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	labels := []string{"a", "b", "c"} // created in this order
	for run := range 20 {
		a := registry.AppRef{Namespace: "adopt", Name: fmt.Sprintf("app%d", run)}
		for i, l := range labels {
			observeAt(t, s, a, l, base.Add(time.Duration(i)*time.Minute))
		}
		order := rand.Perm(len(labels))
		for _, i := range order {
			_, err := s.Activate(ctx, registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: labels[i]}, podActor, "ready")
			require.NoError(t, err)
		}
		got := states(t, s, a, labels...)
		assert.Equal(t, map[string]registry.State{"a": registry.Draining, "b": registry.Draining, "c": registry.Active}, got,
			"run %d, activation order %v", run, order)
	}
}

// TestFoundTogetherRecordedLate: versions found at once are recorded when their workflows start,
// which may be after a newer one found at the same moment became Active (the end-to-end test saw
// 2.4 s between detection and recording). The older one was running all along (its pods predate
// the activation): it drains, it does not take over.
func TestFoundTogetherRecordedLate(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	a := registry.AppRef{Namespace: "adopt", Name: "late"}
	r := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l}
	}
	base := time.Now().Add(-time.Minute)
	observeAt(t, s, a, "new", base.Add(2*time.Second))
	_, err := s.Activate(ctx, r("new"), podActor, "ready")
	require.NoError(t, err)
	observeAt(t, s, a, "old", base) // recorded after "new" became Active, running since before
	tr, err := s.Activate(ctx, r("old"), podActor, "ready")
	require.NoError(t, err)
	require.NotNil(t, tr.KeptBy, "the newer version found together stays Active")
	assert.Equal(t, "new", tr.KeptBy.Label)
	assert.Equal(t, map[string]registry.State{"new": registry.Active, "old": registry.Draining}, states(t, s, a, "new", "old"))
}

// TestFoundTogetherDeploymentUnknown: detection may record a version before its Deployment reached
// the informer cache (after an API server restart the chaos run saw two of three versions recorded
// without one). The newest Deployment is then known on one side only; the versions are ordered by
// what both sides know (their pods), not by one's Deployment against the other's recording time,
// which made the older version keep the app and the newest drain.
func TestFoundTogetherDeploymentUnknown(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	a := registry.AppRef{Namespace: "adopt", Name: "unknown"}
	r := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l}
	}
	base := time.Now().Add(-time.Minute)
	// "old": its Deployment not seen, its pods created first.
	observePods(t, s, a, "old", time.Time{}, base)
	_, err := s.Activate(ctx, r("old"), podActor, "ready")
	require.NoError(t, err)
	// "new": Deployment and pods created after old's pods, recorded and activated later, but
	// running before old became Active: found together.
	observePods(t, s, a, "new", base.Add(2*time.Second), base.Add(3*time.Second))
	tr, err := s.Activate(ctx, r("new"), podActor, "ready")
	require.NoError(t, err)
	assert.Nil(t, tr.KeptBy, "the older version must not keep the app")
	assert.Equal(t, map[string]registry.State{"new": registry.Active, "old": registry.Draining}, states(t, s, a, "new", "old"))
}

// TestLaterDetectionTakesOver: the seeds' rule still holds for a version detected after the
// Active one became Active (a redeploy, or an old Deployment scaled up again): it takes over,
// whatever its creation time; and an operator's activation always takes over.
func TestLaterDetectionTakesOver(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	a := registry.AppRef{Namespace: "adopt", Name: "later"}
	r := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l}
	}
	now := time.Now()
	observeAt(t, s, a, "new", now)
	_, err := s.Activate(ctx, r("new"), podActor, "ready")
	require.NoError(t, err)
	// Detected later, its Deployment created earlier: an old Deployment scaled up again, whose
	// pods are new.
	observePods(t, s, a, "old", now.Add(-time.Hour), time.Now())
	tr, err := s.Activate(ctx, r("old"), podActor, "ready")
	require.NoError(t, err)
	assert.Nil(t, tr.KeptBy)
	assert.Equal(t, map[string]registry.State{"new": registry.Draining, "old": registry.Active}, states(t, s, a, "new", "old"))

	// Found together, but an operator decides.
	b := registry.AppRef{Namespace: "adopt", Name: "operator"}
	rb := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: b.Namespace, App: b.Name, Label: l}
	}
	observeAt(t, s, b, "1", now.Add(-time.Hour))
	observeAt(t, s, b, "2", now)
	_, err = s.Activate(ctx, rb("2"), podActor, "ready")
	require.NoError(t, err)
	tr, err = s.Activate(ctx, rb("1"), podActor, "ready")
	require.NoError(t, err)
	require.NotNil(t, tr.KeptBy, "found together: the newer one stays")
	assert.Equal(t, "2", tr.KeptBy.Label)
	assert.Equal(t, registry.Draining, tr.Version.State)
	_, err = s.Promote(ctx, rb("1"), user, "roll back")
	require.NoError(t, err)
	assert.Equal(t, map[string]registry.State{"1": registry.Active, "2": registry.Draining}, states(t, s, b, "1", "2"))
}

// TestFlipPublishesOrRollsBack: the routes are published inside the transaction with the
// snapshot about to be committed; when publishing fails nothing changes — the new version is not
// Active, the old one is not Draining, the generation and the audit trail are as they were.
func TestFlipPublishesOrRollsBack(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	a := registry.AppRef{Namespace: "flip", Name: "web"}
	r := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l}
	}
	observeAt(t, s, a, "1", time.Now())
	_, err := s.Activate(ctx, r("1"), podActor, "ready")
	require.NoError(t, err)
	observeAt(t, s, a, "2", time.Now())
	gen, err := s.Generation(ctx, a)
	require.NoError(t, err)
	auditBefore, err := s.AppAudit(ctx, a, 1000)
	require.NoError(t, err)

	refused := errors.New("admission webhook refused the route")
	_, err = s.Flip(ctx, registry.FlipRequest{Ref: r("2"), Op: registry.OpActivate, Actor: podActor, Reason: "ready",
		Publish: func(context.Context, registry.Snapshot) error { return refused }})
	require.ErrorIs(t, err, refused)
	assert.Equal(t, map[string]registry.State{"1": registry.Active, "2": registry.Pending}, states(t, s, a, "1", "2"))
	after, err := s.Generation(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, gen, after, "generation unchanged")
	auditAfter, err := s.AppAudit(ctx, a, 1000)
	require.NoError(t, err)
	assert.Len(t, auditAfter, len(auditBefore), "nothing audited")

	var seen registry.Snapshot
	tr, err := s.Flip(ctx, registry.FlipRequest{Ref: r("2"), Op: registry.OpActivate, Actor: podActor, Reason: "ready",
		Publish: func(_ context.Context, snap registry.Snapshot) error { seen = snap; return nil }})
	require.NoError(t, err)
	require.NotNil(t, seen.Active)
	assert.Equal(t, "2", seen.Active.Label, "published with the version Active")
	require.Len(t, seen.Pinned, 1)
	assert.Equal(t, "1", seen.Pinned[0].Label)
	assert.Equal(t, gen+1, seen.Generation)
	assert.Equal(t, tr.Generation, seen.Generation)
}

// TestClaims: two applications never hold the same host and path prefix; the second is refused
// and stays as it was. An app whose path nests with another's on a shared host gets a pin
// cookie of its own. When an app has nothing routed any more it lets go of its claim.
func TestClaims(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	claimOf := func(v registry.Version) registry.Claim { return registry.Claim{Host: v.Hostname, Path: v.PathPrefix} }
	activate := func(a registry.AppRef, label, host, path string) (registry.Transition, error) {
		ref := registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: label}
		_, _, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: a.Name + "-v" + label, ServicePort: 80, PathPrefix: path, Hostname: host}}, podActor)
		require.NoError(t, err)
		return s.Flip(ctx, registry.FlipRequest{Ref: ref, Op: registry.OpActivate, Actor: podActor, Reason: "ready",
			ClaimOf: claimOf, OwnCookie: "own_" + a.Name})
	}
	root := registry.AppRef{Namespace: "team-a", Name: "root"}
	tr, err := activate(root, "1", "shop.example.com", "/")
	require.NoError(t, err)
	assert.Empty(t, tr.Version.Failure)

	thief := registry.AppRef{Namespace: "team-b", Name: "thief"}
	_, err = activate(thief, "1", "shop.example.com", "/")
	var cce *registry.ClaimConflictError
	require.ErrorAs(t, err, &cce)
	assert.Equal(t, root, cce.Holder)
	assert.Contains(t, err.Error(), "shop.example.com/ are already claimed by application team-a/root")
	assert.Equal(t, registry.Pending, states(t, s, thief, "1")["1"], "the newcomer is not activated")

	// The holder's HTTPRoutes are on the Gateway too, so the cluster-wide route check would see
	// them: the registry's refusal, which names the holding application, comes first.
	routeSeen := func(_ context.Context, c registry.Claim) error {
		return &registry.ClaimConflictError{Claim: c, Route: "team-a/root"}
	}
	_, err = s.Flip(ctx, registry.FlipRequest{Ref: registry.VersionRef{Namespace: thief.Namespace, App: thief.Name, Label: "1"},
		Op: registry.OpActivate, Actor: podActor, Reason: "ready", ClaimOf: claimOf, CheckClaim: routeSeen})
	require.ErrorAs(t, err, &cce)
	assert.Equal(t, root, cce.Holder)
	assert.Empty(t, cce.Route, "refused as the registry's claim, not as a foreign route: %v", err)

	nested := registry.AppRef{Namespace: "team-c", Name: "blog"}
	_, err = activate(nested, "1", "shop.example.com", "/blog")
	require.NoError(t, err)
	apps, err := s.ListApps(ctx)
	require.NoError(t, err)
	cookies := map[string]string{}
	for _, a := range apps {
		cookies[a.Name] = a.CookieName
	}
	assert.Equal(t, "", cookies["root"], "the first app keeps the default cookie")
	assert.Equal(t, "own_blog", cookies["blog"], "the nested newcomer gets its own")

	other := registry.AppRef{Namespace: "team-d", Name: "docs"}
	_, err = activate(other, "1", "docs.example.com", "/blog")
	require.NoError(t, err, "another host: no conflict")

	// root's only version goes away (a newer one on another path, then expiry of everything).
	rr := registry.VersionRef{Namespace: root.Namespace, App: root.Name, Label: "1"}
	_, err = activate(root, "2", "shop.example.com", "/moved")
	require.NoError(t, err)
	_, err = s.Expire(ctx, rr, user, "gone")
	require.NoError(t, err)
	_, err = s.Flip(ctx, registry.FlipRequest{Ref: registry.VersionRef{Namespace: thief.Namespace, App: thief.Name, Label: "1"},
		Op: registry.OpActivate, Actor: user, Reason: "retry", ClaimOf: claimOf})
	require.NoError(t, err, "root moved to /moved: / is free for the newcomer")
}

// TestFailedVersions: a Pending version can fail with a reason, is never routed, may still
// become Active (ready late, or an operator's retry), and can be expired.
func TestFailedVersions(t *testing.T) {
	s := registrytest.New(t)
	ctx := context.Background()
	a := registry.AppRef{Namespace: "fail", Name: "web"}
	r := func(l string) registry.VersionRef {
		return registry.VersionRef{Namespace: a.Namespace, App: a.Name, Label: l}
	}
	observeAt(t, s, a, "1", time.Now())
	gen, err := s.Generation(ctx, a)
	require.NoError(t, err)
	tr, err := s.Fail(ctx, r("1"), system, "not ready within the readiness timeout")
	require.NoError(t, err)
	assert.Equal(t, registry.Failed, tr.Version.State)
	assert.Equal(t, "not ready within the readiness timeout", tr.Version.Failure)
	require.NotNil(t, tr.Version.FailedAt)
	assert.Equal(t, gen, tr.Generation, "nothing routed changed")
	snap, err := s.Snapshot(ctx, a)
	require.NoError(t, err)
	assert.Nil(t, snap.Active)
	assert.Empty(t, snap.Pinned, "a failed version is not routed")

	tr, err = s.Activate(ctx, r("1"), system, "ready after all")
	require.NoError(t, err)
	assert.Equal(t, registry.Active, tr.Version.State)
	assert.Empty(t, tr.Version.Failure, "cleared once Active")

	observeAt(t, s, a, "2", time.Now())
	_, err = s.Fail(ctx, r("2"), system, "routes cannot be rendered")
	require.NoError(t, err)
	tr, err = s.Expire(ctx, r("2"), user, "operator gave up")
	require.NoError(t, err)
	assert.Equal(t, registry.Expired, tr.Version.State)
	_, err = s.Fail(ctx, r("1"), system, "x")
	var ite *registry.IllegalTransitionError
	assert.ErrorAs(t, err, &ite, "an Active version cannot fail")
}
