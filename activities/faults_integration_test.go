//go:build integration

package activities

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/routes"
	"github.com/skewguard/skewguard/internal/testenv"
)

// Faults of the real parts under a flip (issue 13): PostgreSQL losing the connection while the
// flip holds the app's lock, a route write failing inside it, the API server refusing routes.
// registry.TestFlipPublishesOrRollsBack covers a Publish callback that returns an error; these
// cover what it does not: the connection dropped mid-transaction (the commit fails after the
// routes were written) and the activity's classification and retry on the real parts.

// faultWorld is two versions of one app on a database of its own: v1 Active, v2 Pending.
type faultWorld struct {
	a       *Activities
	clients *kube.Clients
	ns      string
	dbName  string
	store   *registry.Store
	v1, v2  registry.Version
	wf      registry.Actor
}

func newFaultWorld(t *testing.T) *faultWorld {
	t.Helper()
	a, clients, ns := realActivities(t)
	dsn := registrytest.NewURL(t)
	ctx := t.Context()
	store, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(store.Close)
	a.Registry = store
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	var db string
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db))
	require.NoError(t, conn.Close(ctx))

	f := &faultWorld{a: a, clients: clients, ns: ns, dbName: db, store: store, wf: registry.Actor{Type: registry.ActorWorkflow, ID: "faults"}}
	observe := func(l string) registry.Version {
		v, err := a.Observe(ctx, ObserveInput{Ref: f.ref(l), Placement: registry.Placement{ServiceName: "web-" + l, ServicePort: 80, Hostname: ns + ".faults.test"},
			WorkflowID: "skew/" + ns + "/web/" + l, Actor: f.wf})
		require.NoError(t, err)
		return v
	}
	f.v1 = observe("1")
	_, err = a.Activate(ctx, TransitionInput{Ref: f.ref("1"), VersionID: f.v1.ID, Actor: f.wf})
	require.NoError(t, err)
	f.v2 = observe("2")
	return f
}

func (f *faultWorld) ref(l string) registry.VersionRef {
	return registry.VersionRef{Namespace: f.ns, App: "web", Label: l}
}

// registryState is what must not change when a flip does not commit.
type registryState struct {
	States     map[string]registry.State
	Generation int64
	Audit      int
}

func (f *faultWorld) state(t *testing.T) registryState {
	t.Helper()
	ctx := t.Context()
	s := registryState{States: map[string]registry.State{}}
	for _, l := range []string{"1", "2"} {
		v, err := f.store.GetVersion(ctx, f.ref(l))
		require.NoError(t, err)
		s.States[l] = v.State
	}
	var err error
	s.Generation, err = f.store.Generation(ctx, f.ref("1").AppRef())
	require.NoError(t, err)
	audit, err := f.store.AppAudit(ctx, f.ref("1").AppRef(), 1000)
	require.NoError(t, err)
	s.Audit = len(audit)
	return s
}

// assertRoutesMatchRegistry: the app's HTTPRoutes on the API server are a fresh render of the
// registry, with its generation.
func (f *faultWorld) assertRoutesMatchRegistry(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	snap, err := f.store.Snapshot(ctx, f.ref("1").AppRef())
	require.NoError(t, err)
	want, err := routes.Render(RouteInput(f.a.Config, snap))
	require.NoError(t, err)
	list, err := f.clients.Gateway.GatewayV1().HTTPRoutes(f.ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(routes.Labels("web")).String()})
	require.NoError(t, err)
	live := map[string]gatewayv1.HTTPRoute{}
	for _, r := range list.Items {
		live[r.Name] = r
	}
	require.Len(t, live, len(want), "the app's routes")
	for _, w := range want {
		r, ok := live[w.Name]
		require.True(t, ok, "route %s", w.Name)
		assert.Equal(t, strconv.FormatInt(snap.Generation, 10), r.Annotations[routes.GenerationAnnotation], "route %s generation", w.Name)
		assert.True(t, equality.Semantic.DeepEqual(w.Spec, r.Spec), "route %s is the registry's render", w.Name)
	}
}

