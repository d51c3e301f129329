package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/traffic"
	"github.com/skewguard/skewguard/internal/validate"
)

// fakeRegistry serves a fixed snapshot and records audits and traffic; the state changes are
// tested against the real registry (integration tests).
type fakeRegistry struct {
	Registry // unimplemented methods panic
	mu       sync.Mutex
	snap     registry.Snapshot
	snaps    int
	audits   []string
	recorded map[string]float64
}

// GetPolicy answers the snapshot's policy (its mode is read by Retire and ReportEvent).
func (f *fakeRegistry) GetPolicy(context.Context, registry.AppRef) (registry.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap.Policy, nil
}

func (f *fakeRegistry) Snapshot(context.Context, registry.AppRef) (registry.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps++
	return f.snap, nil
}

func (f *fakeRegistry) Publish(ctx context.Context, _ registry.AppRef, fn func(context.Context, registry.Snapshot) error) error {
	f.mu.Lock()
	f.snaps++
	snap := f.snap
	f.mu.Unlock()
	return fn(ctx, snap)
}

func (f *fakeRegistry) AppendAudit(_ context.Context, ref registry.VersionRef, event string, actor registry.Actor, reason string, detail any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audits = append(f.audits, fmt.Sprintf("%s %s by %s: %s %v", ref.Label, event, actor.Type, reason, detail))
	return nil
}

func (f *fakeRegistry) RecordTraffic(_ context.Context, ref registry.VersionRef, rps float64, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recorded == nil {
		f.recorded = map[string]float64{}
	}
	f.recorded[ref.Label] = rps
	return nil
}

func TestResolvePolicy(t *testing.T) {
	cfg, err := config.LoadFrom(t.Context(), mapLookuper{})
	require.NoError(t, err)
	assert.Equal(t, Policy{GracePeriod: 30 * time.Minute, MaxAlive: 24 * time.Hour, CheckInterval: time.Minute,
		TrafficWindow: 5 * time.Minute, ReadinessTimeout: 10 * time.Minute, Mode: registry.ModeManage}, ResolvePolicy(cfg, registry.Policy{}),
		"the documented defaults")
	got := ResolvePolicy(cfg, registry.Policy{GracePeriodMS: ptr.To[int64](0), MaxAliveMS: ptr.To[int64](3_600_000),
		CheckIntervalMS: ptr.To[int64](1500), TrafficWindowMS: ptr.To[int64](1000), AutoCleanup: ptr.To(true),
		RequireApproval: ptr.To(true), Mode: ptr.To(registry.ModeAdvise)})
	assert.Equal(t, Policy{GracePeriod: 0, MaxAlive: time.Hour, CheckInterval: 1500 * time.Millisecond,
		TrafficWindow: time.Second, ReadinessTimeout: 10 * time.Minute, AutoCleanup: true, RequireApproval: true,
		Mode: registry.ModeAdvise}, got,
		"per-app overrides win, including zero and false")
	// A row stored before the bounds existed is clamped, never overflowed into a negative duration.
	got = ResolvePolicy(cfg, registry.Policy{GracePeriodMS: ptr.To[int64](9.3e12), MaxAliveMS: ptr.To[int64](9.3e12),
		CheckIntervalMS: ptr.To[int64](1), TrafficWindowMS: ptr.To[int64](-1)})
	assert.Equal(t, Policy{GracePeriod: 30 * 24 * time.Hour, MaxAlive: 30 * 24 * time.Hour, CheckInterval: time.Second,
		TrafficWindow: time.Second, ReadinessTimeout: 10 * time.Minute, Mode: registry.ModeManage}, got)
}

type mapLookuper map[string]string

func (m mapLookuper) Lookup(k string) (string, bool) { v, ok := m[k]; return v, ok }

func TestClassify(t *testing.T) {
	ref := registry.VersionRef{Namespace: "ns", App: "app", Label: "1"}
	tests := []struct {
		err  error
		want string // "" = left retryable
	}{
		{&registry.IllegalTransitionError{Version: ref, From: registry.Active, To: registry.Expired}, ErrTypeIllegalTransition},
		{fmt.Errorf("wrapped: %w", &registry.IllegalTransitionError{Version: ref}), ErrTypeIllegalTransition},
		{fmt.Errorf("x: %w", registry.ErrInvalid), ErrTypeInvalidInput},
		{fmt.Errorf("render: %w", routes.ErrInvalidInput), ErrTypeInvalidInput},
		{fmt.Errorf("version: %w", registry.ErrNotFound), ErrTypeNotFound},
		{errors.New("connection refused"), ""},
	}
	for _, tt := range tests {
		got := classify(tt.err)
		var app *temporal.ApplicationError
		if tt.want == "" {
			assert.False(t, errors.As(got, &app), "%v stays retryable", tt.err)
			continue
		}
		require.ErrorAs(t, got, &app, "%v", tt.err)
		assert.Equal(t, tt.want, app.Type())
		assert.True(t, app.NonRetryable())
	}
	assert.NoError(t, classify(nil))
}

