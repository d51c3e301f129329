package routes

import (
	"regexp"
	"slices"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// For the external test package (render_fuzz_test.go), which imports activities to build the
// renderer's input the way the worker does. checkInvariants simulates thousands of requests per
// rendering, too slow for a fuzzer: CheckShape and CheckReachable are its fast parts.
var (
	CheckInvariants = checkInvariants
	CRDCheck        = crdCheck
)

// CheckShape: route i is RouteName(app, i); exactly one default rule when there is an Active
// version, last in the first route, adding the one Set-Cookie; every pinned version pinned once,
// in registry order; every version's carriers, and nothing else, leading to its Service.
func CheckShape(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	if in.Active == nil && len(in.Pinned) == 0 {
		if len(got) != 0 {
			t.Fatalf("nothing live, %d routes", len(got))
		}
		return
	}
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	defaults := 0
	for i, r := range got {
		if want := RouteName(in.App, i); r.Name != want {
			t.Fatalf("route %d is %q, want %q", i, r.Name, want)
		}
		for ri, rule := range r.Spec.Rules {
			if !isDefaultRule(rule) {
				continue
			}
			defaults++
			if i != 0 || ri != len(r.Spec.Rules)-1 {
				t.Fatalf("default rule at route %d rule %d: it must be the last rule of the first route", i, ri)
			}
			checkSetCookie(t, in, prefix, rule)
		}
	}
	if want := map[bool]int{true: 1}[in.Active != nil]; defaults != want {
		t.Fatalf("%d default rules, want %d", defaults, want)
	}
	want := make([]string, len(in.Pinned))
	for i, b := range in.Pinned {
		want[i] = b.Version
	}
	if got := pinnedVersions(in, got); !slices.Equal(got, want) {
		t.Fatalf("pinned versions %v, want %v (each once, in registry order)", got, want)
	}
	checkCarriers(t, in, got)
}

// CheckReachable sends, for up to six live versions (the ends and a spread between), a request
// naming it by header, one by query parameter and, for a pinned version, one by its pin cookie,
// and one request naming nothing, through both simulated gateways under both regex modes: each
// must reach the version it names (nothing named: the Active version).
func CheckReachable(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	var versions []string
	pinned := map[string]bool{}
	if in.Active != nil {
		versions = append(versions, in.Active.Version)
	}
	for _, b := range in.Pinned {
		versions = append(versions, b.Version)
		pinned[b.Version] = true
	}
	if n := len(versions); n > 6 {
		versions = []string{versions[0], versions[1], versions[n/3], versions[n/2], versions[n-2], versions[n-1]}
	}
	reqs := []request{{}}
	for _, v := range versions {
		reqs = append(reqs, request{header: v}, request{query: v})
		if pinned[v] {
			reqs = append(reqs, request{cookie: in.CookieName + "=" + v}, request{cookie: "a=1; " + in.CookieName + "=" + v})
		}
	}
	cache := map[string]*regexp.Regexp{} // per call: a fuzzer's patterns are all new
	re := func(p string) *regexp.Regexp {
		r, ok := cache[p]
		if !ok {
			r = regexp.MustCompile(p)
			cache[p] = r
		}
		return r
	}
	modes := map[string]func(p, v string) bool{
		"search": func(p, v string) bool { return re(p).MatchString(v) },
		"full":   func(p, v string) bool { return re(`^(?:` + p + `)$`).MatchString(v) },
	}
	wantOf := wantFor(in)
	for mode, match := range modes {
		for _, req := range reqs {
			cs := candidates(got, req, match)
			for name, resolve := range resolvers {
				if w, g := wantOf(req), resolve(t, req, cs); w != g {
					t.Fatalf("%s, %s regex: %+v reaches %q, want %q", name, mode, req, g, w)
				}
			}
		}
	}
}
