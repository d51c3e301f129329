package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skewguard/skewguard/activities"
)

// Errors no retry can fix; the workflow handles them itself.
var permanent = []string{
	activities.ErrTypeIllegalTransition,
	activities.ErrTypeInvalidInput,
	activities.ErrTypeNotFound,
	activities.ErrTypeNotReady,
	activities.ErrTypeNoTrafficSource,
	activities.ErrTypeStaleLife,
	activities.ErrTypeRoutesInvalid,
	activities.ErrTypeRoutesRefused,
	activities.ErrTypeClaimConflict,
	activities.ErrTypeWorkloadsRefused,
}

// converge retries until the step succeeds: registry and Kubernetes writes must happen, and an
// outage of PostgreSQL or the API server only delays them. The pending activity, its attempt
// count and last failure are visible in the Temporal UI meanwhile.
var converge = &temporal.RetryPolicy{
	InitialInterval:        time.Second,
	BackoffCoefficient:     2,
	MaximumInterval:        time.Minute,
	NonRetryableErrorTypes: permanent,
}

// lostWorkerWithin is the heartbeat timeout of every activity: the worker heartbeats each one
// while it runs (worker.keepAlive), so an attempt whose worker died (SIGKILL, a lost node) is
// retried on another within this time rather than after its start-to-close timeout.
const lostWorkerWithin = 5 * time.Second

// registryOptions: one short transaction.
func registryOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		HeartbeatTimeout:    lostWorkerWithin,
		RetryPolicy:         converge,
		Summary:             summary,
	})
}

// admitOptions: Admit, a local activity run inside the workflow task (two short registry calls
// and a look at the readiness cache). A worker lost meanwhile is noticed by the workflow task's
// own timeout, and the task, with the local activity, runs again on another worker. A local
// activity's schedule-to-close timeout defaults to its start-to-close timeout, which would end
// its retries after 10 s: like the activities it replaced, it retries as long as PostgreSQL is
// down (backoffs longer than a workflow task's timeout are durable timers).
func admitOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: admitRetriesFor,
		RetryPolicy:            converge,
		Summary:                "record version, load policy, look at readiness",
	})
}

// admitRetriesFor bounds Admit's retries: longer than any outage worth waiting out.
const admitRetriesFor = 365 * 24 * time.Hour

// kubeOptions: a snapshot read, a render and a few API server writes.
func kubeOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    lostWorkerWithin,
		RetryPolicy:         converge,
		Summary:             summary,
	})
}

// readyOptions: one long attempt that heartbeats every poll and gives up at the deadline by
// itself; a lost worker is noticed within the heartbeat timeout and the attempt is retried.
func readyOptions(ctx workflow.Context, left time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    left + time.Minute,
		ScheduleToCloseTimeout: left + 2*time.Minute,
		HeartbeatTimeout:       2 * lostWorkerWithin, // it heartbeats itself, every few seconds
		RetryPolicy:            converge,
		Summary:                "wait for ready endpoints",
	})
}

// trafficOptions: a reading is worth a couple of quick attempts, not more: a failed reading
// counts as nothing and the next check comes soon.
func trafficOptions(ctx workflow.Context, interval time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    20 * time.Second,
		ScheduleToCloseTimeout: readingBound(interval),
		HeartbeatTimeout:       lostWorkerWithin,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: permanent,
		},
		Summary: "read traffic",
	})
}

// readingBound is the longest one reading may take, its retries included.
func readingBound(interval time.Duration) time.Duration { return max(30*time.Second, interval) }

// planWaitsFor bounds one attempt of a step that, in advise mode, waits for its plan to be
// applied in the cluster (it heartbeats all along: a lost worker is still noticed in seconds).
const planWaitsFor = 24 * time.Hour

// planOptions are the options of a registry transition or a retirement: base's, with a
// start-to-close timeout long enough for advise mode's wait on the plan (the activity reads
// the app's mode at each step; in manage and observe modes it returns as quickly as before).
// Workflows started before advise mode existed keep base's options (change "advise-mode").
func planOptions(ctx workflow.Context, base func(workflow.Context, string) workflow.Context, summary string) workflow.Context {
	ctx = base(ctx, summary)
	if workflow.GetVersion(ctx, "advise-mode", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ctx
	}
	opts := workflow.GetActivityOptions(ctx)
	opts.StartToCloseTimeout = planWaitsFor
	return workflow.WithActivityOptions(ctx, opts)
}
