package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	temporallog "go.temporal.io/sdk/log"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/api"
	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/buildinfo"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/converge"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/temporalclient"
	"github.com/skewguard/skewguard/workflows"
)

// loadConfig reads and validates the environment; every problem is reported at once.
func loadConfig(ctx context.Context) (config.Config, error) {
	return config.Load(ctx)
}

// role is what a process runs: the HTTP API, the Temporal worker, or both.
type role struct{ api, worker bool }

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runRole(ctx, "serve", args, stderr, role{api: true, worker: true})
}

func runAPI(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runRole(ctx, "api", args, stderr, role{api: true})
}

func runWorker(ctx context.Context, args []string, _, stderr io.Writer) error {
	return runRole(ctx, "worker", args, stderr, role{worker: true})
}

// Timeouts of a clean shutdown (SIGTERM cancels ctx): HTTP requests in flight finish, agents'
// WebSockets are told goodbye.
const shutdownTimeout = 15 * time.Second

func runRole(ctx context.Context, name string, args []string, stderr io.Writer, r role) error {
	if len(args) > 0 {
		return usageError{msg: fmt.Sprintf("%s takes no arguments (configuration is read from the environment), got %v", name, args)}
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	if r.api {
		if err := cfg.RefuseInsecureInCluster(inCluster()); err != nil {
			return err
		}
	}
	log := newLogger(cfg, stderr)
	log.Info("starting skewguard", "command", name, "version", buildinfo.String(), "listen", cfg.ListenAddress,
		"tls", cfg.TLSEnabled(), "taskQueue", cfg.TaskQueue, "temporal", cfg.TemporalAddress, "temporalTLS", cfg.TemporalTLSEnabled(),
		"temporalMTLS", cfg.TemporalTLSCertFile != "", "temporalAPIKey", cfg.TemporalAPIKey != "" || cfg.TemporalAPIKeyFile != "")
	warnSettings(log, cfg, r)
	listenTLS, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}

	kc, err := kube.NewClients(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	store, err := registry.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	defer store.Close()
	// TLS, mTLS and API key from the configuration; certificate and key files are read now.
	topts, err := temporalclient.Options(cfg, temporallog.NewStructuredLogger(log.With("component", "temporal")))
	if err != nil {
		return fmt.Errorf("temporal client: %w", err)
	}
	tc, err := client.NewLazyClient(topts)
	if err != nil {
		return fmt.Errorf("temporal client: %w", err)
	}
	defer tc.Close()
	temporal := workflows.NewClient(tc, cfg.TaskQueue, cfg.ActionWait())
	ready := []api.ReadyCheck{
		{Name: "postgres", Check: store.Ping},
		{Name: "temporal", Check: temporal.Ping},
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	spawn := func(what string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				errs <- fmt.Errorf("%s: %w", what, err)
				cancel() // one part failing stops the process; the orchestrator restarts it
			}
		})
	}

	allow, err := claimsAllowlist(ctx, cfg, log, kc, &ready)
	if err != nil {
		return err
	}

	// One informer cache of Services and EndpointSlices per process: the API counts each
	// version's ready pods from it, the worker's activities wait on it.
	var endpoints *kube.ReadinessWatcher
	if r.api {
		if endpoints, err = kube.NewReadinessWatcher(kc.Kube, cfg.Namespaces); err != nil {
			return err
		}
	}

	var handler http.Handler
	if r.api {
		h, err := startAPI(ctx, cfg, log, kc, store, temporal, allow, endpoints, &ready, spawn)
		if err != nil {
			return err
		}
		handler = h
	} else {
		// The API's own /healthz, /readyz and (without a metrics address) /metrics.
		handler = api.OpsHandler(log, ready, cfg.MetricsAddress == "")
	}
	if r.worker {
		deps := workerDeps{Temporal: tc, Registry: store, Kube: kc, Claims: allow, Logger: log.With("component", "worker"),
			Readiness: endpoints}
		spawn("worker", func() error {
			w, err := newWorker(cfg, deps)
			if err != nil {
				return err
			}
			return w.Run(ctx)
		})
		if cfg.SkewProtection {
			c, err := routeConvergence(cfg, log, deps)
			if err != nil {
				return err
			}
			spawn("route convergence", func() error {
				c.Run(ctx)
				return nil
			})
		}
	}
	spawn("http", func() error { return serveHTTP(ctx, log, cfg.ListenAddress, handler, listenTLS) })
	if cfg.MetricsAddress != "" {
		// Plain HTTP: /metrics carries no credential, and Prometheus scrapes it on its own port.
		spawn("metrics", func() error { return serveHTTP(ctx, log, cfg.MetricsAddress, metrics.Handler(), nil) })
	}

	<-ctx.Done()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	log.Info("skewguard stopped", "command", name)
	return errors.Join(all...)
}

