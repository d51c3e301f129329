package converge

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestRoutesUpToDateInTheCacheAreNotResynced: with Render set, start-up convergence resyncs
// only the apps whose cached routes differ from their rendering (a route missing, a spec, label
// or generation that differs, a route too many), or whose rendering failed; the others cost
// nothing.
func TestRoutesUpToDateInTheCacheAreNotResynced(t *testing.T) {
	const ns = "shop"
	desired := map[string][]gatewayv1.HTTPRoute{
		"same":       {*route(ns, "same", "same", 80)},
		"spec":       {*route(ns, "spec", "spec", 80)},
		"gen":        {*route(ns, "gen", "gen", 80)},
		"missing":    {*route(ns, "missing", "missing", 80), *route(ns, "missing--pins-1", "missing", 81)},
		"surplus":    {*route(ns, "surplus", "surplus", 80)},
		"none":       {},
		"broken":     {*route(ns, "broken", "broken", 80)},
		"extralabel": {*route(ns, "extralabel", "extralabel", 80)},
	}
	desired["gen"][0].Annotations = map[string]string{"skewguard.dev/route-generation": "4"}
	render := func(_ context.Context, app registry.AppRef) ([]gatewayv1.HTTPRoute, error) {
		if app.Name == "broken" || app.Name == "sentinel" {
			return nil, errors.New("registry unreachable")
		}
		return desired[app.Name], nil
	}
	withLabel := route(ns, "extralabel", "extralabel", 80)
	withLabel.Labels["someone"] = "else"
	initial := []*gatewayv1.HTTPRoute{
		route(ns, "same", "same", 80),
		route(ns, "spec", "spec", 90),
		route(ns, "gen", "gen", 80),
		route(ns, "missing", "missing", 80),
		route(ns, "surplus", "surplus", 80), route(ns, "surplus--pins-1", "surplus", 81),
		route(ns, "broken", "broken", 80),
		withLabel,
	}
	var apps appList
	for name := range desired {
		apps.apps = append(apps.apps, registry.Application{Namespace: ns, Name: name})
	}
	h := start(t, &apps, Options{Render: render}, initial...)
	h.rec.await(t, ns+"/spec") // start-up has enqueued every app
	// One worker works the queue in order: once an app enqueued after all of them is resynced
	// (its rendering fails), every one of them has been reconciled.
	h.c.queue.Add(ns + "/sentinel")
	h.rec.await(t, ns+"/sentinel")
	for _, app := range []string{"same", "none", "extralabel"} {
		assert.Zero(t, h.rec.count(ns+"/"+app), "%s is up to date in the cache", app)
	}
	for _, app := range []string{"spec", "gen", "missing", "surplus", "broken"} {
		assert.Equal(t, 1, h.rec.count(ns+"/"+app), app)
	}
}
