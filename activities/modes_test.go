package activities

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

func TestModeOf(t *testing.T) {
	advise, bogus := registry.ModeAdvise, "bogus"
	assert.Equal(t, registry.ModeManage, ModeOf(config.Config{}, registry.Policy{}), "manage when nothing is set")
	assert.Equal(t, registry.ModeObserve, ModeOf(config.Config{Mode: registry.ModeObserve}, registry.Policy{}), "the global mode")
	assert.Equal(t, registry.ModeAdvise, ModeOf(config.Config{Mode: registry.ModeObserve}, registry.Policy{Mode: &advise}), "the app's mode wins")
	assert.Equal(t, registry.ModeObserve, ModeOf(config.Config{Mode: registry.ModeObserve}, registry.Policy{Mode: &bogus}), "an unknown stored mode falls back")
}

// TestRoutePlan: the plan is empty when the live routes match (spec and our labels; another
// generation annotation or someone else's label do not count); otherwise it applies each route
// that differs, as rendered, and deletes our routes that are no longer rendered.
func TestRoutePlan(t *testing.T) {
	app := registry.AppRef{Namespace: "shop", Name: "web"}
	snap := registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "web"}, Generation: 4,
		Active: &registry.Version{Label: "2", Placement: registry.Placement{ServiceName: "web-v2", ServicePort: 80}, State: registry.Active},
		Pinned: []registry.Version{{Label: "1", Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80}, State: registry.Draining}}}
	cfg := config.Config{CookieName: "__plt_dpl", CookieMaxAge: 60,
		ParentRefs: []routes.ParentRef{{Namespace: "infra", Name: "gw"}}}
	desired, err := routes.Render(RouteInput(cfg, snap))
	require.NoError(t, err)
	require.NotEmpty(t, desired)

	changes, err := RoutePlan(app, desired, nil)
	require.NoError(t, err)
	require.Len(t, changes, len(desired), "nothing live: every route is applied")
	for i, c := range changes {
		assert.Equal(t, registry.ActionApply, c.Action)
		var obj map[string]any
		require.NoError(t, json.Unmarshal(c.Object, &obj))
		assert.Equal(t, "gateway.networking.k8s.io/v1", obj["apiVersion"])
		assert.Equal(t, "HTTPRoute", obj["kind"])
		assert.NotContains(t, obj, "status", "a pipeline commits no status")
		meta := obj["metadata"].(map[string]any)
		assert.Equal(t, desired[i].Name, meta["name"])
		assert.Equal(t, "shop", meta["namespace"])
		assert.NotContains(t, meta, "creationTimestamp")
		assert.Equal(t, "4", meta["annotations"].(map[string]any)[routes.GenerationAnnotation])
		assert.Equal(t, "skewguard", meta["labels"].(map[string]any)[routes.ManagedByLabel])
	}

	live := func() []gatewayv1.HTTPRoute {
		out := make([]gatewayv1.HTTPRoute, len(desired))
		for i := range desired {
			desired[i].DeepCopyInto(&out[i])
			out[i].Annotations = map[string]string{routes.GenerationAnnotation: "3"} // an older rendering
			out[i].Labels["team"] = "shop"                                           // someone else's label
			out[i].ResourceVersion = "17"
		}
		return out
	}
	changes, err = RoutePlan(app, desired, live())
	require.NoError(t, err)
	assert.Empty(t, changes, "applied: specs and our labels match")

	l := live()
	l[0].Spec.Hostnames = []gatewayv1.Hostname{"other.example"}
	changes, err = RoutePlan(app, desired, l)
	require.NoError(t, err)
	require.Len(t, changes, 1, "a spec that differs")
	assert.Equal(t, desired[0].Name, changes[0].Name)

	l = live()
	delete(l[0].Labels, routes.ManagedByLabel)
	changes, err = RoutePlan(app, desired, l)
	require.NoError(t, err)
	require.Len(t, changes, 1, "our label missing")

	l = append(live(), gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "web--gone", Namespace: "shop"}})
	changes, err = RoutePlan(app, desired, l)
	require.NoError(t, err)
	assert.Equal(t, []registry.PlanChange{{Action: registry.ActionDelete, APIVersion: "gateway.networking.k8s.io/v1",
		Kind: "HTTPRoute", Namespace: "shop", Name: "web--gone"}}, changes, "a route no longer rendered is deleted")
}