// startAPI builds the pod cache, detection, the pod watch and the API, and starts the cache
// and the watch.
func startAPI(ctx context.Context, cfg config.Config, log *slog.Logger, kc *kube.Clients, store *registry.Store,
	temporal *workflows.Client, allow *claims.Allowlist, endpoints *kube.ReadinessWatcher, ready *[]api.ReadyCheck,
	spawn func(string, func() error)) (http.Handler, error) {
	cache, err := detect.NewCache(kc.Kube, cfg.Namespaces, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	// Registrations of a version already live are answered from memory, kept right by the
	// registry's change notifications (registry.LiveCache).
	live := registry.NewLiveCache(store, registry.LiveCacheOptions{Logger: log.With("component", "live-cache")})
	spawn("live version cache", func() error { return live.Run(ctx) })
	det := detect.NewDetector(detect.Options{
		Registry: live, Starter: temporal, Lookup: cache, Enabled: cfg.SkewProtection,
		VersionFromImage: cfg.VersionFromImage,
		Adopter:          kube.Workloads{Client: kc.Kube}, // only Deployments annotated plt.dev/adopt=true
		Audit:            store.AppendAudit,
		ModeOf: func(ctx context.Context, app registry.AppRef) (string, error) {
			p, err := store.GetPolicy(ctx, app)
			return activities.ModeOf(cfg, p), err
		},
		Logger:   log.With("component", "detect"),
		Validate: validateDetected(cfg, allow),
	})
	// Without skew protection there is nothing to detect: the watch stays off, retries are moot.
	watcher, err := detect.NewWatcher(cache, det, cfg.WatchPods && cfg.SkewProtection, log.With("component", "pod-watch"))
	if err != nil {
		return nil, err
	}
	*ready = append(*ready, api.ReadyCheck{Name: "informers", Check: func(context.Context) error {
		if !cache.HasSynced() {
			return errors.New("pod and Service informers have not synced yet")
		}
		return nil
	}})
	// The request-rate series runs the lifecycle's traffic query; without Prometheus it answers 503.
	var rates api.Traffic
	querier, err := newQuerier(cfg, log)
	if err != nil {
		return nil, err
	}
	if querier != nil {
		rates = querier
	}
	srv, err := api.New(api.Options{
		Logger:         log.With("component", "api"),
		Registry:       store,
		Pods:           cache,
		Detector:       det,
		Lifecycle:      temporal,
		Traffic:        rates,
		PolicyDefaults: api.DefaultsFromConfig(cfg),
		Retry:          watcher.Retry,
		// Management callers bring a person's token for the API server's own audience (their
		// kubeconfig's), in whatever form their cluster issues (not always a JWT).
		Authenticator: auth.NewAuthenticator(kc.Kube, auth.AuthenticatorOptions{}),
		// Agents bring a service-account token: always a JWT, for our audience when configured.
		AgentAuthenticator: auth.NewAuthenticator(kc.Kube, auth.AuthenticatorOptions{
			RequireJWT: true, Audiences: cfg.AgentTokenAudiences,
		}),
		Authorizer:          auth.NewAuthorizer(kc.Kube, auth.AuthorizerOptions{}),
		InsecureSkipPodAuth: cfg.InsecureSkipPodAuth,
		InsecureSkipAPIAuth: cfg.InsecureSkipAPIAuth,
		ServeMetrics:        cfg.MetricsAddress == "",
		Ready:               *ready,
		Synced:              cache.HasSynced,
		TemporalUIURL:       strings.TrimRight(cfg.TemporalUIURL, "/"),
		TemporalNamespace:   cfg.TemporalNamespace,
		PodCounter:          endpoints,
	})
	if err != nil {
		return nil, err
	}
	cache.Start(ctx)
	// Pod counts are absent from the versions list until it has listed; no readiness check
	// waits for it: the API works without them.
	endpoints.Start(ctx)
	spawn("pod watch", func() error {
		if !cache.WaitForSync(ctx) {
			return nil // stopping before the first list
		}
		log.Info("pod and Service informers synced", "namespaces", namespacesOrAll(cfg.Namespaces))
		watcher.Run(ctx, 2)
		return nil
	})
	spawn("websockets", func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		return srv.Close(sctx)
	})
	return srv.Handler(), nil
}

