// Package worker owns skewguard's Temporal worker: it builds the lifecycle activities from the
// configuration and the clients, registers them and the VersionLifecycle workflow on the
// configured task queue, and runs until its context ends.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/converge"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/traffic"
	"github.com/skewguard/skewguard/workflows"
)

// Deps are the clients the worker's activities use.
type Deps struct {
	// Temporal is a connected client; the worker does not close it.
	Temporal client.Client
	// Registry is the version registry.
	Registry *registry.Store
	// Kube reaches the API server: readiness, scaling and deletion of versions, and the route
	// writer (made from Kube.Gateway only when skew protection is enabled).
	Kube *kube.Clients
	// Routes overrides the route writer (tests).
	Routes activities.RouteWriter
	// Traffic overrides the Prometheus querier built from the configuration (tests).
	Traffic *traffic.Querier
	// Claims is the operator's allowlist of hostnames and paths; nil refuses every claim.
	Claims *claims.Allowlist
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// StopTimeout is how long a stopping worker lets running activities finish (default 10s);
	// those still running are cancelled and retried by another worker.
	StopTimeout time.Duration
}

// New builds a worker for cfg.TaskQueue with the lifecycle workflow and its activities
// registered; the caller starts and stops it.
func New(cfg config.Config, deps Deps) (worker.Worker, error) {
	acts, err := Activities(cfg, deps)
	if err != nil {
		return nil, err
	}
	// The readiness informers start with the worker, so that the first version admitted already
	// finds its Service's readiness in the cache (Admit) rather than waiting for them to list.
	acts.Readiness.Start(context.Background())
	stop := deps.StopTimeout
	if stop <= 0 {
		stop = 10 * time.Second
	}
	w := worker.New(deps.Temporal, cfg.TaskQueue, worker.Options{
		WorkerStopTimeout: stop,
		Interceptors:      []interceptor.WorkerInterceptor{&failureCounter{}, &keepAlive{}},
	})
	w.RegisterWorkflowWithOptions(workflows.VersionLifecycle, workflow.RegisterOptions{Name: workflows.WorkflowType})
	w.RegisterActivity(acts)
	return w, nil
}

// Run runs the worker until ctx is cancelled (SIGTERM in the binary), then stops it: it stops
// polling, lets running activities finish for up to StopTimeout, and returns nil. It returns an
// error if the worker cannot start (the Temporal server is unreachable, for example).
func Run(ctx context.Context, cfg config.Config, deps Deps) error {
	w, err := New(cfg, deps)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start Temporal worker on task queue %q: %w", cfg.TaskQueue, err)
	}
	logger(deps).Info("temporal worker started", "taskQueue", cfg.TaskQueue)
	<-ctx.Done()
	w.Stop()
	logger(deps).Info("temporal worker stopped", "taskQueue", cfg.TaskQueue)
	return nil
}

// Activities builds the activities from the configuration and the clients.
func Activities(cfg config.Config, deps Deps) (*activities.Activities, error) {
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
	log := logger(deps)
	routes := deps.Routes
	if routes == nil && cfg.SkewProtection {
		w, err := RouteWriter(deps)
		if err != nil {
			return nil, err
		}
		routes = w
	}
	querier := deps.Traffic
	if querier == nil {
		q, err := Querier(cfg, log)
		if err != nil {
			return nil, err
		}
		querier = q
	}
	workloads := kube.Workloads{Client: deps.Kube.Kube}
	if cfg.SkewProtection {
		workloads.Gateway = deps.Kube.Gateway // Retire checks no route of ours still uses the Service
	}
	// Started by New (or the first wait); it lives as long as the process.
	ready, err := kube.NewReadinessWatcher(deps.Kube.Kube, cfg.Namespaces)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
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
		acts.AllRoutes = allRoutes(deps.Kube.Gateway)
	}
	return acts, nil
}

// allRoutes lists every HTTPRoute of the cluster from an informer (started by the first
// call, then kept in sync), so that claiming a host and path a route skewguard does not write
// already serves can be refused without a LIST per activation.
func allRoutes(gw gatewayclient.Interface) activities.RouteLister {
	factory := gatewayinformers.NewSharedInformerFactory(gw, 10*time.Minute)
	informer := factory.Gateway().V1().HTTPRoutes()
	lister, hasSynced := informer.Lister(), informer.Informer().HasSynced
	var once sync.Once
	return func() ([]*gatewayv1.HTTPRoute, error) {
		once.Do(func() { factory.Start(nil) }) // lives as long as the process, like the worker
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !cache.WaitForCacheSync(ctx.Done(), hasSynced) {
			// Retryable: the activation waits rather than claim blind.
			return nil, errors.New("the HTTPRoute informer has not synced: cannot check claims of hosts and paths yet")
		}
		return lister.List(labels.Everything())
	}
}

// RouteWriter is the route writer of the worker's activities, fenced by the registry's route
// generation: that outlives the app's routes, so a late write cannot recreate routes a newer
// generation removed.
func RouteWriter(deps Deps) (*kube.RouteWriter, error) {
	if deps.Kube == nil || deps.Kube.Gateway == nil {
		return nil, errors.New("worker: skew protection is enabled but there is no Gateway API client")
	}
	if deps.Registry == nil {
		return nil, errors.New("worker: no registry to fence route writes with")
	}
	return kube.NewRouteWriter(deps.Kube.Gateway).WithFence(converge.RegistryFence(deps.Registry)), nil
}

// Querier builds the traffic querier the configuration asks for; nil, with a warning, when no
// Prometheus URL is set (every reading is then unknown, and Draining versions live until max
// alive).
func Querier(cfg config.Config, log *slog.Logger) (*traffic.Querier, error) {
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

func logger(deps Deps) *slog.Logger {
	if deps.Logger != nil {
		return deps.Logger
	}
	return slog.Default()
}

// failureCounter counts failed activity attempts in skewguard_activity_failures_total.
type failureCounter struct {
	interceptor.WorkerInterceptorBase
}

func (*failureCounter) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &activityFailures{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type activityFailures struct {
	interceptor.ActivityInboundInterceptorBase
}

func (a *activityFailures) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := a.Next.ExecuteActivity(ctx, in)
	if err != nil {
		metrics.ActivityFailure(activity.GetInfo(ctx).ActivityType.Name)
	}
	return res, err
}

// keepAlive heartbeats every running activity that has a heartbeat timeout and does not
// heartbeat itself, a third of that timeout apart, for as long as it runs. A worker that dies
// (SIGKILL, a lost node) stops heartbeating, so Temporal retries its activities on another
// worker within the heartbeat timeout instead of waiting out the start-to-close timeout; a slow
// attempt on a live worker is still bounded by its start-to-close timeout alone.
type keepAlive struct {
	interceptor.WorkerInterceptorBase
}

// selfHeartbeating are the activities that heartbeat with details of their own (shown in the
// Temporal UI): keepAlive's empty heartbeats would replace them.
var selfHeartbeating = map[string]bool{"WaitReady": true}

func (*keepAlive) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &activityKeepAlive{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type activityKeepAlive struct {
	interceptor.ActivityInboundInterceptorBase
}

func (a *activityKeepAlive) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.HeartbeatTimeout <= 0 || selfHeartbeating[info.ActivityType.Name] {
		return a.Next.ExecuteActivity(ctx, in)
	}
	done := make(chan struct{})
	defer close(done)
	every := max(info.HeartbeatTimeout/3, 100*time.Millisecond)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return a.Next.ExecuteActivity(ctx, in)
}
