//go:build integration

package stacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sgkube "github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/testenv"
)

// manyPins is the number of pinned (draining) versions beside the Active one: versions "1" to
// "150" are pinned and "151" is Active. Plain numbers on purpose: "1" is a prefix of "10" to
// "150", so a cookie pattern that is not anchored would send version 1's sessions elsewhere.
const manyPins = 150

var manyActive = strconv.Itoa(manyPins + 1)

func manyVersions() []string {
	vs := make([]string, manyPins+1)
	for i := range vs {
		vs[i] = strconv.Itoa(i + 1)
	}
	return vs
}

// versionListeners gives every version a Service whose only endpoint answers as that version.
//
// 151 echo processes (one pod each) would weigh on a shared 2-core machine and on the stack's
// pod address range, so one echo pod is deployed for its address alone (the launcher puts its
// IP on lo and reports it Ready), and this test process listens on that IP on one port per
// version, answering like the echo backend with the version the port belongs to. Each version's
// Service selects that pod with targetPort = its own port, so the stack's EndpointSlice
// controller lists podIP:<that port> for that Service and for no other. A reply naming version v
// therefore proves the request went to v's Service: no other Service's endpoints reach the
// listener that answers v. It returns the Service of each version.
func (k kube) versionListeners(t testing.TB, ns string, versions []string) map[string]string {
	t.Helper()
	const hostApp = "pins-host"
	k.deployVersion(t, ns, hostApp, "0", 1)
	ip := k.readyPods(t, ns, hostApp, "0", 1)[0].Status.PodIP

	svc := make(map[string]string, len(versions))
	for _, v := range versions {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		require.NoError(t, err, "listen on the pod address %s", ip)
		srv := &http.Server{Handler: versionHandler(v, ln.Addr().String()), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })

		name := "pins-v" + v
		_, err = k.core.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{labelApp: hostApp, labelVersion: "0"},
				Ports: []corev1.ServicePort{{
					Name: "http", Port: 80,
					TargetPort: intstr.FromInt32(int32(ln.Addr().(*net.TCPAddr).Port)),
				}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err, "create Service %s/%s", ns, name)
		svc[v] = name
	}
	return svc
}

// versionHandler answers like hack/echo-backend, as version.
func versionHandler(version, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Skewguard-Version", version)
		_ = json.NewEncoder(w).Encode(echoReply{Version: version, Pod: "listener " + addr, Path: r.URL.Path, Cookie: r.Header.Get("Cookie")})
	})
}

// pinnedApp is one app whose routes the test renders and writes, generation after generation.
type pinnedApp struct {
	k          kube
	ns, app    string
	host       string
	prefix     string
	rewrite    bool
	svc        map[string]string
	generation int64
	gateway    *url.URL // Traefik's web entrypoint
}

func newPinnedApp(t testing.TB, k kube, ns, app string, rewrite bool, svc map[string]string) *pinnedApp {
	t.Helper()
	gw, err := url.Parse(testenv.Get(t, testenv.GatewayURL))
	require.NoError(t, err, "%s", testenv.GatewayURL)
	return &pinnedApp{k: k, ns: ns, app: app, host: app + "." + ns + ".stacktest.example",
		prefix: "/" + app, rewrite: rewrite, svc: svc, gateway: gw}
}

