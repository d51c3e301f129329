//go:build integration

package deploytest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/deploytest/charttest"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/routes"
)

// The RBAC proof. skewguard authenticates as the chart's ServiceAccount, with a token the real
// API server issued for it, and goes through a version's lifecycle with its own Kubernetes code
// (internal/detect, internal/auth, internal/kube: every Kubernetes call the product makes goes
// through them). With the chart's ClusterRole every step succeeds; with one rule removed, the
// step that needs it fails with a Forbidden error naming the verb and the resource.

const rbacApp = "myapp"

// adoptedApp runs as one Deployment without the version label, annotated plt.dev/adopt=true:
// skewguard adopts it as a version with a Service of its own.
const adoptedApp = "legacy"

// rbacRelease is the chart's RBAC, installed for real with skew protection and auto-cleanup on
// (the most a release is ever granted), and the admin's view of the cluster.
type rbacRelease struct {
	*charttest.RBAC
	c *cluster
}

func installRBAC(t *testing.T) *rbacRelease {
	t.Helper()
	rbac := charttest.InstallRBAC(t, time.Hour,
		"--set", "services.icc.features.skew_protection.enable=true",
		"--set", "services.icc.skew_protection.auto_cleanup=true",
		"--set", "gateway.parentRefs[0].namespace=gateway-system",
		"--set", "gateway.parentRefs[0].name=public",
	)
	return &rbacRelease{RBAC: rbac, c: connect(t)}
}

// setRules replaces the ClusterRole's rules and waits until the API server's authorizer
// answers the ServiceAccount accordingly for probe (allowed says what it must answer).
func (r *rbacRelease) setRules(t *testing.T, rules []rbacv1.PolicyRule, probe authorizationv1.ResourceAttributes, allowed bool) {
	t.Helper()
	ctx := context.Background()
	role, err := r.c.kube.RbacV1().ClusterRoles().Get(ctx, r.ClusterRole, metav1.GetOptions{})
	require.NoError(t, err)
	role.Rules = rules
	_, err = r.c.kube.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	require.NoError(t, err)

	sa := r.clients(t)
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &probe},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return review.Status.Allowed == allowed, nil
	})
	require.NoError(t, err, "the authorizer did not take the new ClusterRole (%s %s/%s allowed=%v)",
		probe.Verb, probe.Group, probe.Resource, allowed)
}

// clients are skewguard's own clients, built the way the binary builds them, from the kubeconfig.
func (r *rbacRelease) clients(t testing.TB) kubernetes.Interface {
	t.Helper()
	cl, err := kube.NewClients(r.Kubeconfig)
	require.NoError(t, err)
	return cl.Kube
}

// lifecycleStep is one thing skewguard does to the cluster during a version's life.
type lifecycleStep struct {
	name string
	run  func(ctx context.Context, w *lifecycleWorld) error
}

// lifecycleWorld is one app with two versions in a fresh namespace, and skewguard's clients.
type lifecycleWorld struct {
	ns      string
	watch   []string // the namespaces detection watches (PLT_SKEW_NAMESPACES); none: all
	clients *kube.Clients
	token   string
	saNS    string
	saName  string
	klog    *klogCapture
	// adopted is adoptedApp's running pods as detection adopts them: the version from their
	// image, the Deployment and the pod-template-hash of its ReplicaSet, the team's Service's ports.
	adopted kube.Adoption
}

