package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// fakeRegistry is an in-memory registry with the semantics the API relies on.
type fakeRegistry struct {
	mu       sync.Mutex
	apps     []registry.Application
	versions []registry.Version // newest life last
	audit    map[registry.VersionRef][]registry.AuditEntry
	policies map[registry.AppRef]registry.Policy
	pods     map[string]registry.Pod
	plans    map[registry.VersionRef]registry.Plan // pending plans (plan_test.go)
	err      error                                 // returned by every call when set
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{
		audit:    map[registry.VersionRef][]registry.AuditEntry{},
		policies: map[registry.AppRef]registry.Policy{},
		pods:     map[string]registry.Pod{},
	}
}

func (f *fakeRegistry) addVersion(v registry.Version) {
	f.mu.Lock()
	defer f.mu.Unlock()
	found := false
	for _, a := range f.apps {
		if a.Namespace == v.Namespace && a.Name == v.App {
			v.AppID, found = a.ID, true
		}
	}
	if !found {
		a := registry.Application{ID: int64(len(f.apps) + 1), Namespace: v.Namespace, Name: v.App}
		f.apps = append(f.apps, a)
		v.AppID = a.ID
	}
	v.ID = int64(len(f.versions) + 1)
	if v.Life == 0 {
		v.Life = 1
	}
	f.versions = append(f.versions, v)
}

func (f *fakeRegistry) setState(ref registry.VersionRef, s registry.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.versions) - 1; i >= 0; i-- {
		if f.versions[i].Ref() == ref {
			f.versions[i].State = s
			return
		}
	}
}

func (f *fakeRegistry) pod(ns, name string) (registry.Pod, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[ns+"/"+name]
	return p, ok
}

func (f *fakeRegistry) ListApps(context.Context) ([]registry.Application, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.apps), f.err
}

func (f *fakeRegistry) ListVersions(_ context.Context, app registry.AppRef) ([]registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []registry.Version
	for i := len(f.versions) - 1; i >= 0; i-- {
		if f.versions[i].Ref().AppRef() == app {
			out = append(out, f.versions[i])
		}
	}
	return out, f.err
}

// ListVersionsPage filters and pages ListVersions in memory, in the registry's order.
func (f *fakeRegistry) ListVersionsPage(ctx context.Context, app registry.AppRef, opts registry.ListVersionsOptions) (registry.VersionPage, error) {
	if err := opts.Check(); err != nil {
		return registry.VersionPage{}, err
	}
	all, err := f.ListVersions(ctx, app)
	if err != nil {
		return registry.VersionPage{}, err
	}
	var match []registry.Version
	for _, v := range all {
		if len(opts.States) == 0 || slices.Contains(opts.States, v.State) {
			match = append(match, v)
		}
	}
	slices.SortStableFunc(match, func(a, b registry.Version) int {
		if (a.State == registry.Active) != (b.State == registry.Active) {
			if a.State == registry.Active {
				return -1
			}
			return 1
		}
		return 0
	})
	limit := opts.Limit
	if limit == 0 {
		limit = registry.DefaultVersionsLimit
	}
	page := registry.VersionPage{Total: len(match)}
	if opts.Offset < len(match) {
		page.Versions = match[opts.Offset:min(len(match), opts.Offset+limit)]
	}
	return page, nil
}

func (f *fakeRegistry) newest(ref registry.VersionRef) (registry.Version, bool) {
	for i := len(f.versions) - 1; i >= 0; i-- {
		if f.versions[i].Ref() == ref {
			return f.versions[i], true
		}
	}
	return registry.Version{}, false
}

func (f *fakeRegistry) GetVersion(_ context.Context, ref registry.VersionRef) (registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return registry.Version{}, f.err
	}
	v, ok := f.newest(ref)
	if !ok {
		return registry.Version{}, fmt.Errorf("version %s: %w", ref, registry.ErrNotFound)
	}
	return v, nil
}

func (f *fakeRegistry) LiveVersion(_ context.Context, ref registry.VersionRef) (registry.Version, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return registry.Version{}, false, f.err
	}
	v, ok := f.newest(ref)
	return v, ok && v.State.Live(), nil
}

func (f *fakeRegistry) Audit(_ context.Context, ref registry.VersionRef) ([]registry.AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.newest(ref); !ok {
		return nil, fmt.Errorf("version %s: %w", ref, registry.ErrNotFound)
	}
	return f.audit[ref], f.err
}

