package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// RouteWriter writes the complete set of an app's rendered HTTPRoutes, fenced by generation: a
// write never replaces routes written from a newer generation. *kube.RouteWriter is the
// implementation; the routes it is given carry the labels and the generation annotation the
// renderer (routes.Render) put on them, and it adds none of its own.
type RouteWriter interface {
	ApplyRoutes(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error)
}

var _ RouteWriter = (*kube.RouteWriter)(nil)

// Outcomes of a route write (the label values of skewguard_route_writes_total).
const (
	RoutesApplied   = "applied"   // at least one HTTPRoute was created, changed or deleted
	RoutesUnchanged = "unchanged" // everything was already as desired
	RoutesStale     = "stale"     // a newer generation was already written: nothing done
	RoutesDisabled  = "disabled"  // skew protection is off: no Gateway API call made
)

// RouteOutcome is what a route write did: the summary of a kube.RouteApplyResult that
// SyncResult carries (it is recorded in workflow histories, so its shape stays as it is) and
// skewguard_route_writes_total counts.
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

// SyncRoutes renders the app's HTTPRoutes from the registry and writes them, under the app's
// registry lock: the snapshot is read and the routes written while no other change to the app
// can commit, so writes are serialized and always carry the newest generation. With no live
// version left it writes the empty set, removing the app's routes. Repeating it writes nothing
// new. Drift (a route edited or deleted by hand) is repaired, since the writer compares specs.
func (a *Activities) SyncRoutes(ctx context.Context, in SyncInput) (SyncResult, error) {
	if !a.Config.SkewProtection {
		metrics.RouteWrite(RoutesDisabled)
		return SyncResult{Write: RouteOutcome{Outcome: RoutesDisabled}}, nil
	}
	var res SyncResult
	sync := func() error {
		return a.Registry.Publish(ctx, in.App, func(ctx context.Context, snap registry.Snapshot) error {
			var err error
			res, err = a.publish(ctx, snap, "", "")
			return err
		})
	}
	err := sync()
	if errors.Is(err, errRoutesAhead) {
		if _, err = a.Registry.BumpGeneration(ctx, in.App); err == nil {
			err = sync()
		}
	}
	if errors.Is(err, registry.ErrNotFound) {
		// No such app in the registry: nothing of it may be routed.
		res, err = a.publish(ctx, registry.Snapshot{App: registry.Application{Namespace: in.App.Namespace, Name: in.App.Name}}, "", "")
	}
	if err != nil {
		return res, classify(err)
	}
	if in.Cause.Label != "" {
		detail := map[string]any{"generation": res.Generation, "routes": res.Routes, "outcome": res.Write.Outcome}
		if err := a.Registry.AppendAudit(ctx, in.Cause, EventRoutesSynced, in.Actor, in.Reason, detail); err != nil {
			return res, classify(err)
		}
	}
	return res, nil
}

// RoutesInvalidError is a snapshot whose routes cannot be rendered (a hostname, path, version
// label or Service that Gateway API refuses): retrying cannot help.
type RoutesInvalidError struct{ Err error }

func (e *RoutesInvalidError) Error() string { return "routes cannot be rendered: " + e.Err.Error() }
func (e *RoutesInvalidError) Unwrap() error { return e.Err }

// RoutesRefusedError is a route write the API server (or an admission webhook) refused, or a
// route of the same name that skewguard does not manage: retrying as is cannot help.
type RoutesRefusedError struct{ Err error }

func (e *RoutesRefusedError) Error() string { return "routes refused: " + e.Err.Error() }
func (e *RoutesRefusedError) Unwrap() error { return e.Err }

