//go:build integration

package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/internal/benchtable"
	"github.com/skewguard/skewguard/internal/routes"
)

// WireCounter counts what a client sends to the API server: write requests (POST, PUT, PATCH,
// DELETE), the bytes of their bodies, and every request.
type WireCounter struct {
	Requests, Writes, WriteBytes atomic.Int64
}

// Wrap returns a copy of cfg whose transport counts into c.
func (c *WireCounter) Wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.Requests.Add(1)
			switch req.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				c.Writes.Add(1)
				if req.Body != nil && req.GetBody != nil {
					if body, err := req.GetBody(); err == nil {
						n, _ := io.Copy(io.Discard, body)
						_ = body.Close()
						c.WriteBytes.Add(n)
					}
				}
			}
			return rt.RoundTrip(req)
		})
	})
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// flipRoutes renders myapp with the default configuration (prefix rewritten: three pins per
// shard) before a flip (Active v<pins>, pins v0…v<pins-1>) or after it (Active v<pins+1>, the
// old Active pinned last, as the registry orders pins by id).
func flipRoutes(b *testing.B, ns string, generation int64, pins int, after bool) []gatewayv1.HTTPRoute {
	b.Helper()
	in := routes.Input{
		Namespace: ns, App: "myapp", Generation: generation,
		ParentRefs: []routes.ParentRef{{Namespace: ns, Name: "no-such-gateway"}},
		CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePrefix: true,
	}
	active := pins
	if after {
		active++
	}
	for i := range active {
		in.Pinned = append(in.Pinned, routes.Backend{Version: "v" + strconv.Itoa(i), ServiceName: "myapp-v" + strconv.Itoa(i), Port: 80})
	}
	in.Active = &routes.Backend{Version: "v" + strconv.Itoa(active), ServiceName: "myapp-v" + strconv.Itoa(active), Port: 80}
	out, err := routes.Render(in)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func jsonSize(b *testing.B, v any) int64 {
	b.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return int64(len(raw))
}

// BenchmarkRouteFlip100Pins flips an app with 100 pins on the real API server: what the writer
// sends (write requests and bytes, counted at the client's transport) against the size of all
// the app's routes, and how long the apply takes against the peer, the same flip sent the way
// the writer did before (every route updated in full), measured in the same run.
func BenchmarkRouteFlip100Pins(b *testing.B) {
	const pins = 100
	c, ns := testNamespace(b, "sg-bench-flip")
	var wire WireCounter
	gw, err := gatewayclient.NewForConfig(wire.Wrap(c.Config))
	if err != nil {
		b.Fatal(err)
	}
	w := NewRouteWriter(gw)
	client := gw.GatewayV1().HTTPRoutes(ns)
	ctx := context.Background()

	var gen int64
	var total, changed, wrote, writes, objects, fullWrote, fullWrites int64
	var took, fullTook []time.Duration
	routesPerApp := 0
	reset := func() {
		gen++
		if _, err := w.ApplyRoutes(ctx, ns, "myapp", gen, flipRoutes(b, ns, gen, pins, false)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		reset()
		gen++
		after := flipRoutes(b, ns, gen, pins, true)
		routesPerApp = len(after)
		w0, b0 := wire.Writes.Load(), wire.WriteBytes.Load()
		b.StartTimer()
		start := time.Now()
		res, err := w.ApplyRoutes(ctx, ns, "myapp", gen, after)
		took = append(took, time.Since(start))
		b.StopTimer()
		if err != nil || res.Superseded {
			b.Fatalf("flip: %+v, %v", res, err)
		}
		writes += wire.Writes.Load() - w0
		wrote += wire.WriteBytes.Load() - b0
		objects += int64(res.Objects())
		for _, r := range after {
			total += jsonSize(b, r)
			if slices.Contains(res.Updated, r.Name) || slices.Contains(res.Created, r.Name) {
				changed += jsonSize(b, r)
			}
		}

		// The peer: the same flip, every route updated in full as the writer did before.
		reset()
		gen++
		after = flipRoutes(b, ns, gen, pins, true)
		w0, b0 = wire.Writes.Load(), wire.WriteBytes.Load()
		start = time.Now()
		list, err := client.List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=myapp"})
		if err != nil {
			b.Fatal(err)
		}
		live := map[string]gatewayv1.HTTPRoute{}
		for _, r := range list.Items {
			live[r.Name] = r
		}
		for _, r := range after {
			next := live[r.Name]
			next.Spec = r.Spec
			next.Annotations = r.Annotations
			if _, err := client.Update(ctx, &next, metav1.UpdateOptions{FieldManager: RouteFieldManager}); err != nil {
				b.Fatal(err)
			}
		}
		fullTook = append(fullTook, time.Since(start))
		fullWrites += wire.Writes.Load() - w0
		fullWrote += wire.WriteBytes.Load() - b0
		b.StartTimer()
	}
	b.StopTimer()
	n := int64(len(took))
	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	b.ReportMetric(float64(objects)/float64(n), "objects/flip")
	b.ReportMetric(float64(wrote)/float64(n), "bytes/flip")
	kb := func(v int64) string { return fmt.Sprintf("%.1f KB", float64(v)/float64(n)/1000) }
	benchtable.Report(b, benchtable.Row{
		Figure: fmt.Sprintf("routes: flip of an app with %d pins (%d routes), objects written", pins, routesPerApp),
		Value:  fmt.Sprintf("%.1f (%.1f write requests: 2 spec updates, the rest generation patches)", float64(objects)/float64(n), float64(writes)/float64(n)),
		Goal:   "only what changed (2 routes' spec)",
		Peer:   fmt.Sprintf("%d routes of the app", routesPerApp),
		Ratio:  float64(objects) / float64(n) / float64(routesPerApp),
	})
	benchtable.Report(b, benchtable.Row{
		Figure: fmt.Sprintf("routes: flip of an app with %d pins, bytes written (written / all the app's routes)", pins),
		Value:  kb(wrote),
		Goal:   fmt.Sprintf("≤ 1.1 × the changed routes (%s)", kb(changed)),
		Peer:   kb(total) + " (all routes)",
		Ratio:  float64(wrote) / float64(total),
		Met:    benchtable.Met(float64(wrote) <= 1.1*float64(changed)),
	})
	benchtable.Report(b, benchtable.Row{
		Figure: fmt.Sprintf("routes: flip of an app with %d pins, bytes written by the old writer (every route in full)", pins),
		Value:  kb(fullWrote),
		Peer:   kb(total) + " (all routes)",
		Ratio:  float64(fullWrote) / float64(total),
	})
	benchtable.Report(b, benchtable.Row{
		Figure: fmt.Sprintf("routes: flip of an app with %d pins, apply time p50 (new / every route in full)", pins),
		Value:  p50(took).Round(100 * time.Microsecond).String(),
		Peer:   p50(fullTook).Round(100*time.Microsecond).String() + " (every route in full)",
		Ratio:  float64(p50(took)) / float64(p50(fullTook)),
	})
}
