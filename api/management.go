package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skewguard/skewguard/internal/apiwire"
	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// Limits of the management requests.
const (
	maxReasonLength = 1024
	maxBulkVersions = 100
	maxAuditLimit   = 1000
)

// AppList is the answer of GET /api/v1/apps.
type AppList struct {
	Apps []registry.Application `json:"apps"`
}

// AuditList is the answer of the audit endpoints, oldest entry first.
type AuditList struct {
	Entries []registry.AuditEntry `json:"entries"`
}

// ActionBody is the optional body of promote, expire, approve and reject.
type ActionBody = apiwire.ActionBody

// ActionOutcome is the answer of one action. An action not done within the wait
// (PLT_SKEW_ACTION_WAIT_MS) is pending: OK is false, Code is action_pending, and UpdateID, Stage
// and Link say what to poll; alone, it is answered 202 with Link in Location.
type ActionOutcome struct {
	Version string         `json:"version"`
	OK      bool           `json:"ok"`
	State   registry.State `json:"state,omitempty"`
	Message string         `json:"message,omitempty"`
	Error   *Error         `json:"error,omitempty"`

	Code     string `json:"code,omitempty"`     // CodeActionPending when pending
	Action   string `json:"action,omitempty"`   // the action (promote, expire, …), when pending
	UpdateID string `json:"updateId,omitempty"` // the workflow Update's ID, when pending
	Stage    string `json:"stage,omitempty"`    // workflows.StageAccepted or StageSent, when pending
	Link     string `json:"link,omitempty"`     // the version resource, whose state tells the end
}

// Pending reports whether the action was not done within the wait and goes on.
func (o ActionOutcome) Pending() bool { return o.Code == CodeActionPending }

// BulkExpireBody is the body of POST …/expire.
type BulkExpireBody = apiwire.BulkExpireBody

// ThresholdBody is the body of POST …/threshold: expire every live version deployed longer ago
// than OlderThan (a Go duration, or whole days like "7d"), except the Active one.
type ThresholdBody = apiwire.ThresholdBody

