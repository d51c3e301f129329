package api

import (
	"context"
	"net/http"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/registry"
)

// scope is what a management route is authorized against.
type scope int

const (
	scopeCluster scope = iota // no namespace: the answer is filtered by namespace
	scopeApp                  // {namespace}/{app}: namespace and resource name of the review
)

// insecureIdentity acts when API authentication is off.
var insecureIdentity = auth.Identity{Username: "anonymous (PLT_SKEW_INSECURE_SKIP_API_AUTH)"}

// allNamespacesKey marks a request whose caller may list in every namespace.
type allNamespacesKey struct{}

// authorized wraps a management handler: bearer token → TokenReview → SubjectAccessReview of
// verb on versions.skewguard.dev in the app's namespace, with the app as the resource name.
func (s *Server) authorized(verb string, sc scope, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := auth.Attributes{Verb: verb}
		if verb == auth.VerbUpdate && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, CodeForeignOrigin, "a change sent from the page of another origin (%s) is refused", r.Header.Get("Origin"))
			return
		}
		if sc == scopeApp {
			app, ok := appRef(w, r)
			if !ok {
				return
			}
			attrs.Namespace, attrs.Name = app.Namespace, app.Name
		}
		if s.opts.InsecureSkipAPIAuth {
			ctx := context.WithValue(r.Context(), callerKey{}, insecureIdentity)
			next(w, r.WithContext(context.WithValue(ctx, allNamespacesKey{}, true)))
			return
		}
		id, ok := s.authenticate(w, r, s.opts.Authenticator)
		if !ok {
			return
		}
		d, err := s.opts.Authorizer.Authorize(r.Context(), id, attrs)
		if err != nil {
			s.log.Error("access review failed", "error", err)
			writeError(w, http.StatusServiceUnavailable, CodeAuthUnavailable, "access could not be checked; retry later")
			return
		}
		ctx := context.WithValue(r.Context(), callerKey{}, id)
		if sc == scopeCluster {
			// Denied cluster-wide, the caller still sees the namespaces it may list in.
			next(w, r.WithContext(context.WithValue(ctx, allNamespacesKey{}, d.Allowed)))
			return
		}
		if !d.Allowed {
			writeError(w, http.StatusForbidden, CodeForbidden, "%s may not %s %s.%s of %s in namespace %s",
				id.Username, verb, auth.Resource, auth.Group, attrs.Name, attrs.Namespace)
			return
		}
		next(w, r.WithContext(ctx))
	})
}

// visibleNamespaces returns which of the apps' namespaces the caller may list versions in.
func (s *Server) visibleNamespaces(r *http.Request, apps []registry.Application) (func(string) bool, error) {
	if all, _ := r.Context().Value(allNamespacesKey{}).(bool); all {
		return func(string) bool { return true }, nil
	}
	id := caller(r.Context())
	allowed := map[string]bool{}
	for _, a := range apps {
		if _, seen := allowed[a.Namespace]; seen {
			continue
		}
		d, err := s.opts.Authorizer.Authorize(r.Context(), id, auth.Attributes{Verb: auth.VerbList, Namespace: a.Namespace})
		if err != nil {
			return nil, err
		}
		allowed[a.Namespace] = d.Allowed
	}
	return func(ns string) bool { return allowed[ns] }, nil
}
