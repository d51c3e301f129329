package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/converge"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/traffic"
	"github.com/skewguard/skewguard/worker"
)

// workerDeps are the clients the worker and its activities use.
type workerDeps struct {
	// Temporal is a connected client; the worker does not close it.
	Temporal client.Client
	// Registry is the version registry.
	Registry *registry.Store
	// Kube reaches the API server: readiness, scaling and deletion of versions, and the route
	// writer (made from Kube.Gateway only when skew protection is enabled).
	Kube *kube.Clients
	// Claims is the operator's allowlist of hostnames and paths; nil refuses every claim.
	Claims *claims.Allowlist
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Readiness, when set, is the informer cache of Services and EndpointSlices the activities
	// wait on, shared with the API's pod counts in one process (serve); nil builds one.
	Readiness *kube.ReadinessWatcher
}

func (d workerDeps) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// newWorker builds the activities from the configuration and the clients, starts their
// readiness informers, and returns the worker for cfg.TaskQueue with them registered.
func newWorker(cfg config.Config, deps workerDeps) (*worker.Worker, error) {
	acts, err := newActivities(cfg, deps)
	if err != nil {
		return nil, err
	}
	// The readiness informers start with the worker, so that the first version admitted already
	// finds its Service's readiness in the cache (Admit) rather than waiting for them to list.
	acts.Readiness.Start(context.Background())
	return worker.New(deps.Temporal, cfg.TaskQueue, acts, worker.Options{Logger: deps.logger()}), nil
}

// newActivities builds the activities from the configuration and the clients.
func newActivities(cfg config.Config, deps workerDeps) (*activities.Activities, error) {
	var missing []error
	if deps.Temporal == nil {
		missing = append(missing, errors.New("no Temporal client"))
	}
	if deps.Registry == nil {
		missing = append(missing, errors.New("no registry"))
	}
	if deps.Kube == nil || deps.Kube.Kube == nil {
		missing = append(missing, errors.New("no Kubernetes client"))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	log := deps.logger()
	var routes activities.RouteWriter // nil with skew protection off: no Gateway API call at all
	if cfg.SkewProtection {
		w, err := routeWriter(deps)
		if err != nil {
			return nil, err
		}
		routes = w
	}
	querier, err := newQuerier(cfg, log)
	if err != nil {
		return nil, err
	}
	workloads := kube.Workloads{Client: deps.Kube.Kube}
	if cfg.SkewProtection {
		workloads.Gateway = deps.Kube.Gateway // Retire checks no route of ours still uses the Service
	}
	// Started by newWorker (or the first wait); it lives as long as the process.
	ready := deps.Readiness
	if ready == nil {
		if ready, err = kube.NewReadinessWatcher(deps.Kube.Kube, cfg.Namespaces); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	ready.Probe = cfg.ReadinessTCPProbe
	acts := &activities.Activities{
		Registry:  deps.Registry,
		Workloads: workloads,
		Readiness: ready,
		Routes:    routes,
		Traffic:   querier,
		Claims:    deps.Claims,
		Config:    cfg,
		Log:       log,
	}
	if cfg.SkewProtection && deps.Kube.Gateway != nil {
		acts.AllRoutes = kube.AllRoutes(deps.Kube.Gateway)
	}
	return acts, nil
}

// routeWriter is the route writer of the worker's activities and of route convergence, fenced by
// the registry's route generation: that outlives the app's routes, so a late write cannot
// recreate routes a newer generation removed.
func routeWriter(deps workerDeps) (*kube.RouteWriter, error) {
	if deps.Kube == nil || deps.Kube.Gateway == nil {
		return nil, errors.New("worker: skew protection is enabled but there is no Gateway API client")
	}
	if deps.Registry == nil {
		return nil, errors.New("worker: no registry to fence route writes with")
	}
	return kube.NewRouteWriter(deps.Kube.Gateway).WithFence(converge.RegistryFence(deps.Registry)), nil
}

// newQuerier builds the traffic querier the configuration asks for; nil, with a warning, when no
// Prometheus URL is set (every reading is then unknown, and Draining versions live until max
// alive).
func newQuerier(cfg config.Config, log *slog.Logger) (*traffic.Querier, error) {
	tmpl, err := traffic.Select(cfg.TrafficPreset, cfg.TrafficQuery)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.PrometheusURL == "" {
		log.Warn("PROMETHEUS_URL is not set: traffic of Draining versions is unknown, they expire at max alive")
		return nil, nil
	}
	q, err := traffic.NewQuerier(cfg.PrometheusURL, tmpl)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	q.Log = log
	q.Timeout = 15 * time.Second
	return q, nil
}
