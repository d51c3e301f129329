package activities

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/traffic"
)

// TrafficInput asks for one Draining version's request rate.
type TrafficInput struct {
	Ref         registry.VersionRef `json:"ref"`
	ServiceName string              `json:"serviceName"`
	Window      time.Duration       `json:"window"`
	// MaxAge is how old an answer fetched for another Draining version of the same app may be
	// and still be used: the workflow passes a fraction of its check interval, so the draining
	// versions of one app checking at about the same time share one Prometheus query.
	MaxAge time.Duration `json:"maxAge"`
}

// TrafficReading is one reading. Found=false means unknown (no series): never zero.
type TrafficReading struct {
	At    time.Time `json:"at"`
	RPS   float64   `json:"rps"`
	Found bool      `json:"found"`
	Query string    `json:"query,omitempty"`
}

type cachedRates struct {
	rates   traffic.Rates
	fetched time.Time
}

// ReadTraffic reads the version's request rate, from one query per app that covers every
// Draining version, and records a found reading in the registry. A failed query is an error
// (retried a little by the workflow's policy, then counted as nothing).
func (a *Activities) ReadTraffic(ctx context.Context, in TrafficInput) (TrafficReading, error) {
	if a.Traffic == nil {
		return TrafficReading{}, temporal.NewNonRetryableApplicationError(
			"no Prometheus configured (PROMETHEUS_URL): traffic is unknown", ErrTypeNoTrafficSource, nil)
	}
	rates, err := a.appRates(ctx, in)
	if err != nil {
		return TrafficReading{}, err
	}
	r := rates.Of(in.Ref.Label)
	out := TrafficReading{At: rates.At, RPS: r.RPS, Found: r.Found, Query: rates.Query}
	if r.Found {
		if err := a.Registry.RecordTraffic(ctx, in.Ref, r.RPS, rates.At); err != nil {
			// The reading stands; the registry's copy is for display only.
			a.log().Warn("record traffic reading", "version", in.Ref.String(), "error", err)
		}
	}
	return out, nil
}

// appRates returns a fresh enough answer for the version's app, querying Prometheus at most once
// at a time per app and window.
func (a *Activities) appRates(ctx context.Context, in TrafficInput) (traffic.Rates, error) {
	key := fmt.Sprintf("%s/%s/%d", in.Ref.Namespace, in.Ref.App, in.Window)
	fresh := func() (traffic.Rates, bool) {
		a.trafficMu.Lock()
		defer a.trafficMu.Unlock()
		c, ok := a.trafficCache[key]
		if !ok || time.Since(c.fetched) > in.MaxAge {
			return traffic.Rates{}, false
		}
		_, has := c.rates.Readings[in.Ref.Label]
		return c.rates, has
	}
	if r, ok := fresh(); ok {
		return r, nil
	}
	v, err, _ := a.trafficCalls.Do(key, func() (any, error) {
		if r, ok := fresh(); ok {
			return r, nil
		}
		targets, active, err := a.drainingTargets(ctx, in)
		if err != nil {
			return traffic.Rates{}, err
		}
		r, err := a.Traffic.Rates(ctx, in.Ref.Namespace, in.Ref.App, in.Window, targets)
		if err != nil {
			return traffic.Rates{}, err
		}
		r.Reference = active
		a.trafficMu.Lock()
		if a.trafficCache == nil {
			a.trafficCache = map[string]cachedRates{}
		}
		a.trafficCache[key] = cachedRates{rates: r, fetched: time.Now()}
		a.trafficMu.Unlock()
		return r, nil
	})
	if err != nil {
		return traffic.Rates{}, err
	}
	r := v.(traffic.Rates)
	if _, ok := r.Readings[in.Ref.Label]; !ok {
		// Shared an in-flight query that was started before this version was draining.
		targets := []traffic.Target{{Version: in.Ref.Label, Service: in.ServiceName}}
		return a.Traffic.Rates(ctx, in.Ref.Namespace, in.Ref.App, in.Window, targets)
	}
	return r, nil
}

// drainingTargets lists the app's Draining versions, always including the asking one, and then the
// Active version (returned as reference) whose series proves the query sees the app's traffic.
func (a *Activities) drainingTargets(ctx context.Context, in TrafficInput) ([]traffic.Target, string, error) {
	targets := []traffic.Target{{Version: in.Ref.Label, Service: in.ServiceName}}
	snap, err := a.Registry.Snapshot(ctx, in.Ref.AppRef())
	if err != nil {
		// The asking version alone still gets its reading.
		a.log().Warn("list draining versions for the traffic query", "app", in.Ref.AppRef().String(), "error", err)
		return targets, "", nil
	}
	for _, v := range snap.Pinned {
		if v.State == registry.Draining && v.Label != in.Ref.Label {
			targets = append(targets, traffic.Target{Version: v.Label, Service: v.ServiceName})
		}
	}
	slices.SortFunc(targets[1:], func(x, y traffic.Target) int {
		if x.Version < y.Version {
			return -1
		}
		if x.Version > y.Version {
			return 1
		}
		return 0
	})
	active := ""
	if snap.Active != nil && snap.Active.Label != in.Ref.Label {
		active = snap.Active.Label
		targets = append(targets, traffic.Target{Version: active, Service: snap.Active.ServiceName})
	}
	return targets, active, nil
}
