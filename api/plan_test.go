package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/registry"
)

func (f *fakeRegistry) PendingPlan(_ context.Context, ref registry.VersionRef) (registry.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return registry.Plan{}, f.err
	}
	p, ok := f.plans[ref]
	if !ok {
		return registry.Plan{}, registry.ErrNotFound
	}
	return p, nil
}

func TestVersionPlan(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	route := `{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"web","namespace":"shop","labels":{"app.kubernetes.io/managed-by":"skewguard"}},"spec":{"hostnames":["shop.example"]}}`
	h.reg.plans = map[registry.VersionRef]registry.Plan{
		{Namespace: "shop", App: "web", Label: "2"}: {App: registry.AppRef{Namespace: "shop", Name: "web"}, Version: "2",
			Step: registry.StepActivate, State: registry.PlanPending, Generation: 7, Changes: []registry.PlanChange{
				{Action: registry.ActionApply, APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute", Namespace: "shop", Name: "web", Object: json.RawMessage(route)},
				{Action: registry.ActionDelete, APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute", Namespace: "shop", Name: "web--old"},
				{Action: registry.ActionScale, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web-v1", Replicas: ptr.To[int32](0)},
			}},
	}
	const path = "/api/v1/apps/shop/web/versions/2/plan"

	t.Run("json by default", func(t *testing.T) {
		rec := h.do(t, "GET", path, tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		p := decode[registry.Plan](t, rec)
		assert.Equal(t, registry.StepActivate, p.Step)
		require.Len(t, p.Changes, 3)
		assert.JSONEq(t, route, string(p.Changes[0].Object))
	})
	yamlWant := strings.Join([]string{
		`# skewguard plan "activate" of shop/web 2 (state pending, generation 7)`,
		`# delete: kubectl -n shop delete httproute/web--old`,
		`# scale: kubectl -n shop scale deployment/web-v1 --replicas=0`,
		`---`,
		`apiVersion: gateway.networking.k8s.io/v1`,
		`kind: HTTPRoute`,
		`metadata:`,
		`  labels:`,
		`    app.kubernetes.io/managed-by: skewguard`,
		`  name: web`,
		`  namespace: shop`,
		`spec:`,
		`  hostnames:`,
		`  - shop.example`,
		``}, "\n")
	t.Run("yaml by query", func(t *testing.T) {
		rec := h.do(t, "GET", path+"?format=yaml", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, "application/yaml", rec.Header().Get("Content-Type"))
		assert.Equal(t, yamlWant, rec.Body.String())
	})
	t.Run("yaml by Accept", func(t *testing.T) {
		req := h.request("GET", path, tokenViewer, "")
		req.Header.Set("Accept", "text/html, application/yaml;q=0.9")
		rec := h.serve(req)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, yamlWant, rec.Body.String())
	})
	t.Run("bad format", func(t *testing.T) {
		rec := h.do(t, "GET", path+"?format=xml", tokenViewer, "")
		require.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, CodeInvalidRequest, errorCode(t, rec))
	})
	t.Run("no pending plan", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/plan", tokenViewer, "")
		require.Equal(t, http.StatusNotFound, rec.Code)
		assert.Equal(t, CodePlanNotFound, errorCode(t, rec))
	})
	t.Run("invalid mode in a policy", func(t *testing.T) {
		rec := h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, `{"mode":"plan"}`)
		require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
		assert.Equal(t, CodeInvalidPolicy, errorCode(t, rec))
		assert.Contains(t, rec.Body.String(), `mode: \"plan\" is not one of manage, advise, observe`)
	})
}