func TestRouteInput(t *testing.T) {
	cfg := config.Config{CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePathPrefix: true,
		ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main", SectionName: "web"}}}
	v := func(id int64, label string, state registry.State, path, host string) registry.Version {
		return registry.Version{ID: id, Namespace: "shop", App: "myapp", Label: label, State: state,
			Placement: registry.Placement{ServiceName: "myapp-" + label, ServicePort: 80, PathPrefix: path, Hostname: host}}
	}
	active := v(3, "3", registry.Active, "api", "shop.example.com")
	grouped := func(v registry.Version, group string) registry.Version { v.Group = group; return v }
	tests := []struct {
		name string
		snap registry.Snapshot
		want routes.Input
	}{
		{
			name: "placement from the Active version",
			snap: registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "myapp"}, Generation: 7,
				Active: &active, Pinned: []registry.Version{v(1, "1", registry.Draining, "old", ""), v(4, "4", registry.Staged, "", "")},
				Policy: registry.Policy{CookieMaxAge: ptr.To[int64](60)}},
			want: routes.Input{Namespace: "shop", App: "myapp", Generation: 7, Path: "api", Hostnames: []string{"shop.example.com"},
				ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main", SectionName: "web"}}, CookieName: "__plt_dpl",
				CookieMaxAge: 60, RewritePrefix: true,
				Active: &routes.Backend{Version: "3", ServiceName: "myapp-3", Port: 80},
				Pinned: []routes.Backend{{Version: "1", ServiceName: "myapp-1", Port: 80}, {Version: "4", ServiceName: "myapp-4", Port: 80, Staged: true}}},
		},
		{
			name: "no Active version: the newest pinned one places the routes",
			snap: registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "myapp"}, Generation: 2,
				Pinned: []registry.Version{v(1, "1", registry.Draining, "old", ""), v(2, "2", registry.Staged, "new", "")}},
			want: routes.Input{Namespace: "shop", App: "myapp", Generation: 2, Path: "new",
				ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main", SectionName: "web"}}, CookieName: "__plt_dpl",
				CookieMaxAge: 43200, RewritePrefix: true,
				Pinned: []routes.Backend{{Version: "1", ServiceName: "myapp-1", Port: 80}, {Version: "2", ServiceName: "myapp-2", Port: 80, Staged: true}}},
		},
		{
			name: "app group: its versions read and set the group's cookie for /, a version from before keeps the app's",
			snap: registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "myapp", CookieName: "__plt_dpl_shop_myapp"}, Generation: 5,
				Active: ptr.To(grouped(v(3, "3", registry.Active, "api", ""), "web")),
				Pinned: []registry.Version{v(1, "1", registry.Draining, "api", ""), grouped(v(2, "2", registry.Draining, "api", ""), "web")}},
			want: routes.Input{Namespace: "shop", App: "myapp", Generation: 5, Path: "api",
				ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main", SectionName: "web"}}, CookieName: "__plt_dpl_shop_myapp",
				CookieMaxAge: 43200, RewritePrefix: true,
				Active: &routes.Backend{Version: "3", ServiceName: "myapp-3", Port: 80, CookieName: "__plt_dpl__g_shop_web", CookiePath: "/"},
				Pinned: []routes.Backend{{Version: "1", ServiceName: "myapp-1", Port: 80},
					{Version: "2", ServiceName: "myapp-2", Port: 80, CookieName: "__plt_dpl__g_shop_web", CookiePath: "/"}}},
		},
		{
			name: "nothing live",
			snap: registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "myapp"}, Generation: 9},
			want: routes.Input{Namespace: "shop", App: "myapp", Generation: 9,
				ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main", SectionName: "web"}}, CookieName: "__plt_dpl",
				CookieMaxAge: 43200, RewritePrefix: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RouteInput(cfg, tt.snap))
		})
	}
}

