package routes

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// maxFuzzPins bounds the pinned versions of one snapshot: past the shard limits of both layouts
// (9 and 2 per route), and far enough to make many shards, without making each run slow.
const maxFuzzPins = 60

// fuzzInput builds the renderer's input from fuzz input the way activities.RouteInput builds it
// from a registry snapshot: names and labels as users type them (anything), the path and
// hostname of the Active version (all versions share them here), pinned versions draining or
// staged as the state bits say, parentRefs from "ns/name:section,..." as the operator writes
// them. (RouteInput itself only copies fields; building Input here keeps this package's test
// binary free of the activities package, which would triple the fuzz phase's build time.)
func fuzzInput(ns, app, label, service string, port int32, path, host, cookie, parents string,
	pins uint8, bits uint16, maxAge int64) Input {
	in := Input{
		Namespace:     ns,
		App:           app,
		Generation:    int64(bits >> 8),
		Path:          path,
		CookieName:    cookie,
		CookieMaxAge:  maxAge,
		RewritePrefix: bits&1 != 0,
	}
	if host != "" {
		in.Hostnames = []string{host}
	}
	if bits&2 != 0 && host != "" {
		in.Hostnames = append(in.Hostnames, "www."+host) // a second hostname, or a refusal
	}
	for _, p := range strings.Split(parents, ",") {
		ref := ParentRef{}
		ref.Namespace, ref.Name, _ = strings.Cut(p, "/")
		ref.Name, ref.SectionName, _ = strings.Cut(ref.Name, ":")
		in.ParentRefs = append(in.ParentRefs, ref)
	}
	backend := func(i int) Backend {
		b := Backend{Version: label, ServiceName: service, Port: port}
		if i >= 0 {
			if bits&4 == 0 { // else every version has the same label and Service: refused
				b.Version = label + "-" + itoa(i)
				b.ServiceName = service + "-" + itoa(i)
			}
			b.Staged = bits>>(3+i%5)&1 != 0
			if i%7 == 3 {
				b.Port = port/2 + 1
			}
		}
		return b
	}
	if bits&128 != 0 {
		a := backend(-1)
		in.Active = &a
	}
	for i := range int(pins) % (maxFuzzPins + 1) {
		in.Pinned = append(in.Pinned, backend(i))
	}
	return in
}

func itoa(i int) string { return strconv.Itoa(i) }

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
		in := fuzzInput(ns, app, label, service, port, path, host, cookie, parents, pins, bits, maxAge)
		got, err := Render(in)
		verr := Validate(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
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
			if probs := crdCheck(t, r); len(probs) > 0 {
				t.Fatalf("route %s breaks the CRD:\n  %s", r.Name, strings.Join(probs, "\n  "))
			}
		}
		again, err := Render(in)
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("a second Render differs (err %v)", err)
		}
		checkShape(t, in, got)
		checkReachable(t, in, got)
	})
}

// TestRenderFuzzSeedsFullInvariants runs the full invariants (thousands of simulated requests
// each, too slow for the fuzzer) on every seed that renders.
func TestRenderFuzzSeedsFullInvariants(t *testing.T) {
	for i, s := range renderSeeds() {
		in := fuzzInput(s.ns, s.app, s.label, s.service, s.port, s.path, s.host, s.cookie, s.parents, s.pins, s.bits, s.maxAge)
		got, err := Render(in)
		if err != nil {
			continue
		}
		t.Run(itoa(i), func(t *testing.T) { checkInvariants(t, in, got) })
	}
}

// regexpCache compiles each pattern once. Successive fuzz inputs mostly differ in one argument,
// so their pin cookies' patterns repeat: compiling them again was a fifth of FuzzRender's time.
// It is emptied when full, so a long run's memory stays bounded.
type regexpCache struct {
	mu sync.Mutex
	m  map[string]*regexp.Regexp
}

const regexpCacheMax = 1 << 14

var reachRegexps regexpCache

func (c *regexpCache) get(p string) *regexp.Regexp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[p]; ok {
		return r
	}
	if c.m == nil || len(c.m) >= regexpCacheMax {
		c.m = make(map[string]*regexp.Regexp)
	}
	r := regexp.MustCompile(p)
	c.m[p] = r
	return r
}