// publish renders snap's routes and writes them with snap's generation. It is called with the
// app's registry lock held (inside the transaction of a state change, or by SyncRoutes). The
// app's mode is read from snap (the same transaction): observe writes nothing; advise writes
// nothing and, for a step (version and step set; empty for a route sync), fails with a
// *PlanPendingError until the cluster shows the rendered routes.
func (a *Activities) publish(ctx context.Context, snap registry.Snapshot, version, step string) (SyncResult, error) {
	if !a.Config.SkewProtection {
		metrics.RouteWrite(RoutesDisabled)
		return SyncResult{Generation: snap.Generation, Write: RouteOutcome{Outcome: RoutesDisabled}}, nil
	}
	app := registry.AppRef{Namespace: snap.App.Namespace, Name: snap.App.Name}
	desired, err := routes.Render(RouteInput(a.Config, snap))
	if err != nil {
		return SyncResult{}, &RoutesInvalidError{Err: err}
	}
	switch ModeOf(a.Config, snap.Policy) {
	case registry.ModeObserve:
		metrics.RouteWrite(RoutesObserved)
		res := SyncResult{Generation: snap.Generation, Write: RouteOutcome{Outcome: RoutesObserved}}
		for _, r := range desired {
			res.Routes = append(res.Routes, r.Name)
		}
		return res, nil
	case registry.ModeAdvise:
		return a.advisePublish(ctx, snap, version, step, desired)
	}
	written, err := a.Routes.ApplyRoutes(ctx, app.Namespace, app.Name, snap.Generation, desired)
	if err != nil {
		metrics.RouteWrite("error")
		err = fmt.Errorf("write routes of %s (generation %d): %w", app, snap.Generation, err)
		if permanentWriteError(err) {
			return SyncResult{}, &RoutesRefusedError{Err: err}
		}
		return SyncResult{}, err
	}
	out := routeOutcome(written)
	metrics.RouteWrite(out.Outcome)
	if out.Outcome == RoutesStale {
		// Only a write whose transaction did not commit after it reached the API server leaves
		// routes ahead of the registry; the caller moves the generation past them and retries.
		return SyncResult{}, fmt.Errorf("%w: routes of %s, registry generation %d", errRoutesAhead, app, snap.Generation)
	}
	res := SyncResult{Generation: snap.Generation, Write: out, Routes: make([]string, 0, len(desired))}
	for _, r := range desired {
		res.Routes = append(res.Routes, r.Name)
	}
	return res, nil
}

// errRoutesAhead: the app's routes carry a generation newer than the registry's.
var errRoutesAhead = errors.New("routes carry a generation newer than the registry's")

// permanentWriteError reports whether a route write failed for a reason a retry cannot fix.
func permanentWriteError(err error) bool {
	return permanentKubeError(err) || errors.Is(err, kube.ErrRouteNotManaged)
}

// ValidateVersion checks, with the renderer's own rules, that routes can be rendered for the
// version v as the app's Active version: its app, label, Service, port, path and hostname, with
// the configured parentRefs and cookie. Detection calls it; the flip renders again anyway.
func ValidateVersion(cfg config.Config, v registry.Version) error {
	if v.ServicePort == 0 {
		v.ServicePort = 1 // resolved from the Service later; not a reason to refuse
	}
	v.State = registry.Active
	snap := registry.Snapshot{App: registry.Application{Namespace: v.Namespace, Name: v.App}, Active: &v}
	return routes.Validate(RouteInput(cfg, snap))
}

// ClaimOf is the host and path prefix v's routes serve.
func ClaimOf(v registry.Version) registry.Claim {
	var hosts []string
	if v.Hostname != "" {
		hosts = []string{v.Hostname}
	}
	return registry.Claim{Host: v.Hostname, Path: routes.PathPrefix(v.App, v.PathPrefix, hosts)}
}

// OwnCookieName is the pin cookie of an app whose host and path nest with another app's: the
// configured name qualified by the app's namespace and name, unique to the app.
func OwnCookieName(base string, app registry.AppRef) string {
	return base + "_" + app.Namespace + "_" + app.Name
}

// GroupCookieName is the pin cookie every app of the app group group in namespace shares: the
// configured name, "__g_", the namespace and the group. An app's own cookie (OwnCookieName) has
// the namespace's first character, never '_', right after the configured name's "_", so no
// group cookie is ever an app's cookie and a group pin never pins an app outside the group; a
// namespace holds no '_', so two groups (of two namespaces) never share a cookie either.
func GroupCookieName(base, namespace, group string) string {
	return base + "__g_" + namespace + "_" + group
}

