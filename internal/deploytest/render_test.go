//go:build integration

package deploytest

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/skewguard/skewguard/internal/testenv"
)

// renderCase is one set of values and what its rendering must contain.
type renderCase struct {
	name       string
	args       []string
	env        map[string]string // ConfigMap entries that must have these values
	absent     []string          // ConfigMap entries that must not be set
	components map[string]string // Deployment suffix -> subcommand
}

var split = map[string]string{"api": "api", "worker": "worker"}

// renderCases are shared with the server-side dry-run test: what renders right must also be
// accepted by the API server.
func renderCases(t testing.TB) []renderCase {
	defaults := map[string]string{}
	for _, d := range documented {
		defaults[d.env] = d.def
	}
	setAll := []string{
		"--set", "services.icc.features.skew_protection.enable=true",
		"--set", "services.icc.skew_protection.http_grace_period_ms=60000",
		"--set", "services.icc.skew_protection.http_max_alive_ms=604800000", // a week: must not print as 6.048e+08
		"--set", "services.icc.skew_protection.cookie_max_age=3600",
		"--set", "services.icc.skew_protection.auto_cleanup=true",
		"--set", "services.icc.skew_protection.check_interval_ms=15000",
		"--set", "services.icc.skew_protection.traffic_window_ms=120000",
		"--set", "gateway.parentRefs[0].namespace=gw", "--set", "gateway.parentRefs[0].name=one",
		"--set", "gateway.parentRefs[1].namespace=gw", "--set", "gateway.parentRefs[1].name=two",
		"--set", "gateway.parentRefs[1].sectionName=https",
	}
	return []renderCase{
		{
			name:       "default values",
			env:        defaults,
			absent:     []string{"PLT_SKEW_GATEWAY_PARENT_REFS", "DATABASE_URL", "PROMETHEUS_URL", "PLT_SKEW_NAMESPACES"},
			components: split,
		},
		{
			name: "skew protection enabled",
			args: []string{"--values", filepath.Join(chartDir(t), "ci", "skew-protection-values.yaml")},
			env: map[string]string{
				"PLT_FEATURE_SKEW_PROTECTION":  "true",
				"PLT_SKEW_AUTO_CLEANUP":        "false",
				"PLT_SKEW_GATEWAY_PARENT_REFS": "gateway-system/public:http",
				"PROMETHEUS_URL":               "http://prometheus.monitoring.svc:9090",
			},
			components: split,
		},
		{
			name: "every documented key set",
			args: setAll,
			env: map[string]string{
				"PLT_FEATURE_SKEW_PROTECTION":   "true",
				"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000",
				"PLT_SKEW_HTTP_MAX_ALIVE_MS":    "604800000",
				"PLT_SKEW_COOKIE_MAX_AGE":       "3600",
				"PLT_SKEW_AUTO_CLEANUP":         "true",
				"PLT_SKEW_CHECK_INTERVAL_MS":    "15000",
				"PLT_SKEW_TRAFFIC_WINDOW_MS":    "120000",
				"PLT_SKEW_GATEWAY_PARENT_REFS":  "gw/one,gw/two:https",
			},
			components: split,
		},
		{
			name: "combined mode with libpq settings",
			args: []string{
				"--set", "mode=combined",
				"--set", "postgresql.host=db.example.com", "--set", "postgresql.passwordSecret=db",
				"--set", "postgresql.sslmode=verify-full",
				"--set", "config.namespaces={team-a,team-b}",
			},
			env: map[string]string{
				"PGHOST": "db.example.com", "PGPORT": "5432", "PGDATABASE": "skewguard", "PGUSER": "skewguard",
				"PGSSLMODE": "verify-full", "PLT_SKEW_NAMESPACES": "team-a,team-b",
			},
			components: map[string]string{"server": "serve"},
		},
	}
}

func TestChartRenders(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m := render(t, "skewguard", "skewguard-system", c.args...)
			env := checkRelease(t, m, workloadCheck{
				fullname: "skewguard", namespace: "skewguard-system", components: c.components, metrics: true,
			})
			for k, v := range c.env {
				assert.Equal(t, v, env[k], k)
			}
			for _, k := range c.absent {
				assert.NotContains(t, env, k)
			}
		})
	}
}

// Where the chart and the binary both have a default, they agree, except where the chart
// deliberately differs (listed with the reason).
func TestChartDefaultsMatchTheBinary(t *testing.T) {
	deliberate := map[string]string{
		"PLT_SKEW_METRICS_ADDRESS": "metrics on their own port in a cluster",
		"TEMPORAL_ADDRESS":         "the in-cluster Temporal frontend, not localhost",
	}
	env := render(t, "skewguard", "skewguard-system").get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)
	binary := configVariables(t)
	for k, v := range env {
		if _, ok := deliberate[k]; ok {
			continue
		}
		if def := binary[k]; def != "" {
			assert.Equal(t, def, v, "%s: chart and binary defaults differ", k)
		}
	}
}