func (f *fakeRegistry) AppAudit(_ context.Context, app registry.AppRef, limit int) ([]registry.AuditEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []registry.AuditEntry
	for ref, es := range f.audit {
		if ref.AppRef() == app {
			out = append(out, es...)
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, f.err
}

func (f *fakeRegistry) GetPolicy(_ context.Context, app registry.AppRef) (registry.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policies[app], f.err
}

func (f *fakeRegistry) PutPolicy(_ context.Context, app registry.AppRef, p registry.Policy, _ registry.Actor) ([]registry.Version, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.policies[app] = p
	var live []registry.Version
	for _, v := range f.versions {
		if v.Ref().AppRef() == app && v.State.Live() {
			live = append(live, v)
		}
	}
	return live, nil
}

func (f *fakeRegistry) UpsertPod(_ context.Context, p registry.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	old := f.pods[p.Namespace+"/"+p.ID]
	if p.Metadata == nil {
		p.Metadata = old.Metadata
	}
	if p.AppID == nil {
		p.AppID = old.AppID
	}
	if p.VersionID == nil {
		p.VersionID = old.VersionID
	}
	f.pods[p.Namespace+"/"+p.ID] = p
	return nil
}

// fakeStarter records starts and, like the workflow's first activity, records the version.
type fakeStarter struct {
	mu   sync.Mutex
	reg  *fakeRegistry
	reqs []detect.StartRequest
	err  error
}

func (s *fakeStarter) StartVersion(_ context.Context, req detect.StartRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.reqs = append(s.reqs, req)
	s.reg.addVersion(registry.Version{Namespace: req.Ref.Namespace, App: req.Ref.App, Label: req.Ref.Label,
		State: registry.Pending, Placement: registry.Placement{ServiceName: req.ServiceName, ServicePort: req.ServicePort}, PendingAt: time.Now()})
	return nil
}

func (s *fakeStarter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// fakeLifecycle applies actions with the workflow validator's rules.
type fakeLifecycle struct {
	mu    sync.Mutex
	reg   *fakeRegistry
	calls []string
	err   error
}

func (l *fakeLifecycle) Act(_ context.Context, ref registry.VersionRef, action string, req workflows.ActionRequest) (workflows.ActionResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf("%s %s by %s: %s", action, ref.Label, req.Actor.ID, req.Reason))
	if l.err != nil {
		return workflows.ActionResult{}, l.err
	}
	v, _ := l.reg.GetVersion(context.Background(), ref)
	switch {
	case action == workflows.UpdateExpire && v.State == registry.Active:
		return workflows.ActionResult{}, &workflows.RejectedError{Message: fmt.Sprintf("version %s is the Active version and cannot be expired", ref.Label)}
	case action == workflows.UpdateExpire:
		l.reg.setState(ref, registry.Expired)
		return workflows.ActionResult{State: registry.Expired, Message: "expired"}, nil
	case action == workflows.UpdatePromote && v.State != registry.Draining:
		return workflows.ActionResult{}, &workflows.RejectedError{Message: fmt.Sprintf("version %s is %s: only a Draining version can be promoted", ref.Label, v.State)}
	case action == workflows.UpdatePromote:
		l.reg.setState(ref, registry.Active)
		return workflows.ActionResult{State: registry.Active, Message: "promoted"}, nil
	}
	return workflows.ActionResult{}, &workflows.RejectedError{Message: "not staged"}
}

func (l *fakeLifecycle) PolicyChanged(_ context.Context, ref registry.VersionRef, actor registry.Actor) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf("policy-changed %s by %s", ref.Label, actor.ID))
	return l.err
}

func (l *fakeLifecycle) actions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// Identities of the test cluster.
const (
	tokenPodA    = "token-pod-a"  // bound to shop/web-v1-a
	tokenPodB    = "token-pod-b"  // bound to shop/web-v1-b
	tokenPodC    = "token-pod-c"  // bound to shop/web-v1-c, a pod a test creates
	tokenOther   = "token-other"  // bound to other/web-v1-a (same pod name, other namespace)
	tokenPlainSA = "token-sa"     // a service account token not bound to a pod
	tokenAdmin   = "token-admin"  // may update versions everywhere
	tokenViewer  = "token-viewer" // may get and list in shop only
	tokenBroken  = "token-broken" // the API server fails to review it
)

func boundUser(ns, pod string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{
		Username: "system:serviceaccount:" + ns + ":default",
		Groups:   []string{"system:serviceaccounts"},
		Extra: map[string]authenticationv1.ExtraValue{
			auth.ExtraPodName: {pod}, auth.ExtraPodUID: {ns + "-" + pod + "-uid"},
		},
	}
}

var testUsers = map[string]authenticationv1.UserInfo{
	tokenPodA:    boundUser("shop", "web-v1-a"),
	tokenPodB:    boundUser("shop", "web-v1-b"),
	tokenPodC:    boundUser("shop", "web-v1-c"),
	tokenOther:   boundUser("other", "web-v1-a"),
	tokenPlainSA: {Username: "system:serviceaccount:shop:ci"},
	tokenAdmin:   {Username: "admin", Groups: []string{"system:masters"}},
	tokenViewer:  {Username: "viewer"},
}

