//go:build integration

package detect_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// TestVersionsFromImagesOnTheStack, on the real API server (kwok pods run by the stack's
// launcher, turned Ready by their readiness) and registry, through the pod watch: Deployments
// without the plt.dev/version label, each with its own Service, annotated
// plt.dev/version-from=image:app, are recorded under the version of their image (tag, digest);
// one not annotated and one on latest are not recorded at all.
func TestVersionsFromImagesOnTheStack(t *testing.T) {
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	kc := clients.Kube
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	suffix := randomHex(4)
	ns := "sgimage-" + suffix
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })

	store := registrytest.New(t)
	starter := &observingStarter{store: store}
	cache, err := detect.NewCache(kc, []string{ns}, 0)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	det := detect.NewDetector(detect.Options{Registry: store, Starter: starter, Lookup: cache, Enabled: true, Logger: log})
	watcher, err := detect.NewWatcher(cache, det, true, log)
	require.NoError(t, err)
	cache.Start(ctx)
	require.True(t, cache.WaitForSync(ctx))
	done := make(chan struct{})
	go func() { watcher.Run(ctx, 2); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	app := "img-" + suffix
	const digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	deployImage(t, kc, ns, app, "a", "echo:v1.4.2", detect.VersionFromImage+":app")
	deployImage(t, kc, ns, app, "b", "echo@"+digest, detect.VersionFromImage+":app")
	latest := deployImage(t, kc, ns, app, "c", "echo:latest", detect.VersionFromImage+":app")
	plain := deployImage(t, kc, ns, app, "d", "echo:v9", "")

	want := []registry.VersionRef{
		{Namespace: ns, App: app, Label: "v1.4.2"},
		{Namespace: ns, App: app, Label: "sha256-9f86d081884c"},
	}
	waitFor(t, 60*time.Second, "both versions from their images", func() bool { return len(starter.requests()) >= 2 })
	var got []registry.VersionRef
	for _, r := range starter.requests() {
		got = append(got, r.Ref)
		assert.Equal(t, app+"-"+map[string]string{"v1.4.2": "a", "sha256-9f86d081884c": "b"}[r.Ref.Label], r.ServiceName)
	}
	assert.ElementsMatch(t, want, got)
	for _, ref := range want {
		v, err := store.GetVersion(ctx, ref)
		require.NoError(t, err, "%s recorded", ref)
		assert.Equal(t, registry.Pending, v.State)
	}

	// The latest pod opted in, so the watch looked at it: it is recorded without a version.
	// The unannotated pod is not watched at all (as a pod without the label is today).
	waitFor(t, 60*time.Second, "the pod on latest recorded without a version", func() bool {
		name := readyPodName(ctx, kc, ns, latest.Name)
		if name == "" {
			return false
		}
		p, err := store.GetPod(ctx, name)
		return err == nil && p.VersionID == nil
	})
	waitFor(t, 60*time.Second, "a Ready pod of "+plain.Name, func() bool { return readyPodName(ctx, kc, ns, plain.Name) != "" })
	assert.Len(t, starter.requests(), 2, "no version for latest, none without the opt-in")
	_, err = store.GetVersion(ctx, registry.VersionRef{Namespace: ns, App: app, Label: "v9"})
	assert.True(t, errors.Is(err, registry.ErrNotFound), "the unannotated Deployment's tag is no version: %v", err)
}

// deployImage creates a one-replica Deployment of app running image, without the version label,
// with the plt.dev/version-from annotation when from is set, and a Service that selects its
// pods only (by an instance label). The stack's launcher runs it as the echo backend.
func deployImage(t *testing.T, kc kubernetes.Interface, ns, app, instance, image, from string) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	name := app + "-" + instance
	lbl := map[string]string{detect.LabelApp: app, "app.kubernetes.io/instance": name, detect.LabelHostname: ns + ".detect.test"}
	ann := map[string]string{"skewguard.dev/launch": "echo"}
	if from != "" {
		ann[detect.AnnotationVersionFrom] = from
	}
	one := int32(1)
	dep, err := kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: lbl,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return dep
}

// readyPodName names a Ready pod of Deployment name ("" when none is).
func readyPodName(ctx context.Context, kc kubernetes.Interface, ns, name string) string {
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		return ""
	}
	i := slices.IndexFunc(pods.Items, func(p corev1.Pod) bool { return detect.Ready(&p) && p.DeletionTimestamp == nil })
	if i < 0 {
		return ""
	}
	return pods.Items[i].Name
}
