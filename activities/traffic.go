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
	// and still be used. The workflow passes its check interval, so the draining versions of one
	// app share one Prometheus query per interval whatever their phases.
	MaxAge time.Duration `json:"maxAge"`
	// NotBefore is the earliest instant the reading may be taken at (the end of the window it
	// covers): the version's first reading instant, grace end + traffic window, so that no
	// reading covers the grace period. Zero: no bound.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// After is the instant of the version's previous reading (TrafficReading.At): the new one is
	// taken strictly later, so two consecutive readings of a version never come from one query.
	// Zero: no previous reading.
	After time.Time `json:"after,omitzero"`
}

// NewTrafficInput is the input of a Draining version's reading as its lifecycle asks for it: at
// most one query per app per check interval, never from before the first reading instant
// firstRead, and never from the query of the previous reading (taken at previous; zero if none).
func NewTrafficInput(ref registry.VersionRef, serviceName string, p Policy, firstRead, previous time.Time) TrafficInput {
	return TrafficInput{Ref: ref, ServiceName: serviceName, Window: p.TrafficWindow, MaxAge: p.CheckInterval,
		NotBefore: firstRead, After: previous}
}

// cachedRates is the last answer fetched for one app and window.
type cachedRates struct {
	rates traffic.Rates
}

// TrafficReading is one reading. Found=false means unknown (no series): never zero.
type TrafficReading struct {
	// At is when Prometheus evaluated the query (the worker's clock): the reading covers the
	// traffic window that ends at At. Readings of one app taken from one query share it.
	At    time.Time `json:"at"`
	RPS   float64   `json:"rps"`
	Found bool      `json:"found"`
	Query string    `json:"query,omitempty"`
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

// usable reports whether the answer r may give in its reading: it covers the version, is
// taken no earlier than in.NotBefore and strictly after in.After, and is at most in.MaxAge old.
func (in TrafficInput) usable(r traffic.Rates, now time.Time) bool {
	if _, has := r.Readings[in.Ref.Label]; !has {
		return false
	}
	return !r.At.Before(in.NotBefore) && r.At.After(in.After) && now.Sub(r.At) <= in.MaxAge
}

// appRates returns an answer for the version's app that in may use: the last one fetched when
// it is usable, else a new query, made at most once at a time per app and window and shared by
// the versions that wait for it.
func (a *Activities) appRates(ctx context.Context, in TrafficInput) (traffic.Rates, error) {
	key := fmt.Sprintf("%s/%s/%d", in.Ref.Namespace, in.Ref.App, in.Window)
	cached := func() (traffic.Rates, bool) {
		a.trafficMu.Lock()
		defer a.trafficMu.Unlock()
		c, ok := a.trafficCache[key]
		return c.rates, ok && in.usable(c.rates, a.trafficNow())
	}
	for attempt := 0; ; attempt++ {
		if r, ok := cached(); ok {
			return r, nil
		}
		if attempt == 2 {
			// Twice the query waited for was not one this version may use (both started for
			// other versions, each before this one's bounds): a query of its own.
			return a.fetchRates(ctx, key, in)
		}
		mine := false // this call ran the function: its answer is used whatever the clocks say
		v, err, _ := a.trafficCalls.Do(key, func() (any, error) {
			mine = true
			if r, ok := cached(); ok {
				return r, nil
			}
			return a.fetchRates(ctx, key, in)
		})
		if err != nil {
			return traffic.Rates{}, err
		}
		// A query made by this call is the freshest reading there can be, so it is used even if
		// the worker's clock is behind NotBefore. One waited for may have been started for
		// another version before this one's bounds (or before it was draining): then it waits
		// for the next one, which starts after this call came.
		if r := v.(traffic.Rates); mine || in.usable(r, a.trafficNow()) {
			return r, nil
		}
	}
}

// fetchRates queries Prometheus for the app's Draining versions now, and keeps the answer for the
// other versions of the app unless a newer one is already kept.
func (a *Activities) fetchRates(ctx context.Context, key string, in TrafficInput) (traffic.Rates, error) {
	targets, active, err := a.drainingTargets(ctx, in)
	if err != nil {
		return traffic.Rates{}, err
	}
	r, err := a.Traffic.RatesAt(ctx, in.Ref.Namespace, in.Ref.App, in.Window, targets, a.trafficNow())
	if err != nil {
		return traffic.Rates{}, err
	}
	r.Reference = active
	a.trafficMu.Lock()
	defer a.trafficMu.Unlock()
	if a.trafficCache == nil {
		a.trafficCache = map[string]cachedRates{}
	}
	if c, ok := a.trafficCache[key]; !ok || r.At.After(c.rates.At) {
		a.trafficCache[key] = cachedRates{rates: r}
	}
	return r, nil
}

func (a *Activities) trafficNow() time.Time {
	if a.trafficClock != nil {
		return a.trafficClock()
	}
	return time.Now()
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
	for i := range targets {
		for _, v := range snap.Pinned {
			if v.Label == targets[i].Version && v.Group != "" {
				// Without its members' traffic a group's version could read zero too early: no
				// reading rather than a partial one.
				if targets[i].Members, err = a.groupMembers(ctx, v); err != nil {
					return nil, "", err
				}
			}
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

// GroupReader is what the registry answers about app groups (registry.Store has it).
type GroupReader interface {
	GroupVersions(ctx context.Context, namespace, group, label string) ([]registry.Version, error)
}

// groupSiblings returns the live versions of v's label in the other apps of v's app group.
func (a *Activities) groupSiblings(ctx context.Context, v registry.Version) ([]registry.Version, error) {
	gr, ok := a.Registry.(GroupReader)
	if !ok || v.Group == "" {
		return nil, nil
	}
	vs, err := gr.GroupVersions(ctx, v.Namespace, v.Group, v.Label)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(vs, func(o registry.Version) bool { return o.App == v.App }), nil
}

// groupMembers lists the Services of v's version in the other apps of its app group that still
// take traffic (Active or Draining): their traffic is counted as v's, so the group's version
// drains as one.
func (a *Activities) groupMembers(ctx context.Context, v registry.Version) ([]traffic.Member, error) {
	siblings, err := a.groupSiblings(ctx, v)
	if err != nil {
		return nil, err
	}
	var members []traffic.Member
	for _, o := range siblings {
		if o.State == registry.Active || o.State == registry.Draining {
			members = append(members, traffic.Member{App: o.App, Service: o.ServiceName})
		}
	}
	return members, nil
}
