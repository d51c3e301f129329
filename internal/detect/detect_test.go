package detect

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skewguard/skewguard/internal/registry"
)

// fakeRegistry is an in-memory Registry.
type fakeRegistry struct {
	mu       sync.Mutex
	versions map[registry.VersionRef]registry.Version // the newest life of each label
	pods     map[string]registry.Pod
	upserts  int
	lastID   int64
	err      error
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{versions: map[registry.VersionRef]registry.Version{}, pods: map[string]registry.Pod{}}
}

func (f *fakeRegistry) put(v registry.Version) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions[v.Ref()] = v
}

// observe records the next Pending life of ref, as the workflow's first activity does.
func (f *fakeRegistry) observe(ref registry.VersionRef) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.versions[ref]; ok && v.State.Live() {
		return
	}
	f.lastID++
	life := f.versions[ref].Life + 1
	f.versions[ref] = registry.Version{ID: f.lastID, AppID: 1, Namespace: ref.Namespace, App: ref.App,
		Label: ref.Label, Life: life, State: registry.Pending}
}

// expire marks the newest life of ref expired at the given time.
func (f *fakeRegistry) expire(t *testing.T, ref registry.VersionRef, at time.Time) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.versions[ref]
	require.True(t, ok, "no version %s to expire", ref)
	v.State, v.ExpiredAt = registry.Expired, &at
	f.versions[ref] = v
}

func (f *fakeRegistry) LiveVersion(_ context.Context, ref registry.VersionRef) (registry.Version, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return registry.Version{}, false, f.err
	}
	v, ok := f.versions[ref]
	return v, ok && v.State.Live(), nil
}

func (f *fakeRegistry) GetVersion(_ context.Context, ref registry.VersionRef) (registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.versions[ref]
	if !ok {
		return registry.Version{}, fmt.Errorf("version %s: %w", ref, registry.ErrNotFound)
	}
	return v, nil
}

func (f *fakeRegistry) UpsertPod(_ context.Context, p registry.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.upserts++
	f.pods[p.Namespace+"/"+p.ID] = p
	return nil
}

// fakeStarter records start requests; it also records the version as pending, as the real
// workflow's first activity does.
type fakeStarter struct {
	mu   sync.Mutex
	reg  *fakeRegistry
	reqs []StartRequest
	err  error
	// forgetful: the start succeeds but no life is recorded, as when a start attaches to a
	// run that is just finishing.
	forgetful bool
}

func (s *fakeStarter) StartVersion(_ context.Context, req StartRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.reqs = append(s.reqs, req)
	if s.reg != nil && !s.forgetful {
		s.reg.observe(req.Ref)
	}
	return nil
}

func (s *fakeStarter) requests() []StartRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StartRequest(nil), s.reqs...)
}

func pod(ns, name string, lbls map[string]string, ready bool, created time.Time) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: lbls,
			CreationTimestamp: metav1.NewTime(created)},
		Spec: corev1.PodSpec{ServiceAccountName: "default"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func service(ns, name string, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}
}

func versionLabels(app, version string) map[string]string {
	return map[string]string{LabelApp: app, LabelVersion: version}
}

