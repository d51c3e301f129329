package activities

import (
	"context"
	"errors"

	"github.com/skewguard/skewguard/internal/registry"
)

// SwitchResult is what ApplySwitch did: the Draining versions it expired (their workflows must
// be told to retire them) and the routes it wrote.
type SwitchResult struct {
	Off     bool               `json:"off"`
	Expired []registry.Version `json:"expired,omitempty"`
	Routes  SyncResult         `json:"routes"`
}

// ApplySwitch brings the app in line with its policy's skew protection switch (enabled), in one
// registry transaction under the app lock: while off, every Draining version is expired
// (audited "skew protection disabled for the app") and the routes become one plain route to the
// Active version; while on, the routes get their pin rules and Set-Cookie back. The routes are
// written before the transaction commits: if they cannot be, nothing changes. A repeat expires
// nothing and writes nothing new. With PLT_FEATURE_SKEW_PROTECTION off it does nothing.
func (a *Activities) ApplySwitch(ctx context.Context, in SyncInput) (SwitchResult, error) {
	if !a.Config.SkewProtection {
		return SwitchResult{Routes: SyncResult{Write: RouteOutcome{Outcome: RoutesDisabled}}}, nil
	}
	var routes SyncResult
	apply := func() (registry.SwitchResult, error) {
		return a.Registry.ApplySwitch(ctx, in.App, in.Actor, func(ctx context.Context, snap registry.Snapshot) error {
			var err error
			routes, err = a.publish(ctx, snap, "", "")
			return err
		})
	}
	res, err := apply()
	if errors.Is(err, errRoutesAhead) {
		if _, err = a.Registry.BumpGeneration(ctx, in.App); err == nil {
			res, err = apply()
		}
	}
	if err != nil {
		return SwitchResult{}, classify(err)
	}
	if in.Cause.Label != "" && routes.Write.Outcome != RoutesUnchanged {
		detail := map[string]any{"generation": routes.Generation, "routes": routes.Routes, "outcome": routes.Write.Outcome,
			"protectionOff": res.Off}
		if err := a.Registry.AppendAudit(ctx, in.Cause, EventRoutesSynced, in.Actor, in.Reason, detail); err != nil {
			a.log().Warn("routes written but not audited", "version", in.Cause.String(), "error", err)
		}
	}
	return SwitchResult{Off: res.Off, Expired: res.Expired, Routes: routes}, nil
}
