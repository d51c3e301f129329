package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// seeded returns a harness whose registry holds shop/web v1 (draining, deployed 3h ago),
// v2 (active, 1h ago), v3 (pending, 10m ago), v0 (expired), and other/web v1 (active).
func seeded(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := newHarness(t, o)
	now := time.Now()
	for _, v := range []registry.Version{
		{Namespace: "shop", App: "web", Label: "0", State: registry.Expired, PendingAt: now.Add(-48 * time.Hour)},
		{Namespace: "shop", App: "web", Label: "1", State: registry.Draining, PendingAt: now.Add(-3 * time.Hour)},
		{Namespace: "shop", App: "web", Label: "2", State: registry.Active, PendingAt: now.Add(-time.Hour)},
		{Namespace: "shop", App: "web", Label: "3", State: registry.Pending, PendingAt: now.Add(-10 * time.Minute)},
		{Namespace: "other", App: "web", Label: "1", State: registry.Active, PendingAt: now.Add(-time.Hour)},
	} {
		h.reg.addVersion(v)
	}
	h.reg.audit[registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}] = []registry.AuditEntry{
		{Event: registry.EventObserved, Actor: registry.Actor{Type: registry.ActorPod, ID: "shop/web-v1-a"}},
	}
	return h
}

func TestManagementAuthorization(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		status int
		code   string
	}{
		{"no token", "GET", "/api/v1/apps/shop/web/versions", "", "", http.StatusUnauthorized, CodeUnauthenticated},
		{"unknown token", "GET", "/api/v1/apps/shop/web/versions", "forged", "", http.StatusUnauthorized, CodeUnauthenticated},
		{"viewer lists", "GET", "/api/v1/apps/shop/web/versions", tokenViewer, "", http.StatusOK, ""},
		{"viewer reads a version", "GET", "/api/v1/apps/shop/web/versions/1", tokenViewer, "", http.StatusOK, ""},
		{"viewer may not expire", "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenViewer, "", http.StatusForbidden, CodeForbidden},
		{"viewer may not put a policy", "PUT", "/api/v1/apps/shop/web/policy", tokenViewer, `{}`, http.StatusForbidden, CodeForbidden},
		{"viewer sees nothing elsewhere", "GET", "/api/v1/apps/other/web/versions", tokenViewer, "", http.StatusForbidden, CodeForbidden},
		{"a pod may not manage", "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenPodA, "", http.StatusForbidden, CodeForbidden},
		{"admin expires", "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, "", http.StatusOK, ""},
		{"API server down", "GET", "/api/v1/apps/shop/web/versions", tokenBroken, "", http.StatusServiceUnavailable, CodeAuthUnavailable},
		{"bad namespace is refused before review", "GET", "/api/v1/apps/Shop_/web/versions", tokenAdmin, "", http.StatusBadRequest, CodeInvalidPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			rec := h.do(t, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.code != "" {
				assert.Equal(t, tc.code, errorCode(t, rec))
			}
		})
	}
}

func TestRBACDeniedUserCannotExpire(t *testing.T) {
	h := seeded(t, harnessOptions{})
	rec := h.do(t, "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenViewer, `{"reason":"try"}`)
	require.Equal(t, http.StatusForbidden, rec.Code)
	assert.Empty(t, h.lifecycle.actions(), "a denied call never reaches the workflow")
	v, err := h.reg.GetVersion(t.Context(), registry.VersionRef{Namespace: "shop", App: "web", Label: "1"})
	require.NoError(t, err)
	assert.Equal(t, registry.Draining, v.State)
}

func TestListApps(t *testing.T) {
	tests := []struct {
		name       string
		token      string
		namespaces []string
	}{
		{"cluster-wide lister sees everything", tokenAdmin, []string{"shop", "other"}},
		{"namespaced lister sees its namespace", tokenViewer, []string{"shop"}},
		{"nobody sees nothing", tokenPodA, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			rec := h.do(t, "GET", "/api/v1/apps", tc.token, "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var got []string
			for _, a := range decode[AppList](t, rec).Apps {
				got = append(got, a.Namespace)
			}
			assert.ElementsMatch(t, tc.namespaces, got)
			assert.Contains(t, rec.Body.String(), `"apps":[`, "an empty list is [], not null")
		})
	}
}

func TestReadEndpoints(t *testing.T) {
	h := seeded(t, harnessOptions{})
	t.Run("versions", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		list := decode[VersionList](t, rec)
		assert.Equal(t, registry.AppRef{Namespace: "shop", Name: "web"}, list.App)
		require.Len(t, list.Versions, 4)
		assert.Equal(t, []string{"2", "3", "1", "0"}, labels(list.Versions), "the Active version first, then the newest")
		assert.Equal(t, 4, list.Total)
		assert.Equal(t, registry.DefaultVersionsLimit, list.Limit, "no limit given: the default")
	})
	t.Run("unknown app has no versions", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/nope/versions", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		assert.Contains(t, rec.Body.String(), `"versions":[]`)
	})
	t.Run("one version", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/2", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, registry.Active, decode[registry.Version](t, rec).State)
	})
	t.Run("unknown version", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/99", tokenViewer, "")
		require.Equal(t, http.StatusNotFound, rec.Code)
		assert.Equal(t, CodeVersionNotFound, errorCode(t, rec))
	})
	t.Run("audit", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/audit", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		entries := decode[AuditList](t, rec).Entries
		require.Len(t, entries, 1)
		assert.Equal(t, registry.EventObserved, entries[0].Event)
	})
	t.Run("app audit with a bad limit", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/audit?limit=0", tokenViewer, "")
		require.Equal(t, http.StatusBadRequest, rec.Code)
		assert.Equal(t, CodeInvalidRequest, errorCode(t, rec))
	})
	t.Run("app audit", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/audit?limit=10", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		assert.Len(t, decode[AuditList](t, rec).Entries, 1)
	})
	t.Run("registry down", func(t *testing.T) {
		h := seeded(t, harnessOptions{})
		h.reg.err = errors.New("connection refused")
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions", tokenViewer, "")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, CodeRegistryUnavailable, errorCode(t, rec))
		assert.NotContains(t, rec.Body.String(), "connection refused", "internal errors are logged, not shown")
	})
}

