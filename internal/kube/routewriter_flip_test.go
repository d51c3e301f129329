package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/routes"
)

// flipRendering renders myapp before (generation 1: Active v<pins>, pins v0…v<pins-1>) or after
// (generation 2: Active v<pins+1>, the old Active now pinned last, as the registry orders pins
// by id) a flip.
func flipRendering(t *testing.T, pins int, rewrite, after bool) []gatewayv1.HTTPRoute {
	t.Helper()
	in := routes.Input{
		Namespace: routeTestNS, App: "myapp", Generation: 1,
		ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "public"}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePrefix: rewrite,
	}
	active := pins
	if after {
		in.Generation, active = 2, pins+1
	}
	for i := range active {
		in.Pinned = append(in.Pinned, routes.Backend{Version: "v" + strconv.Itoa(i), ServiceName: "myapp-v" + strconv.Itoa(i), Port: 80})
	}
	in.Active = &routes.Backend{Version: "v" + strconv.Itoa(active), ServiceName: "myapp-v" + strconv.Itoa(active), Port: 80}
	out, err := routes.Render(in)
	require.NoError(t, err)
	return out
}

// TestFlipWithManyPinsRewritesOnlyWhatChanged: a flip of an app with 100 pins changes the spec
// of two routes, the first (its default rule moves on) and the shard the old Active version
// joins as a pin. Only those two are sent in full; every other shard gets a metadata patch of
// its generation annotation, resourceVersion-fenced, and nothing else.
func TestFlipWithManyPinsRewritesOnlyWhatChanged(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("rewrite=%t", rewrite), func(t *testing.T) {
			store, w := newRouteStore(t)
			ctx := context.Background()
			before, after := flipRendering(t, 100, rewrite, false), flipRendering(t, 100, rewrite, true)
			require.Len(t, after, len(before), "the old Active fits in the last shard")
			_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 1, before)
			require.NoError(t, err)
			for _, r := range before {
				live := store.get(r.Name)
				// What the API server holds besides the spec: the gateway's status and the
				// managedFields, neither of which a write needs to send back.
				live.Status.Parents = []gatewayv1.RouteParentStatus{{ControllerName: "example.com/gateway",
					ParentRef: gatewayv1.ParentReference{Name: "public"},
					Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted",
						Message: strings.Repeat("accepted ", 200)}}}}
				live.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: RouteFieldManager, Operation: metav1.ManagedFieldsOperationUpdate,
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:rules":{}},"f:x":"` + strings.Repeat("x", 2000) + `"}`)}}}
				store.mu.Lock()
				store.put(live)
				store.mu.Unlock()
			}
			store.mu.Lock()
			store.calls = nil
			store.mu.Unlock()

			res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, after)
			require.NoError(t, err)
			last := after[len(after)-1].Name
			assert.ElementsMatch(t, []string{"myapp", last}, res.Updated)
			assert.Len(t, res.Restamped, len(after)-2)
			assert.Empty(t, res.Created)
			assert.Empty(t, res.Deleted)
			assert.Equal(t, len(after), res.Objects())
			assert.Equal(t, len(after), res.Writes)

			var full, changed int64
			for _, r := range after {
				b, err := json.Marshal(r)
				require.NoError(t, err)
				full += int64(len(b))
				if r.Name == "myapp" || r.Name == last {
					changed += int64(len(b))
				}
			}
			perPatch := (res.WriteBytes - changed) / int64(len(res.Restamped))
			t.Logf("%d routes, %d bytes in all; written %d bytes (changed routes %d, %d per restamp)", len(after), full,
				res.WriteBytes, changed, perPatch)
			assert.Less(t, res.WriteBytes, changed+int64(200*len(res.Restamped)),
				"only the changed routes are sent in full; status and managedFields are not sent back")

			var patches int
			for _, c := range store.writes() {
				verb, name, _ := strings.Cut(c, " ")
				if verb == "patch" {
					patches++
					assert.NotContains(t, []string{"myapp", last}, name)
				}
			}
			assert.Equal(t, len(after)-2, patches)
			for _, r := range after {
				got := store.get(r.Name)
				assert.Equal(t, r.Spec, got.Spec, r.Name)
				assert.Equal(t, "2", got.Annotations[routes.GenerationAnnotation], r.Name)
			}

			again, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, after)
			require.NoError(t, err)
			assert.False(t, again.Changed())
			assert.Zero(t, again.Writes)
			assert.Zero(t, again.WriteBytes)
		})
	}
}

// TestRestampIsFenced: a route changed between the writer's list and its metadata patch is
// re-read and written again, as after an update's conflict.
func TestRestampIsFenced(t *testing.T) {
	store, w := newRouteStore(t)
	ctx := context.Background()
	_, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 1, flipRendering(t, 30, false, false))
	require.NoError(t, err)
	conflicted := false
	store.before = func(verb, name string) {
		if verb == "patch" && name == "myapp--pins-1" && !conflicted {
			conflicted = true
			r := store.get(name)
			r.Labels["someone"] = "else"
			store.mu.Lock()
			store.put(r)
			store.mu.Unlock()
		}
	}
	res, err := w.ApplyRoutes(ctx, routeTestNS, "myapp", 2, flipRendering(t, 30, false, true))
	require.NoError(t, err)
	require.True(t, conflicted)
	assert.Contains(t, res.Restamped, "myapp--pins-1")
	got := store.get("myapp--pins-1")
	assert.Equal(t, "2", got.Annotations[routes.GenerationAnnotation])
	assert.Equal(t, "else", got.Labels["someone"], "the other writer's label is kept")
	assert.Equal(t, len(res.Restamped)+len(res.Updated)+1, res.Writes, "one patch refused and sent again")
}