// Skipped is a live version a threshold left alone, and why.
type Skipped struct {
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// BulkResult is the answer of bulk expire and threshold. Failed counts the versions whose
// action failed, Pending those not done within the wait (they go on); the status is 200
// either way, the details are per version.
type BulkResult struct {
	Cutoff  *time.Time      `json:"cutoff,omitempty"`
	DryRun  bool            `json:"dryRun,omitempty"`
	Results []ActionOutcome `json:"results"`
	Skipped []Skipped       `json:"skipped,omitempty"`
	Failed  int             `json:"failed"`
	Pending int             `json:"pending,omitempty"`
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	apps, err := s.opts.Registry.ListApps(r.Context())
	if err != nil {
		s.registryError(w, err)
		return
	}
	visible, err := s.visibleNamespaces(r, apps)
	if err != nil {
		s.log.Error("authorize list of apps", "error", err)
		writeError(w, http.StatusServiceUnavailable, CodeAuthUnavailable, "access could not be checked; retry later")
		return
	}
	out := AppList{Apps: []registry.Application{}}
	for _, a := range apps {
		if visible(a.Namespace) {
			out.Apps = append(out.Apps, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) {
	if _, v, ok := s.lookupVersion(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

// lookupVersion reads the path's version from the registry; on a bad path or a registry error it
// answers the request and returns false.
func (s *Server) lookupVersion(w http.ResponseWriter, r *http.Request) (registry.VersionRef, registry.Version, bool) {
	ref, ok := versionRef(w, r)
	if !ok {
		return ref, registry.Version{}, false
	}
	v, err := s.opts.Registry.GetVersion(r.Context(), ref)
	if err != nil {
		s.registryError(w, err)
		return ref, registry.Version{}, false
	}
	return ref, v, true
}

func (s *Server) versionAudit(w http.ResponseWriter, r *http.Request) {
	ref, ok := versionRef(w, r)
	if !ok {
		return
	}
	entries, err := s.opts.Registry.Audit(r.Context(), ref)
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, AuditList{Entries: nonNil(entries)})
}

func (s *Server) appAudit(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	limit := registry.DefaultAuditLimit
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > maxAuditLimit {
			writeError(w, http.StatusBadRequest, CodeInvalidRequest, "limit must be a whole number from 1 to %d", maxAuditLimit)
			return
		}
		limit = n
	}
	entries, err := s.opts.Registry.AppAudit(r.Context(), app, limit)
	if err != nil {
		s.registryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, AuditList{Entries: nonNil(entries)})
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	var p registry.Policy
	body, ok := readStrict(w, r, apiBodyLimit)
	if !ok {
		return
	}
	if prob := apiwire.DecodeStrict(body, &p, false); prob != nil {
		writeProblem(w, prob)
		return
	}
	id := caller(r.Context())
	actor := registry.Actor{Type: registry.ActorUser, ID: id.Username, Name: id.Username}
	live, err := s.opts.Registry.PutPolicy(r.Context(), app, p, actor)
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) {
			writeError(w, http.StatusBadRequest, CodeInvalidPolicy, "%v", err)
			return
		}
		s.registryError(w, err)
		return
	}
	s.log.Info("policy replaced", "app", app.String(), "by", id.Username, "liveVersions", len(live))
	// The new values apply at once: every live lifecycle of the app reloads them. The policy is
	// stored either way; a lifecycle that misses the signal reads it at its next state change.
	for _, v := range live {
		if err := s.opts.Lifecycle.PolicyChanged(r.Context(), v.Ref(), actor); err != nil {
			s.log.Warn("could not tell a version's lifecycle about the new policy", "version", v.Ref().String(), "error", err)
		}
	}
	writeJSON(w, http.StatusOK, p)
}

// act is POST …/versions/{version}/<action>.
func (s *Server) act(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref, ok := versionRef(w, r)
		if !ok {
			return
		}
		raw, ok := readStrict(w, r, apiBodyLimit)
		if !ok {
			return
		}
		body, p := apiwire.ParseActionBody(raw)
		if p != nil {
			writeProblem(w, p)
			return
		}
		out, status := s.runAction(r.Context(), ref, action, body.Reason)
		switch {
		case out.Pending():
			w.Header().Set("Location", out.Link)
			writeJSON(w, status, out)
		case !out.OK:
			writeJSON(w, status, out.Error)
		default:
			writeJSON(w, http.StatusOK, out)
		}
	}
}

func (s *Server) bulkExpire(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	raw, ok := readStrict(w, r, apiBodyLimit)
	if !ok {
		return
	}
	body, p := apiwire.ParseBulkExpireBody(raw)
	if p != nil {
		writeProblem(w, p)
		return
	}
	res := BulkResult{Results: []ActionOutcome{}}
	for _, label := range body.Versions {
		ref := registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: label}
		out, _ := s.runAction(r.Context(), ref, workflows.UpdateExpire, body.Reason)
		res.add(out)
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) threshold(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	raw, ok := readStrict(w, r, apiBodyLimit)
	if !ok {
		return
	}
	body, age, p := apiwire.ParseThresholdBody(raw)
	if p != nil {
		writeProblem(w, p)
		return
	}
	vs, err := s.opts.Registry.ListVersions(r.Context(), app)
	if err != nil {
		s.registryError(w, err)
		return
	}
	cutoff := time.Now().Add(-age).UTC()
	res := BulkResult{Cutoff: &cutoff, DryRun: body.DryRun, Results: []ActionOutcome{}}
	reason := body.Reason
	if reason == "" {
		reason = "threshold: deployed more than " + body.OlderThan + " ago"
	}
	for _, v := range vs {
		switch {
		case !v.State.Live() || !v.PendingAt.Before(cutoff):
			continue
		case v.State == registry.Active:
			res.Skipped = append(res.Skipped, Skipped{Version: v.Label, Reason: "the Active version is never expired by a threshold"})
		case body.DryRun:
			res.Results = append(res.Results, ActionOutcome{Version: v.Label, OK: true, State: v.State, Message: "would expire"})
		default:
			out, _ := s.runAction(r.Context(), v.Ref(), workflows.UpdateExpire, reason)
			res.add(out)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (res *BulkResult) add(out ActionOutcome) {
	res.Results = append(res.Results, out)
	switch {
	case out.Pending():
		res.Pending++
	case !out.OK:
		res.Failed++
	}
}

// runAction acts on one version through its workflow and reports the outcome with the HTTP
// status it deserves on its own. Expiring an expired version succeeds and changes nothing.
func (s *Server) runAction(ctx context.Context, ref registry.VersionRef, action, reason string) (ActionOutcome, int) {
	out := ActionOutcome{Version: ref.Label}
	fail := func(status int, code, format string, args ...any) (ActionOutcome, int) {
		out.Error = &Error{Code: code, Message: fmt.Sprintf(format, args...)}
		return out, status
	}
	v, err := s.opts.Registry.GetVersion(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return fail(http.StatusNotFound, CodeVersionNotFound, "version %s not found", ref)
	case err != nil:
		s.log.Error("registry read failed", "version", ref.String(), "error", err)
		return fail(http.StatusServiceUnavailable, CodeRegistryUnavailable, "the registry is unavailable; retry later")
	case v.State == registry.Expired && action == workflows.UpdateExpire:
		out.OK, out.State, out.Message = true, registry.Expired, "already expired"
		return out, http.StatusOK
	case v.State == registry.Expired:
		return fail(http.StatusConflict, CodeActionRejected, "version %s is expired: it cannot be %s", ref.Label, pastTense(action))
	}
	id := caller(ctx)
	res, err := s.opts.Lifecycle.Act(ctx, ref, action, workflows.ActionRequest{
		Actor:  registry.Actor{Type: registry.ActorUser, ID: id.Username, Name: id.Username},
		Reason: reason,
	})
	var rejected *workflows.RejectedError
	var pending *workflows.PendingError
	switch {
	case errors.As(err, &pending):
		s.log.Info("version action pending", "version", ref.String(), "action", action, "by", id.Username,
			"updateId", pending.UpdateID, "stage", pending.Stage)
		out.Code, out.Action, out.UpdateID, out.Stage, out.Link = CodeActionPending, action, pending.UpdateID, pending.Stage, versionPath(ref)
		out.Message = pendingMessage(action, ref, pending)
		return out, http.StatusAccepted
	case errors.As(err, &rejected):
		return fail(http.StatusConflict, CodeActionRejected, "%s", rejected.Message)
	case errors.Is(err, workflows.ErrWorkflowNotRunning):
		return fail(http.StatusConflict, CodeWorkflowNotRunning, "version %s has no running workflow (state %s)", ref.Label, v.State)
	case err != nil:
		s.log.Error("version action failed", "version", ref.String(), "action", action, "error", err)
		return fail(http.StatusServiceUnavailable, CodeTemporalUnavailable, "the action could not be run; retry later")
	}
	s.log.Info("version action", "version", ref.String(), "action", action, "by", id.Username, "state", string(res.State))
	out.OK, out.State, out.Message = true, res.State, res.Message
	return out, http.StatusOK
}

func pendingMessage(action string, ref registry.VersionRef, p *workflows.PendingError) string {
	what := "was accepted by the version's workflow and has not finished"
	if p.Stage == workflows.StageSent {
		what = "was sent to the version's workflow, which has not taken it up yet (its worker may be down or busy)"
	}
	return fmt.Sprintf("%s of version %s %s within %s; it goes on: GET the link for the version's state",
		action, ref.Label, what, p.Wait)
}

func pastTense(action string) string {
	if strings.HasSuffix(action, "e") {
		return action + "d"
	}
	return action + "ed"
}

// ParseAge parses a threshold age: a Go duration ("90m", "2h") or whole days ("7d"). It must be
// positive.
func ParseAge(s string) (time.Duration, error) { return apiwire.ParseAge(s) }

func (s *Server) registryError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		writeError(w, http.StatusNotFound, CodeVersionNotFound, "%v", err)
	case errors.Is(err, registry.ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeInvalidRequest, "%v", err)
	default:
		s.log.Error("registry call failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, CodeRegistryUnavailable, "the registry is unavailable; retry later")
	}
}

// caller is the authenticated identity of a management request.
func caller(ctx context.Context) auth.Identity {
	id, _ := ctx.Value(callerKey{}).(auth.Identity)
	return id
}

type callerKey struct{}

// nonNil returns s, or an empty slice for nil, so that lists encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