func (p *pinnedApp) input(t testing.TB, pins []string) routes.Input {
	t.Helper()
	gwNS, gwName, section := gatewayRef(t)
	backend := func(v string) routes.Backend { return routes.Backend{Version: v, ServiceName: p.svc[v], Port: 80} }
	in := routes.Input{
		Namespace: p.ns, App: p.app, Generation: p.generation, Path: p.prefix[1:], Hostnames: []string{p.host},
		ParentRefs: []routes.ParentRef{{Namespace: gwNS, Name: gwName, SectionName: section}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePrefix: p.rewrite,
		Active: new(backend(manyActive)),
	}
	for _, v := range pins {
		in.Pinned = append(in.Pinned, backend(v))
	}
	return in
}

// write renders the app with pins pinned beside the Active version, writes the routes with the
// product's RouteWriter and waits until the Gateway accepted each one. It returns them.
func (p *pinnedApp) write(t testing.TB, pins []string) []gatewayv1.HTTPRoute {
	t.Helper()
	p.generation++
	desired, err := routes.Render(p.input(t, pins))
	require.NoError(t, err)
	res, err := sgkube.NewRouteWriter(p.k.gateway).ApplyRoutes(context.Background(), p.ns, p.app, p.generation, desired)
	require.NoError(t, err)
	require.False(t, res.Superseded)
	_, gwName, _ := gatewayRef(t)
	began := time.Now()
	for _, r := range desired {
		p.k.waitRouteAccepted(t, p.ns, r.Name, gwName)
	}
	t.Logf("%s: %d route(s) written, accepted after %s", p.app, len(desired), time.Since(began).Round(time.Millisecond))
	return desired
}

// request builds a request to the app; header and query name a version when not empty. It is
// safe for concurrent use (the load's clients call it).
func (p *pinnedApp) request(cookie, header, query string) *http.Request {
	u := *p.gateway
	u.Path = p.prefix + "/page"
	if query != "" {
		u.RawQuery = url.Values{routes.DeploymentIDQuery: {query}}.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		panic(err) // cannot happen: the gateway's URL parsed, and the rest is escaped
	}
	req.Host = p.host
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if header != "" {
		req.Header.Set(routes.DeploymentIDHeader, header)
	}
	return req
}

// waitServes waits until Traefik serves every pin by its cookie and the Active version without a
// carrier, and (gone) sends each version of gone, pinned no more, to the Active version. Accepted
// is written before Traefik serves a configuration, and Traefik loads each Service's endpoints
// on its own: nothing is asserted before this.
func (p *pinnedApp) waitServes(t testing.TB, pins, gone []string) {
	t.Helper()
	want := map[string]string{"": manyActive}
	for _, v := range pins {
		want["__plt_dpl="+v] = v
	}
	for _, v := range gone {
		want["__plt_dpl="+v] = manyActive
	}
	began := time.Now()
	eventually(t, 3*time.Minute, fmt.Sprintf("Traefik serves the %d pins of %s", len(pins), p.app), func() (bool, string) {
		for cookie, v := range want {
			_, reply, err := get(t, p.request(cookie, "", ""))
			if err != nil || reply.Version != v {
				return false, fmt.Sprintf("%d left; cookie %q: version %q, want %q, err %v", len(want), cookie, reply.Version, v, err)
			}
			delete(want, cookie)
		}
		return true, ""
	})
	t.Logf("%s: Traefik served the %d pin(s) after %s", p.app, len(pins), time.Since(began).Round(time.Millisecond))
}

// TestGatewayServes150Pins writes the routes skewguard renders for one app with 150 pinned
// versions beside the Active one (routes.Render shards the pins across HTTPRoutes) to the real
// API server and checks through Traefik that every version is reached by each carrier (cookie,
// x-deployment-id header, dpl query parameter), that a carrier naming a version beats the cookie
// of a pin in another shard, that anything else goes to the Active version with the cookie set,
// and that the default rule stays last: in the rendered routes, in the stored ones and in
// Traefik's router priorities. Both route shapes (prefix rewritten and kept) are checked.
func TestGatewayServes150Pins(t *testing.T) {
	k := newKube(t)
	ns := k.namespace(t, "pins150")
	versions := manyVersions()
	pins := versions[:manyPins]
	svc := k.versionListeners(t, ns, versions)

	for _, rewrite := range []bool{true, false} {
		name := map[bool]string{true: "prefix rewritten", false: "prefix kept"}[rewrite]
		t.Run(name, func(t *testing.T) {
			app := newPinnedApp(t, k, ns, map[bool]string{true: "many-rw", false: "many-kept"}[rewrite], rewrite, svc)
			desired := app.write(t, pins)
			require.Greater(t, len(desired), 1, "150 pins do not fit in one route")
			t.Logf("%s: %d pins in %d HTTPRoutes, %d rules", app.app, manyPins, len(desired), countRules(desired))

			requireDefaultRuleLast(t, desired, svc[manyActive])
			stored, err := k.gateway.GatewayV1().HTTPRoutes(ns).List(context.Background(), metav1.ListOptions{
				LabelSelector: routes.ManagedByLabel + "=" + routes.ManagedByValue + "," + routes.AppLabel + "=" + app.app,
			})
			require.NoError(t, err)
			require.Len(t, stored.Items, len(desired))
			requireDefaultRuleLast(t, sortedLike(t, stored.Items, desired), svc[manyActive])

			app.waitServes(t, pins, nil)
			requireDefaultRouterLowest(t, app.host, len(pins))

			setCookie := routes.SetCookie("__plt_dpl", manyActive, app.prefix, 43200)
			check := func(t *testing.T, what string, req *http.Request, want string, repin bool) {
				t.Helper()
				resp, reply, err := get(t, req)
				require.NoError(t, err, what)
				require.Equal(t, want, reply.Version, "%s: version reached", what)
				if repin {
					require.Equal(t, setCookie, resp.Header.Get("Set-Cookie"), "%s: served by the default rule", what)
				} else {
					require.Empty(t, resp.Header.Values("Set-Cookie"), "%s: a request naming a version is not re-pinned", what)
				}
			}
			began := time.Now()
			defer func() { t.Logf("%s: requests checked in %s", app.app, time.Since(began).Round(time.Millisecond)) }()
			for i, v := range versions {
				other := versions[len(versions)-1-i] // another shard for most versions
				if v == manyActive {
					check(t, "cookie of the Active version", app.request("__plt_dpl="+v, "", ""), v, true)
				} else {
					check(t, "cookie "+v, app.request("__plt_dpl="+v, "", ""), v, false)
					check(t, "cookie "+v+" among others", app.request("a=b; __plt_dpl="+v+"; c=d", "", ""), v, false)
				}
				check(t, "header "+v, app.request("", v, ""), v, false)
				check(t, "query "+v, app.request("", "", v), v, false)
				check(t, "header "+v+" beats cookie "+other, app.request("__plt_dpl="+other, v, ""), v, false)
				check(t, "query "+v+" beats cookie "+other, app.request("__plt_dpl="+other, "", v), v, false)
				check(t, "header "+v+" beats query "+other, app.request("", v, other), v, false)
			}
			for _, tc := range []struct{ what, cookie, header, query string }{
				{what: "no carrier"},
				{what: "unknown cookie", cookie: "__plt_dpl=1500"},
				{what: "unknown cookie 0", cookie: "__plt_dpl=0"},
				{what: "other cookies only", cookie: "a=1; x__plt_dpl=1"},
				{what: "unknown header", header: "9999"},
				{what: "unknown query", query: "9999"},
				{what: "unknown header, query and cookie", cookie: "__plt_dpl=152", header: "153", query: "154"},
			} {
				check(t, tc.what, app.request(tc.cookie, tc.header, tc.query), manyActive, true)
			}
		})
	}
}

func countRules(rs []gatewayv1.HTTPRoute) int {
	n := 0
	for _, r := range rs {
		n += len(r.Spec.Rules)
	}
	return n
}

// sortedLike orders the stored routes as desired (by name), failing if a name is missing.
func sortedLike(t testing.TB, stored, desired []gatewayv1.HTTPRoute) []gatewayv1.HTTPRoute {
	t.Helper()
	out := make([]gatewayv1.HTTPRoute, 0, len(desired))
	for _, d := range desired {
		i := slices.IndexFunc(stored, func(r gatewayv1.HTTPRoute) bool { return r.Name == d.Name })
		require.GreaterOrEqual(t, i, 0, "route %s not stored", d.Name)
		require.Equal(t, len(d.Spec.Rules), len(stored[i].Spec.Rules), "route %s: rules stored", d.Name)
		out = append(out, stored[i])
	}
	return out
}

// requireDefaultRuleLast checks that exactly one rule of the app's routes matches on the path
// alone (the default rule), that it is the last rule of the first route, sends to the Active
// version's Service and sets the cookie; and that every other rule needs a carrier.
func requireDefaultRuleLast(t testing.TB, rs []gatewayv1.HTTPRoute, activeSvc string) {
	t.Helper()
	var found []string
	for ri, r := range rs {
		for i, rule := range r.Spec.Rules {
			pathOnly := false
			for _, m := range rule.Matches {
				if len(m.Headers) == 0 && len(m.QueryParams) == 0 && m.Method == nil {
					pathOnly = true
				}
			}
			if !pathOnly {
				continue
			}
			found = append(found, fmt.Sprintf("%s rule %d", r.Name, i))
			require.Equal(t, 0, ri, "the default rule is in the first route")
			require.Equal(t, len(r.Spec.Rules)-1, i, "the default rule is the last rule of %s", r.Name)
			require.Len(t, rule.BackendRefs, 1)
			require.Equal(t, activeSvc, string(rule.BackendRefs[0].Name))
			hasCookie := slices.ContainsFunc(rule.Filters, func(f gatewayv1.HTTPRouteFilter) bool {
				return f.ResponseHeaderModifier != nil && len(f.ResponseHeaderModifier.Add) == 1 &&
					f.ResponseHeaderModifier.Add[0].Name == "Set-Cookie"
			})
			require.True(t, hasCookie, "the default rule sets the cookie")
		}
	}
	require.Len(t, found, 1, "one default rule: %v", found)
}

// traefikRouter is the part of Traefik's /api/http/routers answer the test reads.
type traefikRouter struct {
	Name     string `json:"name"`
	Rule     string `json:"rule"`
	Priority int    `json:"priority"`
	Status   string `json:"status"`
}

// requireDefaultRouterLowest reads the routers Traefik built from the app's routes (one per
// match) and checks that they are all enabled, one per carrier match, and that the default rule's
// router, the only one without a Header or Query matcher, ranks strictly below every other:
// Traefik tries routers in priority order, so no carrier match can lose to it.
func requireDefaultRouterLowest(t testing.TB, host string, pins int) {
	t.Helper()
	want := pins*5 + 4 + 1 // five matches per pin, the Active version's four carriers, the default
	var mine []traefikRouter
	eventually(t, time.Minute, "Traefik lists every router of "+host, func() (bool, string) {
		u := testenv.Get(t, testenv.TraefikAPIURL) + "/api/http/routers?per_page=100000&search=" + url.QueryEscape(host)
		resp, err := http.Get(u)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var all []traefikRouter
		if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
			return false, fmt.Sprintf("decode %s: %v", u, err)
		}
		mine = mine[:0]
		for _, r := range all {
			if strings.Contains(r.Rule, fmt.Sprintf("Host(%q)", host)) {
				mine = append(mine, r)
			}
		}
		return len(mine) == want, fmt.Sprintf("%d routers for %s, want %d", len(mine), host, want)
	})
	var defaults []traefikRouter
	lowestOther := int(^uint(0) >> 1)
	for _, r := range mine {
		require.Equal(t, "enabled", r.Status, "router %s", r.Name)
		if !strings.Contains(r.Rule, "Header") && !strings.Contains(r.Rule, "Query") {
			defaults = append(defaults, r)
			continue
		}
		lowestOther = min(lowestOther, r.Priority)
	}
	require.Len(t, defaults, 1, "one router without a carrier")
	assert.Less(t, defaults[0].Priority, lowestOther, "the default rule's router %s ranks below every carrier", defaults[0].Rule)
}

// traefikCPU returns the CPU time the stack's Traefik has used so far, from /proc, or 0 when
// it cannot be read (the figures then go without it).
func traefikCPU(t testing.TB) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.Get(t, testenv.StackDir), "run", "traefik.pid"))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) == 0 {
		return 0
	}
	comm, err := os.ReadFile("/proc/" + fields[0] + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "traefik" {
		return 0
	}
	stat, err := os.ReadFile("/proc/" + fields[0] + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(rest) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}