func TestActions(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		code   string
		state  registry.State
		calls  int
	}{
		{"expire a draining version", "/versions/1/expire", `{"reason":"bad release"}`, http.StatusOK, "", registry.Expired, 1},
		{"expire without a body", "/versions/3/expire", "", http.StatusOK, "", registry.Expired, 1},
		{"expire the active version is refused by the workflow", "/versions/2/expire", "", http.StatusConflict, CodeActionRejected, "", 1},
		{"expire an expired version changes nothing", "/versions/0/expire", "", http.StatusOK, "", registry.Expired, 0},
		{"promote a draining version", "/versions/1/promote", `{}`, http.StatusOK, "", registry.Active, 1},
		{"promote a pending version is refused", "/versions/3/promote", `{}`, http.StatusConflict, CodeActionRejected, "", 1},
		{"promote an expired version", "/versions/0/promote", `{}`, http.StatusConflict, CodeActionRejected, "", 0},
		{"unknown version", "/versions/9/expire", "", http.StatusNotFound, CodeVersionNotFound, "", 0},
		{"unknown field", "/versions/1/expire", `{"reason":"x","force":true}`, http.StatusBadRequest, CodeInvalidJSON, "", 0},
		{"trailing data", "/versions/1/expire", `{"reason":"x"}{}`, http.StatusBadRequest, CodeInvalidJSON, "", 0},
		{"reason too long", "/versions/1/expire", `{"reason":"` + strings.Repeat("x", 2000) + `"}`, http.StatusBadRequest, CodeInvalidRequest, "", 0},
		{"bad version label", "/versions/-1-/expire", "", http.StatusBadRequest, CodeInvalidPath, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			rec := h.do(t, "POST", "/api/v1/apps/shop/web"+tc.path, tokenAdmin, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			assert.Len(t, h.lifecycle.actions(), tc.calls)
			if tc.code != "" {
				assert.Equal(t, tc.code, errorCode(t, rec))
				return
			}
			out := decode[ActionOutcome](t, rec)
			assert.True(t, out.OK)
			assert.Equal(t, tc.state, out.State)
		})
	}
}

func TestActionsCarryTheCaller(t *testing.T) {
	h := seeded(t, harnessOptions{})
	rec := h.do(t, "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, `{"reason":"rollback"}`)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []string{"expire 1 by admin: rollback"}, h.lifecycle.actions())
}

func TestActionWhenTemporalIsDown(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{errors.New("dial tcp: connection refused"), http.StatusServiceUnavailable, CodeTemporalUnavailable},
		{workflows.ErrWorkflowNotRunning, http.StatusConflict, CodeWorkflowNotRunning},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			h.lifecycle.err = tc.err
			rec := h.do(t, "POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, "")
			require.Equal(t, tc.status, rec.Code)
			assert.Equal(t, tc.code, errorCode(t, rec))
		})
	}
}

