package deploytest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/deploytest/charttest"
)

func repoRoot(t testing.TB) string { return charttest.RepoRoot(t) }

// manifests is a parsed multi-document YAML stream of Kubernetes objects.
type manifests []*unstructured.Unstructured

func parseManifests(t testing.TB, data []byte) manifests {
	return manifests(charttest.Objects(t, data))
}

// get returns the object of that kind and name, failing the test when there is none.
func (m manifests) get(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range m {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q among %v", kind, name, m.names())
	return nil
}

func (m manifests) ofKind(kind string) manifests {
	var out manifests
	for _, o := range m {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// names lists "Kind/name" of every object, sorted.
func (m manifests) names() []string {
	out := make([]string, 0, len(m))
	for _, o := range m {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// as converts an object to its typed form.
func as[T any](t testing.TB, o *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &v, true),
		"%s %s has fields its type does not know", o.GetKind(), o.GetName())
	return &v
}

// permission is one (API group, resource, verb) a ClusterRole grants.
type permission struct{ group, resource, verb string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s/%s", p.verb, g, p.resource)
}

// expand lists every permission of rules, failing on the forms a least-privilege role never needs
// (wildcards, nonResourceURLs). resourceNames only narrow a rule: its permissions are listed as
// if it had none (the claims Role's rule is checked for its name where it is read).
func expand(t testing.TB, rules []rbacv1.PolicyRule) []string {
	t.Helper()
	var out []string
	for _, r := range rules {
		require.Empty(t, r.NonResourceURLs, "nonResourceURLs in %+v", r)
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					require.False(t, g == "*" || res == "*" || v == "*", "wildcard in %+v", r)
					out = append(out, permission{g, res, v}.String())
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// controllerPermissions is exactly what skewguard calls, for the given settings, when it watches
// every namespace: what the ClusterRole must grant, no more and no less.
func controllerPermissions(skewProtection, autoCleanup bool) []string {
	out := append(namespacedPermissions(skewProtection, autoCleanup), clusterPermissions(skewProtection, false)...)
	sort.Strings(out)
	return out
}

// namespacedPermissions is what skewguard calls in each namespace it watches: with
// PLT_SKEW_NAMESPACES set, what the Role in each of them must grant.
func namespacedPermissions(skewProtection, autoCleanup bool) []string {
	var ps []permission
	add := func(group, resource string, verbs ...string) {
		for _, v := range verbs {
			ps = append(ps, permission{group, resource, v})
		}
	}
	add("", "pods", "get", "list", "watch")
	add("", "services", "get", "list", "watch")
	add("discovery.k8s.io", "endpointslices", "get", "list", "watch")
	add("apps", "deployments", "get", "list", "watch")
	add("apps", "deployments/scale", "get", "update", "patch")
	add("apps", "replicasets", "get", "list", "watch")
	add("events.k8s.io", "events", "create")
	if skewProtection {
		// Adoption of a Deployment annotated plt.dev/adopt=true: skewguard's own Service for the
		// adopted version, created at detection and deleted when the version retires.
		add("", "services", "create", "delete")
		add("gateway.networking.k8s.io", "httproutes", "get", "list", "watch", "create", "update", "patch", "delete")
	}
	if autoCleanup {
		if !skewProtection {
			add("", "services", "delete")
		}
		add("apps", "deployments", "delete")
	}
	return permissionStrings(ps)
}

// clusterPermissions is what skewguard needs cluster-wide whatever the namespaces it watches:
// the reviews, which have no namespace, and with skew protection the Gateways and (when limited
// to some namespaces; otherwise the namespaced rules grant it) reading every HTTPRoute, which
// claims of hosts and paths are checked against (activities/claims.go).
func clusterPermissions(skewProtection, limited bool) []string {
	ps := []permission{
		{"authentication.k8s.io", "tokenreviews", "create"},
		{"authorization.k8s.io", "subjectaccessreviews", "create"},
	}
	if skewProtection {
		for _, v := range []string{"get", "list", "watch"} {
			ps = append(ps, permission{"gateway.networking.k8s.io", "gateways", v})
			if limited {
				ps = append(ps, permission{"gateway.networking.k8s.io", "httproutes", v})
			}
		}
	}
	return permissionStrings(ps)
}

// configPermissions is what the Role <fullname>-claims grants in the release namespace (on the claims
// allowlist ConfigMap only, by resourceNames).
var configPermissions = []string{"get core/configmaps", "list core/configmaps", "watch core/configmaps"}

func permissionStrings(ps []permission) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	sort.Strings(out)
	return out
}

// configVariables maps every environment variable internal/config reads to its default as the
// binary prints it ("" when it has none), so the chart can be checked against the binary.
func configVariables(t testing.TB) map[string]string {
	t.Helper()
	cfg, err := config.LoadFrom(context.Background(), envconfig.MapLookuper(nil))
	require.NoError(t, err, "defaults must be a valid configuration")
	v := reflect.ValueOf(cfg)
	out := map[string]string{}
	for i := range v.NumField() {
		tag := v.Type().Field(i).Tag.Get("env")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			continue
		}
		if !strings.Contains(opts, "default=") {
			out[name] = ""
			continue
		}
		out[name] = fmt.Sprint(v.Field(i).Interface())
	}
	return out
}

// libpqVariables are read by pgx, not internal/config, when DATABASE_URL is empty.
var libpqVariables = map[string]bool{
	"PGHOST": true, "PGPORT": true, "PGDATABASE": true, "PGUSER": true, "PGPASSWORD": true, "PGSSLMODE": true,
}

// workloadCheck says what one rendering's Deployments must look like.
type workloadCheck struct {
	fullname   string
	namespace  string
	components map[string]string // Deployment name suffix -> subcommand
	metrics    bool              // a separate metrics port
}

// checkRelease checks everything a rendering of the chart must satisfy whatever the values: the
// ClusterRole grants exactly what the settings in the ConfigMap use and is bound to the pods'
// ServiceAccount; every variable is one the binary reads; the pods are non-root, read-only,
// probed on /healthz and /readyz, and migrate before they start.
func checkRelease(t *testing.T, m manifests, w workloadCheck) map[string]string {
	t.Helper()
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", w.fullname))
	known := configVariables(t)
	for k := range cm.Data {
		_, ok := known[k]
		require.True(t, ok || libpqVariables[k], "ConfigMap sets %s, which skewguard does not read", k)
	}

	checkRBAC(t, m, w, cm.Data)
	m.get(t, "ServiceAccount", w.fullname)

	checkOperatorRoles(t, m, w.fullname)

	deployments := m.ofKind("Deployment")
	require.Len(t, deployments, len(w.components), "Deployments: %v", deployments.names())
	for suffix, command := range w.components {
		d := as[appsv1.Deployment](t, m.get(t, "Deployment", w.fullname+"-"+suffix))
		t.Run("deployment "+d.Name, func(t *testing.T) { checkPod(t, d, command, w) })
	}

	checkTLS(t, m, cm.Data) // tls_test.go

	svc := as[corev1.Service](t, m.get(t, "Service", w.fullname))
	apiSuffix := "api"
	if _, ok := w.components["server"]; ok {
		apiSuffix = "server"
	}
	require.Equal(t, apiSuffix, svc.Spec.Selector["app.kubernetes.io/component"], "the Service selects the pods serving the API")
	return cm.Data
}

// checkRBAC checks skewguard's own rights against the settings of its ConfigMap: with
// PLT_SKEW_NAMESPACES empty, the ClusterRole grants everything skewguard calls; with it set, each
// of those namespaces has a Role granting what skewguard calls there, and the ClusterRole only
// what must be cluster-wide. Either way the Role <fullname>-config reads ConfigMaps in the release
// namespace, and every role is bound to the pods' ServiceAccount and nothing else.
func checkRBAC(t *testing.T, m manifests, w workloadCheck, env map[string]string) {
	t.Helper()
	sp, cleanup := env["PLT_FEATURE_SKEW_PROTECTION"] == "true", env["PLT_SKEW_AUTO_CLEANUP"] == "true"
	var namespaces []string
	if v := env["PLT_SKEW_NAMESPACES"]; v != "" {
		namespaces = strings.Split(v, ",")
	}
	sa := []rbacv1.Subject{{Kind: "ServiceAccount", Name: w.fullname, Namespace: w.namespace}}

	role := as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", w.fullname))
	want := controllerPermissions(sp, cleanup)
	if len(namespaces) > 0 {
		want = clusterPermissions(sp, true)
	}
	require.Equal(t, want, expand(t, role.Rules), "ClusterRole %s (namespaces %v)", w.fullname, namespaces)
	binding := as[rbacv1.ClusterRoleBinding](t, m.get(t, "ClusterRoleBinding", w.fullname))
	require.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: w.fullname}, binding.RoleRef)
	require.Equal(t, sa, binding.Subjects)

	roles := map[string]string{w.namespace + "/" + w.fullname + "-claims": strings.Join(configPermissions, ", ")}
	for _, ns := range namespaces {
		roles[ns+"/"+w.fullname] = strings.Join(namespacedPermissions(sp, cleanup), ", ")
	}
	got := map[string]string{}
	for _, o := range m.ofKind("Role") {
		r := as[rbacv1.Role](t, o)
		got[r.Namespace+"/"+r.Name] = strings.Join(expand(t, r.Rules), ", ")
	}
	require.Equal(t, roles, got, "Roles (namespace/name: permissions)")
	bindings := map[string]bool{}
	for _, o := range m.ofKind("RoleBinding") {
		b := as[rbacv1.RoleBinding](t, o)
		require.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: b.Name}, b.RoleRef, "RoleBinding %s/%s", b.Namespace, b.Name)
		require.Equal(t, sa, b.Subjects, "RoleBinding %s/%s", b.Namespace, b.Name)
		bindings[b.Namespace+"/"+b.Name] = true
	}
	for k := range roles {
		require.True(t, bindings[k], "Role %s has no RoleBinding", k)
	}
	require.Len(t, bindings, len(roles), "a RoleBinding per Role, no more")
}