// lifecycle is a version's life as skewguard lives it: v1 is Active, v2 is deployed and becomes
// Active, v1 drains, expires and is cleaned up.
var lifecycle = []lifecycleStep{
	{"detect versions (pod and Service informers)", func(ctx context.Context, w *lifecycleWorld) error {
		cache, err := detect.NewCache(w.clients.Kube, w.watch, 0)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cache.Start(ctx)
		if !cache.WaitForSync(ctx) {
			return fmt.Errorf("detect: the informer cache did not sync: %s", w.klog.forbidden())
		}
		if _, _, ok := cache.ServiceFor(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Labels: versionLabels("2")}}); !ok {
			return fmt.Errorf("detect: no Service found for version 2")
		}
		return nil
	}},
	{"adopt an unversioned Deployment: create our Service", func(ctx context.Context, w *lifecycleWorld) error {
		// What detection does for a pod of a Deployment annotated plt.dev/adopt=true.
		svc, err := kube.Workloads{Client: w.clients.Kube}.EnsureAdoptedService(ctx, w.adopted)
		if err != nil {
			return err
		}
		if want, _ := kube.AdoptedServiceName(w.adopted.App, w.adopted.Version); svc.Name != want {
			return fmt.Errorf("adopted Service %q, want %q", svc.Name, want)
		}
		return nil
	}},
	{"authenticate the registering pod (TokenReview)", func(ctx context.Context, w *lifecycleWorld) error {
		id, err := auth.NewAuthenticator(w.clients.Kube, auth.AuthenticatorOptions{}).Authenticate(ctx, w.token)
		if err != nil {
			return err
		}
		if ns, name, ok := id.ServiceAccount(); !ok || ns != w.saNS || name != w.saName {
			return fmt.Errorf("TokenReview answered %q", id.Username)
		}
		return nil
	}},
	{"authorize an operator (SubjectAccessReview)", func(ctx context.Context, w *lifecycleWorld) error {
		_, err := auth.NewAuthorizer(w.clients.Kube, auth.AuthorizerOptions{}).Authorize(ctx,
			auth.Identity{Username: "jane", Groups: []string{"system:authenticated"}},
			auth.Attributes{Verb: auth.VerbUpdate, Namespace: w.ns, Name: rbacApp})
		return err
	}},
	{"wait for version 2's ready endpoints", func(ctx context.Context, w *lifecycleWorld) error {
		// The Service and EndpointSlice informers of the readiness watcher (a refused list is
		// returned once the cache fails to sync); the pods never run, so it is read, not awaited.
		ready, err := kube.NewReadinessWatcher(w.clients.Kube, []string{w.ns})
		if err != nil {
			return err
		}
		defer ready.Stop()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = ready.Current(ctx, w.ns, serviceName("2"), 80)
		if err != nil {
			return err
		}
		// The polling fallback: one GET of the Service, one LIST of its EndpointSlices.
		_, err = kube.Workloads{Client: w.clients.Kube}.Readiness(ctx, w.ns, serviceName("2"), 80)
		return err
	}},
	{"route everything to version 1", func(ctx context.Context, w *lifecycleWorld) error {
		return w.applyRoutes(ctx, 1, "1")
	}},
	{"make version 2 Active, pin version 1's sessions", func(ctx context.Context, w *lifecycleWorld) error {
		return w.applyRoutes(ctx, 2, "2", "1")
	}},
	{"expire version 1: unroute it", func(ctx context.Context, w *lifecycleWorld) error {
		return w.applyRoutes(ctx, 3, "2")
	}},
	{"expire version 1: scale it to zero", func(ctx context.Context, w *lifecycleWorld) error {
		// Lists the version's Services and the app's routes first, then finds the Deployments
		// through labels, ReplicaSets and pods.
		scaled, err := kube.Workloads{Client: w.clients.Kube, Gateway: w.clients.Gateway}.ScaleToZero(ctx, w.ns, rbacApp, "1")
		if err == nil && !slices.Equal(scaled.Deployments, []string{serviceName("1")}) {
			err = fmt.Errorf("scaled %v", scaled.Deployments)
		}
		return err
	}},
	{"retire the adopted version: scale its Deployment to zero, delete our Service", func(ctx context.Context, w *lifecycleWorld) error {
		// Retiring without auto_cleanup still deletes the Service skewguard created for adoption.
		scaled, err := kube.Workloads{Client: w.clients.Kube, Gateway: w.clients.Gateway}.ScaleToZero(ctx, w.ns,
			w.adopted.App, w.adopted.Version)
		if err != nil {
			return err
		}
		name, _ := kube.AdoptedServiceName(w.adopted.App, w.adopted.Version)
		if !slices.Equal(scaled.Deployments, []string{w.adopted.Deployment}) || !slices.Equal(scaled.AdoptedServices, []string{name}) {
			return fmt.Errorf("retired the adopted version: scaled %v, deleted %v", scaled.Deployments, scaled.AdoptedServices)
		}
		return nil
	}},
	{"record an Event on version 1's Deployment", func(ctx context.Context, w *lifecycleWorld) error {
		return kube.Workloads{Client: w.clients.Kube}.RecordEvent(ctx, w.ns, rbacApp, "1", corev1.EventTypeNormal, "ScaledToZero", "expired: no traffic")
	}},
	{"auto-cleanup: delete version 1's Deployment and Service", func(ctx context.Context, w *lifecycleWorld) error {
		_, err := kube.Workloads{Client: w.clients.Kube}.Delete(ctx, w.ns, rbacApp, "1")
		return err
	}},
	{"remove the app's routes", func(ctx context.Context, w *lifecycleWorld) error {
		return w.applyRoutes(ctx, 4, "")
	}},
}