func TestBulkExpire(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		failed int
		ok     []string
	}{
		{"mixed", `{"versions":["1","2","3","9"],"reason":"cleanup"}`, http.StatusOK, "", 2, []string{"1", "3"}},
		{"empty list", `{"versions":[]}`, http.StatusBadRequest, CodeInvalidRequest, 0, nil},
		{"duplicate", `{"versions":["1","1"]}`, http.StatusBadRequest, CodeInvalidRequest, 0, nil},
		{"bad label", `{"versions":["a b"]}`, http.StatusBadRequest, CodeInvalidRequest, 0, nil},
		{"no body", ``, http.StatusBadRequest, CodeInvalidJSON, 0, nil},
		{"wrong type", `{"versions":"1"}`, http.StatusBadRequest, CodeInvalidJSON, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			rec := h.do(t, "POST", "/api/v1/apps/shop/web/expire", tokenAdmin, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.code != "" {
				assert.Equal(t, tc.code, errorCode(t, rec))
				return
			}
			res := decode[BulkResult](t, rec)
			assert.Equal(t, tc.failed, res.Failed)
			var ok []string
			for _, r := range res.Results {
				if r.OK {
					ok = append(ok, r.Version)
				} else {
					require.NotNil(t, r.Error)
					assert.NotEmpty(t, r.Error.Code)
				}
			}
			assert.Equal(t, tc.ok, ok)
		})
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		status  int
		expired []string
		skipped []string
		calls   int
	}{
		{"older than 2h", `{"olderThan":"2h"}`, http.StatusOK, []string{"1"}, nil, 1},
		{"older than 5m keeps the active one", `{"olderThan":"5m"}`, http.StatusOK, []string{"3", "1"}, []string{"2"}, 2},
		{"days", `{"olderThan":"1d"}`, http.StatusOK, nil, nil, 0},
		{"dry run", `{"olderThan":"5m","dryRun":true}`, http.StatusOK, []string{"3", "1"}, []string{"2"}, 0},
		{"missing age", `{}`, http.StatusBadRequest, nil, nil, 0},
		{"negative age", `{"olderThan":"-1h"}`, http.StatusBadRequest, nil, nil, 0},
		{"nonsense age", `{"olderThan":"soon"}`, http.StatusBadRequest, nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := seeded(t, harnessOptions{})
			rec := h.do(t, "POST", "/api/v1/apps/shop/web/threshold", tokenAdmin, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			assert.Len(t, h.lifecycle.actions(), tc.calls)
			if tc.status != http.StatusOK {
				assert.Equal(t, CodeInvalidRequest, errorCode(t, rec))
				return
			}
			res := decode[BulkResult](t, rec)
			require.NotNil(t, res.Cutoff)
			var expired, skipped []string
			for _, r := range res.Results {
				expired = append(expired, r.Version)
			}
			for _, s := range res.Skipped {
				skipped = append(skipped, s.Version)
			}
			assert.Equal(t, tc.expired, expired)
			assert.Equal(t, tc.skipped, skipped)
		})
	}
}

func TestPolicy(t *testing.T) {
	h := seeded(t, harnessOptions{})
	rec := h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{}`, overridesOf(t, rec), "no overrides")

	rec = h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, `{"gracePeriodMs":60000,"autoCleanup":true}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"gracePeriodMs":60000,"autoCleanup":true}`, rec.Body.String(), "PUT answers the stored policy, as before")
	rec = h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
	assert.JSONEq(t, `{"gracePeriodMs":60000,"autoCleanup":true}`, overridesOf(t, rec))

	tests := []struct {
		name, body, contentType string
		status                  int
		code                    string
	}{
		{"invalid values", `{"maxAliveMs":0,"gracePeriodMs":-1}`, "", http.StatusBadRequest, CodeInvalidPolicy},
		{"unknown field", `{"gracePeriod":5}`, "", http.StatusBadRequest, CodeInvalidJSON},
		{"wrong type", `{"autoCleanup":"yes"}`, "", http.StatusBadRequest, CodeInvalidJSON},
		{"empty body", ``, "", http.StatusBadRequest, CodeInvalidJSON},
		{"not JSON", `a=b`, "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, CodeUnsupportedMedia},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := h.request("PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, tc.body)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := h.serve(req)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			assert.Equal(t, tc.code, errorCode(t, rec))
		})
	}
	rec = h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
	assert.JSONEq(t, `{"gracePeriodMs":60000,"autoCleanup":true}`, overridesOf(t, rec), "nothing half-written")
}

func TestInsecureAPIAuth(t *testing.T) {
	h := seeded(t, harnessOptions{insecureAPI: true})
	rec := h.do(t, "POST", "/api/v1/apps/shop/web/versions/1/expire", "", "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Len(t, h.lifecycle.actions(), 1)
	assert.Contains(t, h.lifecycle.actions()[0], "PLT_SKEW_INSECURE_SKIP_API_AUTH", "the audit says who acted: nobody verified")
}

// listedOrNot is a version as the registry or the versions list has it.
type listedOrNot interface {
	registry.Version | ListedVersion
}

func labels[V listedOrNot](vs []V) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		switch v := any(v).(type) {
		case registry.Version:
			out = append(out, v.Label)
		case ListedVersion:
			out = append(out, v.Label)
		}
	}
	return out
}

// overridesOf returns the overrides of a GET …/policy answer, as JSON.
func overridesOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var view struct {
		Overrides json.RawMessage `json:"overrides"`
		Resolved  map[string]any  `json:"resolved"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &view), rec.Body.String())
	require.NotEmpty(t, view.Resolved, "the answer resolves the policy: %s", rec.Body.String())
	return string(view.Overrides)
}
