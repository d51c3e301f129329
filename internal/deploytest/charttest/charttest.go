// Package charttest renders skewguard's Helm chart with the real helm binary and installs the
// chart's RBAC (ServiceAccount, ClusterRole, ClusterRoleBinding) in the real cluster, so that a
// test can run skewguard with exactly the rights the chart grants and no more. It is for
// integration tests: helm and the admin kubeconfig come from internal/testenv, and a test
// without them fails.
package charttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/skewguard/skewguard/internal/testenv"
)

// RepoRoot is the module root, found by walking up from the working directory to go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above %s", dir)
		dir = parent
	}
}

// Dir is the chart's directory.
func Dir(t testing.TB) string {
	return filepath.Join(RepoRoot(t), "deploy", "helm", "skewguard")
}

// Render runs `helm template` on the chart and returns its output, or an error carrying what
// helm printed.
func Render(t testing.TB, release, namespace string, args ...string) ([]byte, error) {
	t.Helper()
	helm := testenv.Get(t, testenv.HelmBinary)
	full := append([]string{"template", release, Dir(t), "--namespace", namespace}, args...)
	cmd := exec.Command(helm, full...)
	// helm keeps caches and repository settings under these; keep them out of the user's home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Objects parses a multi-document YAML stream of Kubernetes objects.
func Objects(t testing.TB, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, "decode manifests")
		if len(obj) > 0 { // an empty document is a template rendered to nothing
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// RBAC is the chart's RBAC as installed for one test.
type RBAC struct {
	Namespace      string // of the ServiceAccount, created for the test
	ServiceAccount string
	ClusterRole    string // also the ClusterRoleBinding's name
	Rules          []rbacv1.PolicyRule
	// Roles are the chart's Roles, by namespace and name (each bound by the RoleBinding of the
	// same name): one per namespace of config.namespaces, and <release>-skewguard-claims in
	// Namespace.
	Roles map[string]map[string][]rbacv1.PolicyRule
	// Token is a TokenRequest token of the ServiceAccount; Kubeconfig is a file that
	// authenticates with it, for KUBECONFIG.
	Token      string
	Kubeconfig string
	// ClaimsConfigMap is "namespace/name" of the claims allowlist ConfigMap the chart rendered
	// (from the claims.allow values given), created with the Role that reads it; the value of
	// PLT_SKEW_CLAIMS_CONFIGMAP.
	ClaimsConfigMap string
}

// InstallRBAC renders the chart with the given helm arguments (e.g. "--set",
// "services.icc.skew_protection.auto_cleanup=true"), creates its ServiceAccount (in a namespace
// of its own), ClusterRole, ClusterRoleBinding, Roles and RoleBindings (the namespaces of
// config.namespaces must exist) with the admin identity, and writes a
// kubeconfig that authenticates as the ServiceAccount with a token the API server issued for
// it (valid for tokenTTL). All of it is deleted when the test ends.
func InstallRBAC(t testing.TB, tokenTTL time.Duration, helmArgs ...string) *RBAC {
	t.Helper()
	ctx := context.Background()
	admin, cfg := adminClient(t)
	suffix := randomSuffix(t)
	ns := "sg-rbac-" + suffix
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	release := "sg-" + suffix
	fullname := release + "-skewguard"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, err := range []error{
			admin.RbacV1().ClusterRoleBindings().Delete(ctx, fullname, metav1.DeleteOptions{}),
			admin.RbacV1().ClusterRoles().Delete(ctx, fullname, metav1.DeleteOptions{}),
			admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("clean up the chart's RBAC: %v", err)
			}
		}
	})

	out, err := Render(t, release, ns, helmArgs...)
	require.NoError(t, err)
	var (
		sa           corev1.ServiceAccount
		role         rbacv1.ClusterRole
		binding      rbacv1.ClusterRoleBinding
		roles        []rbacv1.Role
		roleBindings []rbacv1.RoleBinding
		// The claims allowlist ConfigMap (named <fullname>-claims; its Role and RoleBinding are
		// among roles and roleBindings).
		claimsCM corev1.ConfigMap
	)
	for _, o := range Objects(t, out) {
		switch o.GetKind() {
		case "ConfigMap":
			if o.GetName() == fullname+"-claims" {
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &claimsCM))
			}
			continue
		case "Role":
			var r rbacv1.Role
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r))
			roles = append(roles, r)
			continue
		case "RoleBinding":
			var b rbacv1.RoleBinding
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b))
			roleBindings = append(roleBindings, b)
			continue
		}
		if o.GetName() != fullname {
			continue
		}
		var target any
		switch o.GetKind() {
		case "ServiceAccount":
			target = &sa
		case "ClusterRole":
			target = &role
		case "ClusterRoleBinding":
			target = &binding
		default:
			continue
		}
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, target))
	}
	require.Equal(t, fullname, sa.Name, "the chart renders no ServiceAccount %s", fullname)
	require.Equal(t, fullname, role.Name, "the chart renders no ClusterRole %s", fullname)
	require.Equal(t, fullname, binding.Name, "the chart renders no ClusterRoleBinding %s", fullname)

	_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{})
	require.NoError(t, err)
	byNamespace := map[string]map[string][]rbacv1.PolicyRule{}
	for _, r := range roles {
		_, err = admin.RbacV1().Roles(r.Namespace).Create(ctx, &r, metav1.CreateOptions{})
		require.NoError(t, err, "create Role %s/%s", r.Namespace, r.Name)
		t.Cleanup(func() {
			deleteIgnoringNotFound(t, admin.RbacV1().Roles(r.Namespace).Delete(context.Background(), r.Name, metav1.DeleteOptions{}))
		})
		if byNamespace[r.Namespace] == nil {
			byNamespace[r.Namespace] = map[string][]rbacv1.PolicyRule{}
		}
		byNamespace[r.Namespace][r.Name] = r.Rules
	}
	for _, b := range roleBindings {
		_, err = admin.RbacV1().RoleBindings(b.Namespace).Create(ctx, &b, metav1.CreateOptions{})
		require.NoError(t, err, "create RoleBinding %s/%s", b.Namespace, b.Name)
		t.Cleanup(func() {
			deleteIgnoringNotFound(t, admin.RbacV1().RoleBindings(b.Namespace).Delete(context.Background(), b.Name, metav1.DeleteOptions{}))
		})
	}
	var claimsRef string
	if claimsCM.Name != "" { // deleted with the namespace
		_, err = admin.CoreV1().ConfigMaps(ns).Create(ctx, &claimsCM, metav1.CreateOptions{})
		require.NoError(t, err)
		claimsRef = ns + "/" + claimsCM.Name
	}

	seconds := int64(tokenTTL / time.Second)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, fullname, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "TokenRequest for the chart's ServiceAccount")

	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		ca, err = os.ReadFile(cfg.CAFile)
		require.NoError(t, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: ca}
	kc.AuthInfos[fullname] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[fullname] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: fullname}
	kc.CurrentContext = fullname
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))

	return &RBAC{
		Namespace: ns, ServiceAccount: fullname, ClusterRole: fullname, Rules: role.Rules, Roles: byNamespace,
		Token: tr.Status.Token, Kubeconfig: path, ClaimsConfigMap: claimsRef,
	}
}

// Username is the ServiceAccount's user name, as the API server's errors name it.
func (r *RBAC) Username() string {
	return "system:serviceaccount:" + r.Namespace + ":" + r.ServiceAccount
}

func deleteIgnoringNotFound(t testing.TB, err error) {
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("clean up the chart's RBAC: %v", err)
	}
}

func adminClient(t testing.TB) (kubernetes.Interface, *rest.Config) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	kube, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return kube, cfg
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 3)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