// validateDetected checks what a user can type before anything acts on it: that routes can be
// rendered for the version, and that the operator's allowlist lets its namespace (and app) claim
// its hostname and path. A refused version is started Invalid and Failed at once, with the
// reason. An allowlist not read yet refuses nothing here: the flip checks again, and waits for it.
func validateDetected(cfg config.Config, allow *claims.Allowlist) func(detect.StartRequest) error {
	return func(req detect.StartRequest) error {
		v := registry.Version{Namespace: req.Ref.Namespace, App: req.Ref.App, Label: req.Ref.Label, Placement: req.Placement}
		if err := activities.ValidateVersion(cfg, v); err != nil {
			return err
		}
		if err := activities.ValidateClaim(allow, v); err != nil && !errors.Is(err, claims.ErrNotSynced) {
			return err
		}
		return nil
	}
}

// claimsAllowlist starts reading the operator's allowlist of hostnames and paths from the
// ConfigMap PLT_SKEW_CLAIMS_CONFIGMAP names, and adds its readiness check ("claims": the
// ConfigMap has not been read yet). Without that setting, or with skew protection off, it is nil:
// every claim is refused, never allowed implicitly.
func claimsAllowlist(ctx context.Context, cfg config.Config, log *slog.Logger, kc *kube.Clients, ready *[]api.ReadyCheck) (*claims.Allowlist, error) {
	if !cfg.SkewProtection {
		return nil, nil
	}
	if cfg.ClaimsConfigMap == "" {
		log.Warn("NO CLAIMS ALLOWLIST (PLT_SKEW_CLAIMS_CONFIGMAP is not set): every version's claim of a hostname and " +
			"path is refused and no version becomes Active. Point it at a ConfigMap listing what each namespace may claim " +
			"(README: Who may claim a hostname)")
		return nil, nil
	}
	ns, name, err := claims.ParseRef(cfg.ClaimsConfigMap)
	if err != nil {
		return nil, err
	}
	allow, err := claims.Watch(ctx, kc.Kube, ns, name, log.With("component", "claims"))
	if err != nil {
		return nil, err
	}
	*ready = append(*ready, api.ReadyCheck{Name: "claims", Check: func(context.Context) error {
		if !allow.HasSynced() {
			return errors.New("the claims allowlist ConfigMap has not been read yet")
		}
		return nil
	}})
	return allow, nil
}

