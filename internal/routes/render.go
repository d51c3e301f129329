package routes

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Header and query parameter names that carry a version besides the cookie (the carriers
// Next.js and Vercel use).
const (
	DeploymentIDHeader = "x-deployment-id"
	DeploymentIDQuery  = "dpl"
)

// Limits enforced by the HTTPRoute CRD (gateway-api v1.6.3).
const (
	maxRulesPerRoute   = 16
	maxMatchesPerRoute = 128
	maxMatchesPerRule  = 64
	maxHeadersPerMatch = 16
)

// Shape of one version's carriers (see doc.go for why each exists).
const (
	carrierMatches = 4                  // header, header+cookie, query, query+cookie
	matchesPerPin  = carrierMatches + 1 // and the pin cookie itself
)

// maxCookieRuleBonus bounds, for Traefik, the position of a rule holding a cookie-only match:
// it must be among the last maxCookieRuleBonus rules of its route. Traefik turns precedence
// into a number, 100 per header match + 10 per query parameter match + (rules − index) for the
// rule's position, so a cookie match (100 + its bonus) stays below another pin's query+cookie
// match (110 + a bonus of at least 1) only while its own bonus is at most 10.
const maxCookieRuleBonus = 10

// AnyCookie is the Cookie pattern of the carrier matches that require a Cookie header to be
// present, whatever it holds: they outrank every pin cookie by one header match (see doc.go).
const AnyCookie = ".*"

// PathPrefix is the path an app is served under: plt.dev/path when set (a leading '/' is
// added, since a label value cannot start with one; a trailing '/' is dropped, as PathPrefix
// matching ignores it), else "/" when the app has a hostname of its own, else "/<app>".
func PathPrefix(app, pathLabel string, hostnames []string) string {
	switch {
	case pathLabel != "":
		p := strings.TrimRight(pathLabel, "/")
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		return p
	case len(hostnames) > 0:
		return "/"
	default:
		return "/" + app
	}
}

// Render returns the HTTPRoutes that route in's versions, in a deterministic order: the route
// holding the default rule (if any) first, then the pin shards. An app with nothing live gets
// no routes. The cookie patterns are proven to compile (see check). Errors wrap ErrInvalidInput.
func Render(in Input) ([]gatewayv1.HTTPRoute, error) {
	if in.Plain {
		in.Pinned = nil
	}
	prefix, patterns, err := in.check()
	if err != nil {
		return nil, err
	}
	r := newRenderer(in, prefix)
	if in.Plain {
		if in.Active == nil {
			return []gatewayv1.HTTPRoute{}, nil
		}
		route := r.route(0)
		route.Spec.Rules = []gatewayv1.HTTPRouteRule{r.plainRule(*in.Active)}
		return []gatewayv1.HTTPRoute{route}, nil
	}

	withDefault := in.Active != nil
	var out []gatewayv1.HTTPRoute
	for start, shard := 0, 0; start < len(in.Pinned) || (shard == 0 && withDefault); shard++ {
		first := shard == 0 && withDefault
		end := min(start+r.pinCapacity(first), len(in.Pinned))
		route := r.route(shard)
		route.Spec.Rules = make([]gatewayv1.HTTPRouteRule, 0, r.rulesFor(end-start, first))
		if first {
			route.Spec.Rules = r.appendCarriers(route.Spec.Rules, *in.Active)
		}
		route.Spec.Rules = r.appendPins(route.Spec.Rules, in.Pinned[start:end], patterns[start:end])
		if first {
			route.Spec.Rules = append(route.Spec.Rules, r.defaultRule(*in.Active))
		}
		out = append(out, route)
		start = end
	}
	if out == nil {
		out = []gatewayv1.HTTPRoute{}
	}
	return out, nil
}

// Validate runs the checks Render runs, without rendering: nil means Render(in) succeeds.
// Errors wrap ErrInvalidInput and list every problem found.
func Validate(in Input) error {
	if in.Plain {
		in.Pinned = nil
	}
	_, _, err := in.check()
	return err
}

// check validates in and returns its path prefix and the cookie pattern of each pinned version.
//
// One pattern per cookie name is compiled, not all: a pattern's structure depends on the cookie
// names alone, and a version enters it as the QuoteMeta of a validated label value, a plain
// literal. So the first compile of each cookie name (the app's, and its group's when versions
// of it are in one) proves them all, and rendering 1,000 pins does not compile 1,000 regexes
// (which would be nearly all of its cost).
func (in Input) check() (string, []string, error) {
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	if err := in.validate(prefix); err != nil {
		return "", nil, err
	}
	names := in.pinCookies()
	patterns := make([]string, len(in.Pinned))
	compiled := map[string]bool{}
	for i, b := range in.Pinned {
		name := b.cookie(in.CookieName)
		patterns[i] = CookiePatternAmong(names, name, b.Version)
		if compiled[name] {
			continue
		}
		compiled[name] = true
		if _, err := regexp.Compile(patterns[i]); err != nil {
			return "", nil, fmt.Errorf("%w for %s/%s: cookie pattern for cookie %q: %v", ErrInvalidInput, in.Namespace, in.App, name, err)
		}
	}
	return prefix, patterns, nil
}

// pinCookies are the names of the cookies the pinned versions' rules read, sorted: the app's
// own, its group's, or both while versions of both kinds are pinned (see CookiePatternAmong).
func (in Input) pinCookies() []string {
	var names []string
	for _, b := range in.Pinned {
		if n := b.cookie(in.CookieName); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// renderer holds what every route and rule of one app shares.
type renderer struct {
	in          Input
	prefix      string
	rewrite     bool
	rulesPerPin int // rules holding one pinned version's five matches
	generation  string
}

func newRenderer(in Input, prefix string) *renderer {
	r := &renderer{in: in, prefix: prefix, generation: strconv.FormatInt(in.Generation, 10)}
	r.rewrite = in.RewritePrefix && prefix != "/"
	r.rulesPerPin = 1
	if r.rewrite {
		// The CRD accepts a ReplacePrefixMatch rewrite only on a rule with exactly one match.
		r.rulesPerPin = matchesPerPin
	}
	return r
}

// rulesFor is how many rules a route holds with pins pinned versions, and with the Active
// version's carriers and the default rule if first.
func (r *renderer) rulesFor(pins int, first bool) int {
	n := pins * r.rulesPerPin
	if first {
		n += r.carrierRules() + 1
	}
	return n
}

func (r *renderer) carrierRules() int {
	if r.rewrite {
		return carrierMatches
	}
	return 1
}

// pinCapacity is how many pinned versions fit in one route: within the CRD's rule and match
// limits, and with every rule holding a pin cookie among the last maxCookieRuleBonus rules of
// the route (those rules, and the default rule after them, end every route). A pin's rule holds
// five matches of at most two headers each, far below the per-rule and per-match limits.
func (r *renderer) pinCapacity(first bool) int {
	rules, matches, tail := maxRulesPerRoute, maxMatchesPerRoute, maxCookieRuleBonus
	if first {
		rules -= r.carrierRules() + 1
		matches -= carrierMatches + 1
		tail-- // the default rule comes after the pin cookies
	}
	return min(rules/r.rulesPerPin, matches/matchesPerPin, tail)
}

func (r *renderer) route(shard int) gatewayv1.HTTPRoute {
	route := gatewayv1.HTTPRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        RouteName(r.in.App, shard),
			Namespace:   r.in.Namespace,
			Labels:      Labels(r.in.App),
			Annotations: map[string]string{GenerationAnnotation: r.generation},
		},
	}
	spec := &route.Spec
	spec.ParentRefs = make([]gatewayv1.ParentReference, len(r.in.ParentRefs))
	for i, p := range r.in.ParentRefs {
		spec.ParentRefs[i] = gatewayv1.ParentReference{
			Group:     new(gatewayv1.Group(gatewayv1.GroupName)),
			Kind:      new(gatewayv1.Kind("Gateway")),
			Namespace: new(gatewayv1.Namespace(p.Namespace)),
			Name:      gatewayv1.ObjectName(p.Name),
		}
		if p.SectionName != "" {
			spec.ParentRefs[i].SectionName = new(gatewayv1.SectionName(p.SectionName))
		}
	}
	if len(r.in.Hostnames) > 0 {
		spec.Hostnames = make([]gatewayv1.Hostname, len(r.in.Hostnames))
		for i, h := range r.in.Hostnames {
			spec.Hostnames[i] = gatewayv1.Hostname(h)
		}
	}
	return route
}

// appendCarriers adds the rule(s) that send b's header and query parameter carriers to b,
// without a pin cookie: the Active version's, so that a request naming it by header or query
// parameter reaches it even when its cookie pins another version.
func (r *renderer) appendCarriers(rules []gatewayv1.HTTPRouteRule, b Backend) []gatewayv1.HTTPRouteRule {
	return r.appendRules(rules, b, r.carrierMatches(b.Version))
}

// appendPins adds the pinned versions' rules. Without a rewrite, each version's five matches
// are ORed in one rule. With a rewrite (one match per rule), each version's carrier rules come
// first and the cookie rules last, so that the cookie rules are the ones near the end of the
// route that maxCookieRuleBonus asks for.
func (r *renderer) appendPins(rules []gatewayv1.HTTPRouteRule, pins []Backend, patterns []string) []gatewayv1.HTTPRouteRule {
	if !r.rewrite {
		for i, b := range pins {
			matches := append([]gatewayv1.HTTPRouteMatch{r.cookieMatch(patterns[i])}, r.carrierMatches(b.Version)...)
			rules = r.appendRules(rules, b, matches)
		}
		return rules
	}
	for _, b := range pins {
		rules = r.appendRules(rules, b, r.carrierMatches(b.Version))
	}
	for i, b := range pins {
		rules = r.appendRules(rules, b, []gatewayv1.HTTPRouteMatch{r.cookieMatch(patterns[i])})
	}
	return rules
}

// appendRules adds matches to b as one rule, or as one rule per match when the prefix is
// rewritten.
func (r *renderer) appendRules(rules []gatewayv1.HTTPRouteRule, b Backend, matches []gatewayv1.HTTPRouteMatch) []gatewayv1.HTTPRouteRule {
	if !r.rewrite {
		return append(rules, gatewayv1.HTTPRouteRule{Matches: matches, BackendRefs: backendRefs(b)})
	}
	for i := range matches {
		rules = append(rules, gatewayv1.HTTPRouteRule{
			Matches:     matches[i : i+1 : i+1],
			Filters:     []gatewayv1.HTTPRouteFilter{r.rewriteFilter()},
			BackendRefs: backendRefs(b),
		})
	}
	return rules
}

// cookieMatch is the pin cookie: one header match, the lowest rank a carrier has.
func (r *renderer) cookieMatch(pattern string) gatewayv1.HTTPRouteMatch {
	return gatewayv1.HTTPRouteMatch{
		Path:    r.pathMatch(),
		Headers: []gatewayv1.HTTPHeaderMatch{cookieHeader(pattern)},
	}
}

// carrierMatches are version's per-request carriers, each ranked above every pin cookie:
//
//	x-deployment-id             1 header           (no Cookie header: nothing to outrank)
//	x-deployment-id + Cookie    2 headers          (beats a pin cookie's 1 header)
//	dpl                         1 query parameter  (no Cookie header)
//	dpl + Cookie                1 header, 1 query  (beats a pin cookie's 1 header, 0 queries)
//
// and the header ones above the query ones whether or not a Cookie header is sent.
func (r *renderer) carrierMatches(version string) []gatewayv1.HTTPRouteMatch {
	header := func() gatewayv1.HTTPHeaderMatch {
		return gatewayv1.HTTPHeaderMatch{Type: new(gatewayv1.HeaderMatchExact), Name: DeploymentIDHeader, Value: version}
	}
	query := func() []gatewayv1.HTTPQueryParamMatch {
		return []gatewayv1.HTTPQueryParamMatch{{Type: new(gatewayv1.QueryParamMatchExact), Name: DeploymentIDQuery, Value: version}}
	}
	return []gatewayv1.HTTPRouteMatch{
		{Path: r.pathMatch(), Headers: []gatewayv1.HTTPHeaderMatch{header()}},
		{Path: r.pathMatch(), Headers: []gatewayv1.HTTPHeaderMatch{header(), cookieHeader(AnyCookie)}},
		{Path: r.pathMatch(), QueryParams: query()},
		{Path: r.pathMatch(), Headers: []gatewayv1.HTTPHeaderMatch{cookieHeader(AnyCookie)}, QueryParams: query()},
	}
}

func cookieHeader(pattern string) gatewayv1.HTTPHeaderMatch {
	return gatewayv1.HTTPHeaderMatch{Type: new(gatewayv1.HeaderMatchRegularExpression), Name: "Cookie", Value: pattern}
}

// defaultRule sends everything else under the prefix to the Active version and pins the
// session to it with exactly one Set-Cookie.
func (r *renderer) defaultRule(active Backend) gatewayv1.HTTPRouteRule {
	rule := gatewayv1.HTTPRouteRule{
		Matches: []gatewayv1.HTTPRouteMatch{{Path: r.pathMatch()}},
		Filters: []gatewayv1.HTTPRouteFilter{{
			Type: gatewayv1.HTTPRouteFilterResponseHeaderModifier,
			ResponseHeaderModifier: &gatewayv1.HTTPHeaderFilter{
				Add: []gatewayv1.HTTPHeader{{
					Name:  "Set-Cookie",
					Value: SetCookie(active.cookie(r.in.CookieName), active.Version, cmp.Or(active.CookiePath, r.prefix), r.in.CookieMaxAge),
				}},
			},
		}},
		BackendRefs: backendRefs(active),
	}
	if r.rewrite {
		rule.Filters = append(rule.Filters, r.rewriteFilter())
	}
	return rule
}

// plainRule sends everything under the prefix to the Active version and sets no cookie: the
// one rule of an app whose skew protection is off.
func (r *renderer) plainRule(active Backend) gatewayv1.HTTPRouteRule {
	rule := gatewayv1.HTTPRouteRule{
		Matches:     []gatewayv1.HTTPRouteMatch{{Path: r.pathMatch()}},
		BackendRefs: backendRefs(active),
	}
	if r.rewrite {
		rule.Filters = []gatewayv1.HTTPRouteFilter{r.rewriteFilter()}
	}
	return rule
}

// pathMatch is written out in full, defaults included, so that what the API server stores
// equals what was rendered and a repeated write is recognised as a no-op.
func (r *renderer) pathMatch() *gatewayv1.HTTPPathMatch {
	return &gatewayv1.HTTPPathMatch{Type: new(gatewayv1.PathMatchPathPrefix), Value: new(r.prefix)}
}

func (r *renderer) rewriteFilter() gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{
		Type: gatewayv1.HTTPRouteFilterURLRewrite,
		URLRewrite: &gatewayv1.HTTPURLRewriteFilter{
			Path: &gatewayv1.HTTPPathModifier{
				Type:               gatewayv1.PrefixMatchHTTPPathModifier,
				ReplacePrefixMatch: new("/"),
			},
		},
	}
}

func backendRefs(b Backend) []gatewayv1.HTTPBackendRef {
	return []gatewayv1.HTTPBackendRef{{
		BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{
				Group: new(gatewayv1.Group("")),
				Kind:  new(gatewayv1.Kind("Service")),
				Name:  gatewayv1.ObjectName(b.ServiceName),
				Port:  new(b.Port),
			},
			Weight: new(int32(1)),
		},
	}}
}
