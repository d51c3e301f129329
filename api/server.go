// Package api owns skewguard's HTTP surface on gorilla/mux: the part of the Platformatic ICC
// protocol the @platformatic/watt-extra agent needs (registration, the update WebSocket, the
// state report), the management REST API under /api/v1, health, readiness, metrics and the
// OpenAPI document. Registration callers prove they are the pod they name with their bound
// service-account token; management callers are authorized by the cluster's own RBAC.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/sethvargo/go-envconfig"
	corev1 "k8s.io/api/core/v1"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// Registry is what the API reads from and writes to the version registry.
type Registry interface {
	ListApps(ctx context.Context) ([]registry.Application, error)
	ListVersions(ctx context.Context, app registry.AppRef) ([]registry.Version, error)
	ListVersionsPage(ctx context.Context, app registry.AppRef, opts registry.ListVersionsOptions) (registry.VersionPage, error)
	GetVersion(ctx context.Context, ref registry.VersionRef) (registry.Version, error)
	Audit(ctx context.Context, ref registry.VersionRef) ([]registry.AuditEntry, error)
	AppAudit(ctx context.Context, app registry.AppRef, limit int) ([]registry.AuditEntry, error)
	GetPolicy(ctx context.Context, app registry.AppRef) (registry.Policy, error)
	PutPolicy(ctx context.Context, app registry.AppRef, p registry.Policy, actor registry.Actor) ([]registry.Version, error)
	UpsertPod(ctx context.Context, p registry.Pod) error
}

// Pods finds pods in the informer cache.
type Pods interface {
	PodsNamed(name string) []*corev1.Pod
}

// Detector is the one detection path (detect.Detector).
type Detector interface {
	Detect(ctx context.Context, pod *corev1.Pod, source string, hint detect.Hint) (detect.Result, error)
	Enabled() bool
}

// Authenticator verifies bearer tokens (auth.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Identity, error)
}

// Authorizer decides management calls (auth.Authorizer).
type Authorizer interface {
	Authorize(ctx context.Context, id auth.Identity, attrs auth.Attributes) (auth.Decision, error)
}

// ReadyCheck is one dependency /readyz reports on.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Options are the Server's dependencies and settings.
type Options struct {
	Logger    *slog.Logger
	Registry  Registry
	Pods      Pods
	Detector  Detector
	Lifecycle Lifecycle
	// Traffic answers the request-rate series of a version (GET …/versions/{version}/rps); nil
	// when no Prometheus is configured (that endpoint then answers 503).
	Traffic Traffic
	// PolicyDefaults are the global values an app's policy overrides (GET …/policy shows them
	// where the app sets nothing); zero: the documented defaults (DefaultsFromConfig of an
	// empty environment).
	PolicyDefaults PolicyDefaults
	// Retry, when set, is handed pods whose registration could not be completed (registry or
	// Temporal down, no Service yet), to be detected again later (detect.Watcher.Retry).
	Retry         func(*corev1.Pod)
	Authenticator Authenticator
	// AgentAuthenticator verifies the agent's tokens (registration, state, updates); nil means
	// Authenticator. skewguard gives it the JWT shape check and the agent token audiences,
	// which a person's management token does not have.
	AgentAuthenticator Authenticator
	Authorizer         Authorizer
	// Synced reports whether the informer cache has listed once; until then registrations
	// answer 503 (the agent retries) instead of not finding pods. Nil means always synced.
	Synced func() bool
	// InsecureSkipPodAuth accepts registrations without proof of pod identity (development).
	InsecureSkipPodAuth bool
	// InsecureSkipAPIAuth lets anyone use /api/v1 (development).
	InsecureSkipAPIAuth bool
	// ServeMetrics adds /metrics to this router (when no separate metrics address is set).
	ServeMetrics bool
	Ready        []ReadyCheck
	// PingInterval is how often an agent's update WebSocket is pinged.
	PingInterval time.Duration
	// AuthFailureLimit bounds failed authentications per source address (zero fields:
	// DefaultAuthFailureLimit).
	AuthFailureLimit AuthFailureLimit
	// TemporalUIURL is the Temporal UI's base URL the versions panel links each version's
	// workflow to (PLT_SKEW_TEMPORAL_UI_URL); empty: no links. TemporalNamespace is the
	// workflows' Temporal namespace in those links.
	TemporalUIURL     string
	TemporalNamespace string
	// PodCounter counts each live version's ready pods in the versions list from an informer
	// cache of EndpointSlices; nil: the list has no pod counts.
	PodCounter PodCounter
}

// Body size limits: the agent's state report carries its services and runtime metadata; our
// own requests are small.
const (
	agentBodyLimit = 1 << 20
	apiBodyLimit   = 64 << 10
)

// Server is the HTTP API.
type Server struct {
	opts   Options
	log    *slog.Logger
	router *mux.Router

	// done is closed by Close: open WebSockets say goodbye and end.
	done      chan struct{}
	closeOnce sync.Once
	sockets   sync.WaitGroup

	// authFailures counts 401s per source address; nil when the limit is off.
	authFailures *authLimiter
}