// startedCache returns a synced cache over objs.
func startedCache(t *testing.T, objs ...runtime.Object) (*Cache, *fake.Clientset) {
	t.Helper()
	kube := fake.NewClientset(objs...)
	c, err := NewCache(kube, nil, 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(ctx)
	require.True(t, c.WaitForSync(ctx))
	return c, kube
}

func TestServiceFor(t *testing.T) {
	now := time.Now()
	p := pod("shop", "web-v2-abc", map[string]string{LabelApp: "web", LabelVersion: "2", "tier": "front"}, true, now)
	tests := []struct {
		name     string
		services []*corev1.Service
		want     string
		port     int32
	}{
		{name: "version selector wins over a larger one",
			services: []*corev1.Service{
				service("shop", "a-front", map[string]string{"tier": "front", LabelApp: "web"}),
				service("shop", "web-v2", versionLabels("web", "2")),
			}, want: "web-v2", port: 80},
		{name: "a whole-app Service is never a version's backend",
			services: []*corev1.Service{service("shop", "web", map[string]string{LabelApp: "web"})}},
		{name: "other version and other namespace do not match",
			services: []*corev1.Service{
				service("shop", "web-v1", versionLabels("web", "1")),
				service("other", "web-v2", versionLabels("web", "2")),
			}},
		{name: "ties broken by name",
			services: []*corev1.Service{
				service("shop", "web-v2-b", versionLabels("web", "2")),
				service("shop", "web-v2-a", versionLabels("web", "2")),
			}, want: "web-v2-a", port: 80},
		{name: "port named http, else the first",
			services: []*corev1.Service{service("shop", "web-v2", versionLabels("web", "2"),
				corev1.ServicePort{Name: "metrics", Port: 9090}, corev1.ServicePort{Name: "http", Port: 8080})},
			want: "web-v2", port: 8080},
		{name: "first port when none is named http",
			services: []*corev1.Service{service("shop", "web-v2", versionLabels("web", "2"),
				corev1.ServicePort{Name: "web", Port: 3042}, corev1.ServicePort{Name: "metrics", Port: 9090})},
			want: "web-v2", port: 3042},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{p}
			for _, s := range tc.services {
				objs = append(objs, s)
			}
			c, _ := startedCache(t, objs...)
			svc, port, ok := c.ServiceFor(p)
			if tc.want == "" {
				assert.False(t, ok, "got %v", svc)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.want, svc.Name)
			assert.Equal(t, tc.port, port)
		})
	}
}

func TestPodsNamedAcrossNamespaces(t *testing.T) {
	now := time.Now()
	c, _ := startedCache(t,
		pod("b", "same", nil, true, now), pod("a", "same", nil, true, now), pod("a", "other", nil, true, now))
	got := c.PodsNamed("same")
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].Namespace)
	assert.Equal(t, "b", got[1].Namespace)
	assert.Empty(t, c.PodsNamed("missing"))
	p, ok := c.Pod("a", "other")
	require.True(t, ok)
	assert.Equal(t, "other", p.Name)
}

func TestCacheSlimsObjects(t *testing.T) {
	p := pod("a", "p", versionLabels("web", "1"), true, time.Now())
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	p.Annotations = map[string]string{"big": "x", LabelPath: "/shop", AnnotationVersionFrom: "image"}
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "img", Command: []string{"serve"},
		Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}
	c, _ := startedCache(t, p)
	got, ok := c.Pod("a", "p")
	require.True(t, ok)
	assert.Empty(t, got.ManagedFields)
	assert.Equal(t, []corev1.Container{{Name: "app", Image: "img"}}, got.Spec.Containers,
		"a container's name and image only: a version may be derived from an image")
	assert.Equal(t, map[string]string{LabelPath: "/shop", AnnotationVersionFrom: "image"}, got.Annotations)
	assert.Equal(t, "default", got.Spec.ServiceAccountName)
	assert.True(t, Ready(got))
}