// Mistakes in values fail at install, naming the value, rather than at start-up in a pod.
func TestChartRejectsBadValues(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"enabled without parentRefs", []string{"--set", "services.icc.features.skew_protection.enable=true"}, "set gateway.parentRefs"},
		{"a word for milliseconds", []string{"--set-string", "services.icc.skew_protection.http_grace_period_ms=30m"}, "http_grace_period_ms"},
		{"a misspelt documented key", []string{"--set", "services.icc.skew_protection.grace_period_ms=1"}, "grace_period_ms"},
		{"a string for the flag", []string{"--set-string", "services.icc.features.skew_protection.enable=yes"}, "enable"},
		{"max alive shorter than grace", []string{"--set", "services.icc.skew_protection.http_max_alive_ms=1000"}, "http_max_alive_ms"},
		{"two databases", []string{"--set", "postgresql.url=postgres://x", "--set", "postgresql.existingSecret=db"}, "only one of"},
		{"a parentRef without a name", []string{"--set", "services.icc.features.skew_protection.enable=true", "--set", "gateway.parentRefs[0].namespace=gw"}, "name"},
		{"an unknown mode", []string{"--set", "mode=both"}, "mode"},
		{"a client certificate without its key", []string{"--set", "temporal.tls.secretName=x", "--set", "temporal.tls.keyKey="}, "set both (mTLS) or neither"},
		{"an action wait beyond a minute", []string{"--set", "config.actionWaitMs=60001"}, "actionWaitMs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := helmTemplate(t, "skewguard", "skewguard-system", c.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// `helm template` shows the documented keys: `helm show values` prints them with their defaults,
// and a rendering carries each as its variable.
func TestHelmShowsTheDocumentedKeys(t *testing.T) {
	out, err := exec.Command(testenv.Get(t, testenv.HelmBinary), "show", "values", chartDir(t)).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, leaf := range []string{"enable: false", "http_grace_period_ms: 1800000", "http_max_alive_ms: 86400000",
		"cookie_max_age: 43200", "auto_cleanup: false", "check_interval_ms: 60000", "traffic_window_ms: 300000"} {
		assert.Contains(t, string(out), leaf)
	}
	lint, err := exec.Command(testenv.Get(t, testenv.HelmBinary), "lint", "--strict", chartDir(t)).CombinedOutput()
	require.NoError(t, err, string(lint))
}

// deploy/kubernetes/skewguard.yaml is exactly what hack/render-manifests.sh produces from the chart.
func TestPlainManifestsAreInSyncWithTheChart(t *testing.T) {
	root := repoRoot(t)
	out := filepath.Join(t.TempDir(), "skewguard.yaml")
	cmd := exec.Command(filepath.Join(root, "hack", "render-manifests.sh"), out)
	cmd.Env = append(os.Environ(), "HELM="+testenv.Get(t, testenv.HelmBinary))
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, string(msg))
	want, err := os.ReadFile(out)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "skewguard.yaml"))
	require.NoError(t, err)
	if string(want) != string(got) {
		t.Fatalf("deploy/kubernetes/skewguard.yaml is stale: run hack/render-manifests.sh\n%s", firstDifference(string(got), string(want)))
	}
}

var updateGolden = flag.Bool("update", false, "rewrite testdata/namespaced.yaml from the chart")

// namespacedArgs render the chart as testdata/namespaced.yaml holds it: the plain manifests'
// values, auto-cleanup on (every right skewguard can be granted), namespaces team-a and team-b.
func namespacedArgs(t testing.TB) []string {
	return []string{
		"--values", filepath.Join(chartDir(t), "ci", "manifests-values.yaml"),
		"--set", "services.icc.skew_protection.auto_cleanup=true",
		"--set", "config.namespaces={team-a,team-b}",
	}
}

// testdata/namespaced.yaml, which the pure RBAC tests read, is exactly the chart's rendering.
func TestNamespacedGoldenIsInSync(t *testing.T) {
	out, err := helmTemplate(t, "skewguard", "skewguard-system", namespacedArgs(t)...)
	require.NoError(t, err)
	path := filepath.Join(repoRoot(t), "internal", "deploytest", "testdata", "namespaced.yaml")
	if *updateGolden {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, out, 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	if string(out) != string(got) {
		t.Fatalf("%s is stale: go test -tags integration -run TestNamespacedGoldenIsInSync ./internal/deploytest -update\n%s",
			path, firstDifference(string(got), string(out)))
	}
}

func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("first difference at line %d:\n  committed: %s\n  rendered:  %s", i+1, gl, wl)
		}
	}
	return ""
}

