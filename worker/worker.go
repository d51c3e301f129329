// Package worker owns skewguard's Temporal worker: it registers the VersionLifecycle workflow and
// the lifecycle activities it is given on a task queue, with the interceptors every activity
// runs under (failure counting, heartbeats), and runs until its context ends. The activities'
// clients are built by the caller (cmd/skewguard, wire.go).
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/workflows"
)

// Options are the worker's settings.
type Options struct {
	// StopTimeout is how long a stopping worker lets running activities finish (default 10s);
	// those still running are cancelled and retried by another worker.
	StopTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Worker is a Temporal worker with the lifecycle workflow and its activities registered. Start
// and Stop are the SDK worker's; Run is what the binary does.
type Worker struct {
	worker.Worker
	taskQueue string
	log       *slog.Logger
}

// New builds a worker that polls taskQueue through c (connected; the worker does not close it),
// with the VersionLifecycle workflow and acts registered; the caller starts and stops it.
func New(c client.Client, taskQueue string, acts *activities.Activities, opts Options) *Worker {
	stop := opts.StopTimeout
	if stop <= 0 {
		stop = 10 * time.Second
	}
	w := worker.New(c, taskQueue, worker.Options{
		WorkerStopTimeout: stop,
		Interceptors:      []interceptor.WorkerInterceptor{&failureCounter{}, &keepAlive{}},
	})
	w.RegisterWorkflowWithOptions(workflows.VersionLifecycle, workflow.RegisterOptions{Name: workflows.WorkflowType})
	w.RegisterActivity(acts)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Worker{Worker: w, taskQueue: taskQueue, log: log}
}

// Run runs the worker until ctx is cancelled (SIGTERM in the binary), then stops it: it stops
// polling, lets running activities finish for up to StopTimeout, and returns nil. It returns an
// error if the worker cannot start (the Temporal server is unreachable, for example).
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return fmt.Errorf("start Temporal worker on task queue %q: %w", w.taskQueue, err)
	}
	w.log.Info("temporal worker started", "taskQueue", w.taskQueue)
	<-ctx.Done()
	w.Stop()
	w.log.Info("temporal worker stopped", "taskQueue", w.taskQueue)
	return nil
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