// applyRoutes renders the app's routes with the given Active version and pinned versions and
// writes them with skewguard's route writer. No version renders no route.
func (w *lifecycleWorld) applyRoutes(ctx context.Context, generation int64, active string, pinned ...string) error {
	var desired []gatewayv1.HTTPRoute
	if active != "" {
		in := routes.Input{
			Namespace: w.ns, App: rbacApp, Generation: generation,
			ParentRefs: []routes.ParentRef{{Namespace: "gateway-system", Name: "public"}},
			CookieName: "__plt_dpl", CookieMaxAge: 43200, RewritePrefix: true,
			Active: &routes.Backend{Version: active, ServiceName: serviceName(active), Port: 80},
		}
		for _, v := range pinned {
			in.Pinned = append(in.Pinned, routes.Backend{Version: v, ServiceName: serviceName(v), Port: 80})
		}
		var err error
		if desired, err = routes.Render(in); err != nil {
			return err
		}
	}
	res, err := kube.NewRouteWriter(w.clients.Gateway).ApplyRoutes(ctx, w.ns, rbacApp, generation, desired)
	if err == nil && !res.Changed() {
		err = fmt.Errorf("the routes of generation %d changed nothing", generation)
	}
	return err
}

func serviceName(version string) string { return rbacApp + "-v" + version }

func versionLabels(version string) map[string]string {
	return map[string]string{detect.LabelApp: rbacApp, detect.LabelVersion: version}
}

// newWorld creates, as the admin, a namespace with two versions of the app, as a user writes
// them. Their pods can be scheduled on no node, so no endpoint ever turns ready and nothing
// dials a pod.
func newWorld(t *testing.T, r *rbacRelease, capture *klogCapture) *lifecycleWorld {
	t.Helper()
	return newWorldIn(t, r, capture, r.c.namespace(t, "sg-rbac-app"))
}

// newWorldIn is newWorld in an existing namespace.
func newWorldIn(t *testing.T, r *rbacRelease, capture *klogCapture, ns string) *lifecycleWorld {
	t.Helper()
	ctx := context.Background()
	for _, v := range []string{"1", "2"} {
		_, err := r.c.kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: serviceName(v), Labels: versionLabels(v)},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: versionLabels(v)},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: versionLabels(v)},
					Spec: corev1.PodSpec{
						NodeSelector: map[string]string{"skewguard.dev/no-such-node": "true"},
						Containers:   []corev1.Container{{Name: "app", Image: "registry.example.com/myapp:v" + v}},
					},
				},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = r.c.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: serviceName(v), Labels: versionLabels(v)},
			Spec: corev1.ServiceSpec{
				Selector: versionLabels(v),
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3042)}},
			},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	cl, err := kube.NewClients(r.Kubeconfig)
	require.NoError(t, err)
	return &lifecycleWorld{ns: ns, clients: cl, token: r.Token, saNS: r.Namespace, saName: r.ServiceAccount, klog: capture,
		adopted: newUnversionedApp(t, r, ns)}
}