func checkOperatorRoles(t *testing.T, m manifests, fullname string) {
	t.Helper()
	for _, c := range []struct {
		suffix, aggregate string
		want              []string
	}{
		{"-versions-view", "rbac.authorization.k8s.io/aggregate-to-view", []string{"get skewguard.dev/versions", "list skewguard.dev/versions"}},
		{"-versions-edit", "rbac.authorization.k8s.io/aggregate-to-edit", []string{"get skewguard.dev/versions", "list skewguard.dev/versions", "update skewguard.dev/versions"}},
	} {
		role := as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", fullname+c.suffix))
		require.Equal(t, c.want, expand(t, role.Rules), role.Name)
		require.Equal(t, "true", role.Labels[c.aggregate], role.Name)
	}
}

func checkPod(t *testing.T, d *appsv1.Deployment, command string, w workloadCheck) {
	spec := d.Spec.Template.Spec
	require.Equal(t, w.fullname, spec.ServiceAccountName)
	require.NotNil(t, spec.SecurityContext)
	require.True(t, *spec.SecurityContext.RunAsNonRoot)
	require.EqualValues(t, 65532, *spec.SecurityContext.RunAsUser)

	require.Len(t, spec.InitContainers, 1)
	migrate := spec.InitContainers[0]
	require.Equal(t, []string{"migrate"}, migrate.Args)

	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	require.Equal(t, []string{command}, c.Args)
	require.Equal(t, migrate.Image, c.Image)
	require.Equal(t, c.EnvFrom, migrate.EnvFrom, "migrate must see the same configuration")
	require.Equal(t, c.Env, migrate.Env, "migrate must see the same configuration")
	require.Equal(t, w.fullname, c.EnvFrom[0].ConfigMapRef.Name)

	for _, sc := range []*corev1.SecurityContext{c.SecurityContext, migrate.SecurityContext} {
		require.NotNil(t, sc)
		require.False(t, *sc.AllowPrivilegeEscalation)
		require.True(t, *sc.ReadOnlyRootFilesystem)
		require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Contains(t, ports, "http")
	if w.metrics {
		require.Contains(t, ports, "metrics")
	}
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port.String())
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port.String())
	require.NotNil(t, c.StartupProbe)
	require.NotEmpty(t, c.Resources.Requests)

	// A rolling update never takes the last pod down.
	require.Equal(t, int32(0), d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntVal)
	require.True(t, slices.ContainsFunc([]string{"checksum/config"}, func(k string) bool {
		_, ok := d.Spec.Template.Annotations[k]
		return ok
	}), "pods roll when the ConfigMap changes")
}