// testRBAC is the cluster's decision: admin does anything; viewer reads in shop.
func testRBAC(spec authorizationv1.SubjectAccessReviewSpec) bool {
	ra := spec.ResourceAttributes
	if ra == nil || ra.Group != auth.Group || ra.Resource != auth.Resource {
		return false
	}
	switch spec.User {
	case "admin":
		return true
	case "viewer":
		return ra.Namespace == "shop" && (ra.Verb == auth.VerbGet || ra.Verb == auth.VerbList)
	}
	return false
}

func testPod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name + "-uid"), Labels: labels,
			CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Minute))},
		Spec: corev1.PodSpec{ServiceAccountName: "default"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func testService(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

func versionLabels(app, v string) map[string]string {
	return map[string]string{detect.LabelApp: app, detect.LabelVersion: v}
}

// harness is a Server over fakes and a fake API server.
type harness struct {
	server    *Server
	handler   http.Handler
	reg       *fakeRegistry
	starter   *fakeStarter
	lifecycle *fakeLifecycle
	kube      *fake.Clientset
	retried   *[]string
}

type harnessOptions struct {
	disabled     bool // skew protection off
	insecurePod  bool
	insecureAPI  bool
	ready        []ReadyCheck
	pingInterval time.Duration
	// lifecycle replaces the fake lifecycle (e.g. a Temporal on a mock client).
	lifecycle Lifecycle
	// traffic answers the request-rate series (nil: no Prometheus).
	traffic Traffic
	// defaults are the configured policy values (zero: the documented defaults).
	defaults PolicyDefaults
	// podCounter counts the pods of the versions list (nil: no counts).
	podCounter PodCounter
	// registry replaces the in-memory registry (the PostgreSQL benchmark).
	registry interface {
		Registry
		detect.Registry
	}
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	objs := []runtime.Object{
		testPod("shop", "web-v1-a", versionLabels("web", "1")),
		testPod("shop", "web-v1-b", versionLabels("web", "1")),
		testPod("shop", "web-v2-a", versionLabels("web", "2")),
		testPod("shop", "plain", map[string]string{"run": "plain"}),
		testPod("other", "web-v1-a", versionLabels("web", "1")),
		testService("shop", "web-v1", versionLabels("web", "1")),
		testService("shop", "web-v2", versionLabels("web", "2")),
		testService("other", "web-v1", versionLabels("web", "1")),
	}
	kube := fake.NewClientset(objs...)
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == tokenBroken {
			return true, nil, errors.New("etcd is on fire")
		}
		if u, ok := testUsers[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	kube.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = testRBAC(sar.Spec)
		return true, sar, nil
	})

	cache, err := detect.NewCache(kube, nil, 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cache.Start(ctx)
	require.True(t, cache.WaitForSync(ctx))

	reg := newFakeRegistry()
	starter := &fakeStarter{reg: reg}
	var store interface {
		Registry
		detect.Registry
	} = reg
	if o.registry != nil {
		store = o.registry
	}
	det := detect.NewDetector(detect.Options{Registry: store, Starter: starter, Lookup: cache, Enabled: !o.disabled,
		Logger: slog.New(slog.DiscardHandler)})
	lc := &fakeLifecycle{reg: reg}
	var lifecycle Lifecycle = lc
	if o.lifecycle != nil {
		lifecycle = o.lifecycle
	}
	var retried []string
	var retryMu sync.Mutex
	srv, err := New(Options{
		Logger:              slog.New(slog.DiscardHandler),
		Registry:            store,
		Pods:                cache,
		Detector:            det,
		Lifecycle:           lifecycle,
		Traffic:             o.traffic,
		PolicyDefaults:      o.defaults,
		Authenticator:       auth.NewAuthenticator(kube, auth.AuthenticatorOptions{}),
		Authorizer:          auth.NewAuthorizer(kube, auth.AuthorizerOptions{}),
		InsecureSkipPodAuth: o.insecurePod,
		InsecureSkipAPIAuth: o.insecureAPI,
		ServeMetrics:        true,
		Ready:               o.ready,
		PingInterval:        o.pingInterval,
		PodCounter:          o.podCounter,
		Retry: func(p *corev1.Pod) {
			retryMu.Lock()
			defer retryMu.Unlock()
			retried = append(retried, p.Namespace+"/"+p.Name)
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return &harness{server: srv, handler: srv.Handler(), reg: reg, starter: starter, lifecycle: lc, kube: kube, retried: &retried}
}

// request builds a request with a bearer token and, with a body, the agent's content type.
func (h *harness) request(method, path, token, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	return req
}

func (h *harness) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	return rec
}

// do sends one request through the handler.
func (h *harness) do(t testing.TB, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	return h.serve(h.request(method, path, token, body))
}

// errorCode returns the code of a JSON error answer, failing the test if the body is not one.
func errorCode(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"), "body: %s", rec.Body.String())
	var e Error
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), "body: %s", rec.Body.String())
	require.NotEmpty(t, e.Code)
	require.NotEmpty(t, e.Message)
	return e.Code
}

func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v), "body: %s", rec.Body.String())
	return v
}