// TestGroupCookieNameIsNoAppsCookie: a group's cookie is never the cookie of an app (its own,
// or the default), and two namespaces' groups of one name have two cookies, even for names
// built to collide ("g" namespaces, apps named like "<namespace>_<group>").
func TestGroupCookieNameIsNoAppsCookie(t *testing.T) {
	base := "__plt_dpl"
	group := GroupCookieName(base, "shop", "web")
	assert.Equal(t, "__plt_dpl__g_shop_web", group)
	assert.True(t, validate.CookieName(group))
	for _, app := range []registry.AppRef{{Namespace: "g", Name: "shop_web"}, {Namespace: "shop", Name: "web"}, {Namespace: "g_shop", Name: "web"}} {
		assert.NotEqual(t, group, OwnCookieName(base, app), "%s", app)
	}
	assert.NotEqual(t, base, group)
	assert.NotEqual(t, GroupCookieName(base, "a", "b_c"), GroupCookieName(base, "a-b", "c"))
	assert.True(t, validate.CookieName(GroupCookieName(base, "team-1", "Shop_v2.x-y")), "every label value makes a token")
}

func TestSyncRoutes(t *testing.T) {
	active := registry.Version{ID: 2, Namespace: "shop", App: "myapp", Label: "2", State: registry.Active, Placement: registry.Placement{ServiceName: "myapp-2", ServicePort: 80}}
	reg := &fakeRegistry{snap: registry.Snapshot{App: registry.Application{Namespace: "shop", Name: "myapp"}, Generation: 5, Active: &active,
		Pinned: []registry.Version{{ID: 1, Namespace: "shop", App: "myapp", Label: "1", State: registry.Draining, Placement: registry.Placement{ServiceName: "myapp-1", ServicePort: 80}}}}}
	var wrote []string
	var gen int64
	a := &Activities{Registry: reg, Config: config.Config{SkewProtection: true, CookieName: "__plt_dpl", CookieMaxAge: 43200,
		ParentRefs: []routes.ParentRef{{Namespace: "gw", Name: "main"}}},
		Routes: routeWriterFunc(func(_ context.Context, ns, app string, g int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error) {
			gen = g
			var res kube.RouteApplyResult
			for _, r := range desired {
				wrote = append(wrote, r.Namespace+"/"+r.Name)
				res.Created = append(res.Created, r.Name)
			}
			return res, nil
		})}
	cause := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "2"}
	res, err := a.SyncRoutes(t.Context(), SyncInput{App: cause.AppRef(), Cause: cause, Actor: registry.Actor{Type: registry.ActorWorkflow}, Reason: "activated"})
	require.NoError(t, err)
	assert.Equal(t, int64(5), gen, "written with the snapshot's generation")
	require.Len(t, wrote, 1)
	assert.Equal(t, []string{wrote[0][len("shop/"):]}, res.Routes)
	assert.Equal(t, RoutesApplied, res.Write.Outcome)
	require.Len(t, reg.audits, 1)
	assert.Contains(t, reg.audits[0], "2 routes-synced by workflow: activated")

	t.Run("feature off: no Gateway API call", func(t *testing.T) {
		a := &Activities{Registry: reg, Routes: routeWriterFunc(func(context.Context, string, string, int64, []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error) {
			t.Fatal("route writer called with skew protection off")
			return kube.RouteApplyResult{}, nil
		})}
		res, err := a.SyncRoutes(t.Context(), SyncInput{App: cause.AppRef(), Cause: cause})
		require.NoError(t, err)
		assert.Equal(t, RoutesDisabled, res.Write.Outcome)
	})
	t.Run("a snapshot that cannot be rendered is permanent", func(t *testing.T) {
		bad := &Activities{Registry: reg, Routes: a.Routes, Config: config.Config{SkewProtection: true, CookieName: "__plt_dpl", CookieMaxAge: 1}}
		_, err := bad.SyncRoutes(t.Context(), SyncInput{App: cause.AppRef(), Cause: cause})
		var app *temporal.ApplicationError
		require.ErrorAs(t, err, &app, "no parent refs")
		assert.Equal(t, ErrTypeRoutesInvalid, app.Type())
	})
}

// routeWriterFunc is a fake RouteWriter: ApplyRoutes calls the function.
type routeWriterFunc func(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error)

func (f routeWriterFunc) ApplyRoutes(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error) {
	return f(ctx, namespace, app, generation, desired)
}

