package kube

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/routes"
)

// renderApp renders app "myapp" with Active version active and pins (both by number) at gen.
func renderApp(t *testing.T, gen int64, active int, pins ...int) []gatewayv1.HTTPRoute {
	t.Helper()
	in := routes.Input{
		Namespace: routeTestNS, App: "myapp", Generation: gen,
		ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "public"}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200,
		Active: &routes.Backend{Version: strconv.Itoa(active), ServiceName: "myapp-v" + strconv.Itoa(active), Port: 80},
	}
	for _, p := range pins {
		in.Pinned = append(in.Pinned, routes.Backend{Version: strconv.Itoa(p), ServiceName: "myapp-v" + strconv.Itoa(p), Port: 80})
	}
	out, err := routes.Render(in)
	require.NoError(t, err)
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// served is every Service some rule of the store's routes sends to.
func (s *routeStore) served() map[string]bool {
	out := map[string]bool{}
	for _, r := range s.objs {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				out[string(b.Name)] = true
			}
		}
	}
	return out
}

// A Service routed before and after an apply is routed after every single write in between:
// the gateway, which loads each change as it comes, never sends a live pin's requests elsewhere.
// The chaos run found the flip with pins in two shards doing so: the first route's default rule
// moved to the new version before the shard that takes the old Active version as a pin was
// written (about 200 ms of misrouted requests, 350 of them in the run).
func TestApplyRoutesNeverDropsAServiceMidway(t *testing.T) {
	cases := []struct {
		name          string
		before, after func(t *testing.T) []gatewayv1.HTTPRoute
	}{
		{"flip: the old Active becomes a pin of the second shard",
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 1, 20, span(1, 12)...) },
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 2, 21, append(span(1, 12), 20)...) }},
		{"flip that opens a new shard",
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 1, 20, span(1, 10)...) },
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 2, 21, append(span(1, 10), 20)...) }},
		{"expiry of the oldest pin shifts pins down a shard",
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 1, 30, span(1, 25)...) },
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 2, 30, span(2, 25)...) }},
		{"expiry in the middle",
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 1, 30, span(1, 25)...) },
			func(t *testing.T) []gatewayv1.HTTPRoute {
				return renderApp(t, 2, 30, slices.Concat(span(1, 6), span(8, 25))...)
			}},
		{"expiry that empties the last shard",
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 1, 30, span(1, 11)...) },
			func(t *testing.T) []gatewayv1.HTTPRoute { return renderApp(t, 2, 30, span(2, 11)...) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, after := c.before(t), c.after(t)
			require.Greater(t, max(len(before), len(after)), 1, "the case spans shards")
			s, w := newRouteStore(t)
			_, err := w.ApplyRoutes(context.Background(), routeTestNS, "myapp", 1, before)
			require.NoError(t, err)

			both := map[string]bool{}
			want := s.served()
			s2, w2 := newRouteStore(t)
			_, err = w2.ApplyRoutes(context.Background(), routeTestNS, "myapp", 2, after)
			require.NoError(t, err)
			for svc := range s2.served() {
				if want[svc] {
					both[svc] = true
				}
			}
			require.NotEmpty(t, both)

			var gaps []string
			s.before = func(verb, name string) {
				if verb != "create" && verb != "update" && verb != "delete" {
					return
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				now := s.served()
				for svc := range both {
					if !now[svc] {
						gaps = append(gaps, svc+" not routed before "+verb+" "+name)
					}
				}
			}
			res, err := w.ApplyRoutes(context.Background(), routeTestNS, "myapp", 2, after)
			require.NoError(t, err)
			require.False(t, res.Superseded)
			s.before = nil
			final := s.served()
			for svc := range both {
				require.True(t, final[svc], "%s routed at the end", svc)
			}
			require.Empty(t, gaps, "writes: %v", s.writes())
		})
	}
}
