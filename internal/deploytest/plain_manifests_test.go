package deploytest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The committed plain manifests are what `kubectl apply` users get; check them without helm (the
// integration tests check they are exactly the chart's output).
func readPlainManifests(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "skewguard.yaml"))
	require.NoError(t, err)
	return data
}

func TestPlainManifests(t *testing.T) {
	m := parseManifests(t, readPlainManifests(t))

	require.Equal(t, []string{
		"ClusterRole/skewguard", "ClusterRole/skewguard-versions-edit", "ClusterRole/skewguard-versions-view",
		"ClusterRoleBinding/skewguard", "ConfigMap/skewguard", "ConfigMap/skewguard-claims", "Deployment/skewguard-api",
		"Deployment/skewguard-worker", "Namespace/skewguard-system", "PodDisruptionBudget/skewguard-api",
		"Role/skewguard-claims", "RoleBinding/skewguard-claims", "Service/skewguard", "ServiceAccount/skewguard",
	}, m.names(), "no Secret: the database URL comes from a Secret the user creates")
	for _, o := range m {
		if o.GetKind() != "Namespace" && o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" {
			require.Equal(t, "skewguard-system", o.GetNamespace(), "%s/%s", o.GetKind(), o.GetName())
		}
	}
	require.Equal(t, "restricted", m.get(t, "Namespace", "skewguard-system").GetLabels()["pod-security.kubernetes.io/enforce"])

	env := checkRelease(t, m, workloadCheck{
		fullname:   "skewguard",
		namespace:  "skewguard-system",
		components: map[string]string{"api": "api", "worker": "worker"},
		metrics:    true,
	})
	require.Equal(t, "true", env["PLT_FEATURE_SKEW_PROTECTION"])
	require.Equal(t, "gateway-system/gateway", env["PLT_SKEW_GATEWAY_PARENT_REFS"])
	require.Equal(t, ":8080", env["PLT_SKEW_LISTEN_ADDRESS"], "the examples' agents call http://skewguard.skewguard-system.svc:8080")
	svc := as[corev1.Service](t, m.get(t, "Service", "skewguard"))
	require.EqualValues(t, 8080, svc.Spec.Ports[0].Port)

	api := as[appsv1.Deployment](t, m.get(t, "Deployment", "skewguard-api"))
	require.Equal(t, []corev1.EnvVar{{Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "skewguard-database"},
			Key:                  "DATABASE_URL",
		},
	}}}, api.Spec.Template.Spec.Containers[0].Env)
}