// newUnversionedApp creates, as the admin, adoptedApp in ns as a team runs it before skew
// protection: a Deployment without the version label (annotated for adoption) and a Service
// selecting every pod of the app; it waits for the Deployment's ReplicaSet (the controller
// manager names the pod template) and returns what detection would adopt.
func newUnversionedApp(t *testing.T, r *rbacRelease, ns string) kube.Adoption {
	t.Helper()
	ctx := context.Background()
	appLabels := map[string]string{detect.LabelApp: adoptedApp}
	image := "registry.example.com/legacy:1.4.2"
	dep, err := r.c.kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: adoptedApp, Labels: appLabels,
			Annotations: map[string]string{detect.AnnotationAdopt: "true"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: appLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: appLabels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"skewguard.dev/no-such-node": "true"},
					Containers:   []corev1.Container{{Name: "app", Image: image}},
				},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	team, err := r.c.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: adoptedApp, Labels: appLabels},
		Spec: corev1.ServiceSpec{
			Selector: appLabels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3042)}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	var hash string
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := r.c.kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, rs := range list.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == dep.UID {
				hash = rs.Labels[kube.PodTemplateHashLabel]
			}
		}
		return hash != "", nil
	}), "the controller manager made no ReplicaSet for Deployment %s/%s", ns, adoptedApp)
	version, err := detect.ImageVersion(image)
	require.NoError(t, err)
	return kube.Adoption{Namespace: ns, App: adoptedApp, Version: version, Deployment: dep.Name, PodTemplateHash: hash,
		Ports: team.Spec.Ports}
}

// runLifecycle runs the steps in order, but the one named skip if any, and returns the name and
// error of the first that fails.
func runLifecycle(t *testing.T, w *lifecycleWorld, skip ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range lifecycle {
		if slices.Contains(skip, s.name) {
			continue
		}
		if err := s.run(ctx, w); err != nil {
			return s.name, err
		}
	}
	return "", nil
}

func TestRBACVersionLifecycleAsServiceAccount(t *testing.T) {
	capture := captureKlog(t)
	r := installRBAC(t)

	t.Run("the chart's ClusterRole is enough", func(t *testing.T) {
		step, err := runLifecycle(t, newWorld(t, r, capture))
		require.NoError(t, err, "step %q", step)
	})

	// Removing any one rule breaks the step that needs it, with a Forbidden error that says
	// which verb on which resource was refused.
	for _, c := range []struct {
		group, resource string
		onlyVerb        string // remove just this verb of the rule; "" removes the rule
		step            string
		verb            string // the refused verb the error names
		skip            string // a step not run: an earlier one needs the same right
	}{
		{"", "pods", "", "detect versions (pod and Service informers)", "list", ""},
		{"", "services", "", "detect versions (pod and Service informers)", "list", ""},
		{"authentication.k8s.io", "tokenreviews", "", "authenticate the registering pod (TokenReview)", "create", ""},
		{"authorization.k8s.io", "subjectaccessreviews", "", "authorize an operator (SubjectAccessReview)", "create", ""},
		{"discovery.k8s.io", "endpointslices", "", "wait for version 2's ready endpoints", "list", ""},
		{"gateway.networking.k8s.io", "httproutes", "", "route everything to version 1", "list", ""},
		{"gateway.networking.k8s.io", "httproutes", "update", "make version 2 Active, pin version 1's sessions", "update", ""},
		{"apps", "deployments", "", "detect versions (pod and Service informers)", "list", ""},
		{"apps", "deployments/scale", "", "expire version 1: scale it to zero", "get", ""},
		{"apps", "replicasets", "", "detect versions (pod and Service informers)", "list", ""},
		{"events.k8s.io", "events", "", "record an Event on version 1's Deployment", "create", ""},
		{"apps", "deployments/scale", "update", "expire version 1: scale it to zero", "update", ""},
		{"apps", "deployments", "delete", "auto-cleanup: delete version 1's Deployment and Service", "delete", ""},
		{"", "services", "create", "adopt an unversioned Deployment: create our Service", "create", ""},
		{"", "services", "delete", "retire the adopted version: scale its Deployment to zero, delete our Service", "delete", ""},
		{"", "services", "delete", "auto-cleanup: delete version 1's Deployment and Service", "delete",
			"retire the adopted version: scale its Deployment to zero, delete our Service"},
		{"gateway.networking.k8s.io", "httproutes", "delete", "remove the app's routes", "delete", ""},
	} {
		what := c.resource
		if c.onlyVerb != "" {
			what = c.onlyVerb + " " + c.resource
		}
		name := "without " + what
		if c.skip != "" {
			name += ", skipping " + c.skip
		}
		t.Run(name, func(t *testing.T) {
			rules := withoutPermission(t, r.Rules, c.group, c.resource, c.onlyVerb)
			r.setRules(t, rules, authorizationv1.ResourceAttributes{Group: c.group, Resource: resourceOnly(c.resource),
				Subresource: subresource(c.resource), Verb: c.verb}, false)
			t.Cleanup(func() {
				r.setRules(t, r.Rules, authorizationv1.ResourceAttributes{Group: c.group,
					Resource: resourceOnly(c.resource), Subresource: subresource(c.resource), Verb: c.verb}, true)
			})

			step, err := runLifecycle(t, newWorld(t, r, capture), c.skip)
			require.Error(t, err, "the lifecycle succeeded without %s", what)
			assert.Equal(t, c.step, step, "the step that needs %s failed: %v", what, err)
			if !strings.HasPrefix(step, "detect") { // informers log their errors instead of returning them
				assert.True(t, apierrors.IsForbidden(err), "not a Forbidden error: %v", err)
			}
			resource, group := resourceOnly(c.resource), c.group
			if sub := subresource(c.resource); sub != "" {
				resource += "/" + sub
			}
			msg := err.Error()
			assert.Contains(t, msg, r.Username(), "the error names who was refused")
			assert.Contains(t, msg, fmt.Sprintf("cannot %s resource %q in API group %q", c.verb, resource, group),
				"the error names the verb and the resource")
		})
	}

	// No step reads Gateways yet: the rule is granted because the issue lists "gateways read" for the
	// product; it is the only rule no step needs, and must gain a step (or go) when that changes.
	t.Run("every rule but gateways is needed by some step", func(t *testing.T) {
		var unproven []string
		for _, rule := range r.Rules {
			for _, res := range rule.Resources {
				if !slices.Contains([]string{"pods", "services", "tokenreviews", "subjectaccessreviews", "endpointslices",
					"httproutes", "deployments", "deployments/scale", "replicasets", "events"}, res) {
					unproven = append(unproven, res)
				}
			}
		}
		assert.Equal(t, []string{"gateways"}, unproven)
	})
}