// matchCache remembers regex answers by (mode, pattern, value): every request is matched against
// every pin's cookie pattern, and successive inputs share most of both, so running the regexes
// again was a sixth of FuzzRender's time. It is emptied when full, so a long run's memory stays
// bounded.
type matchCache struct {
	mu sync.Mutex
	m  map[string]bool
}

var reachMatches matchCache

func (c *matchCache) match(mode, p, v string, run func() bool) bool {
	key := mode + "\x00" + p + "\x00" + v
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, seen := c.m[key]; seen {
		return ok
	}
	if c.m == nil || len(c.m) >= regexpCacheMax {
		c.m = make(map[string]bool)
	}
	ok := run()
	c.m[key] = ok
	return ok
}

// checkShape: route i is RouteName(app, i); exactly one default rule when there is an Active
// version, last in the first route, adding the one Set-Cookie; every pinned version pinned once,
// in registry order; every version's carriers, and nothing else, leading to its Service.
func checkShape(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	if in.Active == nil && len(in.Pinned) == 0 {
		if len(got) != 0 {
			t.Fatalf("nothing live, %d routes", len(got))
		}
		return
	}
	prefix := PathPrefix(in.App, in.Path, in.Hostnames)
	defaults := 0
	for i, r := range got {
		if want := RouteName(in.App, i); r.Name != want {
			t.Fatalf("route %d is %q, want %q", i, r.Name, want)
		}
		for ri, rule := range r.Spec.Rules {
			if !isDefaultRule(rule) {
				continue
			}
			defaults++
			if i != 0 || ri != len(r.Spec.Rules)-1 {
				t.Fatalf("default rule at route %d rule %d: it must be the last rule of the first route", i, ri)
			}
			checkSetCookie(t, in, prefix, rule)
		}
	}
	if want := map[bool]int{true: 1}[in.Active != nil]; defaults != want {
		t.Fatalf("%d default rules, want %d", defaults, want)
	}
	want := make([]string, len(in.Pinned))
	for i, b := range in.Pinned {
		want[i] = b.Version
	}
	if got := pinnedVersions(in, got); !slices.Equal(got, want) {
		t.Fatalf("pinned versions %v, want %v (each once, in registry order)", got, want)
	}
	checkCarriers(t, in, got)
}

// checkReachable sends, for up to six live versions (the ends and a spread between), a request
// naming it by header, one by query parameter and, for a pinned version, one by its pin cookie,
// and one request naming nothing, through both simulated gateways under both regex modes: each
// must reach the version it names (nothing named: the Active version).
func checkReachable(t *testing.T, in Input, got []gatewayv1.HTTPRoute) {
	t.Helper()
	var versions []string
	pinned := map[string]bool{}
	if in.Active != nil {
		versions = append(versions, in.Active.Version)
	}
	for _, b := range in.Pinned {
		versions = append(versions, b.Version)
		pinned[b.Version] = true
	}
	if n := len(versions); n > 6 {
		versions = []string{versions[0], versions[1], versions[n/3], versions[n/2], versions[n-2], versions[n-1]}
	}
	reqs := []request{{}}
	for _, v := range versions {
		reqs = append(reqs, request{header: v}, request{query: v})
		if pinned[v] {
			reqs = append(reqs, request{cookie: in.CookieName + "=" + v}, request{cookie: "a=1; " + in.CookieName + "=" + v})
		}
	}
	re := reachRegexps.get
	modes := map[string]func(p, v string) bool{
		"search": func(p, v string) bool {
			return reachMatches.match("s", p, v, func() bool { return re(p).MatchString(v) })
		},
		"full": func(p, v string) bool {
			return reachMatches.match("f", p, v, func() bool { return re(`^(?:` + p + `)$`).MatchString(v) })
		},
	}
	wantOf := wantFor(in)
	for mode, match := range modes {
		for _, req := range reqs {
			cs := candidates(got, req, match)
			for name, resolve := range resolvers {
				if w, g := wantOf(req), resolve(t, req, cs); w != g {
					t.Fatalf("%s, %s regex: %+v reaches %q, want %q", name, mode, req, g, w)
				}
			}
		}
	}
}
