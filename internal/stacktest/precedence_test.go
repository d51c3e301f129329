//go:build integration

package stacktest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sgkube "github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/routes"
)

// TestGatewayCarrierPrecedence writes the routes skewguard renders (routes.Render, then the
// product's RouteWriter) for an app with two pinned versions (1 and 3) and an Active one (2),
// and checks through Traefik that the request's own carrier decides: the x-deployment-id header
// over the dpl query parameter over the cookie, and of two cookies of our name the first (the
// one a browser sends first, for the longer path). Both route shapes are checked: the prefix
// rewritten (one match per rule) and kept (a version's matches ORed in one rule).
func TestGatewayCarrierPrecedence(t *testing.T) {
	k := newKube(t)
	ns := k.namespace(t, "smoke-prec")
	svc := map[string]string{}
	for _, v := range []string{"1", "2", "3"} {
		svc[v] = k.deployVersion(t, ns, "prec", v, 1)
	}
	for _, v := range []string{"1", "2", "3"} {
		k.readyPods(t, ns, "prec", v, 1)
	}
	gwNS, gwName, section := gatewayRef(t)

	for _, rewrite := range []bool{true, false} {
		name := map[bool]string{true: "prefix rewritten", false: "prefix kept"}[rewrite]
		t.Run(name, func(t *testing.T) {
			app := map[bool]string{true: "prec-rw", false: "prec-kept"}[rewrite]
			host := app + "." + ns + ".stacktest.example"
			prefix := "/" + app + "-" + randomSuffix(t)
			in := routes.Input{
				Namespace: ns, App: app, Generation: 1, Path: prefix[1:], Hostnames: []string{host},
				ParentRefs:   []routes.ParentRef{{Namespace: gwNS, Name: gwName, SectionName: section}},
				CookieName:   "__plt_dpl",
				CookieMaxAge: 43200, RewritePrefix: rewrite,
				Active: &routes.Backend{Version: "2", ServiceName: svc["2"], Port: 80},
				Pinned: []routes.Backend{
					{Version: "1", ServiceName: svc["1"], Port: 80},
					{Version: "3", ServiceName: svc["3"], Port: 80},
				},
			}
			desired, err := routes.Render(in)
			require.NoError(t, err)
			res, err := sgkube.NewRouteWriter(k.gateway).ApplyRoutes(context.Background(), ns, app, in.Generation, desired)
			require.NoError(t, err)
			require.Len(t, res.Created, len(desired))
			for _, r := range desired {
				k.waitRouteAccepted(t, ns, r.Name, gwName)
			}
			// Accepted is written before Traefik serves the configuration, and Traefik loads each
			// Service's endpoints on its own: wait until every version answers (the Active one
			// without a carrier, each pin by its cookie) before asserting anything.
			for _, v := range []struct{ version, cookie string }{{"2", ""}, {"1", "__plt_dpl=1"}, {"3", "__plt_dpl=3"}} {
				eventually(t, 30*time.Second, "the Gateway serves version "+v.version, func() (bool, string) {
					_, reply, err := get(t, gatewayRequest(t, host, prefix+"/", v.cookie))
					return err == nil && reply.Version == v.version, fmt.Sprintf("version %q, err %v", reply.Version, err)
				})
			}

			cases := []struct {
				name, cookie, header, query string
				want                        string
				repin                       bool // served by the default rule, which sets the cookie
			}{
				{name: "no carrier", want: "2", repin: true},
				{name: "pin cookie", cookie: "__plt_dpl=1", want: "1"},
				{name: "header beats cookie (Active)", cookie: "__plt_dpl=1", header: "2", want: "2"},
				{name: "header beats cookie (pinned)", cookie: "__plt_dpl=1", header: "3", want: "3"},
				{name: "query beats cookie (Active)", cookie: "__plt_dpl=1", query: "2", want: "2"},
				{name: "query beats cookie (pinned)", cookie: "__plt_dpl=3", query: "1", want: "1"},
				{name: "header beats query and cookie", cookie: "__plt_dpl=1", header: "3", query: "1", want: "3"},
				{name: "header without cookie beats query", header: "1", query: "3", want: "1"},
				{name: "first cookie decides (Active first)", cookie: "__plt_dpl=2; __plt_dpl=1", want: "2", repin: true},
				{name: "first cookie decides (pin first)", cookie: "__plt_dpl=1; __plt_dpl=2", want: "1"},
				{name: "first cookie decides (two pins)", cookie: "a=b; __plt_dpl=3;__plt_dpl=1", want: "3"},
				{name: "lookalike names are skipped", cookie: "x__plt_dpl=1; __plt_dpl_x=1; __plt_dp=1; __plt_dpl=3", want: "3"},
				{name: "unknown header falls to the cookie", cookie: "__plt_dpl=1", header: "9", want: "1"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					path := prefix + "/page"
					if tc.query != "" {
						path += "?dpl=" + tc.query
					}
					for i := range 20 {
						req := gatewayRequest(t, host, path, tc.cookie)
						if tc.header != "" {
							req.Header.Set(routes.DeploymentIDHeader, tc.header)
						}
						resp, reply, err := get(t, req)
						require.NoError(t, err, "request %d", i)
						require.Equal(t, tc.want, reply.Version, "request %d: version reached", i)
						if tc.repin {
							require.Equal(t, routes.SetCookie("__plt_dpl", "2", prefix, 43200), resp.Header.Get("Set-Cookie"), "request %d", i)
						} else {
							require.Empty(t, resp.Header.Values("Set-Cookie"), "request %d: a request naming a version is not re-pinned", i)
						}
					}
				})
			}
		})
	}
}

// waitRouteAccepted waits until the Gateway has accepted the route and resolved its backends.
func (k kube) waitRouteAccepted(t testing.TB, ns, name, gwName string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("HTTPRoute %s/%s accepted with resolved refs", ns, name), func() (bool, string) {
		got, err := k.gateway.GatewayV1().HTTPRoutes(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range got.Status.Parents {
			if string(p.ParentRef.Name) != gwName {
				continue
			}
			if cond(p.Conditions, "Accepted") && cond(p.Conditions, "ResolvedRefs") {
				return true, ""
			}
			return false, fmt.Sprintf("conditions %+v", p.Conditions)
		}
		return false, "no status from the Gateway yet"
	})
}
