// Package activities owns everything the version lifecycle does to the world: registry
// transitions in PostgreSQL, HTTPRoute writes, readiness of a version's Service, traffic readings
// from Prometheus, scaling down or deleting a version's workloads, and the audit trail. Each
// activity is a method on Activities, idempotent (repeating it after a crash, timeout or retry
// changes nothing further), and reports permanent failures as non-retryable application errors
// of the ErrType* types so that the workflow can tell them from transient ones.
package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/singleflight"

	"github.com/skewguard/skewguard/internal/bounds"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/traffic"
)

// Types of the non-retryable application errors activities return.
const (
	// ErrTypeIllegalTransition: the registry refused the state change (details: From, To).
	ErrTypeIllegalTransition = "IllegalTransition"
	// ErrTypeInvalidInput: the input can never succeed as it is.
	ErrTypeInvalidInput = "InvalidInput"
	// ErrTypeNotFound: the version or application does not exist.
	ErrTypeNotFound = "NotFound"
	// ErrTypeNotReady: the Service had no ready, listening endpoint by the deadline.
	ErrTypeNotReady = "NotReady"
	// ErrTypeNoTrafficSource: no Prometheus is configured; traffic is unknown.
	ErrTypeNoTrafficSource = "NoTrafficSource"
	// ErrTypeStaleLife: the registry's newest life of the label is not the one the workflow runs.
	ErrTypeStaleLife = "StaleLife"
	// ErrTypeRoutesInvalid: the app's routes cannot be rendered with this change (a hostname,
	// path, label or Service that Gateway API refuses); the registry was left as it was.
	ErrTypeRoutesInvalid = "RoutesInvalid"
	// ErrTypeRoutesRefused: the API server refused the route write (forbidden, invalid, a route
	// of that name that is not ours); the registry was left as it was.
	ErrTypeRoutesRefused = "RoutesRefused"
	// ErrTypeClaimConflict: another application already serves the version's host and path, or
	// the operator's claims allowlist does not allow the version's namespace (or app) to claim
	// them (a *claims.NotAllowedError).
	ErrTypeClaimConflict = "ClaimConflict"
)

// Registry is what the activities use of the version registry; *registry.Store is the
// implementation.
type Registry interface {
	ObserveVersion(ctx context.Context, o registry.Observation, actor registry.Actor) (registry.Version, bool, error)
	GetPolicy(ctx context.Context, app registry.AppRef) (registry.Policy, error)
	Flip(ctx context.Context, req registry.FlipRequest) (registry.Transition, error)
	Publish(ctx context.Context, app registry.AppRef, fn func(ctx context.Context, snap registry.Snapshot) error) error
	ApplySwitch(ctx context.Context, app registry.AppRef, actor registry.Actor, publish func(ctx context.Context, snap registry.Snapshot) error) (registry.SwitchResult, error)
	BumpGeneration(ctx context.Context, app registry.AppRef) (int64, error)
	GetVersion(ctx context.Context, ref registry.VersionRef) (registry.Version, error)
	Generation(ctx context.Context, app registry.AppRef) (int64, error)
	Snapshot(ctx context.Context, app registry.AppRef) (registry.Snapshot, error)
	AppendAudit(ctx context.Context, ref registry.VersionRef, event string, actor registry.Actor, reason string, detail any) error
	RecordTraffic(ctx context.Context, ref registry.VersionRef, rps float64, at time.Time) error
}

var _ Registry = (*registry.Store)(nil)

// Activities holds the clients the lifecycle activities use. Workflows refer to its methods
// through a nil *Activities; the worker registers a real one.
type Activities struct {
	Registry  Registry
	Workloads kube.Workloads
	// Readiness, when set, answers WaitReady from informer events; nil polls Workloads.
	Readiness *kube.ReadinessWatcher
	// Routes writes the rendered HTTPRoutes; nil with skew protection off (no Gateway API call).
	Routes RouteWriter
	// Traffic is nil when no Prometheus is configured: every reading is then unknown.
	Traffic *traffic.Querier
	Config  config.Config
	// AllRoutes lists every HTTPRoute in the cluster, so that a claim of a host and path that
	// a route skewguard does not write already serves is refused; nil checks only the registry.
	AllRoutes RouteLister
	// Claims is the operator's allowlist of the hosts and paths each namespace may claim; a
	// version takes its claim at the flip only if it allows it. nil refuses every claim (tests
	// that mean to allow everything say claims.AllowAll()).
	Claims *claims.Allowlist
	Log    *slog.Logger
	// ReadyPoll is how often WaitReady looks at the Service (default 1s).
	ReadyPoll time.Duration

	trafficMu    sync.Mutex
	trafficCache map[string]cachedRates
	trafficCalls singleflight.Group
	trafficClock func() time.Time // nil: time.Now
}