// TestFlipWhenPostgresDropsTheConnection: the connection of v2's activation is terminated
// (pg_terminate_backend, as a PostgreSQL restart or failover does) while the flip holds the
// app's lock and writes the routes. The commit fails: the registry is exactly as it was (v1
// Active, v2 Pending, same generation, nothing audited), the activity's error is retryable,
// and the retry completes the flip with routes that match the registry.
func TestFlipWhenPostgresDropsTheConnection(t *testing.T) {
	f := newFaultWorld(t)
	ctx := t.Context()
	before := f.state(t)

	write := f.a.Routes
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	f.a.Routes = routeWriterFunc(func(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error) {
		if first {
			first = false
			close(entered)
			<-release
		}
		return write.ApplyRoutes(ctx, namespace, app, generation, desired)
	})

	done := make(chan error, 1)
	go func() {
		_, err := f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf, Reason: "ready"})
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("the activation ended before writing the routes: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the activation never wrote the routes")
	}
	// The flip holds the app's row lock in an open transaction: kill its backend.
	killed := terminateIdleInTransaction(t, f.dbName)
	assert.Equal(t, 1, killed, "one backend held the flip's transaction")
	close(release)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the activation did not return after its connection was terminated")
	}
	require.Error(t, err, "the commit cannot succeed on a terminated connection")
	t.Logf("activation error: %v", err)
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		assert.False(t, app.NonRetryable(), "a dropped connection is retried: %v", err)
	}
	assert.Equal(t, before, f.state(t), "nothing half-written: the registry is as it was")

	// The route write itself got through before the commit failed: the routes are ahead of the
	// registry until something writes them again. The convergence controller's write (the same
	// SyncRoutes) moves the generation past them and puts the registry's routes back.
	_, err = f.a.SyncRoutes(ctx, SyncInput{App: f.ref("1").AppRef(), Cause: f.ref("1"), Actor: f.wf, Reason: "converge"})
	require.NoError(t, err)
	assert.Equal(t, before.States, f.state(t).States)
	f.assertRoutesMatchRegistry(t)

	// The retry, as the workflow's policy makes it.
	res, err := f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf, Reason: "ready"})
	require.NoError(t, err)
	assert.True(t, res.Changed)
	require.NotNil(t, res.Previous)
	assert.Equal(t, "1", res.Previous.Label)
	after := f.state(t)
	assert.Equal(t, map[string]registry.State{"1": registry.Draining, "2": registry.Active}, after.States)
	assert.Greater(t, after.Generation, before.Generation)
	f.assertRoutesMatchRegistry(t)
}

// terminateIdleInTransaction terminates the backends of database db that sit in an open
// transaction, from an admin connection, and returns how many it terminated.
func terminateIdleInTransaction(t *testing.T, db string) int {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testenv.Get(t, testenv.PostgresURL))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	n := 0
	// Bounded polling: the flip's statements may still be finishing when Publish is entered.
	for deadline := time.Now().Add(10 * time.Second); n == 0 && time.Now().Before(deadline); {
		rows, err := conn.Query(ctx, `
			SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'`, db)
		require.NoError(t, err)
		for rows.Next() {
			var ok bool
			require.NoError(t, rows.Scan(&ok))
			if ok {
				n++
			}
		}
		require.NoError(t, rows.Err())
		if n == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return n
}