// With config.namespaces set, the chart's Roles let skewguard do all it does in the listed
// namespaces, and nothing of it elsewhere: installed for real, the ServiceAccount may scale
// Deployments in a listed namespace but not in another, and cluster-wide it may only create the
// reviews and read HTTPRoutes and Gateways.
func TestRBACNamespacedAsServiceAccount(t *testing.T) {
	capture := captureKlog(t)
	c := connect(t)
	a, b, other := c.namespace(t, "sg-rbac-a"), c.namespace(t, "sg-rbac-b"), c.namespace(t, "sg-rbac-c")
	rbac := charttest.InstallRBAC(t, time.Hour,
		"--set", "services.icc.features.skew_protection.enable=true",
		"--set", "services.icc.skew_protection.auto_cleanup=true",
		"--set", "gateway.parentRefs[0].namespace=gateway-system",
		"--set", "gateway.parentRefs[0].name=public",
		"--set", "config.namespaces={"+a+","+b+"}",
	)
	r := &rbacRelease{RBAC: rbac, c: c}
	require.Contains(t, rbac.Roles, a)
	require.Contains(t, rbac.Roles, b)
	require.NotContains(t, rbac.Roles, other)

	sa := r.clients(t)
	ctx := context.Background()
	can := func(ns string, p permission) bool {
		t.Helper()
		review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Group: p.group, Resource: resourceOnly(p.resource), Subresource: subresource(p.resource), Verb: p.verb,
			}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return review.Status.Allowed
	}
	// The authorizer takes the new bindings in within moments.
	scale := permission{"apps", "deployments/scale", "update"}
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return can(a, scale) && can(b, scale), nil
	}), "the ServiceAccount never got its Roles")

	parse := func(s string) permission {
		verb, gr, _ := strings.Cut(s, " ")
		group, resource, _ := strings.Cut(gr, "/") // resource keeps its subresource: deployments/scale
		if group == "core" {
			group = ""
		}
		return permission{group, resource, verb}
	}
	cluster := map[string]bool{}
	for _, p := range clusterPermissions(true, true) {
		cluster[p] = true
		assert.True(t, can("", parse(p)), "cluster-wide: %s", p)
	}
	for _, p := range namespacedPermissions(true, true) {
		assert.True(t, can(a, parse(p)), "%s in %s", p, a)
		assert.True(t, can(b, parse(p)), "%s in %s", p, b)
		if !cluster[p] { // reading HTTPRoutes is cluster-wide: claims are checked against all of them
			assert.False(t, can(other, parse(p)), "%s in %s, which is not listed", p, other)
			assert.False(t, can("", parse(p)), "%s cluster-wide", p)
		}
	}

	t.Run("a version's whole life in a listed namespace", func(t *testing.T) {
		w := newWorldIn(t, r, capture, a)
		w.watch = []string{a}
		step, err := runLifecycle(t, w)
		require.NoError(t, err, "step %q", step)
		// The worker's claim check reads every HTTPRoute of the cluster.
		_, err = w.clients.Gateway.GatewayV1().HTTPRoutes(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
	})

	t.Run("no scaling in a namespace not listed", func(t *testing.T) {
		w := newWorldIn(t, r, capture, other)
		_, err := kube.Workloads{Client: w.clients.Kube, Gateway: w.clients.Gateway}.ScaleToZero(ctx, other, rbacApp, "1")
		require.Error(t, err)
		assert.True(t, apierrors.IsForbidden(err), "not a Forbidden error: %v", err)
		assert.Contains(t, err.Error(), fmt.Sprintf("in the namespace %q", other))
		d, err := c.kube.AppsV1().Deployments(other).Get(ctx, serviceName("1"), metav1.GetOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, 1, *d.Spec.Replicas, "the Deployment was left alone")
	})
}