// The chart's switches do what values.yaml says.
func TestChartOptions(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, c := range []struct {
		name  string
		args  []string
		check func(t *testing.T, m manifests)
	}{
		{"RBAC and ServiceAccount brought by the user", []string{
			"--set", "rbac.create=false", "--set", "rbac.operatorRoles=false",
			"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-skewguard",
		}, func(t *testing.T, m manifests) {
			assert.Empty(t, m.ofKind("ClusterRole"))
			assert.Empty(t, m.ofKind("ClusterRoleBinding"))
			assert.Empty(t, m.ofKind("Role"))
			assert.Empty(t, m.ofKind("RoleBinding"))
			assert.Empty(t, m.ofKind("ServiceAccount"))
			for _, d := range m.ofKind("Deployment") {
				assert.Equal(t, "platform-skewguard", as[appsv1.Deployment](t, d).Spec.Template.Spec.ServiceAccountName)
			}
		}},
		{"operator roles not aggregated", []string{"--set", "rbac.aggregateToDefaultRoles=false"}, func(t *testing.T, m manifests) {
			for _, r := range []string{"skewguard-versions-view", "skewguard-versions-edit"} {
				for k := range m.get(t, "ClusterRole", r).GetLabels() {
					assert.NotContains(t, k, "aggregate-to", r)
				}
			}
		}},
		{"metrics on the API port", []string{"--set", "metrics.port=0"}, func(t *testing.T, m manifests) {
			assert.NotContains(t, m.get(t, "ConfigMap", "skewguard").Object["data"], "PLT_SKEW_METRICS_ADDRESS")
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-api"))
			assert.Equal(t, "8080", d.Spec.Template.Annotations["prometheus.io/port"])
			require.Len(t, d.Spec.Template.Spec.Containers[0].Ports, 1)
			assert.Len(t, as[corev1.Service](t, m.get(t, "Service", "skewguard")).Spec.Ports, 1)
		}},
		{"namespaces limited: Roles there, nothing namespaced cluster-wide", []string{
			"--values", filepath.Join(chartDir(t), "ci", "skew-protection-values.yaml"),
			"--set", "services.icc.skew_protection.auto_cleanup=true",
			"--set", "config.namespaces={a,b,a}", // a repeat renders one Role
		}, func(t *testing.T, m manifests) {
			for _, p := range expand(t, as[rbacv1.ClusterRole](t, m.get(t, "ClusterRole", "skewguard")).Rules) {
				verb, res, _ := strings.Cut(p, " ")
				if verb != "get" && verb != "list" && verb != "watch" {
					assert.Contains(t, []string{"authentication.k8s.io/tokenreviews", "authorization.k8s.io/subjectaccessreviews"}, res,
						"cluster-wide write: %s", p)
				}
				for _, forbidden := range []string{"core/pods", "core/services", "apps/deployments", "apps/deployments/scale", "apps/replicasets"} {
					assert.NotEqual(t, forbidden, res, "cluster-wide: %s", p)
				}
			}
			var roles []string
			for _, r := range m.ofKind("Role") {
				roles = append(roles, r.GetNamespace()+"/"+r.GetName())
				if r.GetName() == "skewguard" {
					assert.Contains(t, expand(t, as[rbacv1.Role](t, r).Rules), "update apps/deployments/scale", r.GetNamespace())
				}
			}
			assert.ElementsMatch(t, []string{"a/skewguard", "b/skewguard", "skewguard-system/skewguard-claims"}, roles)
		}},
		{"image by digest", []string{"--set", "image.digest=" + digest}, func(t *testing.T, m manifests) {
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-worker"))
			assert.Equal(t, "ghcr.io/skewguard/skewguard@"+digest, d.Spec.Template.Spec.Containers[0].Image)
			assert.Equal(t, "ghcr.io/skewguard/skewguard@"+digest, d.Spec.Template.Spec.InitContainers[0].Image)
		}},
		{"database URL in values goes to a Secret", []string{"--set", "postgresql.url=postgres://u:p@db/skewguard"}, func(t *testing.T, m manifests) {
			s := as[corev1.Secret](t, m.get(t, "Secret", "skewguard-database"))
			assert.Equal(t, "postgres://u:p@db/skewguard", s.StringData["DATABASE_URL"])
			assert.NotContains(t, m.get(t, "ConfigMap", "skewguard").Object["data"], "DATABASE_URL", "no password in the ConfigMap")
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-api"))
			env := d.Spec.Template.Spec.Containers[0].Env
			require.Len(t, env, 1)
			assert.Equal(t, "skewguard-database", env[0].ValueFrom.SecretKeyRef.Name)
			assert.Contains(t, d.Spec.Template.Annotations, "checksum/database", "pods roll when the URL changes")
		}},
		{"one API replica has no disruption budget", []string{"--set", "api.replicas=1"}, func(t *testing.T, m manifests) {
			assert.Empty(t, m.ofKind("PodDisruptionBudget"))
		}},
		{"extra environment", []string{"--set", "extraEnv[0].name=PLT_SKEW_INSECURE_SKIP_POD_AUTH", "--set-string", "extraEnv[0].value=true"}, func(t *testing.T, m manifests) {
			d := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-api"))
			assert.Equal(t, []corev1.EnvVar{{Name: "PLT_SKEW_INSECURE_SKIP_POD_AUTH", Value: "true"}}, d.Spec.Template.Spec.Containers[0].Env)
		}},
		// Issue 12: the Temporal client's TLS, mTLS and API key come from mounted Secrets (directories,
		// so that rotation reaches the files), in every container that loads the configuration.
		{"Temporal TLS, mTLS and API key", []string{"--set", "temporal.tls.secretName=temporal-client",
			"--set", "temporal.tls.serverName=temporal.internal", "--set", "temporal.apiKey.existingSecret=temporal-key"},
			func(t *testing.T, m manifests) {
				data := m.get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)
				for k, v := range map[string]string{
					"TEMPORAL_TLS": "true", "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
					"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/etc/skewguard/temporal-tls/ca.crt",
					"TEMPORAL_TLS_CLIENT_CERT_PATH":    "/etc/skewguard/temporal-tls/tls.crt",
					"TEMPORAL_TLS_CLIENT_KEY_PATH":     "/etc/skewguard/temporal-tls/tls.key",
					"PLT_SKEW_TEMPORAL_API_KEY_FILE":   "/etc/skewguard/temporal-api-key/api-key",
				} {
					assert.Equal(t, v, data[k], k)
				}
				for _, name := range []string{"skewguard-api", "skewguard-worker"} {
					spec := as[appsv1.Deployment](t, m.get(t, "Deployment", name)).Spec.Template.Spec
					// The API's own TLS Secret (tls.enabled, the default) comes first.
					require.Len(t, spec.Volumes, 3, name)
					assert.Equal(t, "tls", spec.Volumes[0].Name)
					assert.Equal(t, "temporal-client", spec.Volumes[1].Secret.SecretName)
					assert.Equal(t, "temporal-key", spec.Volumes[2].Secret.SecretName)
					assert.Equal(t, []corev1.KeyToPath{{Key: "api-key", Path: "api-key"}}, spec.Volumes[2].Secret.Items)
					for _, c := range append(spec.InitContainers, spec.Containers...) {
						require.Len(t, c.VolumeMounts, 3, "%s/%s", name, c.Name)
						for _, vm := range c.VolumeMounts {
							assert.True(t, vm.ReadOnly)
							assert.Empty(t, vm.SubPath, "a subPath mount never sees a rotated Secret")
						}
					}
				}
			}},
		{"Temporal without TLS by default", nil, func(t *testing.T, m manifests) {
			data := m.get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)
			assert.NotContains(t, data, "TEMPORAL_TLS")
			assert.Equal(t, "10000", data["PLT_SKEW_ACTION_WAIT_MS"])
			vols := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-api")).Spec.Template.Spec.Volumes
			require.Len(t, vols, 1, "only the API's TLS Secret")
			assert.Equal(t, "tls", vols[0].Name)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, render(t, "skewguard", "skewguard-system", c.args...))
		})
	}
	_, err := helmTemplate(t, "skewguard", "skewguard-system", "--set", "serviceAccount.create=false")
	assert.ErrorContains(t, err, "serviceAccount.name is required")
}