// TestFlipWhenTheRouteWriteFails: the API server is unreachable when the flip writes the routes
// (a transient error): the registry does not change, the error is retryable, and the retry
// completes. A refusal (Forbidden) is not retryable and changes nothing either.
func TestFlipWhenTheRouteWriteFails(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		retryable bool
	}{
		{"unreachable", errors.New(`Put "https://10.96.0.1:443/apis/gateway.networking.k8s.io/v1/namespaces/x/httproutes/web": dial tcp 10.96.0.1:443: connect: connection refused`), true},
		{"forbidden", apierrors.NewForbidden(gatewayv1.Resource("httproutes"), "web", errors.New("change freeze")), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFaultWorld(t)
			ctx := t.Context()
			before := f.state(t)
			write := f.a.Routes
			fail := true
			f.a.Routes = routeWriterFunc(func(ctx context.Context, namespace, app string, generation int64, desired []gatewayv1.HTTPRoute) (kube.RouteApplyResult, error) {
				if fail {
					return kube.RouteApplyResult{}, tt.err
				}
				return write.ApplyRoutes(ctx, namespace, app, generation, desired)
			})
			_, err := f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf})
			require.Error(t, err)
			var app *temporal.ApplicationError
			if tt.retryable {
				assert.False(t, errors.As(err, &app) && app.NonRetryable(), "retryable: %v", err)
			} else {
				assertAppError(t, err, ErrTypeRoutesRefused)
			}
			assert.Equal(t, before, f.state(t), "nothing half-written")
			f.assertRoutesMatchRegistry(t)

			fail = false
			_, err = f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf})
			require.NoError(t, err)
			assert.Equal(t, map[string]registry.State{"1": registry.Draining, "2": registry.Active}, f.state(t).States)
			f.assertRoutesMatchRegistry(t)
		})
	}
}

// TestAdmissionPolicyRefusalIsRoutesRefused: a ValidatingAdmissionPolicy of the real API server
// refuses every HTTPRoute write in the test's namespace (as a change freeze would). v2's
// activation fails with a non-retryable RoutesRefused that carries the policy's message, the
// registry and the routes are as they were; once the binding is gone, the activation completes.
func TestAdmissionPolicyRefusalIsRoutesRefused(t *testing.T) {
	f := newFaultWorld(t)
	ctx := t.Context()
	adm := f.clients.Kube.AdmissionregistrationV1()
	name := fmt.Sprintf("sg-faults-freeze-%08x", rand.Uint32())
	_, err := adm.ValidatingAdmissionPolicies().Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{gatewayv1.GroupName}, APIVersions: []string{"*"},
						Resources: []string{"httproutes"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "change freeze (skewguard fault test)",
				Reason: ptr.To(metav1.StatusReasonForbidden)}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	_, err = adm.ValidatingAdmissionPolicyBindings().Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": f.ns}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	unbind := func() {
		err := adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		if !apierrors.IsNotFound(err) {
			require.NoError(t, err)
		}
	}
	t.Cleanup(unbind)
	waitAdmission(t, f, true)

	before := f.state(t)
	_, err = f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf})
	assertAppError(t, err, ErrTypeRoutesRefused)
	assert.Contains(t, err.Error(), "change freeze (skewguard fault test)", "the policy's message reaches the workflow")
	assert.Equal(t, before, f.state(t), "the registry is as it was")
	f.assertRoutesMatchRegistry(t)

	unbind()
	waitAdmission(t, f, false)
	_, err = f.a.Activate(ctx, TransitionInput{Ref: f.ref("2"), VersionID: f.v2.ID, Actor: f.wf})
	require.NoError(t, err)
	assert.Equal(t, map[string]registry.State{"1": registry.Draining, "2": registry.Active}, f.state(t).States)
	f.assertRoutesMatchRegistry(t)
}

// waitAdmission waits (bounded) until the API server refuses (or, refused=false, accepts again)
// a dry-run update of the app's routes: policies and bindings take effect asynchronously.
func waitAdmission(t *testing.T, f *faultWorld, refused bool) {
	t.Helper()
	ctx := t.Context()
	client := f.clients.Gateway.GatewayV1().HTTPRoutes(f.ns)
	list, err := client.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(routes.Labels("web")).String()})
	require.NoError(t, err)
	require.NotEmpty(t, list.Items, "v1's routes")
	probe := list.Items[0]
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, last = client.Update(ctx, &probe, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		if refused == (last != nil && apierrors.IsForbidden(last)) {
			return
		}
	}
	t.Fatalf("the admission policy did not take effect (refused=%v) within 30s; last answer: %v", refused, last)
}
