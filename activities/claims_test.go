package activities

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

func httpRoute(ns, name string, labels map[string]string, gwNS, gw string, hosts []string, prefixes ...string) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
	r.Spec.ParentRefs = []gatewayv1.ParentReference{{Namespace: new(gatewayv1.Namespace(gwNS)), Name: gatewayv1.ObjectName(gw)}}
	for _, h := range hosts {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gatewayv1.Hostname(h))
	}
	for _, p := range prefixes {
		r.Spec.Rules = append(r.Spec.Rules, gatewayv1.HTTPRouteRule{Matches: []gatewayv1.HTTPRouteMatch{{
			Path: &gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchPathPrefix), Value: new(p)}}}})
	}
	return r
}

func TestCheckClaimRefusesWhatAnotherRouteServes(t *testing.T) {
	ours := map[string]string{"app.kubernetes.io/managed-by": "skewguard", "app.kubernetes.io/name": "web"}
	others := []*gatewayv1.HTTPRoute{
		httpRoute("shop", "web", ours, "gw-ns", "gw", nil, "/web"),                                 // the app's own route
		httpRoute("team-b", "blog", nil, "gw-ns", "gw", []string{"blog.example.com"}, "/"),         // another team's
		httpRoute("team-c", "admin", nil, "gw-ns", "gw", nil, "/admin/"),                           // trailing slash
		httpRoute("team-d", "elsewhere", nil, "gw-ns", "other-gw", []string{"x.example.com"}, "/"), // other Gateway
		httpRoute("team-e", "wild", nil, "gw-ns", "gw", []string{"*.wild.example.com"}, "/w"),
	}
	a := &Activities{
		Config:    config.Config{ParentRefs: []routes.ParentRef{{Namespace: "gw-ns", Name: "gw"}}},
		AllRoutes: func() ([]*gatewayv1.HTTPRoute, error) { return others, nil },
	}
	app := registry.AppRef{Namespace: "shop", Name: "web"}
	tests := []struct {
		claim registry.Claim
		route string // "" = allowed
	}{
		{registry.Claim{Path: "/web"}, ""},                                   // its own route does not count
		{registry.Claim{Host: "blog.example.com", Path: "/"}, "team-b/blog"}, // same host and prefix
		{registry.Claim{Path: "/"}, "team-b/blog"},                           // any host overlaps blog.example.com
		{registry.Claim{Host: "blog.example.com", Path: "/b"}, ""},           // another prefix
		{registry.Claim{Host: "shop.example.com", Path: "/"}, ""},            // another host
		{registry.Claim{Host: "shop.example.com", Path: "/admin"}, "team-c/admin"},
		{registry.Claim{Host: "x.example.com", Path: "/"}, ""}, // only on a Gateway skewguard does not use
		{registry.Claim{Host: "a.wild.example.com", Path: "/w"}, "team-e/wild"},
		{registry.Claim{Host: "wild.example.com", Path: "/w"}, ""}, // a wildcard needs a label in front
	}
	for _, tt := range tests {
		err := a.checkClaim(app, tt.claim)
		if tt.route == "" {
			assert.NoError(t, err, "%s", tt.claim)
			continue
		}
		var cce *registry.ClaimConflictError
		require.ErrorAs(t, err, &cce, "%s", tt.claim)
		assert.Equal(t, tt.route, cce.Route, "%s", tt.claim)
		assert.Contains(t, err.Error(), "already served by HTTPRoute "+tt.route)
	}
}

func TestValidateClaimChecksWhatTheRoutesServe(t *testing.T) {
	p, err := claims.Parse([]byte(`
allow:
  - namespace: team-a
    hosts: [a.example.com]
    paths: [/]
  - namespace: team-a
    apps: [api]
    hosts: ["*"]
    paths: [/api]
`))
	require.NoError(t, err)
	allow := claims.Static(p, "ConfigMap sg/claims (key claims.yaml)")
	v := func(ns, app, host, path string) registry.Version {
		return registry.Version{Namespace: ns, App: app, Label: "1", Placement: registry.Placement{Hostname: host, PathPrefix: path}}
	}
	assert.NoError(t, ValidateClaim(allow, v("team-a", "web", "a.example.com", "")))
	assert.NoError(t, ValidateClaim(allow, v("team-a", "web", "a.example.com", "/shop")))
	assert.NoError(t, ValidateClaim(allow, v("team-a", "api", "", "")), "no hostname, no path: every host at /api")
	var na *claims.NotAllowedError
	require.ErrorAs(t, ValidateClaim(allow, v("team-a", "web", "", "")), &na, "no hostname claims every host")
	assert.Equal(t, claims.ReasonHost, na.Reason)
	assert.Equal(t, "/web", na.Path, "the default path of an app without a hostname")
	require.ErrorAs(t, ValidateClaim(allow, v("team-b", "web", "a.example.com", "")), &na)
	assert.Equal(t, claims.ReasonNamespace, na.Reason)
	assert.Contains(t, na.Error(), `namespace "team-b"`)
	require.ErrorAs(t, ValidateClaim(nil, v("team-a", "web", "a.example.com", "")), &na, "no allowlist refuses")
	assert.Equal(t, claims.ReasonUnconfigured, na.Reason)

	app := classify(na)
	var ae *temporal.ApplicationError
	require.ErrorAs(t, app, &ae)
	assert.Equal(t, ErrTypeClaimConflict, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.NoError(t, classify(nil))
	assert.ErrorIs(t, classify(claims.ErrNotSynced), claims.ErrNotSynced, "not read yet is retried")
}
