//go:build integration

package stacktest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/testenv"
)

// route is the shape skewguard writes: pinned versions matched by cookie, everything else to
// the active version with a Set-Cookie.
type route struct {
	ns, name, host, prefix string
	pins                   map[string]string // version -> Service
	active, activeSvc      string
}

func (k kube) applyRoute(t testing.TB, r route) {
	t.Helper()
	gwNS, gwName, section := gatewayRef(t)
	prefix := gatewayv1.PathMatchPathPrefix
	regex := gatewayv1.HeaderMatchRegularExpression
	port := gatewayv1.PortNumber(80)
	backend := func(svc string) []gatewayv1.HTTPBackendRef {
		return []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(svc), Port: &port},
		}}}
	}
	path := &gatewayv1.HTTPPathMatch{Type: &prefix, Value: &r.prefix}
	var rules []gatewayv1.HTTPRouteRule
	for version, svc := range r.pins {
		rules = append(rules, gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{{Path: path, Headers: []gatewayv1.HTTPHeaderMatch{{
				Type: &regex, Name: "Cookie", Value: `(^|;\s*)__plt_dpl=` + version + `(;|$)`,
			}}}},
			BackendRefs: backend(svc),
		})
	}
	rules = append(rules, gatewayv1.HTTPRouteRule{
		Matches: []gatewayv1.HTTPRouteMatch{{Path: path}},
		Filters: []gatewayv1.HTTPRouteFilter{{
			Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier,
			ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{
				Name: "Set-Cookie", Value: "__plt_dpl=" + r.active + "; Path=" + r.prefix + "; Max-Age=43200; HttpOnly; Secure; SameSite=Lax",
			}}},
		}},
		BackendRefs: backend(r.activeSvc),
	})
	ns := gatewayv1.Namespace(gwNS)
	sec := gatewayv1.SectionName(section)
	hr := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.ns},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Name: gatewayv1.ObjectName(gwName), Namespace: &ns, SectionName: &sec,
			}}},
			Hostnames: []gatewayv1.Hostname{gatewayv1.Hostname(r.host)},
			Rules:     rules,
		},
	}
	_, err := k.gateway.GatewayV1().HTTPRoutes(r.ns).Create(context.Background(), hr, metav1.CreateOptions{})
	require.NoError(t, err, "create HTTPRoute %s/%s", r.ns, r.name)

	k.waitRouteAccepted(t, r.ns, r.name, gwName)
}

func cond(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// gatewayRef splits SKEWGUARD_TEST_GATEWAY_REF ("namespace/name:section").
func gatewayRef(t testing.TB) (ns, name, section string) {
	t.Helper()
	ref := testenv.Get(t, testenv.GatewayRef)
	nsName, section, ok := strings.Cut(ref, ":")
	require.True(t, ok, "%s=%q has no :section", testenv.GatewayRef, ref)
	ns, name, ok = strings.Cut(nsName, "/")
	require.True(t, ok, "%s=%q is not namespace/name:section", testenv.GatewayRef, ref)
	return ns, name, section
}

// gatewayRequest builds a request to the Gateway for host and path, with an optional Cookie.
func gatewayRequest(t testing.TB, host, path, cookie string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, testenv.Get(t, testenv.GatewayURL)+path, nil)
	require.NoError(t, err)
	req.Host = host
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	return req
}

// An HTTPRoute with a Cookie RegularExpression match and a Set-Cookie response filter is
// accepted by Traefik, and requests through it reach the launched process of the right version.
// (curl would not resend a Secure cookie over http, so cookies are sent explicitly.)
func TestGatewayRoutesByCookieToTheRightVersion(t *testing.T) {
	k := newKube(t)
	ns := k.namespace(t, "smoke-gw")
	v1 := k.deployVersion(t, ns, "shop", "1", 1)
	v2 := k.deployVersion(t, ns, "shop", "2", 1)
	k.readyPods(t, ns, "shop", "1", 1)
	k.readyPods(t, ns, "shop", "2", 1)
	host := ns + ".stacktest.example"
	k.applyRoute(t, route{ns: ns, name: "shop", host: host, prefix: "/shop",
		pins: map[string]string{"1": v1}, active: "2", activeSvc: v2})

	// Accepted is written before Traefik serves the new configuration, and each backend's
	// endpoints arrive on their own: wait until both the default and the pinned backend answer.
	eventually(t, 30*time.Second, "the Gateway serves the route", func() (bool, string) {
		for _, cookie := range []string{"", "__plt_dpl=1"} {
			if _, _, err := get(t, gatewayRequest(t, host, "/shop/", cookie)); err != nil {
				return false, fmt.Sprintf("cookie %q: %v", cookie, err)
			}
		}
		return true, ""
	})

	cases := []struct {
		name, cookie, wantVersion string
		wantSetCookie             bool
	}{
		{name: "no cookie goes to the active version and is pinned", wantVersion: "2", wantSetCookie: true},
		{name: "pinned cookie", cookie: "__plt_dpl=1", wantVersion: "1"},
		{name: "pinned cookie among others", cookie: "a=1; __plt_dpl=1; b=2", wantVersion: "1"},
		{name: "cookie of the active version", cookie: "__plt_dpl=2", wantVersion: "2", wantSetCookie: true},
		{name: "longer version does not match", cookie: "__plt_dpl=10", wantVersion: "2", wantSetCookie: true},
		{name: "other cookie name does not match", cookie: "x__plt_dpl=1", wantVersion: "2", wantSetCookie: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, reply, err := get(t, gatewayRequest(t, host, "/shop/page", tc.cookie))
			require.NoError(t, err)
			assert.Equal(t, tc.wantVersion, reply.Version, "version reached")
			assert.Equal(t, tc.wantVersion, resp.Header.Get("X-Skewguard-Version"))
			assert.Equal(t, "/shop/page", reply.Path)
			assert.Equal(t, tc.cookie, reply.Cookie, "the backend sees the request's cookies")
			if tc.wantSetCookie {
				assert.Equal(t, "__plt_dpl=2; Path=/shop; Max-Age=43200; HttpOnly; Secure; SameSite=Lax", resp.Header.Get("Set-Cookie"))
			} else {
				assert.Empty(t, resp.Header.Get("Set-Cookie"))
			}
		})
	}
}
