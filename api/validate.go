package api

import (
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/skewguard/skewguard/internal/registry"
)

// Path parameters follow the Kubernetes rules of what they name, so anything else is refused
// before it reaches the registry, Temporal or a SubjectAccessReview.

// validDNSLabel: a namespace name (RFC 1123 label).
func validDNSLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validDNSSubdomain: a pod name (RFC 1123 subdomain).
func validDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '.') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validLabelValue: an app name or a version (a non-empty Kubernetes label value).
func validLabelValue(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '_' && c != '.') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validOpaqueID: an applicationId or runtimeId the agent echoes back.
func validOpaqueID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// appRef reads and checks {namespace} and {app}.
func appRef(w http.ResponseWriter, r *http.Request) (registry.AppRef, bool) {
	vars := mux.Vars(r)
	ref := registry.AppRef{Namespace: vars["namespace"], Name: vars["app"]}
	if !validDNSLabel(ref.Namespace) {
		writeError(w, http.StatusBadRequest, CodeInvalidPath, "%q is not a namespace name", ref.Namespace)
		return ref, false
	}
	if !validLabelValue(ref.Name) {
		writeError(w, http.StatusBadRequest, CodeInvalidPath, "%q is not an app name (a Kubernetes label value)", ref.Name)
		return ref, false
	}
	return ref, true
}

// versionRef reads and checks {namespace}, {app} and {version}.
func versionRef(w http.ResponseWriter, r *http.Request) (registry.VersionRef, bool) {
	app, ok := appRef(w, r)
	if !ok {
		return registry.VersionRef{}, false
	}
	label := mux.Vars(r)["version"]
	if !validLabelValue(label) {
		writeError(w, http.StatusBadRequest, CodeInvalidPath, "%q is not a version (a Kubernetes label value)", label)
		return registry.VersionRef{}, false
	}
	return registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: label}, true
}

func checkVersionLabel(label string) error {
	if !validLabelValue(label) {
		return fmt.Errorf("%q is not a version (a Kubernetes label value)", label)
	}
	return nil
}