// routeConvergence builds the controller that repairs drift of the app's HTTPRoutes from the
// registry. It runs next to the Temporal worker, writing through the same fenced route writer
// as the worker's activities.
func routeConvergence(cfg config.Config, log *slog.Logger, deps workerDeps) (*converge.Controller, error) {
	w, err := routeWriter(deps)
	if err != nil {
		return nil, err
	}
	// SyncRoutes reads only the registry, the configuration and the route writer.
	acts := &activities.Activities{Registry: deps.Registry, Routes: w, Config: cfg,
		Log: log.With("component", "route-convergence")}
	return converge.New(converge.Options{
		Gateway:    deps.Kube.Gateway,
		Apps:       deps.Registry,
		Resync:     converge.SyncRoutes(acts),
		Render:     converge.Rendering(acts),
		Namespaces: cfg.Namespaces,
		Logger:     log.With("component", "route-convergence"),
	})
}

// listenerLimits bound every listener (api.DefaultLimits; tests shorten them).
var listenerLimits = api.DefaultLimits

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully. Slow clients are cut
// off and connections capped (api.Limits: header and body read deadlines, header size, idle
// keep-alives, concurrent connections). With tlsConfig it serves HTTPS (serverTLS).
func serveHTTP(ctx context.Context, log *slog.Logger, addr string, h http.Handler, tlsConfig *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := listenerLimits.HTTPServer(h)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	ln = listenerLimits.Listener(ln)
	log.Info("listening", "address", ln.Addr().String(), "tls", tlsConfig != nil)
	done := make(chan error, 1)
	if tlsConfig != nil {
		srv.TLSConfig = tlsConfig
		// No HTTP/2: an empty map keeps ServeTLS from adding it (see serverTLS).
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		go func() { done <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { done <- srv.Serve(ln) }()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down %s: %w", addr, err)
	}
	<-done
	return nil
}

// newLogger is the process logger: JSON or text on stderr at the configured level.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	return log
}

// inCluster tells whether this process runs in a Kubernetes pod (tests replace it).
var inCluster = func() (bool, string) {
	return config.InCluster(os.Getenv, config.ServiceAccountTokenFile)
}

// warnSettings says loudly, at start, when the process runs with protection off or with an
// insecure development setting.
func warnSettings(log *slog.Logger, cfg config.Config, r role) {
	if !cfg.SkewProtection {
		log.Warn("SKEW PROTECTION IS DISABLED (PLT_FEATURE_SKEW_PROTECTION=false): registrations are answered, " +
			"but no version is recorded, no workflow is started and the Gateway API is never called")
	}
	if !cfg.TemporalTLSEnabled() {
		log.Warn("the Temporal client uses no TLS and no credentials (TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH, " +
			"TEMPORAL_API_KEY): whoever can reach the Temporal namespace can update, signal or terminate every " +
			"version's workflow, bypassing skewguard's RBAC; see the README, \"Temporal access is full control\"")
	}
	if !r.api {
		return
	}
	if cfg.InsecureSkipPodAuth {
		log.Warn("INSECURE: PLT_SKEW_INSECURE_SKIP_POD_AUTH=true: registrations are accepted without proof of pod " +
			"identity; anyone who can reach the API can register any pod. For local development only")
	}
	if cfg.InsecureSkipAPIAuth {
		log.Warn("INSECURE: PLT_SKEW_INSECURE_SKIP_API_AUTH=true: /api/v1 is open to anyone who can reach it, " +
			"including promote and expire. For local development only")
	}
	if !cfg.TLSEnabled() {
		log.Warn("the API serves plain HTTP (no PLT_SKEW_TLS_CERT_FILE): agents' service-account tokens cross the " +
			"network in clear text")
	}
	if len(cfg.AgentTokenAudiences) == 0 && !cfg.InsecureSkipPodAuth {
		log.Info("agents' tokens are verified for the API server's default audience (PLT_SKEW_AGENT_TOKEN_AUDIENCES " +
			"unset): such a token is also accepted by the Kubernetes API; a projected token for an audience of ours is safer")
	}
	if cfg.SkewProtection && !cfg.WatchPods {
		log.Info("pod watch is off (PLT_SKEW_WATCH_PODS=false): versions are detected only when an agent registers")
	}
}

func namespacesOrAll(ns []string) string {
	if len(ns) == 0 {
		return "all"
	}
	return strings.Join(ns, ",")
}
