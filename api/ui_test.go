package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// The panel's files are served to anyone but carry no data, and a strict CSP.
func TestUIFilesAreStaticAndLocked(t *testing.T) {
	h := seeded(t, harnessOptions{})
	rec := h.do(t, "GET", "/ui", "", "")
	require.Equal(t, http.StatusMovedPermanently, rec.Code)
	assert.Equal(t, "/ui/", rec.Header().Get("Location"))
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/app.css"} {
		rec := h.do(t, "GET", path, "", "")
		require.Equal(t, http.StatusOK, rec.Code, path)
		assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "default-src 'none'", path)
		assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		assert.NotContains(t, rec.Body.String(), "shop", "%s holds data", path)
	}
	assert.Equal(t, http.StatusNotFound, h.do(t, "GET", "/ui/secret.txt", "", "").Code)
}

func TestWhoAmIAndAccess(t *testing.T) {
	h := seeded(t, harnessOptions{})
	assert.Equal(t, http.StatusUnauthorized, h.do(t, "GET", "/api/v1/whoami", "", "").Code)
	rec := h.do(t, "GET", "/api/v1/whoami", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.NotEmpty(t, decode[WhoAmI](t, rec).Username)

	rec = h.do(t, "GET", "/api/v1/apps/shop/web/access", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, Access{Username: decode[WhoAmI](t, h.do(t, "GET", "/api/v1/whoami", tokenViewer, "")).Username,
		Get: true, List: true, Update: false}, decode[Access](t, rec))
	rec = h.do(t, "GET", "/api/v1/apps/shop/web/access", tokenAdmin, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.True(t, decode[Access](t, rec).Update)
	assert.Equal(t, http.StatusForbidden, h.do(t, "GET", "/api/v1/apps/other/web/access", tokenViewer, "").Code)
}

// A change sent by a browser page of another origin is refused even with a good token; the
// same origin and clients that send no Origin (CLI) pass.
func TestForeignOriginCannotAct(t *testing.T) {
	h := seeded(t, harnessOptions{})
	req := h.request("POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, "")
	req.Header.Set("Origin", "https://evil.example")
	rec := h.serve(req)
	require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
	assert.Equal(t, CodeForeignOrigin, errorCode(t, rec))
	v, err := h.reg.GetVersion(t.Context(), registry.VersionRef{Namespace: "shop", App: "web", Label: "1"})
	require.NoError(t, err)
	assert.Equal(t, registry.Draining, v.State, "the forged action changed nothing")

	req = h.request("POST", "/api/v1/apps/shop/web/versions/1/expire", tokenAdmin, "")
	req.Header.Set("Origin", "http://"+req.Host)
	rec = h.serve(req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
}

func TestTimelineOfADrainingVersion(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	drained := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	h.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "1", State: registry.Draining,
		PendingAt: drained.Add(-time.Hour), DrainingAt: &drained})
	h.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "2", State: registry.Active, PendingAt: drained})
	rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/timeline", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	tl := decode[Timeline](t, rec)
	require.NotNil(t, tl.GraceEndsAt)
	require.NotNil(t, tl.MaxAliveAt)
	assert.Equal(t, drained.Add(30*time.Minute), tl.GraceEndsAt.UTC(), "the documented default grace")
	assert.Equal(t, drained.Add(24*time.Hour), tl.MaxAliveAt.UTC(), "the documented default max alive")
	assert.Equal(t, "skew/shop/web/1", tl.WorkflowID)

	rec = h.do(t, "GET", "/api/v1/apps/shop/web/versions/2/timeline", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Nil(t, decode[Timeline](t, rec).GraceEndsAt, "only a Draining version has timers")
	assert.True(t, strings.HasPrefix(h.do(t, "GET", "/api/v1/apps/shop/web/versions/9/timeline", tokenViewer, "").Body.String(), "{"))
}

// querying is a lifecycle whose workflows answer the state query.
type querying struct {
	Lifecycle
	view workflows.StateView
}

func (q querying) State(context.Context, registry.VersionRef) (workflows.StateView, error) {
	return q.view, nil
}

// With the workflow answering, the timeline carries its next check, zero readings and timers.
func TestTimelineFromTheWorkflow(t *testing.T) {
	drained := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	next, grace, maxAt := drained.Add(40*time.Minute), drained.Add(35*time.Minute), drained.Add(time.Hour)
	h := newHarness(t, harnessOptions{lifecycle: querying{Lifecycle: &fakeLifecycle{}, view: workflows.StateView{
		NextCheckAt: &next, GraceEndsAt: &grace, MaxAliveAt: &maxAt, ZeroStreak: 1, WaitingFor: "the next traffic check"}}})
	h.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "1", State: registry.Draining,
		PendingAt: drained.Add(-time.Hour), DrainingAt: &drained})
	rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions/1/timeline", tokenViewer, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	tl := decode[Timeline](t, rec)
	assert.Equal(t, "workflow", tl.Source)
	require.NotNil(t, tl.NextCheckAt)
	require.NotNil(t, tl.ZeroReadings)
	assert.Equal(t, next, tl.NextCheckAt.UTC())
	assert.Equal(t, grace, tl.GraceEndsAt.UTC(), "the workflow's grace end (its policy) wins")
	assert.Equal(t, maxAt, tl.MaxAliveAt.UTC())
	assert.Equal(t, 1, *tl.ZeroReadings)
}
