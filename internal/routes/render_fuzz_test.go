package routes_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// maxFuzzPins bounds the pinned versions of one snapshot: past the shard limits of both layouts
// (9 and 2 per route), and far enough to make many shards, without making each run slow.
const maxFuzzPins = 60

// fuzzSnapshot builds a registry snapshot and the worker's config from fuzz input, the way the
// worker sees them: names and labels as typed by users (anything), pinned versions draining or
// staged as the state bits say, parentRefs from "ns/name:section,..." as the operator writes them.
func fuzzSnapshot(ns, app, label, service string, port int32, path, host, cookie, parents string,
	pins uint8, bits uint16, maxAge int64) (config.Config, registry.Snapshot) {
	cfg := config.Config{
		CookieName:        "__plt_dpl",
		CookieMaxAge:      maxAge,
		RewritePathPrefix: bits&1 != 0,
	}
	for _, p := range strings.Split(parents, ",") {
		ref := config.ParentRef{}
		ref.Namespace, ref.Name, _ = strings.Cut(p, "/")
		ref.Name, ref.SectionName, _ = strings.Cut(ref.Name, ":")
		cfg.ParentRefs = append(cfg.ParentRefs, ref)
	}
	snap := registry.Snapshot{App: registry.Application{Namespace: ns, Name: app}, Generation: int64(bits >> 8)}
	if bits&2 != 0 {
		snap.App.CookieName = cookie // the app's own cookie
	} else {
		cfg.CookieName = cookie
	}
	version := func(i int) registry.Version {
		v := registry.Version{Namespace: ns, App: app, Label: label, ServiceName: service, ServicePort: port,
			PathPrefix: path, Hostname: host, State: registry.Draining}
		if i >= 0 {
			if bits&4 == 0 { // else every version has the same label and Service: refused
				v.Label = fmt.Sprintf("%s-%d", label, i)
				v.ServiceName = fmt.Sprintf("%s-%d", service, i)
			}
			if bits>>(3+i%5)&1 != 0 {
				v.State = registry.Staged
			}
			if i%7 == 3 {
				v.ServicePort = port/2 + 1
			}
		}
		return v
	}
	if bits&128 != 0 {
		a := version(-1)
		a.State = registry.Active
		snap.Active = &a
	}
	for i := range int(pins) % (maxFuzzPins + 1) {
		snap.Pinned = append(snap.Pinned, version(i))
	}
	return cfg, snap
}

type renderSeed struct {
	ns, app, label, service string
	port                    int32
	path, host, cookie      string
	parents                 string
	pins                    uint8
	bits                    uint16
	maxAge                  int64
}

func renderSeeds() []renderSeed {
	return []renderSeed{
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik", 2, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik", 9, 0x80, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik", 10, 0x80, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "api/v2/", "", "__plt_dpl", "gw/traefik:http,gw/traefik:https", 3, 0x81, 60},
		{"shop", "web-pins-1", "1.2.3", "web-v1", 80, "", "shop.example.com", "sid", "gw/a", 60, 0xfb, 1},
		{"shop", "Web.V2_x", "A_b.c-9", "web-v1", 65535, "/%2e", "*.example.com", "c^-|~", "gw/a,other/b", 17, 0x1f1, 1 << 40},
		{"team-a", strings.Repeat("a", 63), strings.Repeat("v", 60), strings.Repeat("s", 60), 1, "/" + strings.Repeat("p", 1023), "", "x", "g/" + strings.Repeat("n", 253), 20, 0x80, 10},
		{"", "", "", "", 0, "", "", "", "", 0, 0, 0},
		{"shop", "web", "v1", "web-v1", 0, "//a", "1.2.3.4", "bad;cookie", "gw/traefik,gw/traefik", 1, 0x84, -1},
		{"shop", "web", "v1", "web-v1", 3000, "/a b", "é.example", "__plt_dpl", "/", 5, 0x80, 43200},
		{"shop", "web", "v\"1", "Web", 3000, "/a;b", "", "", "gw/", 1, 0x80, 43200},
		{"shop", "web--pins-1", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik", 30, 0x181, 43200},
		// One defect each, on an otherwise valid snapshot: the refusal must come from Validate,
		// not from the API server.
		{"shop", "web", "v1", "web-v1", 3000, "a//b", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "a/./b", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "a/..", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "a%2Fb", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "a#b", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "shop.example.com.", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "*", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik:a,gw/traefik:a", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik:a,gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "Gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik:Http", 1, 0x81, 43200},
		{"shop", "web", "v1", "1web", 3000, "", "", "__plt_dpl", "gw/traefik", 1, 0x81, 43200},
		{"shop", "web", "v1", "web-v1", 3000, "", "", "__plt_dpl", "gw/traefik", 1, 0x81, 0},
	}
}

// FuzzRender: for any snapshot, Render never panics and either refuses (an ErrInvalidInput that
// Validate repeats) or renders routes that the CRD accepts, with unique valid names, one default
// rule last in the first route, every version's carriers leading to its Service (the simulated
// gateways send every request where it asks to go), and the same output every time.
//
//	go test ./internal/routes -run '^$' -fuzz '^FuzzRender$' -fuzztime 30s
func FuzzRender(f *testing.F) {
	for _, s := range renderSeeds() {
		f.Add(s.ns, s.app, s.label, s.service, s.port, s.path, s.host, s.cookie, s.parents, s.pins, s.bits, s.maxAge)
	}
	f.Fuzz(func(t *testing.T, ns, app, label, service string, port int32, path, host, cookie, parents string,
		pins uint8, bits uint16, maxAge int64) {
		cfg, snap := fuzzSnapshot(ns, app, label, service, port, path, host, cookie, parents, pins, bits, maxAge)
		in := activities.RouteInput(cfg, snap)
		got, err := routes.Render(in)
		verr := routes.Validate(in)
		if err != nil {
			if !errors.Is(err, routes.ErrInvalidInput) {
				t.Fatalf("Render refused without ErrInvalidInput: %v", err)
			}
			if verr == nil {
				t.Fatalf("Render refused (%v) but Validate accepts", err)
			}
			return
		}
		if verr != nil {
			t.Fatalf("Render rendered but Validate refuses: %v", verr)
		}
		names := map[string]bool{}
		for _, r := range got {
			if names[r.Name] {
				t.Fatalf("two routes named %q", r.Name)
			}
			names[r.Name] = true
			if probs := routes.CRDCheck(t, r); len(probs) > 0 {
				t.Fatalf("route %s breaks the CRD:\n  %s", r.Name, strings.Join(probs, "\n  "))
			}
		}
		again, err := routes.Render(in)
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("a second Render differs (err %v)", err)
		}
		routes.CheckShape(t, in, got)
		routes.CheckReachable(t, in, got)
	})
}

// TestRenderFuzzSeedsFullInvariants runs the full invariants (thousands of simulated requests
// each, too slow for the fuzzer) on every seed that renders.
func TestRenderFuzzSeedsFullInvariants(t *testing.T) {
	for i, s := range renderSeeds() {
		cfg, snap := fuzzSnapshot(s.ns, s.app, s.label, s.service, s.port, s.path, s.host, s.cookie, s.parents, s.pins, s.bits, s.maxAge)
		in := activities.RouteInput(cfg, snap)
		got, err := routes.Render(in)
		if err != nil {
			continue
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { routes.CheckInvariants(t, in, got) })
	}
}
