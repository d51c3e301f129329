package deploytest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
)

// clientCallRE finds typed-client calls (kube.CoreV1().Services(…), gw.GatewayV1().HTTPRoutes(…))
// and shared-informer accessors (f.Core().V1().Pods()) in Go source.
var clientCallRE = regexp.MustCompile(`\.(\w+)V1\(\)\.(\w+)\(|\.(\w+)\(\)\.V1\(\)\.(\w+)\(\)`)

// clientResources maps a client group accessor and resource method to the RBAC resource it uses.
var clientResources = map[string]string{
	"Core.Pods":                          "core/pods",
	"Core.Services":                      "core/services",
	"Core.ConfigMaps":                    "core/configmaps", // the claims allowlist, by the Role <name>-claims
	"Discovery.EndpointSlices":           "discovery.k8s.io/endpointslices",
	"Apps.Deployments":                   "apps/deployments",
	"Apps.ReplicaSets":                   "apps/replicasets",
	"Events.Events":                      "events.k8s.io/events",
	"Gateway.HTTPRoutes":                 "gateway.networking.k8s.io/httproutes",
	"Gateway.Gateways":                   "gateway.networking.k8s.io/gateways",
	"Authentication.TokenReviews":        "authentication.k8s.io/tokenreviews",
	"Authorization.SubjectAccessReviews": "authorization.k8s.io/subjectaccessreviews",
}

// grantedWithoutCall are resources the chart grants that no code calls yet, each with the reason.
var grantedWithoutCall = map[string]string{
	"gateway.networking.k8s.io/gateways": "the issue grants gateways read for the product; no code reads Gateways yet",
}

// clusterScoped are the called resources that have no namespace: granted by a ClusterRole
// whatever the namespaces skewguard watches.
var clusterScoped = map[string]bool{
	"authentication.k8s.io/tokenreviews":        true,
	"authorization.k8s.io/subjectaccessreviews": true,
}

// clusterWideReads are the namespaced resources skewguard reads in every namespace even when
// PLT_SKEW_NAMESPACES limits it, each with the reason; with namespaces limited, the ClusterRole
// grants exactly these reads (get, list, watch) and the cluster-scoped calls, nothing else.
var clusterWideReads = map[string]string{
	"gateway.networking.k8s.io/httproutes": "claims of a host and path are checked against every HTTPRoute attached to " +
		"skewguard's Gateways, in any namespace (activities/claims.go checkClaim, fed by internal/kube/routelister.go AllRoutes)",
	"gateway.networking.k8s.io/gateways": "the parent Gateways, which may live in any namespace",
}

// clusterWideInformers are the informer factories built without a namespace, which list and watch
// the whole cluster even when PLT_SKEW_NAMESPACES limits skewguard: file -> the resource it reads.
// Each must be a clusterWideRead.
var clusterWideInformers = map[string]string{
	"internal/kube/routelister.go": "gateway.networking.k8s.io/httproutes",
}

// calledResources finds every Kubernetes API the product's code calls: resource -> "file:line".
func calledResources(t *testing.T) map[string][]string {
	t.Helper()
	root := repoRoot(t)
	called := map[string][]string{}
	err := walkProductCode(t, func(rel string, lines []string) {
		for i, line := range lines {
			for _, m := range clientCallRE.FindAllStringSubmatch(line, -1) {
				group, method := m[1], m[2]
				if group == "" {
					group, method = m[3], m[4]
				}
				key := group + "." + method
				res, ok := clientResources[key]
				if !assert.True(t, ok, "%s:%d calls %s, which no RBAC rule covers: add a rule to the chart, a step to the RBAC proof, and the call here",
					rel, i+1, key) {
					continue
				}
				called[res] = append(called[res], rel+":"+strconv.Itoa(i+1))
			}
		}
	})
	require.NoError(t, err, root)
	require.NotEmpty(t, called, "no Kubernetes call found: the pattern no longer matches the code")
	return called
}

// walkProductCode calls f with the lines of every non-test Go file of the product.
func walkProductCode(t *testing.T, f func(rel string, lines []string)) error {
	t.Helper()
	root := repoRoot(t)
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			// cmd/chaos is a test tool run with the stack's admin kubeconfig, not part of the product.
			case ".git", ".stack", "hack", "deploy", filepath.Join("internal", "deploytest"), filepath.Join("internal", "e2e"),
				filepath.Join("cmd", "chaos"):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f(filepath.ToSlash(rel), strings.Split(string(src), "\n"))
		return nil
	})
}

// grantedResources lists the resources rules grant (the scale subresource rides on its
// resource's calls).
func grantedResources(t *testing.T, rules []rbacv1.PolicyRule) map[string]bool {
	t.Helper()
	granted := map[string]bool{}
	for _, p := range expand(t, rules) {
		_, gr, _ := strings.Cut(p, " ")
		granted[strings.TrimSuffix(gr, "/scale")] = true
	}
	return granted
}

