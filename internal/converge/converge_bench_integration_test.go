//go:build integration

package converge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/benchtable"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// wire counts what a client sends to the API server: every request, the write requests (POST,
// PUT, PATCH, DELETE) and the bytes of their bodies.
type wire struct{ requests, writes, bytes atomic.Int64 }

func (c *wire) wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return rtFunc(func(req *http.Request) (*http.Response, error) {
			c.requests.Add(1)
			switch req.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				c.writes.Add(1)
				if req.GetBody != nil {
					if body, err := req.GetBody(); err == nil {
						n, _ := io.Copy(io.Discard, body)
						_ = body.Close()
						c.bytes.Add(n)
					}
				}
			}
			return rt.RoundTrip(req)
		})
	})
	return out
}

func (c *wire) snapshot() [3]int64 {
	return [3]int64{c.requests.Load(), c.writes.Load(), c.bytes.Load()}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkConvergeRestart1000Apps measures what the route convergence controller does at
// start-up, as `skewguard serve` runs it (its informers, two workers, the fenced writer with the
// production client's 50 QPS), for 1,000 apps (one Active version and one or two Draining
// each, in a registry database and a namespace of their own): once with every route already up
// to date (nothing should be written), once with every route deleted while the process was down
// (all must be written). The routes name a Gateway that does not exist. SKEWGUARD_BENCH_APPS
// overrides the number of apps.
func BenchmarkConvergeRestart1000Apps(b *testing.B) {
	apps := 1000
	if v := os.Getenv("SKEWGUARD_BENCH_APPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SKEWGUARD_BENCH_APPS=%q: not a positive number", v)
		}
		apps = n
	}
	ctx := context.Background()
	clients, err := kube.NewClients(testenv.Get(b, testenv.Kubeconfig))
	if err != nil {
		b.Fatal(err)
	}
	ns := fmt.Sprintf("sg-bench-converge-%08x", rand.Uint32())
	if _, err := clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// Deleting the namespace removes its routes; the namespace controller takes its time, so
		// the routes go first, in one request, for the shared stack's gateway to be rid of them.
		rc := clients.Gateway.GatewayV1().HTTPRoutes(ns)
		if list, err := rc.List(context.Background(), metav1.ListOptions{}); err == nil {
			for _, r := range list.Items {
				_ = rc.Delete(context.Background(), r.Name, metav1.DeleteOptions{})
			}
		}
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	store := registrytest.New(b)
	cfg, err := config.LoadFrom(ctx, mapLookuper{
		"PLT_FEATURE_SKEW_PROTECTION":  "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS": ns + "/no-such-gateway",
		"PLT_SKEW_NAMESPACES":          ns,
	})
	if err != nil {
		b.Fatal(err)
	}
	// Setup writes through a client of its own, without the production rate limit.
	setupCfg := rest.CopyConfig(clients.Config)
	setupCfg.QPS, setupCfg.Burst = 500, 1000
	setupGW, err := gatewayclient.NewForConfig(setupCfg)
	if err != nil {
		b.Fatal(err)
	}
	setupActs := &activities.Activities{Registry: store, Config: cfg,
		Routes: kube.NewRouteWriter(setupGW).WithFence(RegistryFence(store))}

	actor := registry.Actor{Type: registry.ActorSystem, Name: "bench"}
	setup := time.Now()
	routesWritten := atomic.Int64{}
	parallel(b, apps, 8, func(i int) error {
		app := "app" + strconv.Itoa(i)
		for v := 1; v <= 2+i%2; v++ { // Active v2 or v3, one or two Draining before it
			ref := registry.VersionRef{Namespace: ns, App: app, Label: "v" + strconv.Itoa(v)}
			if _, _, err := store.ObserveVersion(ctx, registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: app + "-v" + strconv.Itoa(v), ServicePort: 80, PathPrefix: "/" + ns + "/" + app},
				WorkflowID: "skew/" + ref.String()}, actor); err != nil {
				return err
			}
			if _, err := store.Activate(ctx, ref, actor, "bench"); err != nil {
				return err
			}
		}
		res, err := setupActs.SyncRoutes(ctx, activities.SyncInput{App: registry.AppRef{Namespace: ns, Name: app}, Actor: actor})
		routesWritten.Add(int64(len(res.Routes)))
		return err
	})
	b.Logf("setup: %d apps, %d routes in %s", apps, routesWritten.Load(), time.Since(setup).Round(time.Millisecond))

	// What the process builds at start-up, with a counting transport on its Gateway API client.
	var counted wire
	gw, err := gatewayclient.NewForConfig(counted.wrap(clients.Config))
	if err != nil {
		b.Fatal(err)
	}
	acts := &activities.Activities{Registry: store, Config: cfg,
		Routes: kube.NewRouteWriter(gw).WithFence(RegistryFence(store))}
	restart := func(label string, cached bool) time.Duration {
		b.Helper()
		var mu sync.Mutex
		done := map[string]bool{}
		all := make(chan struct{})
		finish := func(app string) {
			if !done[app] {
				done[app] = true
				if len(done) == apps {
					close(all)
				}
			}
		}
		resync := func(ctx context.Context, app registry.AppRef) (activities.SyncResult, error) {
			res, err := SyncRoutes(acts)(ctx, app)
			mu.Lock()
			if err == nil {
				finish(app.Name)
			}
			mu.Unlock()
			return res, err
		}
		opts := Options{Gateway: gw, Apps: store, Resync: resync, Namespaces: []string{ns},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		var c *Controller
		if cached {
			// The app is looked at in the informers' cache first; Resync is not called when
			// it is up to date there, which counts as converged too.
			render := Rendering(acts)
			opts.Render = func(ctx context.Context, app registry.AppRef) ([]gatewayv1.HTTPRoute, error) {
				desired, err := render(ctx, app)
				if err == nil && c.cachedUpToDate(app.Namespace, app.Name, desired) {
					mu.Lock()
					finish(app.Name)
					mu.Unlock()
				}
				return desired, err
			}
		}
		c, err = New(opts)
		if err != nil {
			b.Fatal(err)
		}
		before := counted.snapshot()
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		start := time.Now()
		go func() { c.Run(runCtx); close(stopped) }()
		select {
		case <-all:
		case <-time.After(10 * time.Minute):
			b.Fatalf("%s: %d of %d apps converged in 10 minutes", label, len(done), apps)
		}
		took := time.Since(start)
		after := counted.snapshot()
		cancel()
		<-stopped
		requests, writes, bytes := after[0]-before[0], after[1]-before[1], after[2]-before[2]
		perApp := took / time.Duration(apps)
		row := benchtable.Row{
			Figure: fmt.Sprintf("routes: %d apps converge after a restart, %s: time (per app)", apps, label),
			Value:  fmt.Sprintf("%s (%s)", took.Round(time.Millisecond), perApp.Round(10*time.Microsecond)),
		}
		if floor := time.Duration(requests) * time.Second / 50; requests > 1 {
			// The floor: the production client's rate limit (50 requests/s) for the requests made.
			row.Peer = fmt.Sprintf("%d requests at the client's 50/s: %s", requests, floor.Round(time.Millisecond))
			row.Ratio = float64(took) / float64(floor)
		}
		benchtable.Report(b, row)
		benchtable.Report(b, benchtable.Row{
			Figure: fmt.Sprintf("routes: %d apps converge after a restart, %s: objects and bytes written (per app)", apps, label),
			Value: fmt.Sprintf("%d writes, %.1f KB (%.2f, %.2f KB)", writes, float64(bytes)/1000,
				float64(writes)/float64(apps), float64(bytes)/1000/float64(apps)),
		})
		b.Logf("%s: %d apps in %s: %d requests, %d writes, %d bytes", label, apps, took, requests, writes, bytes)
		return took
	}

	for b.Loop() {
		peer := restart("routes up to date, writer only (no cache check)", false)
		took := restart("routes up to date", true)
		benchtable.Report(b, benchtable.Row{
			Figure: fmt.Sprintf("routes: %d apps converge after a restart, routes up to date, cache check vs writer only", apps),
			Value:  took.Round(time.Millisecond).String(),
			Peer:   peer.Round(time.Millisecond).String() + " (writer only: one LIST per app)",
			Ratio:  float64(took) / float64(peer),
		})

		// Every route deleted while the process was down.
		rc := setupGW.GatewayV1().HTTPRoutes(ns)
		list, err := rc.List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		// One by one: a DeleteCollection of 1,000 routes outlives the API server's stream on
		// this machine.
		parallel(b, len(list.Items), 8, func(i int) error {
			return rc.Delete(ctx, list.Items[i].Name, metav1.DeleteOptions{})
		})
		for {
			list, err := rc.List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(list.Items) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond) // bounded poll: deletions of a collection are not evented here
		}
		restart("routes deleted", true)
	}
}

// parallel runs f(0…n-1) on workers goroutines and fails b on the first error.
func parallel(b *testing.B, n, workers int, f func(i int) error) {
	b.Helper()
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var first atomic.Value
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("app %d: %w", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		b.Fatal(err)
	}
}
