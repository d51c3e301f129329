// Package routes owns the translation of one application's routable versions into Gateway API
// HTTPRoutes. It is a pure function of its Input: no clients, no clocks, no I/O, so the same
// registry snapshot always yields the same routes and every shape is reviewed as YAML in
// testdata.
//
// # Which version a request reaches
//
// A request names a version by its x-deployment-id header, its dpl query parameter or its
// __plt_dpl cookie, in that order of authority: the header and the query parameter travel with
// one request (a tab's own build, Next.js's deploymentId) while the cookie is shared by every
// tab of the session. A request naming none of the live versions goes to the Active version
// and gets the cookie. The order is enforced by the Gateway API's match precedence alone (after
// the path, which all our matches share: the most header matches win, then the most query
// parameter matches), never by route age or rule order, which gateways implement unevenly.
// Every version gets these matches, all under the app's path prefix:
//
//	(a) Cookie ~ CookiePattern(v)                     1 header             pinned versions only
//	(b) x-deployment-id = v                           1 header
//	(c) x-deployment-id = v, Cookie ~ AnyCookie       2 headers
//	(d) dpl = v                                       0 headers, 1 query
//	(e) dpl = v, Cookie ~ AnyCookie                   1 header,  1 query
//	default: path only, Set-Cookie Active             0 headers            the Active version
//
// With a Cookie header, a header carrier matches (c) [2 headers] and beats any query carrier's
// (e) [1, 1] and any pin cookie's (a) [1, 0]; a query carrier's (e) beats any pin cookie's (a).
// Without one, (a), (c) and (e) cannot match: (b) [1, 0] beats (d) [0, 1]. A pin cookie beats the
// default [0, 0]. Two different versions never tie: each carrier names one version, and the
// cookie pattern matches only for the FIRST cookie of our name (see CookiePattern). The Active
// version gets (b)-(e) too, so that naming it by header or query parameter beats an older pin
// cookie; (a) it does not need, since the default rule serves it. Only the default rule sets
// the cookie: a request that names a version by any carrier is never re-pinned.
//
// # Shape, and the limits that set it
//
//   - Without a prefix rewrite, each pinned version is one rule with its five matches ORed, and
//     the Active version's carriers one rule with four.
//   - With a rewrite, the CRD only accepts a ReplacePrefixMatch rewrite on a rule with exactly
//     one match, so every match is a rule of its own: five rules per pinned version.
//   - The CRD caps a route at 16 rules and 128 matches (64 per rule, 16 headers per match).
//     Traefik adds one more bound: it ranks a match by 100 per header match + 10 per query
//     match + (rules − index) for its rule's position, so a pin cookie (100) placed 10 or more
//     rules above another version's (e) (110) would outrank it. Every rule holding a pin cookie
//     is therefore among the last 10 rules of its route: 9 pinned versions beside the default
//     rule and 10 per further route without a rewrite, 2 and 3 with one (the rule limit binds).
//   - Pins that do not fit go to further routes on the same parents, hostnames and prefix. More
//     routes cost nothing in correctness: precedence is decided across all routes alike.
//   - Only the first route holds the default rule and the Active version's carriers: Traefik
//     breaks ties between equal matches of different routes at random, so two catch-alls would
//     route new sessions by dice roll.
//   - The default rule is the last rule of its route. Kept last, its Traefik bonus is 1, and it
//     ranks below every carrier, including a query-only one in another route.
//   - The cookie pattern is anchored at both ends so that it means the same under full-match
//     (Envoy) and search (Go, Traefik, NGINX) semantics.
package routes