// withoutPermission returns rules without the rule for group/resource, or, when verb is set,
// with only that verb taken out of it.
func withoutPermission(t *testing.T, rules []rbacv1.PolicyRule, group, resource, verb string) []rbacv1.PolicyRule {
	t.Helper()
	var out []rbacv1.PolicyRule
	found := false
	for _, r := range rules {
		if !slices.Equal(r.APIGroups, []string{group}) || !slices.Equal(r.Resources, []string{resource}) {
			out = append(out, r)
			continue
		}
		found = true
		if verb == "" {
			continue
		}
		require.Contains(t, r.Verbs, verb)
		r = *r.DeepCopy()
		r.Verbs = slices.DeleteFunc(r.Verbs, func(v string) bool { return v == verb })
		out = append(out, r)
	}
	require.True(t, found, "the ClusterRole has no rule for %s %s", group, resource)
	return out
}

func resourceOnly(r string) string { res, _, _ := strings.Cut(r, "/"); return res }
func subresource(r string) string  { _, sub, _ := strings.Cut(r, "/"); return sub }

// klogCapture keeps the errors client-go logs: informers report a refused list or watch only
// there (they retry forever rather than return an error).
type klogCapture struct {
	mu     sync.Mutex
	errors []string
}

func captureKlog(t *testing.T) *klogCapture {
	c := &klogCapture{}
	klog.SetLogger(logr.New(klogSink{c}))
	t.Cleanup(klog.ClearLogger)
	return c
}

// forbidden returns the distinct Forbidden errors logged since the last call, or says there were none.
func (c *klogCapture) forbidden() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var msgs []string
	for _, e := range c.errors {
		if strings.Contains(e, "forbidden") && !slices.Contains(msgs, e) {
			msgs = append(msgs, e)
		}
	}
	c.errors = nil
	if len(msgs) == 0 {
		return "no Forbidden error was logged"
	}
	return strings.Join(msgs, "; ")
}

// klogSink is a logr.LogSink that records error messages.
type klogSink struct{ c *klogCapture }

func (klogSink) Init(logr.RuntimeInfo)            {}
func (klogSink) Enabled(int) bool                 { return false }
func (klogSink) Info(int, string, ...any)         {}
func (s klogSink) WithValues(...any) logr.LogSink { return s }
func (s klogSink) WithName(string) logr.LogSink   { return s }
func (s klogSink) Error(err error, msg string, _ ...any) {
	if err == nil {
		return
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.errors = append(s.c.errors, err.Error())
}
