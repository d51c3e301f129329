package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/skewguard/skewguard/internal/apiwire"
	"github.com/skewguard/skewguard/internal/registry"
)

// Path parameters follow the Kubernetes rules of what they name, so anything else is refused
// before it reaches the registry, Temporal or a SubjectAccessReview.

// The checks are internal/apiwire's (fuzzed there, in a small binary); a namespace, an app and
// a version are held to internal/validate's rules, the configuration's and the renderer's.

// appRef reads and checks {namespace} and {app}.
func appRef(w http.ResponseWriter, r *http.Request) (registry.AppRef, bool) {
	vars := mux.Vars(r)
	ref := registry.AppRef{Namespace: vars["namespace"], Name: vars["app"]}
	if p := apiwire.CheckAppPath(ref.Namespace, ref.Name); p != nil {
		writeProblem(w, p)
		return ref, false
	}
	return ref, true
}

// versionRef reads and checks {namespace}, {app} and {version}.
func versionRef(w http.ResponseWriter, r *http.Request) (registry.VersionRef, bool) {
	vars := mux.Vars(r)
	ns, app, label := vars["namespace"], vars["app"], vars["version"]
	if p := apiwire.CheckVersionPath(ns, app, label); p != nil {
		writeProblem(w, p)
		return registry.VersionRef{}, false
	}
	return registry.VersionRef{Namespace: ns, App: app, Label: label}, true
}
