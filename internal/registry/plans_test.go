//go:build integration

package registry_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// TestPlansSupersedeAndApply: a newer version's activation plan supersedes an older pending
// one (and only activation plans); publishing the same plan again changes nothing; a plan
// seen applied is no longer pending; a superseded plan is not brought back.
func TestPlansSupersedeAndApply(t *testing.T) {
	s := registrytest.New(t)
	ctx := t.Context()
	app := registry.AppRef{Namespace: "shop", Name: "web"}
	ref := func(v string) registry.VersionRef {
		return registry.VersionRef{Namespace: "shop", App: "web", Label: v}
	}
	plan := func(v, step, host string) registry.Plan {
		obj, _ := json.Marshal(map[string]any{"spec": map[string]any{"hostnames": []string{host}}})
		return registry.Plan{App: app, Version: v, Step: step, Generation: 1,
			Changes: []registry.PlanChange{{Action: registry.ActionApply, Kind: "HTTPRoute", Namespace: "shop", Name: "web", Object: obj}}}
	}

	changed, sup, err := s.PutPlan(ctx, plan("0", registry.StepRetire, "a"))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Empty(t, sup)
	changed, sup, err = s.PutPlan(ctx, plan("1", registry.StepActivate, "a"))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Empty(t, sup)
	changed, _, err = s.PutPlan(ctx, plan("1", registry.StepActivate, "a"))
	require.NoError(t, err)
	assert.False(t, changed, "the same plan again")

	_, sup, err = s.PutPlan(ctx, plan("2", registry.StepActivate, "b"))
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, sup, "v2's activation supersedes v1's")
	st, err := s.PlanState(ctx, ref("1"), registry.StepActivate)
	require.NoError(t, err)
	assert.Equal(t, registry.PlanSuperseded, st)
	_, err = s.PendingPlan(ctx, ref("1"))
	assert.True(t, errors.Is(err, registry.ErrNotFound))
	st, err = s.PlanState(ctx, ref("0"), registry.StepRetire)
	require.NoError(t, err)
	assert.Equal(t, registry.PlanPending, st, "a retire plan is not superseded by an activation")
	pending, err := s.PendingActivations(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, pending)

	changed, _, err = s.PutPlan(ctx, plan("1", registry.StepActivate, "c"))
	require.NoError(t, err)
	assert.False(t, changed, "a superseded plan is not brought back")

	p, err := s.PendingPlan(ctx, ref("2"))
	require.NoError(t, err)
	assert.Equal(t, registry.PlanPending, p.State)
	assert.JSONEq(t, `{"spec":{"hostnames":["b"]}}`, string(p.Changes[0].Object))
	require.NoError(t, s.MarkPlanApplied(ctx, ref("2"), registry.StepActivate))
	_, err = s.PendingPlan(ctx, ref("2"))
	assert.True(t, errors.Is(err, registry.ErrNotFound), "applied: no longer pending")
	pending, err = s.PendingActivations(ctx, app)
	require.NoError(t, err)
	assert.Empty(t, pending)
}
