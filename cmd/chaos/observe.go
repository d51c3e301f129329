package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
)

// observer samples the registry and the app's HTTPRoutes every 200 ms.
type observer struct {
	store *registry.Store
	gw    gatewayclient.Interface
	cfg   config.Config // the settings skewguard runs with: the routes are rendered from them
	app   registry.AppRef

	routeLog io.Writer // every change of the app's routes, as sampled (nil: none)
	lastSeen string

	mu          sync.Mutex
	samples     int
	twoActiveDB []string
	twoActiveRt []string
	sampleErrs  int
}

const sampleEvery = 200 * time.Millisecond

// run samples until ctx ends. A sample that fails (PostgreSQL or the API server restarting)
// is counted, not fatal.
func (o *observer) run(ctx context.Context) {
	every(ctx, sampleEvery, func() { o.sample(ctx) })
}

func (o *observer) sample(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := time.Now().Format("15:04:05.000")
	vs, dbErr := o.store.ListVersions(sctx, o.app)
	live, rtErr := o.listRoutes(sctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	if dbErr != nil {
		o.sampleErrs++
	} else {
		o.samples++
		var active []string
		for _, v := range vs {
			if v.State == registry.Active {
				active = append(active, v.Label)
			}
		}
		if len(active) > 1 {
			o.twoActiveDB = append(o.twoActiveDB, now+" "+strings.Join(active, "+"))
		}
	}
	if rtErr != nil {
		o.sampleErrs++
		return
	}
	if d := defaultBackends(live); len(d) > 1 {
		o.twoActiveRt = append(o.twoActiveRt, now+" "+strings.Join(d, "+"))
	}
	if o.routeLog != nil {
		if sum := summarizeRoutes(live); sum != o.lastSeen {
			o.lastSeen = sum
			fmt.Fprintf(o.routeLog, "%s\n%s\n", now, sum)
		}
	}
}

// summarizeRoutes is one line per route: its name, generation and, per rule, what it matches
// and the Service it sends to (for a look at the routes around a misrouted request).
func summarizeRoutes(rs []gatewayv1.HTTPRoute) string {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s gen=%s:", r.Name, r.Annotations[routes.GenerationAnnotation])
		for _, rule := range r.Spec.Rules {
			var m []string
			for _, match := range rule.Matches {
				k := "path"
				for _, h := range match.Headers {
					k = "header " + string(h.Name) + "=" + h.Value
				}
				for _, q := range match.QueryParams {
					k = "query " + string(q.Name) + "=" + q.Value
				}
				m = append(m, k)
			}
			var to []string
			for _, be := range rule.BackendRefs {
				to = append(to, string(be.Name))
			}
			fmt.Fprintf(&b, " [%s -> %s]", strings.Join(m, " | "), strings.Join(to, ","))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (o *observer) listRoutes(ctx context.Context) ([]gatewayv1.HTTPRoute, error) {
	sel := labels.SelectorFromSet(routes.Labels(o.app.Name)).String()
	l, err := o.gw.GatewayV1().HTTPRoutes(o.app.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// defaultBackends lists the Services of the default rules (a rule matching on the path alone,
// which is where new sessions go) across the app's routes: more than one is two Active versions.
func defaultBackends(rs []gatewayv1.HTTPRoute) []string {
	seen := map[string]bool{}
	for _, r := range rs {
		for _, rule := range r.Spec.Rules {
			if len(rule.Matches) != 1 || len(rule.Matches[0].Headers) > 0 || len(rule.Matches[0].QueryParams) > 0 {
				continue
			}
			for _, b := range rule.BackendRefs {
				seen[string(b.Name)] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// converged reports whether the app's HTTPRoutes equal a fresh render of the registry.
func (o *observer) converged(ctx context.Context) (bool, string) {
	snap, err := o.store.Snapshot(ctx, o.app)
	if err != nil {
		return false, err.Error()
	}
	want, err := routes.Render(activities.RouteInput(o.cfg, snap))
	if err != nil {
		return false, err.Error()
	}
	live, err := o.listRoutes(ctx)
	if err != nil {
		return false, err.Error()
	}
	byName := map[string]gatewayv1.HTTPRoute{}
	for _, r := range live {
		byName[r.Name] = r
	}
	if len(byName) != len(want) {
		return false, fmt.Sprintf("%d routes, want %d", len(byName), len(want))
	}
	for _, w := range want {
		l, ok := byName[w.Name]
		if !ok {
			return false, "route " + w.Name + " missing"
		}
		if !equality.Semantic.DeepEqual(l.Spec, w.Spec) {
			return false, "route " + w.Name + " differs from the registry's render"
		}
	}
	return true, ""
}

// convergence polls until the routes equal a render of the registry; it returns how long that
// took from since, or an error after timeout.
func (o *observer) convergence(ctx context.Context, since time.Time, timeout time.Duration) (time.Duration, error) {
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, why := o.converged(cctx)
		cancel()
		if ok {
			return time.Since(since), nil
		}
		last = why
		if time.Since(since) > timeout || ctx.Err() != nil {
			return 0, fmt.Errorf("routes did not converge in %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(sampleEvery):
		}
	}
}

func (o *observer) results() (samples int, db, rt []string, errs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.samples, append([]string(nil), o.twoActiveDB...), append([]string(nil), o.twoActiveRt...), o.sampleErrs
}