// Policy is an application's effective lifecycle settings: the global configuration with the
// app's registry overrides applied.
type Policy struct {
	GracePeriod      time.Duration `json:"gracePeriod"`
	MaxAlive         time.Duration `json:"maxAlive"`
	CheckInterval    time.Duration `json:"checkInterval"`
	TrafficWindow    time.Duration `json:"trafficWindow"`
	ReadinessTimeout time.Duration `json:"readinessTimeout"`
	AutoCleanup      bool          `json:"autoCleanup"`
	RequireApproval  bool          `json:"requireApproval"`
	// MaxVersions caps the app's Draining versions (0: no cap). The registry applies it at each
	// activation; the lifecycle only shows it.
	MaxVersions int64 `json:"maxVersions,omitempty"`
	// ProtectionOff: the app's skew protection is switched off (policy enabled=false). Named for
	// off so that a payload recorded before the switch existed decodes as on.
	ProtectionOff bool `json:"protectionOff,omitempty"`
	// Mode is manage, advise or observe (registry.Mode*); the activities read it again at each
	// step, so the lifecycle only shows it.
	Mode string `json:"mode,omitempty"`
}

// ResolvePolicy applies the per-app overrides p to the global configuration. An override is
// clamped into its range (internal/bounds) before it becomes a duration: the API refuses values
// outside it, but a row stored before the bounds existed must neither overflow (9.3e12 ms was a
// negative duration: immediate expiry) nor check traffic every millisecond.
func ResolvePolicy(cfg config.Config, p registry.Policy) Policy {
	ms := func(override *int64, r bounds.Range, global time.Duration) time.Duration {
		if override != nil {
			return r.Duration(*override)
		}
		return global
	}
	flag := func(override *bool, global bool) bool {
		if override != nil {
			return *override
		}
		return global
	}
	pol := Policy{
		GracePeriod:      ms(p.GracePeriodMS, bounds.GracePeriod, cfg.GracePeriod()),
		MaxAlive:         ms(p.MaxAliveMS, bounds.MaxAlive, cfg.MaxAlive()),
		CheckInterval:    ms(p.CheckIntervalMS, bounds.CheckInterval, cfg.CheckInterval()),
		TrafficWindow:    ms(p.TrafficWindowMS, bounds.TrafficWindow, cfg.TrafficWindow()),
		ReadinessTimeout: cfg.ReadinessTimeout(),
		AutoCleanup:      flag(p.AutoCleanup, cfg.AutoCleanup),
		RequireApproval:  flag(p.RequireApproval, cfg.RequireApproval),
		MaxVersions:      bounds.MaxVersions.Clamp(cfg.MaxVersions),
		ProtectionOff:    p.ProtectionOff(),
	}
	if p.MaxVersions != nil {
		pol.MaxVersions = bounds.MaxVersions.Clamp(*p.MaxVersions)
	}
	pol.Mode = ModeOf(cfg, p)
	return pol
}

func (a *Activities) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

// classify turns the permanent errors of the packages activities use into non-retryable
// application errors; anything else is returned as is and retried.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ite *registry.IllegalTransitionError
	var invalidRoutes *RoutesInvalidError
	var refused *RoutesRefusedError
	var conflict *registry.ClaimConflictError
	var notAllowed *claims.NotAllowedError
	switch {
	case errors.As(err, &notAllowed):
		return temporal.NewNonRetryableApplicationError(notAllowed.Error(), ErrTypeClaimConflict, err)
	case errors.As(err, &invalidRoutes):
		metrics.Refusal(ErrTypeRoutesInvalid)
		return temporal.NewNonRetryableApplicationError(invalidRoutes.Error(), ErrTypeRoutesInvalid, err)
	case errors.As(err, &refused):
		metrics.Refusal(ErrTypeRoutesRefused)
		return temporal.NewNonRetryableApplicationError(refused.Error(), ErrTypeRoutesRefused, err)
	case errors.As(err, &conflict):
		metrics.Refusal(ErrTypeClaimConflict)
		return temporal.NewNonRetryableApplicationError(conflict.Error(), ErrTypeClaimConflict, err)
	case errors.As(err, &ite):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeIllegalTransition, err,
			IllegalTransition{From: ite.From, To: ite.To})
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, routes.ErrInvalidInput):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	case errors.Is(err, registry.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeNotFound, err)
	}
	return err
}

// IllegalTransition is the detail of an ErrTypeIllegalTransition error.
type IllegalTransition struct {
	From registry.State `json:"from"`
	To   registry.State `json:"to"`
}

func staleLife(ref registry.VersionRef, want, got int64) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("version %s: the registry's newest life is #%d, this workflow runs #%d", ref, got, want),
		ErrTypeStaleLife, nil)
}
