package routes

import (
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// checkInvariants asserts what must hold for every rendering, whatever the case: the CRD's
// limits, one default rule, fencing metadata, and that a simulated gateway routes every carrier
// of every pinned version to it under both regex matching modes.
func checkInvariants(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	if in.Active == nil && len(in.Pinned) == 0 {
		assert.Empty(t, got)
		return
	}
	require.NotEmpty(t, got)

	defaults := 0
	var pinned []string
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
			assert.LessOrEqual(t, len(rule.Matches), 64, "%s rule %d", r.Name, ri)
			for _, m := range rule.Matches {
				require.NotNil(t, m.Path)
				assert.Equal(t, prefix, *m.Path.Value)
				for _, h := range m.Headers {
					if *h.Type == gatewayv1.HeaderMatchRegularExpression {
						_, err := regexp.Compile(h.Value)
						assert.NoError(t, err, h.Value)
					}
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
			}
		}
		assert.LessOrEqual(t, matches, maxMatchesPerRoute, r.Name)
		pinned = append(pinned, pinVersions(r)...)
	}
	want := make([]string, len(in.Pinned))
	for i, b := range in.Pinned {
		want[i] = b.Version
	}
	assert.Equal(t, want, append([]string{}, pinned...), "every pinned version exactly once, in registry order")
	if in.Active != nil {
		assert.Equal(t, 1, defaults, "exactly one default rule")
	} else {
		assert.Zero(t, defaults, "no Active version, no default rule")
	}
	checkRouting(t, in, got)
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
	assert.Equal(t, in.CookieName+"="+in.Active.Version+"; Path="+prefix+"; Max-Age="+strconv.FormatInt(in.CookieMaxAge, 10)+
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

// pinVersions lists the versions pinned by r, in rule order.
func pinVersions(r gatewayv1.HTTPRoute) []string {
	var out []string
	for _, rule := range r.Spec.Rules {
		for _, m := range rule.Matches {
			for _, h := range m.Headers {
				if h.Name == DeploymentIDHeader {
					out = append(out, h.Value)
				}
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

type request struct {
	cookie, header, query string
}

// checkRouting sends the carriers of every pinned version, and requests without a usable
// carrier, through a simulated gateway.
func checkRouting(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	active := ""
	if in.Active != nil {
		active = in.Active.ServiceName
	}
	c := in.CookieName
	services := make(map[string]string, len(in.Pinned))
	for _, b := range in.Pinned {
		services[b.Version] = b.ServiceName
	}
	sample := in.Pinned
	if len(sample) > 40 { // keep the quadratic simulation fast: the ends and a spread between
		sample = nil
		for i := 0; i < len(in.Pinned); i += len(in.Pinned) / 20 {
			sample = append(sample, in.Pinned[i])
		}
		sample = append(sample, in.Pinned[len(in.Pinned)-1])
	}
	for mode, match := range regexModes {
		for _, b := range sample {
			v := b.Version
			for _, req := range []request{
				{cookie: c + "=" + v},
				{cookie: "a=1; " + c + "=" + v + "; b=2"},
				{cookie: "a=1;" + c + "=" + v},
				{header: v},
				{query: v},
			} {
				assert.Equal(t, b.ServiceName, resolve(t, got, req, match), "%s %+v", mode, req)
			}
			// v+"0" is another version's carrier or nobody's: it must never reach v.
			longer := active
			if s, ok := services[v+"0"]; ok {
				longer = s
			}
			for _, req := range []request{{cookie: c + "=" + v + "0"}, {header: v + "0"}, {query: v + "0"}} {
				assert.Equal(t, longer, resolve(t, got, req, match), "%s %+v", mode, req)
			}
			for _, req := range []request{{cookie: "x" + c + "=" + v}, {cookie: "a=" + c + "=" + v}} {
				assert.Equal(t, active, resolve(t, got, req, match), "%s %+v must fall through", mode, req)
			}
		}
		assert.Equal(t, active, resolve(t, got, request{}, match), "%s: no carrier", mode)
		assert.Equal(t, active, resolve(t, got, request{cookie: c + "=expired-1"}, match), "%s: unknown version", mode)
	}
}

// resolve picks the backend the way the Gateway API orders matches (all of ours share one path
// prefix): most header matches, then most query matches; among equals, the first route, then the
// first rule. It fails the test if equally ranked matches in different routes disagree, since
// Traefik breaks such ties at random.
func resolve(t *testing.T, routes []gatewayv1.HTTPRoute, req request, regexMatch func(p, v string) bool) string {
	t.Helper()
	type hit struct {
		route, headers, queries int
		service                 string
	}
	var best []hit
	for ri, r := range routes {
		for _, rule := range r.Spec.Rules {
			for _, m := range rule.Matches {
				if !matchRequest(m, req, regexMatch) {
					continue
				}
				h := hit{ri, len(m.Headers), len(m.QueryParams), string(rule.BackendRefs[0].Name)}
				switch {
				case len(best) == 0, h.headers > best[0].headers,
					h.headers == best[0].headers && h.queries > best[0].queries:
					best = []hit{h}
				case h.headers == best[0].headers && h.queries == best[0].queries:
					best = append(best, h)
				}
			}
		}
	}
	if len(best) == 0 {
		return ""
	}
	for _, h := range best[1:] {
		if h.route != best[0].route {
			assert.Equal(t, best[0].service, h.service, "equal-precedence matches in two routes disagree for %+v", req)
		}
	}
	return best[0].service
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
