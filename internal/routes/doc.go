// Package routes owns the translation of one application's routable versions into Gateway API
// HTTPRoutes. It is a pure function of its Input: no clients, no clocks, no I/O, so the same
// registry snapshot always yields the same routes and every shape is reviewed as YAML in
// testdata.
//
// The shape, and why:
//   - One rule per pinned version whose matches are ORed (cookie, x-deployment-id header, dpl
//     query parameter). Gateway API caps a route at 16 rules and 128 matches, so compacting a
//     pin into one rule is what lets 15 pins share the route that carries the default rule.
//   - When the path prefix is rewritten for the backend, the CRD only accepts a ReplacePrefixMatch
//     rewrite on a rule with exactly one match, so each pin then needs three one-match rules.
//   - Pins that do not fit go to further routes on the same parents, hostnames and prefix.
//     Only the first route holds the default rule: Traefik breaks ties between equal rules of
//     different routes at random, so two catch-alls would route new sessions by dice roll.
//   - The default rule is the last rule of its route. Traefik adds (rules − index) to each
//     rule's priority; kept last, the default rule ranks below every pin, including a query-only
//     pin in another route.
//   - The cookie pattern is anchored at both ends so that it means the same under full-match
//     (Envoy) and search (Go, Traefik, NGINX) semantics.
package routes