// New checks opts and builds the router.
func New(opts Options) (*Server, error) {
	var missing []error
	if opts.Registry == nil {
		missing = append(missing, errors.New("api: Registry is required"))
	}
	if opts.Pods == nil {
		missing = append(missing, errors.New("api: Pods is required"))
	}
	if opts.Detector == nil {
		missing = append(missing, errors.New("api: Detector is required"))
	}
	if opts.Lifecycle == nil {
		missing = append(missing, errors.New("api: Lifecycle is required"))
	}
	if opts.Authenticator == nil && !(opts.InsecureSkipPodAuth && opts.InsecureSkipAPIAuth) {
		missing = append(missing, errors.New("api: Authenticator is required unless both insecure settings are on"))
	}
	if opts.Authorizer == nil && !opts.InsecureSkipAPIAuth {
		missing = append(missing, errors.New("api: Authorizer is required unless InsecureSkipAPIAuth"))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AgentAuthenticator == nil {
		opts.AgentAuthenticator = opts.Authenticator
	}
	if opts.PolicyDefaults.Settings == nil {
		cfg, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(nil))
		if err != nil {
			return nil, fmt.Errorf("api: the documented defaults do not load: %w", err)
		}
		opts.PolicyDefaults = DefaultsFromConfig(cfg)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	s := &Server{opts: opts, log: opts.Logger, done: make(chan struct{}), authFailures: newAuthLimiter(opts.AuthFailureLimit)}
	s.router = s.routes()
	return s, nil
}

// Handler is the whole API, instrumented.
func (s *Server) Handler() http.Handler { return s.instrument(s.router) }

// Close ends every open WebSocket and waits for them, at most until ctx ends. http.Server's
// Shutdown does not track hijacked connections, so call this beside it.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.done) })
	waited := make(chan struct{})
	go func() { s.sockets.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("api: WebSockets still open: %w", ctx.Err())
	}
}

// newRouter returns an empty router that answers an unknown path or method in JSON, with a
// stable code. Paths are not cleaned: a redirect would turn an agent's POST into a GET
// elsewhere; an unclean path simply matches nothing or fails validation.
func newRouter() *mux.Router {
	r := mux.NewRouter().SkipClean(true)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path)
	})
	return r
}

func (s *Server) routes() *mux.Router {
	r := newRouter()
	r.Use(nameRoute, s.limitAuthFailures)

	// The agent's protocol (Platformatic ICC paths, as watt-extra calls them).
	r.HandleFunc("/control-plane/pods/{podId}/instance", s.registerInstance).Methods(http.MethodPost)
	r.HandleFunc("/control-plane/pods/{podId}/instance/state", s.saveInstanceState).Methods(http.MethodPost)
	r.HandleFunc("/api/updates/applications/{applicationId}", s.updates).Methods(http.MethodGet)

	// Operations.
	opsRoutes(r, s.log, s.opts.Ready, s.opts.ServeMetrics)
	r.HandleFunc("/api/v1/openapi.yaml", serveOpenAPI).Methods(http.MethodGet)

	// The versions panel: static files only; every datum comes from /api/v1 with the user's token.
	r.PathPrefix("/ui").Handler(uiHandler()).Methods(http.MethodGet, http.MethodHead)

	// Management.
	const app = "/api/v1/apps/{namespace}/{app}"
	const version = app + "/versions/{version}"
	r.Handle("/api/v1/apps", s.authorized(auth.VerbList, scopeCluster, s.listApps)).Methods(http.MethodGet)
	r.Handle("/api/v1/whoami", s.authorized(auth.VerbList, scopeCluster, s.whoami)).Methods(http.MethodGet)
	r.Handle(app+"/access", s.authorized(auth.VerbGet, scopeApp, s.access)).Methods(http.MethodGet)
	r.Handle(app+"/versions", s.authorized(auth.VerbList, scopeApp, s.listVersions)).Methods(http.MethodGet)
	r.Handle(app+"/audit", s.authorized(auth.VerbGet, scopeApp, s.appAudit)).Methods(http.MethodGet)
	r.Handle(app+"/expire", s.authorized(auth.VerbUpdate, scopeApp, s.bulkExpire)).Methods(http.MethodPost)
	r.Handle(app+"/threshold", s.authorized(auth.VerbUpdate, scopeApp, s.threshold)).Methods(http.MethodPost)
	r.Handle(app+"/policy", s.authorized(auth.VerbGet, scopeApp, s.getPolicy)).Methods(http.MethodGet)
	r.Handle(app+"/policy", s.authorized(auth.VerbUpdate, scopeApp, s.putPolicy)).Methods(http.MethodPut)
	r.Handle(version, s.authorized(auth.VerbGet, scopeApp, s.getVersion)).Methods(http.MethodGet)
	r.Handle(version+"/rps", s.authorized(auth.VerbGet, scopeApp, s.versionRPS)).Methods(http.MethodGet)
	r.Handle(version+"/audit", s.authorized(auth.VerbGet, scopeApp, s.versionAudit)).Methods(http.MethodGet)
	r.Handle(version+"/timeline", s.authorized(auth.VerbGet, scopeApp, s.versionTimeline)).Methods(http.MethodGet)
	r.Handle(version+"/plan", s.authorized(auth.VerbGet, scopeApp, s.versionPlan)).Methods(http.MethodGet)
	for _, a := range workflows.Actions {
		r.Handle(version+"/"+a, s.authorized(auth.VerbUpdate, scopeApp, s.act(a))).Methods(http.MethodPost)
	}
	return r
}
