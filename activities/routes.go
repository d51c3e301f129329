package activities

import (
	"context"
	"errors"
	"fmt"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// RouteApplier writes the complete set of an app's HTTPRoutes, fenced by generation: a write
// never replaces routes written from a newer generation.
type RouteApplier interface {
	Apply(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (RouteOutcome, error)
}

// RouteApplierFunc adapts a function to RouteApplier.
type RouteApplierFunc func(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (RouteOutcome, error)

// Apply calls f.
func (f RouteApplierFunc) Apply(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (RouteOutcome, error) {
	return f(ctx, namespace, app, generation, desired)
}

// Outcomes of a route write (the label values of skewguard_route_writes_total).
const (
	RoutesApplied   = "applied"   // at least one HTTPRoute was created, changed or deleted
	RoutesUnchanged = "unchanged" // everything was already as desired
	RoutesStale     = "stale"     // a newer generation was already written: nothing done
	RoutesDisabled  = "disabled"  // skew protection is off: no Gateway API call made
)

// RouteOutcome is what a route write did.
type RouteOutcome struct {
	Outcome string   `json:"outcome"`
	Applied []string `json:"applied,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
}

// SyncInput asks for an app's routes to be rendered from the registry and written.
type SyncInput struct {
	App registry.AppRef `json:"app"`
	// Cause is the version whose change asked for the write; the write is audited on it.
	Cause  registry.VersionRef `json:"cause"`
	Actor  registry.Actor      `json:"actor"`
	Reason string              `json:"reason,omitempty"`
}

// SyncResult is what SyncRoutes wrote.
type SyncResult struct {
	Generation int64        `json:"generation"`
	Routes     []string     `json:"routes"`
	Write      RouteOutcome `json:"write"`
}

// EventRoutesSynced is the audit event of a route write.
const EventRoutesSynced = "routes-synced"

// SyncRoutes reads one registry snapshot of the app, renders its HTTPRoutes and writes them with
// the snapshot's generation. With no live version left it writes the empty set, removing the
// app's routes. Repeating it writes nothing new: the rendering is a pure function of the
// snapshot, and an older snapshot's write is refused by the generation fence.
func (a *Activities) SyncRoutes(ctx context.Context, in SyncInput) (SyncResult, error) {
	if !a.Config.SkewProtection {
		metrics.RouteWrite(RoutesDisabled)
		return SyncResult{Write: RouteOutcome{Outcome: RoutesDisabled}}, nil
	}
	snap, err := a.Registry.Snapshot(ctx, in.App)
	if errors.Is(err, registry.ErrNotFound) {
		snap = registry.Snapshot{App: registry.Application{Namespace: in.App.Namespace, Name: in.App.Name}}
	} else if err != nil {
		return SyncResult{}, err
	}
	desired, err := routes.Render(RouteInput(a.Config, snap))
	if err != nil {
		return SyncResult{}, classify(fmt.Errorf("render routes of %s: %w", in.App, err))
	}
	out, err := a.Routes.Apply(ctx, in.App.Namespace, in.App.Name, snap.Generation, desired)
	if err != nil {
		metrics.RouteWrite("error")
		return SyncResult{}, fmt.Errorf("write routes of %s (generation %d): %w", in.App, snap.Generation, err)
	}
	metrics.RouteWrite(out.Outcome)
	res := SyncResult{Generation: snap.Generation, Write: out, Routes: make([]string, 0, len(desired))}
	for _, r := range desired {
		res.Routes = append(res.Routes, r.Name)
	}
	if in.Cause.Label != "" {
		detail := map[string]any{"generation": snap.Generation, "routes": res.Routes, "outcome": out.Outcome}
		if err := a.Registry.AppendAudit(ctx, in.Cause, EventRoutesSynced, in.Actor, in.Reason, detail); err != nil {
			return res, classify(err)
		}
	}
	return res, nil
}

// RouteInput builds the renderer's input from one snapshot: the path and hostname come from the
// Active version, else from the newest pinned one.
func RouteInput(cfg config.Config, snap registry.Snapshot) routes.Input {
	in := routes.Input{
		Namespace:     snap.App.Namespace,
		App:           snap.App.Name,
		Generation:    snap.Generation,
		CookieName:    cfg.CookieName,
		CookieMaxAge:  cfg.CookieMaxAge,
		RewritePrefix: cfg.RewritePathPrefix,
	}
	if snap.Policy.CookieMaxAge != nil {
		in.CookieMaxAge = *snap.Policy.CookieMaxAge
	}
	for _, p := range cfg.ParentRefs {
		in.ParentRefs = append(in.ParentRefs, routes.ParentRef{Namespace: p.Namespace, Name: p.Name, SectionName: p.SectionName})
	}
	var source *registry.Version
	if snap.Active != nil {
		source = snap.Active
		in.Active = &routes.Backend{Version: snap.Active.Label, ServiceName: snap.Active.ServiceName, Port: snap.Active.ServicePort}
	}
	for i, v := range snap.Pinned {
		in.Pinned = append(in.Pinned, routes.Backend{Version: v.Label, ServiceName: v.ServiceName, Port: v.ServicePort,
			Staged: v.State == registry.Staged})
		if snap.Active == nil {
			source = &snap.Pinned[i] // ordered by id: the last one is the newest
		}
	}
	if source != nil {
		in.Path = source.PathPrefix
		if source.Hostname != "" {
			in.Hostnames = []string{source.Hostname}
		}
	}
	return in
}

// KubeRoutes adapts the Kubernetes route writer to RouteApplier.
func KubeRoutes(w *kube.RouteWriter) RouteApplier {
	return RouteApplierFunc(func(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (RouteOutcome, error) {
		res, err := w.ApplyRoutes(ctx, namespace, app, generation, desired)
		if err != nil {
			return RouteOutcome{}, err
		}
		return routeOutcome(res), nil
	})
}

func routeOutcome(res kube.RouteApplyResult) RouteOutcome {
	out := RouteOutcome{Outcome: RoutesUnchanged, Deleted: res.Deleted}
	out.Applied = append(append(out.Applied, res.Created...), res.Updated...)
	switch {
	case res.Superseded:
		out.Outcome = RoutesStale
	case res.Changed():
		out.Outcome = RoutesApplied
	}
	return out
}