func TestRouteOutcome(t *testing.T) {
	assert.Equal(t, RouteOutcome{Outcome: RoutesStale}, routeOutcome(kube.RouteApplyResult{Superseded: true, SkippedStale: []string{"r"}}))
	assert.Equal(t, RouteOutcome{Outcome: RoutesApplied, Applied: []string{"a", "b"}, Deleted: []string{"c"}},
		routeOutcome(kube.RouteApplyResult{Created: []string{"a"}, Updated: []string{"b"}, Deleted: []string{"c"}}))
	assert.Equal(t, RouteOutcome{Outcome: RoutesUnchanged}, routeOutcome(kube.RouteApplyResult{Unchanged: []string{"a"}}))
}

// prometheus answers every query with a rate per version of the batch, counting queries.
func prometheus(t *testing.T, rates map[string]string, delay time.Duration) (*traffic.Querier, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		time.Sleep(delay)
		body := `{"status":"success","data":{"resultType":"vector","result":[`
		first := true
		for v, rate := range rates {
			if !first {
				body += ","
			}
			first = false
			body += fmt.Sprintf(`{"metric":{"skewguard_version":%q},"value":[1700000000,%q]}`, v, rate)
		}
		_, _ = w.Write([]byte(body + `]}}`))
	}))
	t.Cleanup(srv.Close)
	tmpl, err := traffic.Select(traffic.PresetTraefik, "")
	require.NoError(t, err)
	q, err := traffic.NewQuerier(srv.URL, tmpl)
	require.NoError(t, err)
	return q, &n
}

func TestReadTrafficSharesOneQueryPerApp(t *testing.T) {
	draining := func(label string) registry.Version {
		return registry.Version{Namespace: "shop", App: "myapp", Label: label, State: registry.Draining, Placement: registry.Placement{ServiceName: "myapp-" + label}}
	}
	reg := &fakeRegistry{snap: registry.Snapshot{Pinned: []registry.Version{draining("1"), draining("2"), draining("3"),
		{Label: "4", State: registry.Staged}}}}
	q, queries := prometheus(t, map[string]string{"1": "0", "2": "1.5", "3": "0"}, 50*time.Millisecond)
	a := &Activities{Registry: reg, Traffic: q}

	var wg sync.WaitGroup
	got := make([]TrafficReading, 3)
	for i, label := range []string{"1", "2", "3"} {
		wg.Go(func() {
			r, err := a.ReadTraffic(t.Context(), TrafficInput{Ref: registry.VersionRef{Namespace: "shop", App: "myapp", Label: label},
				ServiceName: "myapp-" + label, Window: 5 * time.Minute, MaxAge: 30 * time.Second})
			assert.NoError(t, err)
			got[i] = r
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), queries.Load(), "three draining versions checking together share one query")
	assert.Equal(t, []float64{0, 1.5, 0}, []float64{got[0].RPS, got[1].RPS, got[2].RPS})
	assert.True(t, got[0].Found && got[1].Found && got[2].Found)
	assert.Equal(t, map[string]float64{"1": 0, "2": 1.5, "3": 0}, reg.recorded, "found readings are recorded")
	assert.NotContains(t, got[0].Query, `myapp-4`, "a staged version is not queried")

	_, err := a.ReadTraffic(t.Context(), TrafficInput{Ref: registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"},
		ServiceName: "myapp-1", Window: 5 * time.Minute, MaxAge: 0})
	require.NoError(t, err)
	assert.Equal(t, int32(2), queries.Load(), "an answer older than MaxAge is not reused")
}

func TestReadTrafficUnknownAndFailures(t *testing.T) {
	ref := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "9"}
	reg := &fakeRegistry{}
	q, _ := prometheus(t, map[string]string{"1": "0"}, 0)
	a := &Activities{Registry: reg, Traffic: q}
	r, err := a.ReadTraffic(t.Context(), TrafficInput{Ref: ref, ServiceName: "myapp-9", Window: time.Minute, MaxAge: time.Second})
	require.NoError(t, err)
	assert.False(t, r.Found, "no series for the version: unknown, not zero")
	assert.Empty(t, reg.recorded)

	_, err = (&Activities{Registry: reg}).ReadTraffic(t.Context(), TrafficInput{Ref: ref})
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeNoTrafficSource, app.Type())

	down, err := traffic.NewQuerier("http://127.0.0.1:1", q.Template())
	require.NoError(t, err)
	_, err = (&Activities{Registry: reg, Traffic: down}).ReadTraffic(t.Context(), TrafficInput{Ref: ref, Window: time.Minute})
	assert.Error(t, err, "an unreachable Prometheus is an error, never a reading")
}

