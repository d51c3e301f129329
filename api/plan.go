package api

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/skewguard/skewguard/internal/registry"
)

// CodePlanNotFound: the version has no pending plan (its app is not in advise mode, or the
// cluster already shows every step applied).
const CodePlanNotFound = "plan_not_found" // 404

// PlanReader is the registry's reading of advise mode's plans; *registry.Store implements it.
type PlanReader interface {
	PendingPlan(ctx context.Context, ref registry.VersionRef) (registry.Plan, error)
}

// versionPlan answers GET .../versions/{version}/plan: the version's pending plan as JSON, or
// as multi-document YAML for `kubectl apply -f -` with ?format=yaml or Accept: application/yaml.
func (s *Server) versionPlan(w http.ResponseWriter, r *http.Request) {
	ref, ok := versionRef(w, r)
	if !ok {
		return
	}
	asYAML, ok := planFormat(w, r)
	if !ok {
		return
	}
	plans, ok := s.opts.Registry.(PlanReader)
	if !ok {
		writeError(w, http.StatusNotFound, CodePlanNotFound, "this server keeps no plans")
		return
	}
	p, err := plans.PendingPlan(r.Context(), ref)
	if errors.Is(err, registry.ErrNotFound) {
		writeError(w, http.StatusNotFound, CodePlanNotFound, "version %s has no pending plan", ref)
		return
	}
	if err != nil {
		s.registryError(w, err)
		return
	}
	if !asYAML {
		writeJSON(w, http.StatusOK, p)
		return
	}
	doc, err := p.YAML()
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

// planFormat reads ?format= (json or yaml) and, without it, the Accept header.
func planFormat(w http.ResponseWriter, r *http.Request) (asYAML, ok bool) {
	switch f := r.URL.Query().Get("format"); f {
	case "yaml":
		return true, true
	case "json":
		return false, true
	case "":
	default:
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "format must be json or yaml, got %q", f)
		return false, false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml") {
			return true, true
		}
	}
	return false, true
}
