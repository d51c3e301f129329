package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

func TestClientAgainstTheRouter(t *testing.T) {
	h := seeded(t, harnessOptions{})
	srv := httptest.NewServer(h.handler)
	defer srv.Close()
	ctx := context.Background()
	app := registry.AppRef{Namespace: "shop", Name: "web"}
	admin := &Client{BaseURL: srv.URL + "/", Token: tokenAdmin}
	viewer := &Client{BaseURL: srv.URL, Token: tokenViewer}

	apps, err := admin.ListApps(ctx)
	require.NoError(t, err)
	assert.Len(t, apps.Apps, 2)

	vs, err := viewer.Versions(ctx, app, registry.ListVersionsOptions{})
	require.NoError(t, err)
	assert.Len(t, vs.Versions, 4)
	vs, err = viewer.Versions(ctx, app, registry.ListVersionsOptions{States: []registry.State{registry.Draining, registry.Active}, Limit: 1, Offset: 1})
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, labels(vs.Versions), "the second of Active 2 and Draining 1")
	assert.Equal(t, 2, vs.Total)

	_, err = viewer.Act(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}, workflows.UpdateExpire, "no")
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusForbidden, apiErr.Status)
	assert.Equal(t, CodeForbidden, apiErr.Err.Code)

	out, err := admin.Act(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}, workflows.UpdateExpire, "yes")
	require.NoError(t, err)
	assert.Equal(t, registry.Expired, out.State)

	res, err := admin.Threshold(ctx, app, ThresholdBody{OlderThan: "5m", DryRun: true})
	require.NoError(t, err)
	assert.Len(t, res.Results, 1, "only v3 is still live and not active")

	res, err = admin.BulkExpire(ctx, app, []string{"3", "9"}, "")
	require.NoError(t, err)
	assert.Equal(t, 1, res.Failed)

	grace := int64(5000)
	_, err = admin.PutPolicy(ctx, app, registry.Policy{GracePeriodMS: &grace})
	require.NoError(t, err)
	p, err := viewer.Policy(ctx, app)
	require.NoError(t, err)
	assert.Equal(t, &grace, p.Overrides.GracePeriodMS)
	assert.Equal(t, ResolvedSetting{Value: float64(grace), Source: SourceOverride}, p.Resolved["gracePeriodMs"])

	audit, err := viewer.Audit(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "1"})
	require.NoError(t, err)
	assert.Len(t, audit.Entries, 1)
	_, err = viewer.AppAudit(ctx, app, 5)
	require.NoError(t, err)
	_, err = viewer.Version(ctx, registry.VersionRef{Namespace: "shop", App: "web", Label: "404"})
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, CodeVersionNotFound, apiErr.Err.Code)
}