func TestDetect(t *testing.T) {
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	expiredAt := base.Add(time.Hour)
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "2"}
	newPod := func(created time.Time) *corev1.Pod {
		return pod("shop", "web-v2-abc", versionLabels("web", "2"), true, created)
	}
	svc := service("shop", "web-v2", versionLabels("web", "2"))

	tests := []struct {
		name      string
		enabled   bool
		pod       *corev1.Pod
		services  []runtime.Object
		existing  *registry.Version
		regErr    error
		startErr  error
		outcome   Outcome
		wantStart bool
		wantErr   bool
		version   string
		after     int64 // the expired life the start must name
	}{
		{name: "feature off answers without tracking", enabled: false, pod: newPod(base), services: []runtime.Object{svc},
			outcome: OutcomeFeatureOff},
		{name: "pod without labels", enabled: true, pod: pod("shop", "plain", nil, true, base),
			outcome: OutcomeNoLabels},
		{name: "new version starts its workflow", enabled: true, pod: newPod(base), services: []runtime.Object{svc},
			outcome: OutcomeStarted, wantStart: true, version: "2"},
		{name: "live version takes the fast path", enabled: true, pod: newPod(base), services: []runtime.Object{svc},
			existing: &registry.Version{ID: 7, AppID: 3, Namespace: "shop", App: "web", Label: "2", State: registry.Active},
			outcome:  OutcomeFastPath, version: "2"},
		{name: "expired label coming back starts again", enabled: true, pod: newPod(expiredAt.Add(time.Minute)),
			services: []runtime.Object{svc},
			existing: &registry.Version{ID: 41, Namespace: "shop", App: "web", Label: "2", State: registry.Expired, ExpiredAt: &expiredAt},
			outcome:  OutcomeStarted, wantStart: true, version: "2", after: 41},
		{name: "a pod older than the expiry does not revive it", enabled: true, pod: newPod(base),
			services: []runtime.Object{svc},
			existing: &registry.Version{Namespace: "shop", App: "web", Label: "2", State: registry.Expired, ExpiredAt: &expiredAt},
			outcome:  OutcomeStale, version: "2"},
		{name: "no Service yet", enabled: true, pod: newPod(base), outcome: OutcomeNoService, version: "2"},
		{name: "registry down", enabled: true, pod: newPod(base), services: []runtime.Object{svc},
			regErr: errors.New("connection refused"), outcome: OutcomeError, wantErr: true, version: "2"},
		{name: "Temporal down", enabled: true, pod: newPod(base), services: []runtime.Object{svc},
			startErr: errors.New("unavailable"), outcome: OutcomeError, wantErr: true, version: "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]runtime.Object{tc.pod}, tc.services...)
			c, _ := startedCache(t, objs...)
			reg := newFakeRegistry()
			reg.err = tc.regErr
			if tc.existing != nil {
				reg.put(*tc.existing)
			}
			st := &fakeStarter{reg: reg, err: tc.startErr}
			d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: tc.enabled,
				Now: func() time.Time { return base }})

			counted := registrations(t, SourceAgent, tc.outcome)
			res, err := d.Detect(context.Background(), tc.pod, SourceAgent, Hint{})
			assert.Equal(t, counted+1, registrations(t, SourceAgent, tc.outcome), "counted under its outcome's label")
			if tc.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tc.outcome, res.Outcome)
			assert.Equal(t, tc.version, res.DeploymentVersion)
			assert.Equal(t, ApplicationID(tc.pod.Namespace, res.AppName), res.ApplicationID)
			if !tc.wantStart {
				assert.Empty(t, st.requests())
				return
			}
			require.Len(t, st.requests(), 1)
			got := st.requests()[0]
			assert.Equal(t, ref, got.Ref)
			assert.Equal(t, "web-v2", got.ServiceName)
			assert.Equal(t, int32(80), got.ServicePort)
			assert.Equal(t, tc.after, got.After, "the start names the expired life it follows")
			assert.Equal(t, registry.ActorPod, got.Actor.Type)
		})
	}
}

func TestDetectStartsOnceForABurst(t *testing.T) {
	now := time.Now()
	svc := service("shop", "web-v2", versionLabels("web", "2"))
	var objs []runtime.Object
	var pods []*corev1.Pod
	for i := range 8 {
		p := pod("shop", fmt.Sprintf("web-v2-%d", i), versionLabels("web", "2"), true, now)
		pods = append(pods, p)
		objs = append(objs, p)
	}
	c, _ := startedCache(t, append(objs, svc)...)
	reg := newFakeRegistry()
	st := &fakeStarter{reg: reg}
	d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true})
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			res, err := d.Detect(context.Background(), p, SourceAgent, Hint{})
			assert.NoError(t, err)
			assert.Equal(t, "2", res.DeploymentVersion)
		})
	}
	wg.Wait()
	assert.Len(t, st.requests(), 1)
}