// helm install prints a warning while the image is pinned by tag only, and none with a digest.
func TestNotesWarnOfAnImageByTag(t *testing.T) {
	notes := func(args ...string) string {
		full := append([]string{"install", "skewguard", chartDir(t), "--namespace", "skewguard-system",
			"--dry-run=client", "--output", "json"}, args...)
		cmd := exec.Command(testenv.Get(t, testenv.HelmBinary), full...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Get(t, testenv.Kubeconfig), "HELM_CACHE_HOME="+t.TempDir(),
			"HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		out, err := cmd.Output()
		require.NoError(t, err, "helm %s", strings.Join(full, " "))
		var release struct {
			Info struct {
				Notes string `json:"notes"`
			} `json:"info"`
		}
		require.NoError(t, json.Unmarshal(out, &release), string(out))
		require.NotEmpty(t, release.Info.Notes)
		return release.Info.Notes
	}
	assert.Contains(t, notes(), "WARNING: the image is pulled by tag (ghcr.io/skewguard/skewguard:0.1.0)")
	digest := "sha256:" + strings.Repeat("ab", 32)
	assert.NotContains(t, notes("--set", "image.digest="+digest), "pulled by tag")
	assert.Contains(t, notes("--set", "config.namespaces={a,b}"), "only these namespaces: a, b")
}
