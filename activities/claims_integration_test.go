//go:build integration

package activities

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/registry"
)

// TestFlipRefusesAClaimTheAllowlistDoesNotAllow: the allowlist is checked again at the flip,
// also when the app already holds the claim (the registry's own check skips a held claim), so an
// allowlist narrowed after detection still refuses; widening it lets the same version through.
func TestFlipRefusesAClaimTheAllowlistDoesNotAllow(t *testing.T) {
	a, _, ns := realActivities(t)
	ctx := t.Context()
	wf := registry.Actor{Type: registry.ActorWorkflow, ID: "test"}
	host := ns + ".claims.test"
	ref := func(l string) registry.VersionRef { return registry.VersionRef{Namespace: ns, App: "myapp", Label: l} }
	observe := func(l string) registry.Version {
		v, err := a.Observe(ctx, ObserveInput{Ref: ref(l), Placement: registry.Placement{ServiceName: "myapp-" + l, ServicePort: 80, Hostname: host},
			WorkflowID: "skew/" + ns + "/myapp/" + l, Actor: wf})
		require.NoError(t, err)
		return v
	}
	allow := func(doc string) *claims.Allowlist {
		p, err := claims.Parse([]byte(doc))
		require.NoError(t, err)
		return claims.Static(p, "ConfigMap sg/claims (key claims.yaml)")
	}
	allowed := allow("allow:\n- namespace: " + ns + "\n  hosts: [" + host + "]\n  paths: [/]\n")
	narrowed := allow("allow:\n- namespace: " + ns + "\n  hosts: [other.example.com]\n  paths: [/]\n")

	v1, v2 := observe("1"), observe("2")
	a.Claims = nil // nothing configured: refused
	_, err := a.Activate(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	assertAppError(t, err, ErrTypeClaimConflict)
	assert.Contains(t, err.Error(), "no claims allowlist is configured")

	a.Claims = allowed
	_, err = a.Activate(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err)

	a.Claims = narrowed // narrowed after v2 was detected; the app holds the claim through v1
	_, err = a.Activate(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	assertAppError(t, err, ErrTypeClaimConflict)
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	for _, want := range []string{`namespace "` + ns + `"`, `host "` + host + `"`, `path "/"`, "ConfigMap sg/claims"} {
		assert.Contains(t, app.Message(), want)
	}
	got, err := a.CurrentVersion(ctx, ref("2"))
	require.NoError(t, err)
	assert.Equal(t, registry.Pending, got.State, "the refusal left the registry as it was")

	_, err = a.Stage(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	assertAppError(t, err, ErrTypeClaimConflict)

	// A repeat of v1's activation, which succeeded, is not refused by the narrowed allowlist.
	_, err = a.Activate(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	require.NoError(t, err)

	a.Claims = allowed // the operator allows it again
	res, err := a.Activate(ctx, TransitionInput{Ref: ref("2"), VersionID: v2.ID, Actor: wf})
	require.NoError(t, err)
	assert.Equal(t, registry.Active, res.Version.State)

	a.Claims = narrowed
	_, err = a.Promote(ctx, TransitionInput{Ref: ref("1"), VersionID: v1.ID, Actor: wf})
	assertAppError(t, err, ErrTypeClaimConflict)
}