func TestDetectRetriesAfterAFailedStart(t *testing.T) {
	now := time.Now()
	p := pod("shop", "web-v2-a", versionLabels("web", "2"), true, now)
	c, _ := startedCache(t, p, service("shop", "web-v2", versionLabels("web", "2")))
	reg := newFakeRegistry()
	st := &fakeStarter{reg: reg, err: errors.New("unavailable")}
	d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true})
	_, err := d.Detect(context.Background(), p, SourceAgent, Hint{})
	require.Error(t, err)
	st.mu.Lock()
	st.err = nil
	st.mu.Unlock()
	res, err := d.Detect(context.Background(), p, SourceAgent, Hint{})
	require.NoError(t, err)
	assert.Equal(t, OutcomeStarted, res.Outcome, "a failed start must not be remembered as started")
}

func TestIdentify(t *testing.T) {
	tests := []struct {
		name    string
		labels  map[string]string
		hint    string
		appName string
	}{
		{"app label", versionLabels("web", "1"), "ignored", "web"},
		{"agent's application name", nil, "shop", "shop"},
		{"pod name as a last resort", nil, "", "p1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := identify(pod("ns", "p1", tc.labels, true, time.Now()), Hint{ApplicationName: tc.hint}, false)
			require.NoError(t, err)
			assert.Equal(t, tc.appName, res.AppName)
		})
	}
}

func TestPlacement(t *testing.T) {
	p := pod("ns", "p", map[string]string{LabelPath: "shop", LabelHostname: "shop.example.com"}, true, time.Now())
	path, host := placement(p)
	assert.Equal(t, "/shop", path)
	assert.Equal(t, "shop.example.com", host)
	p.Annotations = map[string]string{LabelPath: "/api/leads"}
	path, _ = placement(p)
	assert.Equal(t, "/api/leads", path, "the annotation can hold slashes and wins")
}

func TestApplicationID(t *testing.T) {
	id := ApplicationID("shop", "web")
	assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), id)
	assert.Equal(t, id, ApplicationID("shop", "web"), "deterministic")
	assert.NotEqual(t, id, ApplicationID("shop", "api"))
	assert.NotEqual(t, id, ApplicationID("other", "web"))
}

func TestFastPathWritesThePodRowOncePerTTL(t *testing.T) {
	now := time.Now()
	p := pod("shop", "web-v2-a", versionLabels("web", "2"), true, now)
	c, _ := startedCache(t, p, service("shop", "web-v2", versionLabels("web", "2")))
	reg := newFakeRegistry()
	reg.put(registry.Version{ID: 4, AppID: 1, Namespace: "shop", App: "web", Label: "2", State: registry.Active})
	clock := now
	d := NewDetector(Options{Registry: reg, Starter: &fakeStarter{reg: reg}, Lookup: c, Enabled: true,
		PodRecordTTL: time.Minute, Now: func() time.Time { return clock }})
	upserts := func() int { reg.mu.Lock(); defer reg.mu.Unlock(); return reg.upserts }

	for range 3 {
		res, err := d.Detect(context.Background(), p, SourcePodWatch, Hint{})
		require.NoError(t, err)
		assert.Equal(t, OutcomeFastPath, res.Outcome)
	}
	assert.Equal(t, 1, upserts(), "repeats within the TTL only read")
	clock = clock.Add(time.Minute + time.Second)
	_, err := d.Detect(context.Background(), p, SourceAgent, Hint{})
	require.NoError(t, err)
	assert.Equal(t, 2, upserts(), "last_seen is refreshed after the TTL")

	reg.put(registry.Version{ID: 5, AppID: 1, Namespace: "shop", App: "web", Label: "2", State: registry.Active})
	_, err = d.Detect(context.Background(), p, SourceAgent, Hint{})
	require.NoError(t, err)
	assert.Equal(t, 3, upserts(), "a new life of the version is recorded at once")
}
