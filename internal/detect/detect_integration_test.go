//go:build integration

package detect_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// observingStarter records start requests and records the version's life in the registry, as
// the workflow's first activity does; the workflow itself is not under test here.
type observingStarter struct {
	store *registry.Store
	mu    sync.Mutex
	reqs  []detect.StartRequest
}

func (s *observingStarter) StartVersion(ctx context.Context, req detect.StartRequest) error {
	if _, _, err := s.store.ObserveVersion(ctx, registry.Observation{Ref: req.Ref, Placement: req.Placement}, req.Actor); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	return nil
}

func (s *observingStarter) requests() []detect.StartRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]detect.StartRequest(nil), s.reqs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestScaleUpAfterExpiryStartsTheNextLife, on the real API server (controller-manager, kwok, the
// stack's launcher making pods Ready) and registry: Deployment at 1 → version recorded →
// expired → scaled to 0 → scaled to 1 → the new pod starts the version's next life.
func TestScaleUpAfterExpiryStartsTheNextLife(t *testing.T) {
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	kc := clients.Kube
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	suffix := randomHex(4)
	ns := "sgdetect-" + suffix
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

	app := "scaleup-" + suffix
	ref := registry.VersionRef{Namespace: ns, App: app, Label: "1"}
	dep := deployVersion(t, kc, ns, app, "1")

	waitFor(t, 60*time.Second, "the first start request", func() bool { return len(starter.requests()) == 1 })
	first := starter.requests()[0]
	assert.Equal(t, ref, first.Ref)
	assert.Equal(t, app+"-v1", first.ServiceName)
	assert.Equal(t, ns+".detect.test", first.Hostname)
	assert.True(t, first.DeployedAt.Equal(dep.CreationTimestamp.Time),
		"DeployedAt %s is the Deployment's creation time %s", first.DeployedAt, dep.CreationTimestamp.Time)
	assert.False(t, first.PodsCreatedAt.IsZero())

	_, err = store.Expire(ctx, ref, registry.Actor{Type: registry.ActorUser, Name: "detect-integration"}, "test")
	require.NoError(t, err)

	scale(t, kc, ns, dep.Name, 0)
	selector := labels.SelectorFromSet(map[string]string{detect.LabelApp: app, detect.LabelVersion: "1"}).String()
	waitFor(t, 60*time.Second, "the pods of the scaled-down Deployment gone", func() bool {
		pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(pods.Items) == 0
	})
	scale(t, kc, ns, dep.Name, 1)

	// Well inside the 30 s start reservation of the first life: the next life must not wait for
	// it to lapse (the watch's second look at a deduped pod would come only after it).
	waitFor(t, 15*time.Second, "a start request for the scaled-up version", func() bool { return len(starter.requests()) == 2 })
	assert.Equal(t, ref, starter.requests()[1].Ref)
	v, err := store.GetVersion(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, 2, v.Life, "the label's next life")
	assert.Equal(t, registry.Pending, v.State)
}

// deployVersion creates a one-replica Deployment and its Service, run by the stack's launcher as
// the echo backend, and returns the Deployment.
func deployVersion(t *testing.T, kc kubernetes.Interface, ns, app, version string) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	// The namespace's own hostname: were these versions ever routed on the shared Gateway, they
	// would claim no host+path another test or the demo serves.
	lbl := map[string]string{detect.LabelApp: app, detect.LabelVersion: version, detect.LabelHostname: ns + ".detect.test"}
	one := int32(1)
	dep, err := kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app + "-v" + version, Namespace: ns, Labels: lbl},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "echo",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app + "-v" + version, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: lbl,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return dep
}

func scale(t *testing.T, kc kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	_, err := kc.AppsV1().Deployments(ns).UpdateScale(context.Background(), name, &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       autoscalingv1.ScaleSpec{Replicas: replicas},
	}, metav1.UpdateOptions{})
	require.NoError(t, err, "scale %s/%s to %d", ns, name, replicas)
}

// waitFor polls cond every 100 ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