func TestWaitReady(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	readySlice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "myapp-1-x", Labels: map[string]string{discoveryv1.LabelServiceName: "myapp-1"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	ref := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"}

	for _, mode := range []string{"polling", "watching"} {
		t.Run(mode, func(t *testing.T) {
			client := fake.NewClientset(svc)
			a := &Activities{Workloads: kube.Workloads{Client: client, Prober: kube.Prober{Probe: true}}, ReadyPoll: 10 * time.Millisecond}
			if mode == "watching" {
				w, err := kube.NewReadinessWatcher(client, []string{"shop"})
				require.NoError(t, err)
				w.Probe = true
				defer w.Stop()
				a.Readiness = w
			}
			env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
			env.RegisterActivity(a)
			var heartbeats atomic.Int32
			env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { heartbeats.Add(1) })

			t.Run("not ready by the deadline", func(t *testing.T) {
				_, err := env.ExecuteActivity(a.WaitReady, ReadyInput{Ref: ref, ServiceName: "myapp-1", ServicePort: 80,
					Deadline: time.Now().Add(200 * time.Millisecond)})
				var app *temporal.ApplicationError
				require.ErrorAs(t, err, &app)
				assert.Equal(t, ErrTypeNotReady, app.Type())
				assert.True(t, app.NonRetryable())
				assert.Contains(t, app.Message(), "has no ready endpoint for port 80")
				assert.Positive(t, heartbeats.Load(), "what it waits for is heartbeated")
			})

			t.Run("ready once an endpoint is ready", func(t *testing.T) {
				go func() {
					time.Sleep(30 * time.Millisecond) // after the activity started waiting
					_, _ = client.DiscoveryV1().EndpointSlices("shop").Create(context.Background(), readySlice, metav1.CreateOptions{})
				}()
				val, err := env.ExecuteActivity(a.WaitReady, ReadyInput{Ref: ref, ServiceName: "myapp-1", ServicePort: 80,
					Deadline: time.Now().Add(5 * time.Second)})
				require.NoError(t, err)
				var r kube.Readiness
				require.NoError(t, val.Get(&r))
				assert.True(t, r.Ready)
				assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", port), r.Probed, "the optional probe, on here, reports the address")
			})
		})
	}
}

func TestWaitReadyProbeFailureIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close()) // nothing listens: the probe is refused
	client := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1-x", Labels: map[string]string{discoveryv1.LabelServiceName: "myapp-1"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}}}, // ready: nil means ready
		})
	w, err := kube.NewReadinessWatcher(client, nil)
	require.NoError(t, err)
	w.Probe = true
	defer w.Stop()
	a := &Activities{Workloads: kube.Workloads{Client: client}, Readiness: w}
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	env.RegisterActivity(a)
	val, err := env.ExecuteActivity(a.WaitReady, ReadyInput{Ref: registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"},
		ServiceName: "myapp-1", ServicePort: 80, Deadline: time.Now().Add(5 * time.Second)})
	require.NoError(t, err, "a NetworkPolicy may keep the worker from pods the Gateway reaches")
	var r kube.Readiness
	require.NoError(t, val.Get(&r))
	assert.True(t, r.Ready)
	assert.Empty(t, r.Probed)
	assert.Contains(t, r.ProbeError, "accepts TCP connections")
}

func TestRetire(t *testing.T) {
	reg := &fakeRegistry{}
	client := fake.NewClientset(newDeployment("myapp-1"), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1",
		Labels: map[string]string{kube.AppLabel: "myapp", kube.VersionLabel: "1"}}})
	a := &Activities{Registry: reg, Workloads: kube.Workloads{Client: client}}
	ref := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"}
	res, err := a.Retire(t.Context(), RetireInput{Ref: ref, Delete: true, Actor: registry.Actor{Type: registry.ActorWorkflow}, Reason: "no traffic"})
	require.NoError(t, err)
	assert.Equal(t, kube.Deleted{Deployments: []string{"myapp-1"}, Services: []string{"myapp-1"}}, res.Deleted)
	assert.False(t, res.NothingFound)
	require.Len(t, reg.audits, 1)
	assert.Contains(t, reg.audits[0], "1 workloads-deleted by workflow: no traffic")

	res, err = a.Retire(t.Context(), RetireInput{Ref: ref, Delete: true, Actor: registry.Actor{Type: registry.ActorWorkflow}, Reason: "retry"})
	require.NoError(t, err, "a retry after the deletion is no failure")
	assert.True(t, res.NothingFound, "but says nothing was found")
	require.Len(t, reg.audits, 2)
	assert.Contains(t, reg.audits[1], "1 nothing-to-retire by workflow: retry")
}

