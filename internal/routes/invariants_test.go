package routes

import (
	"cmp"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// checkInvariants asserts what must hold for every rendering, whatever the case: the CRD's
// limits, one default rule, fencing metadata, every version's carriers, and that both the Gateway
// API's precedence and Traefik's priority arithmetic send every combination of carriers to the
// version the request itself names, under both regex matching modes.
func checkInvariants(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	if in.Active == nil && len(in.Pinned) == 0 {
		assert.Empty(t, got)
		return
	}
	require.NotEmpty(t, got)

	defaults := 0
	for i, r := range got {
		assert.Equal(t, RouteName(in.App, i), r.Name)
		assert.Empty(t, validation.IsDNS1123Label(r.Name), r.Name)
		assert.Equal(t, in.Namespace, r.Namespace)
		assert.Equal(t, Labels(in.App), r.Labels)
		assert.Equal(t, strconv.FormatInt(in.Generation, 10), r.Annotations[GenerationAnnotation])
		assert.Equal(t, got[0].Spec.ParentRefs, r.Spec.ParentRefs, "%s: parentRefs differ from the first route", r.Name)
		assert.Equal(t, got[0].Spec.Hostnames, r.Spec.Hostnames, "%s: hostnames differ from the first route", r.Name)
		assert.Len(t, r.Spec.ParentRefs, len(in.ParentRefs))

		require.NotEmpty(t, r.Spec.Rules, r.Name)
		assert.LessOrEqual(t, len(r.Spec.Rules), maxRulesPerRoute, r.Name)
		matches := 0
		for ri, rule := range r.Spec.Rules {
			matches += len(rule.Matches)
			assert.LessOrEqual(t, len(rule.Matches), maxMatchesPerRule, "%s rule %d", r.Name, ri)
			require.Len(t, rule.BackendRefs, 1, "%s rule %d", r.Name, ri)
			for _, m := range rule.Matches {
				require.NotNil(t, m.Path)
				assert.Equal(t, prefix, *m.Path.Value)
				assert.LessOrEqual(t, len(m.Headers), maxHeadersPerMatch, "%s rule %d", r.Name, ri)
				for _, h := range m.Headers {
					if *h.Type == gatewayv1.HeaderMatchRegularExpression {
						_, err := regexp.Compile(h.Value)
						assert.NoError(t, err, h.Value)
					}
				}
				if isPinCookie(m) {
					assert.LessOrEqual(t, len(r.Spec.Rules)-ri, maxCookieRuleBonus,
						"%s rule %d: a pin cookie must be among the last %d rules (Traefik's rule-order bonus)", r.Name, ri, maxCookieRuleBonus)
				}
			}
			rewrites := 0
			for _, f := range rule.Filters {
				if f.Type == gatewayv1.HTTPRouteFilterURLRewrite {
					rewrites++
				}
			}
			if rewrites > 0 {
				assert.Len(t, rule.Matches, 1, "%s rule %d: the CRD allows ReplacePrefixMatch only with one match", r.Name, ri)
			}
			assert.Equal(t, in.RewritePrefix && prefix != "/", rewrites == 1, "%s rule %d: rewrite filter", r.Name, ri)
			if isDefaultRule(rule) {
				defaults++
				assert.Zero(t, i, "default rule outside the first route")
				assert.Equal(t, len(r.Spec.Rules)-1, ri, "default rule must be the last rule of its route")
				checkSetCookie(t, in, prefix, rule)
			} else {
				for _, f := range rule.Filters {
					assert.Nil(t, f.ResponseHeaderModifier, "%s rule %d: only the default rule sets the cookie", r.Name, ri)
				}
			}
		}
		assert.LessOrEqual(t, matches, maxMatchesPerRoute, r.Name)
	}
	want := make([]string, len(in.Pinned))
	for i, b := range in.Pinned {
		want[i] = b.Version
	}
	assert.Equal(t, want, pinnedVersions(in, got), "every pinned version exactly once, in registry order")
	if in.Active != nil {
		assert.Equal(t, 1, defaults, "exactly one default rule")
	} else {
		assert.Zero(t, defaults, "no Active version, no default rule")
	}
	checkCarriers(t, in, got)
	checkRouting(t, in, got)
}

// checkCarriers asserts that every version has exactly its matches (a)-(e) of doc.go, all
// leading to its Service, and the Active version (b)-(e) in the first route.
func checkCarriers(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	type carrier struct{ version, shape string }
	byPattern := make(map[string]string, len(in.Pinned))
	for _, b := range in.Pinned {
		byPattern[CookiePatternAmong(in.pinCookies(), b.cookie(in.CookieName), b.Version)] = b.Version
	}
	found := map[carrier][]string{} // -> services
	routeOf := map[carrier]int{}
	for i, r := range got {
		for _, rule := range r.Spec.Rules {
			for _, m := range rule.Matches {
				if len(m.Headers) == 0 && len(m.QueryParams) == 0 {
					continue
				}
				v, shape := describeMatch(t, byPattern, m)
				c := carrier{v, shape}
				found[c] = append(found[c], string(rule.BackendRefs[0].Name))
				routeOf[c] = i
			}
		}
	}
	backends := append([]Backend{}, in.Pinned...)
	if in.Active != nil {
		backends = append(backends, *in.Active)
	}
	for _, b := range backends {
		shapes := []string{"header", "header+cookie", "query", "query+cookie"}
		if in.Active == nil || b.Version != in.Active.Version {
			shapes = append(shapes, "pin-cookie")
		} else {
			for _, shape := range shapes {
				assert.Zero(t, routeOf[carrier{b.Version, shape}], "the Active version's %s carrier belongs in the first route", shape)
			}
		}
		for _, shape := range shapes {
			assert.Equal(t, []string{b.ServiceName}, found[carrier{b.Version, shape}], "version %q, %s", b.Version, shape)
			delete(found, carrier{b.Version, shape})
		}
	}
	assert.Empty(t, found, "matches for no version, or twice for one")
}

// describeMatch names a match's version and shape, failing on anything the renderer should not
// produce.
func describeMatch(t *testing.T, byPattern map[string]string, m gatewayv1.HTTPRouteMatch) (version, shape string) {
	t.Helper()
	var header, query string
	cookie := ""
	for _, h := range m.Headers {
		switch {
		case h.Name == "Cookie" && *h.Type == gatewayv1.HeaderMatchRegularExpression:
			cookie = h.Value
		case h.Name == DeploymentIDHeader && *h.Type == gatewayv1.HeaderMatchExact:
			header = h.Value
		default:
			t.Errorf("unexpected header match %+v", h)
		}
	}
	for _, q := range m.QueryParams {
		if q.Name != DeploymentIDQuery || *q.Type != gatewayv1.QueryParamMatchExact {
			t.Errorf("unexpected query match %+v", q)
		}
		query = q.Value
	}
	switch {
	case header != "" && query == "" && (cookie == "" || cookie == AnyCookie):
		return header, map[bool]string{false: "header", true: "header+cookie"}[cookie != ""]
	case query != "" && header == "" && (cookie == "" || cookie == AnyCookie):
		return query, map[bool]string{false: "query", true: "query+cookie"}[cookie != ""]
	case header == "" && query == "" && cookie != "":
		if v, ok := byPattern[cookie]; ok {
			return v, "pin-cookie"
		}
	}
	t.Errorf("match of no known shape: %+v", m)
	return "", ""
}

func checkSetCookie(t *testing.T, in Input, prefix string, rule gatewayv1.HTTPRouteRule) {
	t.Helper()
	var adds []gatewayv1.HTTPHeader
	for _, f := range rule.Filters {
		if f.ResponseHeaderModifier != nil {
			adds = append(adds, f.ResponseHeaderModifier.Add...)
			assert.Empty(t, f.ResponseHeaderModifier.Set)
		}
	}
	require.Len(t, adds, 1, "exactly one header added by the default rule")
	assert.Equal(t, "Set-Cookie", string(adds[0].Name))
	if in.Active.CookiePath != "" {
		prefix = in.Active.CookiePath // an app group's cookie, shared by its members
	}
	assert.Equal(t, in.Active.cookie(in.CookieName)+"="+in.Active.Version+"; Path="+prefix+"; Max-Age="+strconv.FormatInt(in.CookieMaxAge, 10)+
		"; HttpOnly; Secure; SameSite=Lax", adds[0].Value)
}

func isDefaultRule(rule gatewayv1.HTTPRouteRule) bool {
	for _, m := range rule.Matches {
		if len(m.Headers) > 0 || len(m.QueryParams) > 0 {
			return false
		}
	}
	return true
}

// isPinCookie reports whether m is a pin cookie match (a): the Cookie header alone, against a
// version's pattern.
func isPinCookie(m gatewayv1.HTTPRouteMatch) bool {
	return len(m.Headers) == 1 && len(m.QueryParams) == 0 && m.Headers[0].Name == "Cookie" && m.Headers[0].Value != AnyCookie
}

// pinnedVersions lists the versions routes pin by cookie, in route and rule order.
func pinnedVersions(in Input, routes []gatewayv1.HTTPRoute) []string {
	out := []string{}
	for _, r := range routes {
		out = append(out, pinVersions(in, r)...)
	}
	return out
}

// pinVersions lists the versions r pins by cookie, in rule order (each version's pin rule in
// the unrewritten shape, its cookie rule in the rewritten one); "?" for a pattern of no version.
func pinVersions(in Input, r gatewayv1.HTTPRoute) []string {
	byPattern := make(map[string]string, len(in.Pinned))
	for _, b := range in.Pinned {
		byPattern[CookiePatternAmong(in.pinCookies(), b.cookie(in.CookieName), b.Version)] = b.Version
	}
	var out []string
	for _, rule := range r.Spec.Rules {
		for _, m := range rule.Matches {
			if isPinCookie(m) {
				v, ok := byPattern[m.Headers[0].Value]
				if !ok {
					v = "?"
				}
				out = append(out, v)
			}
		}
	}
	return out
}

// regexModes are the two ways gateways apply a header regex.
var regexModes = map[string]func(pattern, value string) bool{
	"search": func(p, v string) bool { return compiled(p).MatchString(v) },
	"full":   func(p, v string) bool { return compiled(`^(?:` + p + `)$`).MatchString(v) },
}

var regexCache sync.Map

func compiled(p string) *regexp.Regexp {
	if re, ok := regexCache.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(p)
	regexCache.Store(p, re)
	return re
}

// memoized remembers match's verdicts: the routing check asks the same (pattern, cookie)
// question once per header and query combination.
func memoized(match func(pattern, value string) bool) func(pattern, value string) bool {
	seen := map[[2]string]bool{}
	return func(p, v string) bool {
		k := [2]string{p, v}
		got, ok := seen[k]
		if !ok {
			got = match(p, v)
			seen[k] = got
		}
		return got
	}
}

// request is what a client sends; "" means the header, parameter or cookie header is absent.
type request struct {
	cookie, header, query string
}

// wantFor returns the Service a request must reach: the version its header names if that is
// live, else its query parameter's, else its first pin cookie's, else the Active version's (""
// for a 404). The first pin cookie is the first pair named like a cookie some pinned version's
// rule reads (the app's own or its group's); it pins if a pinned version reads that cookie and
// has that version.
func wantFor(in Input) func(request) string {
	live := map[string]string{}
	active := ""
	if in.Active != nil {
		active = in.Active.ServiceName
		live[in.Active.Version] = active
	}
	pinned := map[[2]string]string{} // cookie name, version → Service
	var names []string
	for _, b := range in.Pinned {
		live[b.Version] = b.ServiceName
		name := in.CookieName
		if b.CookieName != "" {
			name = b.CookieName
		}
		pinned[[2]string{name, b.Version}] = b.ServiceName
		names = append(names, name)
	}
	return func(req request) string {
		if s, ok := live[req.header]; ok {
			return s
		}
		if s, ok := live[req.query]; ok {
			return s
		}
		if name, v, ok := firstCookieAmong(req.cookie, names); ok {
			if s, ok := pinned[[2]string{name, v}]; ok {
				return s
			}
		}
		return active
	}
}

// checkRouting sends requests carrying every combination of carriers for every pair of live
// versions (and a version that is not live) through simulated gateways: the Gateway API's
// precedence and Traefik's arithmetic, each with both regex matching modes.
func checkRouting(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	c := in.CookieName
	g := "" // the group cookie some version reads, if any
	for _, b := range append(append([]Backend{}, in.Pinned...), derefBackends(in.Active)...) {
		g = cmp.Or(g, b.CookieName)
	}
	var versions []string
	if in.Active != nil {
		versions = append(versions, in.Active.Version)
	}
	for _, b := range in.Pinned {
		versions = append(versions, b.Version)
	}
	if n := len(versions); n > 8 { // keep the simulation fast: the ends and a spread between
		step := n / 6
		if n > 100 {
			step = n / 4
		}
		sample := []string{}
		for i := 0; i < n; i += step {
			sample = append(sample, versions[i])
		}
		versions = append(sample, versions[len(versions)-1])
	}
	versions = append(versions, "gone-1") // a version that is not live

	var requests []request
	for _, x := range versions {
		for _, y := range versions {
			if x == y {
				continue
			}
			cookies := []string{"", c + "=" + x, c + "=" + x + "; " + c + "=" + y, "a=1; " + c + "=" + y + ";" + c + "=" + x,
				"x" + c + "=" + x, c + "=" + x + "0"}
			if g != "" { // an app group's cookie alone, and with the app's own in either order
				cookies = append(cookies, g+"="+x, g+"="+x+"; "+g+"="+y, c+"="+x+"; "+g+"="+y, g+"="+x+"; a=1;"+c+"="+y,
					g+"_"+c+"="+x)
			}
			for _, cookie := range cookies {
				for _, header := range []string{"", x, y} {
					for _, query := range []string{"", x, y} {
						requests = append(requests, request{cookie, header, query})
					}
				}
			}
		}
	}
	requests = append(requests, request{}, request{cookie: "a=1"}, request{cookie: "a=" + c + "=" + versions[0]})

	want := wantFor(in)
	for mode, match := range regexModes {
		match := memoized(match)
		for _, req := range requests {
			w := want(req)
			cs := candidates(got, req, match)
			for name, resolve := range resolvers {
				if !assert.Equal(t, w, resolve(t, req, cs), "%s, %s regex: %+v", name, mode, req) {
					return // one failure tells the story; thousands would bury it
				}
			}
		}
	}
}

func derefBackends(b *Backend) []Backend {
	if b == nil {
		return nil
	}
	return []Backend{*b}
}

// firstCookieAmong returns the name and value of the first cookie pair named any of names.
func firstCookieAmong(header string, names []string) (string, string, bool) {
	for _, pair := range strings.Split(header, ";") {
		k, v, ok := strings.Cut(strings.TrimLeft(pair, " \t"), "=")
		if ok && slices.Contains(names, k) {
			return k, strings.TrimRight(v, " \t"), true
		}
	}
	return "", "", false
}

// candidate is one of a rule's matches that a request satisfies.
type candidate struct {
	route, rule, rules, headers, queries int
	service                              string
}

func candidates(routes []gatewayv1.HTTPRoute, req request, regexMatch func(p, v string) bool) []candidate {
	var out []candidate
	for ri, r := range routes {
		for rj, rule := range r.Spec.Rules {
			for _, m := range rule.Matches {
				if matchRequest(m, req, regexMatch) {
					out = append(out, candidate{ri, rj, len(r.Spec.Rules), len(m.Headers), len(m.QueryParams), string(rule.BackendRefs[0].Name)})
				}
			}
		}
	}
	return out
}

// resolvers pick the backend the way a gateway would. All our matches share one path prefix,
// no method match and the same hostnames, so only header and query counts, route and rule
// order remain.
var resolvers = map[string]func(t *testing.T, req request, candidates []candidate) string{
	// The Gateway API: most header matches, then most query parameter matches; among equals, the
	// oldest route, then the first rule. It fails the test if equally ranked matches disagree,
	// whatever their routes: our precedence must never rest on route age or rule order.
	"gateway-api": func(t *testing.T, req request, candidates []candidate) string {
		t.Helper()
		var best []candidate
		for _, h := range candidates {
			switch {
			case len(best) == 0, h.headers > best[0].headers, h.headers == best[0].headers && h.queries > best[0].queries:
				best = []candidate{h}
			case h.headers == best[0].headers && h.queries == best[0].queries:
				best = append(best, h)
			}
		}
		if len(best) == 0 {
			return ""
		}
		for _, h := range best[1:] {
			if h.service != best[0].service {
				t.Errorf("%+v: equal-precedence matches disagree (%s in route %d, %s in route %d): route age or rule order would decide",
					req, best[0].service, best[0].route, h.service, h.route)
			}
		}
		return best[0].service
	},
	// Traefik 3 (pkg/provider/kubernetes/gateway): each match becomes a router of priority
	// 100 × header matches + 10 × query matches + (rules in the route − rule index), plus terms
	// for path and hostname that are equal for all our matches. The highest priority wins; equal
	// priorities are ordered arbitrarily, so they must agree.
	"traefik": func(t *testing.T, req request, candidates []candidate) string {
		t.Helper()
		priority := func(c candidate) int { return 100*c.headers + 10*c.queries + c.rules - c.rule }
		var best []candidate
		for _, h := range candidates {
			switch {
			case len(best) == 0, priority(h) > priority(best[0]):
				best = []candidate{h}
			case priority(h) == priority(best[0]):
				best = append(best, h)
			}
		}
		if len(best) == 0 {
			return ""
		}
		for _, h := range best[1:] {
			if h.service != best[0].service {
				t.Errorf("%+v: Traefik priority %d ties between %s and %s", req, priority(h), best[0].service, h.service)
			}
		}
		return best[0].service
	},
}

func matchRequest(m gatewayv1.HTTPRouteMatch, req request, regexMatch func(p, v string) bool) bool {
	for _, h := range m.Headers {
		switch {
		case h.Name == "Cookie" && *h.Type == gatewayv1.HeaderMatchRegularExpression:
			if req.cookie == "" || !regexMatch(h.Value, req.cookie) {
				return false
			}
		case h.Name == DeploymentIDHeader && *h.Type == gatewayv1.HeaderMatchExact:
			if req.header != h.Value {
				return false
			}
		default:
			return false
		}
	}
	for _, q := range m.QueryParams {
		if q.Name != DeploymentIDQuery || req.query != q.Value {
			return false
		}
	}
	return true
}
