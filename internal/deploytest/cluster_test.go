//go:build integration

package deploytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skewguard/skewguard/internal/testenv"
)

const fieldManager = "skewguard-deploytest"

// cluster is the real API server, as its admin.
type cluster struct {
	config   *rest.Config
	kube     kubernetes.Interface
	dynamic  dynamic.Interface
	mapper   meta.RESTMapper
	warnings *warningLog
}

// warningLog keeps the warnings the API server sends back (deprecations, Pod Security).
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func connect(t testing.TB) *cluster {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	warnings := &warningLog{}
	cfg.WarningHandler = warnings
	kube, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	return &cluster{config: cfg, kube: kube, dynamic: dyn, mapper: mapper, warnings: warnings}
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 3)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// namespace creates a namespace that enforces the restricted Pod Security Standard, deleted when
// the test ends.
func (c *cluster) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   prefix + "-" + randomSuffix(t),
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		err := c.kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// resource finds the API resource of an object, and whether it is namespaced.
func (c *cluster) resource(t testing.TB, o *unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	gvk := o.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	require.NoError(t, err, "the API server does not serve %s", gvk)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		require.NotEmpty(t, o.GetNamespace(), "%s %s has no namespace", gvk.Kind, o.GetName())
		return c.dynamic.Resource(mapping.Resource).Namespace(o.GetNamespace())
	}
	return c.dynamic.Resource(mapping.Resource)
}

// apply server-side applies an object, for real or as a dry run (dryRun), with strict field
// validation: an unknown or duplicated field is an error, not a silently dropped line.
func (c *cluster) apply(ctx context.Context, t testing.TB, o *unstructured.Unstructured, dryRun bool) error {
	t.Helper()
	data, err := json.Marshal(o.Object)
	require.NoError(t, err)
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: new(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = c.resource(t, o).Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// podOf is the pod a Deployment would create, for checking it against the namespace's Pod
// Security level (admission checks pods, not Deployments).
func podOf(t testing.TB, d *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	tmpl, ok, err := unstructured.NestedMap(d.Object, "spec", "template")
	require.NoError(t, err)
	require.True(t, ok)
	pod := &unstructured.Unstructured{Object: tmpl}
	pod.SetAPIVersion("v1")
	pod.SetKind("Pod")
	pod.SetName(d.GetName() + "-dry-run")
	pod.SetNamespace(d.GetNamespace())
	return pod
}

// dryRun sends every object, and a pod of every Deployment, to the API server as a server-side
// dry run, and fails on any error or warning.
func (c *cluster) dryRun(t *testing.T, m manifests) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.warnings.take()
	for _, o := range m {
		require.NoError(t, c.apply(ctx, t, o, true), "server-side dry run of %s %s", o.GetKind(), o.GetName())
	}
	// Pod admission looks the ServiceAccount up, so it must exist: create it for real, in the
	// scratch namespace the test deletes.
	for _, sa := range m.ofKind("ServiceAccount") {
		require.NoError(t, c.apply(ctx, t, sa, false), "create ServiceAccount %s", sa.GetName())
	}
	for _, d := range m.ofKind("Deployment") {
		require.NoError(t, c.apply(ctx, t, podOf(t, d), true),
			"a pod of Deployment %s under the restricted Pod Security Standard", d.GetName())
	}
	require.Empty(t, c.warnings.take(), "the API server warned")
}

// The rendered chart is accepted by the real API server, for every case the render test checks,
// and its pods are admitted under the restricted Pod Security Standard.
func TestChartServerSideDryRun(t *testing.T) {
	c := connect(t)
	for _, rc := range renderCases(t) {
		t.Run(rc.name, func(t *testing.T) {
			ns := c.namespace(t, "sg-dryrun")
			m := render(t, "sg-"+randomSuffix(t), ns, rc.args...)
			// The Roles of watched namespaces (config.namespaces) go to scratch namespaces of their own.
			watched := map[string]string{}
			for _, o := range m {
				if o.GetNamespace() == "" || o.GetNamespace() == ns {
					continue
				}
				if _, ok := watched[o.GetNamespace()]; !ok {
					watched[o.GetNamespace()] = c.namespace(t, "sg-dryrun-watched")
				}
				o.SetNamespace(watched[o.GetNamespace()])
			}
			c.dryRun(t, m)
		})
	}
}

// The plain manifests too, moved into a scratch namespace so the dry run needs nothing to exist.
func TestPlainManifestsServerSideDryRun(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t, "sg-dryrun-plain")
	data := readPlainManifests(t)
	m := parseManifests(t, data)
	for _, o := range m {
		switch {
		case o.GetKind() == "Namespace":
			o.SetName(ns)
		case o.GetNamespace() != "":
			o.SetNamespace(ns)
		}
		if strings.HasPrefix(o.GetKind(), "ClusterRole") {
			o.SetName(o.GetName() + "-" + ns)
		}
	}
	c.dryRun(t, m)
}

// The Pod Security check above can fail: a pod that may escalate privileges is refused.
func TestDryRunRefusesAnUnrestrictedPod(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t, "sg-dryrun-neg")
	m := render(t, "sg-"+randomSuffix(t), ns, "--set", "securityContext.allowPrivilegeEscalation=true")
	ctx := context.Background()
	for _, sa := range m.ofKind("ServiceAccount") {
		require.NoError(t, c.apply(ctx, t, sa, false))
	}
	err := c.apply(ctx, t, podOf(t, m.ofKind("Deployment")[0]), true)
	require.Error(t, err)
	require.Contains(t, err.Error(), "violates PodSecurity")
	require.Contains(t, err.Error(), "allowPrivilegeEscalation")
}