// GroupCookiePath is the Path of a group's cookie: "/", so the browser sends it to every member
// of the group on the host whatever their path prefixes. A prefix common to the members would
// change as members join or leave, and a cookie set again for another Path is a second cookie
// of the same name, which the browser sends alongside the first.
const GroupCookiePath = "/"

// backend is the renderer's view of v: its Service, and its group's cookie when it has one.
func backend(cfg config.Config, v registry.Version) routes.Backend {
	b := routes.Backend{Version: v.Label, ServiceName: v.ServiceName, Port: v.ServicePort, Staged: v.State == registry.Staged}
	if v.Group != "" {
		b.CookieName, b.CookiePath = GroupCookieName(cfg.CookieName, v.Namespace, v.Group), GroupCookiePath
	}
	return b
}

// RouteInput builds the renderer's input from one snapshot: the path and hostname come from the
// Active version, else from the newest pinned one.
func RouteInput(cfg config.Config, snap registry.Snapshot) routes.Input {
	in := routes.Input{
		Namespace:     snap.App.Namespace,
		App:           snap.App.Name,
		Generation:    snap.Generation,
		CookieName:    cmp.Or(snap.App.CookieName, cfg.CookieName),
		CookieMaxAge:  cfg.CookieMaxAge,
		RewritePrefix: cfg.RewritePathPrefix,
		Plain:         snap.Policy.ProtectionOff(), // skew protection off for the app: one plain route
	}
	if snap.Policy.CookieMaxAge != nil {
		in.CookieMaxAge = *snap.Policy.CookieMaxAge
	}
	in.ParentRefs = append(in.ParentRefs, cfg.ParentRefs...) // a copy: the renderer may not share the configuration's array
	var source *registry.Version
	if snap.Active != nil {
		source = snap.Active
		active := backend(cfg, *snap.Active)
		in.Active = &active
	}
	for i, v := range snap.Pinned {
		in.Pinned = append(in.Pinned, backend(cfg, v))
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

// routeOutcome summarises what the writer did: stale if a newer generation was there first,
// applied if any route was created, changed, restamped or deleted, else unchanged.
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

// RouteCheckInput asks whether the Gateways accepted an app's routes after a change of version.
type RouteCheckInput struct {
	App   registry.AppRef     `json:"app"`
	Cause registry.VersionRef `json:"cause"`
	// Within bounds how long to wait for the Gateways to report on the current generation.
	Within time.Duration `json:"within"`
}

// EventRoutesNotAccepted is the audit event (and Kubernetes Event reason) of routes a Gateway
// did not accept.
const EventRoutesNotAccepted = "RoutesNotAccepted"

// CheckRoutes reads the app's routes' status back until every parent has reported on the
// current generation, or Within passes. A Gateway that refused them is reported on the cause
// version's audit and as a Warning Event on its Deployments; it is not an error (the routes
// are written; what the Gateway does with them is shown, not retried).
func (a *Activities) CheckRoutes(ctx context.Context, in RouteCheckInput) (kube.RouteAcceptance, error) {
	if !a.Config.SkewProtection || a.Workloads.Gateway == nil {
		return kube.RouteAcceptance{Accepted: true}, nil
	}
	deadline := time.Now().Add(in.Within)
	for {
		acc, err := kube.RouteStatus(ctx, a.Workloads.Gateway, in.App.Namespace, in.App.Name)
		if err != nil {
			return acc, err
		}
		if len(acc.Refused) > 0 {
			msg := "a Gateway did not accept the routes: " + strings.Join(acc.Refused, "; ")
			if err := a.Registry.AppendAudit(ctx, in.Cause, EventRoutesNotAccepted, registry.Actor{Type: registry.ActorSystem, Name: "gateway"}, msg, acc); err != nil {
				return acc, classify(err)
			}
			_ = a.ReportEvent(ctx, EventInput{Ref: in.Cause, Type: "Warning", Reason: EventRoutesNotAccepted, Message: msg})
			return acc, nil
		}
		if acc.Accepted || !time.Now().Before(deadline) {
			return acc, nil
		}
		select {
		case <-ctx.Done():
			return acc, ctx.Err()
		case <-time.After(200 * time.Millisecond): // bounded poll of the status the Gateway writes
		}
	}
}