// Every Kubernetes API the product's code calls is granted by the chart's ClusterRole, and every
// resource the ClusterRole grants is called somewhere (or listed above with the reason): a new
// call without a rule, or a rule without a call, fails here before it fails in a cluster.
func TestClusterRoleMatchesTheCode(t *testing.T) {
	called := calledResources(t)
	m := parseManifests(t, readPlainManifests(t))
	granted := grantedResources(t, as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "skewguard")).Rules)
	for res, where := range called {
		if res == "core/configmaps" {
			continue // read in the release namespace only: the Role skewguard-claims
		}
		assert.True(t, granted[res], "%s is called (%s) but the ClusterRole does not grant it", res, strings.Join(where, ", "))
	}
	// The claims allowlist is read with a Role of the release namespace, limited to its ConfigMap.
	claimsRole := as[rbacv1.Role](t, m.get(t, "Role", "skewguard-claims"))
	for _, r := range claimsRole.Rules {
		assert.Equal(t, []string{"skewguard-claims"}, r.ResourceNames, "the Role reads the allowlist ConfigMap only")
	}
	for res := range grantedResources(t, claimsRole.Rules) {
		granted[res] = true
	}
	var unused []string
	for res := range granted {
		if _, ok := called[res]; !ok {
			unused = append(unused, res)
		}
	}
	sort.Strings(unused)
	var excused []string
	for res := range grantedWithoutCall {
		excused = append(excused, res)
	}
	sort.Strings(excused)
	assert.Equal(t, excused, unused, "resources the chart grants that no code calls")
}

// With PLT_SKEW_NAMESPACES set (testdata/namespaced.yaml: namespaces team-a and team-b, skew
// protection and auto-cleanup on), every namespaced API the code calls is granted by the Role of
// each listed namespace, and cluster-wide the ClusterRole grants only the cluster-scoped calls and
// the reads listed in clusterWideReads: no write, and no pod, Service or Deployment right, outside
// the listed namespaces.
func TestNamespacedRBACMatchesTheCode(t *testing.T) {
	called := calledResources(t)
	m := parseManifests(t, readNamespacedGolden(t))
	namespaces := strings.Split(m.get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)["PLT_SKEW_NAMESPACES"].(string), ",")
	require.Equal(t, []string{"team-a", "team-b"}, namespaces)

	var want []string
	for res := range clusterScoped {
		assert.Contains(t, called, res)
		group, resource, _ := strings.Cut(res, "/")
		want = append(want, permission{group, resource, "create"}.String())
	}
	for res := range clusterWideReads {
		group, resource, _ := strings.Cut(res, "/")
		if group == "core" {
			group = ""
		}
		for _, v := range []string{"get", "list", "watch"} {
			want = append(want, permission{group, resource, v}.String())
		}
	}
	sort.Strings(want)
	got := expand(t, as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "skewguard")).Rules)
	assert.Equal(t, want, got, "the cluster-wide rights with namespaces limited")
	for _, p := range got {
		verb, res, _ := strings.Cut(p, " ")
		if !clusterScoped[res] {
			assert.Contains(t, []string{"get", "list", "watch"}, verb, "cluster-wide write: %s", p)
		}
		for _, forbidden := range []string{"core/pods", "core/services", "apps/", "discovery.k8s.io/", "events.k8s.io/", "core/configmaps", "core/secrets"} {
			assert.False(t, strings.HasPrefix(res, forbidden), "cluster-wide right on %s: %s", forbidden, p)
		}
	}

	for _, ns := range namespaces {
		var role *rbacv1.Role
		for _, o := range m.ofKind("Role") {
			if o.GetNamespace() == ns && o.GetName() == "skewguard" {
				role = as[rbacv1.Role](t, o)
			}
		}
		require.NotNil(t, role, "no Role skewguard in namespace %s", ns)
		granted := grantedResources(t, role.Rules)
		for res, where := range called {
			if clusterScoped[res] || res == "core/configmaps" {
				continue
			}
			assert.True(t, granted[res], "%s is called (%s) but the Role in %s does not grant it", res, strings.Join(where, ", "), ns)
		}
	}
}

// informerFactoryRE finds informer factories; one built without WithNamespace watches the whole
// cluster whatever PLT_SKEW_NAMESPACES says.
var informerFactoryRE = regexp.MustCompile(`\bNewSharedInformerFactory(WithOptions)?\(`)

// An informer of the whole cluster is a right the namespaced RBAC must grant cluster-wide: each is
// listed in clusterWideInformers, and reads a resource of clusterWideReads.
func TestClusterWideInformersAreListed(t *testing.T) {
	found := map[string]bool{}
	err := walkProductCode(t, func(rel string, lines []string) {
		for i, line := range lines {
			m := informerFactoryRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			// The options of a factory are on its line or the next few.
			call := strings.Join(lines[i:min(i+4, len(lines))], " ")
			if m[1] != "" && strings.Contains(call, "WithNamespace(") {
				continue
			}
			found[rel] = true
			_, ok := clusterWideInformers[rel]
			assert.True(t, ok, "%s:%d builds an informer factory over the whole cluster: scope it to the watched "+
				"namespaces, or list it in clusterWideInformers (and grant its read cluster-wide)", rel, i+1)
		}
	})
	require.NoError(t, err)
	for file, res := range clusterWideInformers {
		assert.True(t, found[file], "%s no longer builds a cluster-wide informer: remove it from clusterWideInformers", file)
		assert.Contains(t, clusterWideReads, res, "%s reads %s cluster-wide", file, res)
	}
}

// readNamespacedGolden is the chart rendered with namespaces limited (an integration test keeps it
// in sync with the chart: go test -tags integration -run TestNamespacedGoldenIsInSync -update).
func readNamespacedGolden(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "deploytest", "testdata", "namespaced.yaml"))
	require.NoError(t, err)
	return data
}