func TestRetireWhileRouted(t *testing.T) {
	reg := &fakeRegistry{}
	client := fake.NewClientset(newDeployment("myapp-1"))
	gw := gatewayfake.NewSimpleClientset(&gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp", Labels: routes.Labels("myapp")},
		Spec: gatewayv1.HTTPRouteSpec{Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{
			{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "myapp-1-svc"}}}}}}},
	})
	a := &Activities{Registry: reg, Workloads: kube.Workloads{Client: client, Gateway: gw}}
	_, err := a.Retire(t.Context(), RetireInput{Ref: registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"},
		ServiceName: "myapp-1-svc", Actor: registry.Actor{Type: registry.ActorWorkflow}, Reason: "no traffic"})
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeStillRouted, app.Type())
	assert.False(t, app.NonRetryable(), "the routes converge: retrying is right")
	assert.Contains(t, app.Message(), "still referenced by HTTPRoute myapp")
	var detail StillRouted
	require.NoError(t, app.Details(&detail))
	assert.Equal(t, StillRouted{Service: "myapp-1-svc", Routes: []string{"myapp"}}, detail)
	assert.Empty(t, reg.audits, "nothing done, nothing audited")
	d, err := client.AppsV1().Deployments("shop").Get(t.Context(), "myapp-1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(2), *d.Spec.Replicas)
}

// An admission webhook or RBAC that refuses the scale is a refusal the workflow handles (it
// reports it and tries again later), not an error retried every minute.
func TestRetireRefused(t *testing.T) {
	reg := &fakeRegistry{}
	client := fake.NewClientset(newDeployment("myapp-1"))
	client.PrependReactor("*", "deployments", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "scale" {
			return false, nil, nil
		}
		if action.GetVerb() == "get" {
			return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "myapp-1"},
				Spec: autoscalingv1.ScaleSpec{Replicas: 2}}, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "myapp-1",
			errors.New("denied by webhook freeze.example.com"))
	})
	a := &Activities{Registry: reg, Workloads: kube.Workloads{Client: client}}
	_, err := a.Retire(t.Context(), RetireInput{Ref: registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"},
		Actor: registry.Actor{Type: registry.ActorWorkflow}, Reason: "no traffic"})
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, ErrTypeWorkloadsRefused, app.Type())
	assert.True(t, app.NonRetryable())
	assert.Contains(t, app.Message(), "freeze.example.com")
	assert.Empty(t, reg.audits, "nothing done, nothing audited")
}

func TestReportEvent(t *testing.T) {
	client := fake.NewClientset(newDeployment("myapp-1"))
	a := &Activities{Workloads: kube.Workloads{Client: client}}
	ref := registry.VersionRef{Namespace: "shop", App: "myapp", Label: "1"}
	require.NoError(t, a.ReportEvent(t.Context(), EventInput{Ref: ref, Type: corev1.EventTypeNormal, Reason: "Activated", Message: "now Active"}))
	list, err := client.EventsV1().Events("shop").List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	assert.Equal(t, "myapp-1", list.Items[0].Regarding.Name)

	ref.Label = "2"
	assert.NoError(t, a.ReportEvent(t.Context(), EventInput{Ref: ref, Type: corev1.EventTypeNormal, Reason: "Activated", Message: "x"}),
		"no Deployment to record on is logged, not failed")
	err = a.ReportEvent(t.Context(), EventInput{Ref: ref, Type: "Loud", Reason: "Activated"})
	assertAppErrorType(t, err, ErrTypeInvalidInput)
}

func assertAppErrorType(t *testing.T, err error, typ string) {
	t.Helper()
	var app *temporal.ApplicationError
	require.ErrorAs(t, err, &app)
	assert.Equal(t, typ, app.Type())
	assert.True(t, app.NonRetryable())
}

func newDeployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name,
		Labels: map[string]string{kube.AppLabel: "myapp", kube.VersionLabel: "1"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)}}
}
