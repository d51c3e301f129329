package routes

import (
	"fmt"
	"regexp"
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

// Per-route limits enforced by the HTTPRoute CRD (gateway-api v1.6.3).
const (
	maxRulesPerRoute   = 16
	maxMatchesPerRoute = 128
	matchesPerPin      = 3 // cookie, header, query parameter
)

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
// no routes. Every cookie pattern is compiled before it is returned. Errors wrap ErrInvalidInput.
func Render(in Input) ([]gatewayv1.HTTPRoute, error) {
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	if err := in.validate(prefix); err != nil {
		return nil, err
	}
	r := newRenderer(in, prefix)
	patterns := make([]string, len(in.Pinned))
	for i, b := range in.Pinned {
		patterns[i] = CookiePattern(in.CookieName, b.Version)
		if _, err := regexp.Compile(patterns[i]); err != nil {
			return nil, fmt.Errorf("%w for %s/%s: cookie pattern for version %q: %v", ErrInvalidInput, in.Namespace, in.App, b.Version, err)
		}
	}

	withDefault := in.Active != nil
	var out []gatewayv1.HTTPRoute
	for start, shard := 0, 0; start < len(in.Pinned) || (shard == 0 && withDefault); shard++ {
		hasDefault := shard == 0 && withDefault
		end := min(start+r.pinCapacity(hasDefault), len(in.Pinned))
		route := r.route(shard)
		route.Spec.Rules = make([]gatewayv1.HTTPRouteRule, 0, (end-start)*r.rulesPerPin+1)
		for i := start; i < end; i++ {
			route.Spec.Rules = r.appendPin(route.Spec.Rules, in.Pinned[i], patterns[i])
		}
		if hasDefault {
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

// renderer holds what every route and rule of one app shares.
type renderer struct {
	in          Input
	prefix      string
	rewrite     bool
	rulesPerPin int
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

// pinCapacity is how many pins fit in one route under both the rule and the match limits
// (a pin's rule holds 3 matches, far below the 64 allowed per rule).
func (r *renderer) pinCapacity(withDefault bool) int {
	rules, matches := maxRulesPerRoute, maxMatchesPerRoute
	if withDefault {
		rules, matches = rules-1, matches-1
	}
	return min(rules/r.rulesPerPin, matches/matchesPerPin)
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

// appendPin adds b's pin: its three matches ORed in one rule, or three one-match rules when
// the prefix is rewritten.
func (r *renderer) appendPin(rules []gatewayv1.HTTPRouteRule, b Backend, pattern string) []gatewayv1.HTTPRouteRule {
	matches := []gatewayv1.HTTPRouteMatch{
		{
			Path: r.pathMatch(),
			Headers: []gatewayv1.HTTPHeaderMatch{{
				Type:  new(gatewayv1.HeaderMatchRegularExpression),
				Name:  "Cookie",
				Value: pattern,
			}},
		},
		{
			Path: r.pathMatch(),
			Headers: []gatewayv1.HTTPHeaderMatch{{
				Type:  new(gatewayv1.HeaderMatchExact),
				Name:  DeploymentIDHeader,
				Value: b.Version,
			}},
		},
		{
			Path: r.pathMatch(),
			QueryParams: []gatewayv1.HTTPQueryParamMatch{{
				Type:  new(gatewayv1.QueryParamMatchExact),
				Name:  DeploymentIDQuery,
				Value: b.Version,
			}},
		},
	}
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
					Value: SetCookie(r.in.CookieName, active.Version, r.prefix, r.in.CookieMaxAge),
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
