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

// grantedWithoutCall are ClusterRole resources no code calls yet, each with the reason.
var grantedWithoutCall = map[string]string{
	"gateway.networking.k8s.io/gateways": "the issue grants gateways read for the product; no code reads Gateways yet",
}

// Every Kubernetes API the product's code calls is granted by the chart's ClusterRole, and every
// resource the ClusterRole grants is called somewhere (or listed above with the reason): a new
// call without a rule, or a rule without a call, fails here before it fails in a cluster.
func TestClusterRoleMatchesTheCode(t *testing.T) {
	root := repoRoot(t)
	called := map[string][]string{} // resource -> "file:line"
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", ".stack", "hack", "deploy", filepath.Join("internal", "deploytest"), filepath.Join("internal", "e2e"):
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
		for i, line := range strings.Split(string(src), "\n") {
			for _, m := range clientCallRE.FindAllStringSubmatch(line, -1) {
				group, method := m[1], m[2]
				if group == "" {
					group, method = m[3], m[4]
				}
				key := group + "." + method
				res, ok := clientResources[key]
				if !assert.True(t, ok, "%s:%d calls %s, which no ClusterRole rule covers: add a rule to the chart, a step to the RBAC proof, and the call here",
					rel, i+1, key) {
					continue
				}
				called[res] = append(called[res], rel+":"+strconv.Itoa(i+1))
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, called, "no Kubernetes call found: the pattern no longer matches the code")

	m := parseManifests(t, readPlainManifests(t))
	granted := map[string]bool{}
	for _, p := range expand(t, as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "skewguard")).Rules) {
		_, gr, _ := strings.Cut(p, " ")
		res := strings.TrimSuffix(gr, "/scale") // the scale subresource rides on its resource's calls
		granted[res] = true
	}
	// The claims allowlist is read with a Role of the release namespace, limited to its ConfigMap.
	for _, r := range as[rbacv1.Role](t, m.get(t, "Role", "skewguard-claims")).Rules {
		assert.Equal(t, []string{"skewguard-claims"}, r.ResourceNames, "the Role reads the allowlist ConfigMap only")
		for _, res := range r.Resources {
			granted["core/"+res] = true
		}
	}
	for res, where := range called {
		assert.True(t, granted[res], "%s is called (%s) but the ClusterRole does not grant it", res, strings.Join(where, ", "))
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
	assert.Equal(t, excused, unused, "resources the ClusterRole grants that no code calls")
}
