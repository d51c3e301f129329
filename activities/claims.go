package activities

import (
	"context"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// RouteLister lists the HTTPRoutes of the whole cluster (an informer's lister in the worker).
type RouteLister func() ([]*gatewayv1.HTTPRoute, error)

// ValidateClaim checks the host and path prefix v would claim against the operator's allowlist:
// nil, a *claims.NotAllowedError naming the namespace, app, host, path and the allowlist's
// ConfigMap, or claims.ErrNotSynced while the allowlist has not been read (transient).
// Detection calls it so that a refused version is Failed at once, visibly.
func ValidateClaim(allow *claims.Allowlist, v registry.Version) error {
	c := ClaimOf(v)
	return allow.Check(v.Namespace, v.App, c.Host, c.Path)
}

// checkAllowed refuses, at the flip, a version whose claim the allowlist does not allow (now:
// the allowlist may have narrowed since detection), for the operations that route the version:
// activate, promote and stage. A version already in the state the operation leads to (a repeat
// of a step that succeeded) is not checked again; expire and fail take no claim.
func (a *Activities) checkAllowed(ctx context.Context, ref registry.VersionRef, op registry.Op) error {
	switch op {
	case registry.OpActivate, registry.OpPromote, registry.OpStage:
	default:
		return nil
	}
	v, err := a.Registry.GetVersion(ctx, ref)
	if err != nil {
		return err
	}
	switch {
	case v.State == registry.Active,
		op == registry.OpActivate && v.State == registry.Draining, // activated, then superseded
		op == registry.OpStage && v.State == registry.Staged:
		return nil
	}
	return ValidateClaim(a.Claims, v)
}

// checkClaim refuses a host and path prefix that an HTTPRoute skewguard does not write for
// this app already serves on one of skewguard's Gateways: another team's route, another
// skewguard's, or a hand-written one. Gateway API gives equal host and path matches to the
// oldest route, so the newcomer would take no traffic (or, if older, steal it): the claim is
// refused for the newcomer instead, visibly. With no lister configured, only the registry's own
// claims are checked.
func (a *Activities) checkClaim(app registry.AppRef, c registry.Claim) error {
	if a.AllRoutes == nil {
		return nil
	}
	list, err := a.AllRoutes()
	if err != nil {
		return err
	}
	for _, r := range list {
		if r.Namespace == app.Namespace && r.Labels[routes.ManagedByLabel] == routes.ManagedByValue &&
			r.Labels[routes.AppLabel] == app.Name {
			continue // the app's own routes
		}
		if a.attachedToOurGateways(r) && hostsOverlap(r.Spec.Hostnames, c.Host) && servesPrefix(r, c.Path) {
			return &registry.ClaimConflictError{Claim: c, Route: r.Namespace + "/" + r.Name}
		}
	}
	return nil
}

func (a *Activities) attachedToOurGateways(r *gatewayv1.HTTPRoute) bool {
	for _, p := range r.Spec.ParentRefs {
		if p.Group != nil && *p.Group != gatewayv1.GroupName || p.Kind != nil && *p.Kind != "Gateway" {
			continue
		}
		ns := r.Namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		for _, ours := range a.Config.ParentRefs {
			if ours.Namespace == ns && ours.Name == string(p.Name) {
				return true
			}
		}
	}
	return false
}

// hostsOverlap: a route without hostnames, or a claim without a host, serves every host.
func hostsOverlap(hostnames []gatewayv1.Hostname, host string) bool {
	if len(hostnames) == 0 || host == "" {
		return true
	}
	for _, h := range hostnames {
		if hostMatches(string(h), host) || hostMatches(host, string(h)) {
			return true
		}
	}
	return false
}

// hostMatches reports whether pattern (possibly "*.example.com") matches host.
func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}

// servesPrefix reports whether one of r's rules matches exactly the path prefix prefix (a rule
// without matches, or a match without a path, matches the prefix "/").
func servesPrefix(r *gatewayv1.HTTPRoute, prefix string) bool {
	norm := func(p string) string {
		if p != "/" {
			p = strings.TrimRight(p, "/")
		}
		return p
	}
	prefix = norm(prefix)
	for _, rule := range r.Spec.Rules {
		if len(rule.Matches) == 0 && prefix == "/" {
			return true
		}
		for _, m := range rule.Matches {
			if m.Path == nil || m.Path.Value == nil {
				if prefix == "/" {
					return true
				}
				continue
			}
			if m.Path.Type != nil && *m.Path.Type != gatewayv1.PathMatchPathPrefix {
				continue
			}
			if norm(*m.Path.Value) == prefix {
				return true
			}
		}
	}
	return false
}
