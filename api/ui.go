package api

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// The versions panel (/ui): three static files embedded in the binary. They hold no data: the
// page asks /api/v1 for everything with the bearer token the user typed, kept in the tab's
// sessionStorage, so it shows nothing without an identity and no cookie ever authorizes a call.
//
//go:embed ui/index.html ui/app.js ui/app.css
var uiFiles embed.FS

// StateQuerier asks a version's workflow for its live state (workflows.Client). The timeline
// endpoint uses it when the Lifecycle has it; without it the timeline is the registry's.
type StateQuerier interface {
	State(ctx context.Context, ref registry.VersionRef) (workflows.StateView, error)
}

// uiSecurityHeaders are sent with every file of the panel: scripts and styles only from here,
// data only from this origin, never framed.
func uiSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uiSecurityHeaders(w.Header())
		if r.URL.Path == "/ui" {
			http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// sameOrigin refuses a request whose Origin header names another origin than the one it was
// sent to. The panel authorizes with a bearer token, never a cookie, so a foreign page cannot
// act in a user's name anyway; this refuses even a token pasted into a foreign page. Clients
// that send no Origin (the CLI, curl) are not browsers and pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// WhoAmI is the answer of GET /api/v1/whoami: who the token is and what the panel links to.
type WhoAmI struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
	// TemporalUI is the Temporal UI's base URL (PLT_SKEW_TEMPORAL_UI_URL) and namespace; empty
	// when none is configured (the panel then shows no workflow links).
	TemporalUI          string `json:"temporalUi,omitempty"`
	TemporalNamespace   string `json:"temporalNamespace,omitempty"`
	PollIntervalSeconds int    `json:"pollIntervalSeconds"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	id := caller(r.Context())
	writeJSON(w, http.StatusOK, WhoAmI{Username: id.Username, Groups: id.Groups, TemporalUI: s.opts.TemporalUIURL,
		TemporalNamespace: s.opts.TemporalNamespace, PollIntervalSeconds: 2})
}

// Access is the answer of GET /api/v1/apps/{ns}/{app}/access: what the caller may do on the
// app (the same SubjectAccessReviews that guard each call). The panel hides what is not allowed;
// the server refuses it anyway.
type Access struct {
	Username string `json:"username"`
	Get      bool   `json:"get"`
	List     bool   `json:"list"`
	Update   bool   `json:"update"`
}

func (s *Server) access(w http.ResponseWriter, r *http.Request) {
	app, _ := appRef(w, r)
	id := caller(r.Context())
	out := Access{Username: id.Username, Get: true}
	if s.opts.InsecureSkipAPIAuth {
		out.List, out.Update = true, true
		writeJSON(w, http.StatusOK, out)
		return
	}
	for verb, dst := range map[string]*bool{auth.VerbList: &out.List, auth.VerbUpdate: &out.Update} {
		d, err := s.opts.Authorizer.Authorize(r.Context(), id, auth.Attributes{Verb: verb, Namespace: app.Namespace, Name: app.Name})
		if err != nil {
			s.log.Error("access review failed", "error", err)
			writeError(w, http.StatusServiceUnavailable, CodeAuthUnavailable, "access could not be checked; retry later")
			return
		}
		*dst = d.Allowed
	}
	writeJSON(w, http.StatusOK, out)
}

// Timeline is the answer of GET …/versions/{version}/timeline: when a Draining version's timers
// fire. GraceEndsAt and MaxAliveAt follow from the registry (drainingAt) and the app's policy;
// NextCheckAt, ZeroReadings and WaitingFor come from the version's workflow (Source "workflow")
// and are absent when it could not be asked (Source "registry").
type Timeline struct {
	Version          string         `json:"version"`
	State            registry.State `json:"state"`
	Now              time.Time      `json:"now"`
	DrainingAt       *time.Time     `json:"drainingAt,omitempty"`
	GraceEndsAt      *time.Time     `json:"graceEndsAt,omitempty"`
	MaxAliveAt       *time.Time     `json:"maxAliveAt,omitempty"`
	NextCheckAt      *time.Time     `json:"nextCheckAt,omitempty"`
	ZeroReadings     *int           `json:"zeroReadings,omitempty"`
	ZeroReadingsNeed int            `json:"zeroReadingsToExpire"`
	WaitingFor       string         `json:"waitingFor,omitempty"`
	WorkflowID       string         `json:"workflowId"`
	Source           string         `json:"source"`
}

func (s *Server) versionTimeline(w http.ResponseWriter, r *http.Request) {
	ref, v, ok := s.lookupVersion(w, r)
	if !ok {
		return
	}
	out := Timeline{Version: v.Label, State: v.State, Now: time.Now().UTC(), WorkflowID: workflows.WorkflowID(ref),
		ZeroReadingsNeed: 2, Source: "registry"}
	if v.State == registry.Draining && v.DrainingAt != nil {
		pol, err := s.opts.Registry.GetPolicy(r.Context(), ref.AppRef())
		if err != nil {
			s.registryError(w, err)
			return
		}
		grace := s.setting(pol.GracePeriodMS, s.opts.PolicyDefaults.Values.GracePeriodMS, bounds.GracePeriod, 30*time.Minute)
		maxAlive := s.setting(pol.MaxAliveMS, s.opts.PolicyDefaults.Values.MaxAliveMS, bounds.MaxAlive, 24*time.Hour)
		out.DrainingAt = v.DrainingAt
		out.GraceEndsAt, out.MaxAliveAt = new(v.DrainingAt.Add(grace)), new(v.DrainingAt.Add(maxAlive))
	}
	if q, ok := s.opts.Lifecycle.(StateQuerier); ok && v.State.Live() {
		qctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		view, err := q.State(qctx, ref)
		cancel()
		switch {
		case err == nil:
			out.Source, out.WaitingFor = "workflow", view.WaitingFor
			out.NextCheckAt, out.ZeroReadings = view.NextCheckAt, new(view.ZeroStreak)
			if view.GraceEndsAt != nil {
				out.GraceEndsAt = view.GraceEndsAt
			}
			if view.MaxAliveAt != nil {
				out.MaxAliveAt = view.MaxAliveAt
			}
		case errors.Is(err, workflows.ErrWorkflowNotRunning):
		default:
			s.log.Debug("workflow state query", "version", ref.String(), "error", err)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// setting is a duration setting of the app: its override, else the configured default, else d.
func (s *Server) setting(override, def *int64, r bounds.Range, d time.Duration) time.Duration {
	switch {
	case override != nil:
		return r.Duration(*override)
	case def != nil:
		return r.Duration(*def)
	}
	return d
}
