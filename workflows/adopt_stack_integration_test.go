//go:build integration

package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestAdoptionOnTheRealStack: an app running as one Deployment without plt.dev/version, behind a
// Service that selects every pod of the app, is annotated plt.dev/adopt=true. Through the real
// pod watch, Temporal, the API server and Traefik:
//   - it becomes the first Active version, named after its image, and no pod is restarted (the
//     same pod UIDs before and after); its backend is a Service skewguard created;
//   - the team deploys v2 the usual way (labelled plt.dev/version): v2 is Active, the adopted
//     version Draining, and a request pinned to the adopted version reaches only adopted pods,
//     although the team's Service now selects v2's pods too;
//   - at its expiry the adopted Deployment is scaled to 0, not deleted; our Service is
//     deleted; the team's Service is untouched.
func TestAdoptionOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "120000"})
	const adopted = "v1.4.2" // the version of image echo:v1.4.2
	t.Cleanup(func() {
		for _, v := range []string{adopted, "v2"} {
			_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(v)), "", "test done")
		}
	})
	kc := s.kube.Kube
	ctx := t.Context()

	// The team's app as it runs today: one Deployment, one Service for the whole app.
	tmpl := map[string]string{kube.AppLabel: app, detect.LabelHostname: s.host()}
	_, err := kc.AppsV1().Deployments(s.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Labels: map[string]string{kube.AppLabel: app}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{kube.AppLabel: app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tmpl, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "echo:" + adopted,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	team, err := kc.CoreV1().Services(s.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: corev1.ServiceSpec{Selector: map[string]string{kube.AppLabel: app},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	var before []types.UID
	s.eventually(60*time.Second, "two Ready pods of the unlabelled Deployment", func() (bool, string) {
		before = readyPods(t, kc, s.ns, kube.AppLabel+"="+app)
		return len(before) == 2, fmt.Sprint(before)
	})

	// Detection as the api role runs it: the pod watch, with adoption.
	cache, err := detect.NewCache(kc, []string{s.ns}, 0)
	require.NoError(t, err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	det := detect.NewDetector(detect.Options{Registry: s.reg, Lookup: cache, Enabled: true, Logger: quiet,
		Starter: workflows.NewClient(s.temporal, s.cfg.TaskQueue, 0), Adopter: kube.Workloads{Client: kc}})
	watcher, err := detect.NewWatcher(cache, det, true, quiet)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(context.Background())
	cache.Start(wctx)
	require.True(t, cache.WaitForSync(wctx))
	done := make(chan struct{})
	go func() { watcher.Run(wctx, 2); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Nothing unlabelled is touched unless asked.
	_, err = s.reg.GetVersion(ctx, s.ref(adopted))
	assert.ErrorIs(t, err, registry.ErrNotFound, "not adopted before the annotation")

	_, err = kc.AppsV1().Deployments(s.ns).Patch(ctx, app, types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"`+detect.AnnotationAdopt+`":"true"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	s.eventually(60*time.Second, "the adopted version active", func() (bool, string) {
		if _, err := s.reg.GetVersion(ctx, s.ref(adopted)); err != nil {
			return false, err.Error()
		}
		st := s.state(adopted).State
		return st == registry.Active, string(st)
	})
	ours, err := kube.AdoptedServiceName(app, adopted)
	require.NoError(t, err)
	v, err := s.reg.GetVersion(ctx, s.ref(adopted))
	require.NoError(t, err)
	assert.Equal(t, ours, v.ServiceName, "the version's backend is our Service")
	assert.Equal(t, app, v.AdoptedDeployment, "the registry records which Deployment was adopted")
	s.waitRouting(routing{Default: ours})
	assert.ElementsMatch(t, before, readyPods(t, kc, s.ns, kube.AppLabel+"="+app), "no pod restarted")
	adoptedPods := podNames(t, kc, s.ns, kube.AppLabel+"="+app)

	// The team deploys v2 the usual way; the team's Service selects its pods too.
	deployLabelled(t, s, "v2")
	s.eventually(60*time.Second, "v2 active", func() (bool, string) {
		if _, err := s.reg.GetVersion(ctx, s.ref("v2")); err != nil {
			return false, err.Error()
		}
		st := s.state("v2").State
		return st == registry.Active, string(st)
	})
	s.eventually(10*time.Second, "the adopted version draining", func() (bool, string) {
		st := s.state(adopted).State
		return st == registry.Draining, string(st)
	})
	s.waitRouting(routing{Default: app + "-v2", Pinned: []string{ours}})
	s.waitServed("", "v2")
	teamSelects := slices.DeleteFunc(podNames(t, kc, s.ns, kube.AppLabel+"="+app), func(n string) bool {
		return slices.Contains(adoptedPods, n)
	})
	require.NotEmpty(t, teamSelects, "the team's Service selects v2's pods as well")
	assert.ElementsMatch(t, adoptedPods, endpointPods(t, kc, s.ns, ours), "our Service's endpoints: adopted pods only")
	for i := range 20 {
		pod, version, err := servedBy(s, adopted)
		require.NoError(t, err)
		assert.Contains(t, adoptedPods, pod, "pinned request %d reached an adopted pod (version %q)", i, version)
	}
	assert.ElementsMatch(t, before, readyPods(t, kc, s.ns, kube.AppLabel+"="+app+","+kube.VersionLabel+"!=v2"),
		"still no adopted pod restarted")

	// Expiry: scaled to 0, never deleted; our Service goes; the team's stays.
	s.update(adopted, workflows.UpdateExpire, registry.Actor{Type: registry.ActorUser, Name: "alice"})
	s.eventually(30*time.Second, "the adopted Deployment scaled to 0", func() (bool, string) {
		d, err := kc.AppsV1().Deployments(s.ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return *d.Spec.Replicas == 0, fmt.Sprint(*d.Spec.Replicas)
	})
	s.eventually(30*time.Second, "our Service deleted", func() (bool, string) {
		_, err := kc.CoreV1().Services(s.ns).Get(ctx, ours, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	got, err := kc.CoreV1().Services(s.ns).Get(ctx, app, metav1.GetOptions{})
	require.NoError(t, err, "the team's Service is not deleted")
	assert.Equal(t, team.Spec.Selector, got.Spec.Selector, "and not changed")
	assert.Equal(t, team.UID, got.UID)
	assert.Contains(t, auditEvents(t, s.reg, s.ref(adopted)), "scaled-to-zero")
	assert.Equal(t, registry.Active, s.state("v2").State)
}

// deployLabelled deploys version of app the usual way (Deployment and Service labelled
// plt.dev/version, the test's hostname on the pods) and leaves its start to detection.
func deployLabelled(t *testing.T, s *stack, version string) {
	t.Helper()
	name := app + "-" + version
	lbl := map[string]string{kube.AppLabel: app, kube.VersionLabel: version}
	tmpl := map[string]string{kube.AppLabel: app, kube.VersionLabel: version, detect.LabelHostname: s.host()}
	_, err := s.kube.Kube.AppsV1().Deployments(s.ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tmpl, Annotations: map[string]string{"skewguard.dev/launch": "echo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "echo:" + version,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = s.kube.Kube.CoreV1().Services(s.ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec: corev1.ServiceSpec{Selector: lbl,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// readyPods returns the UIDs of the Ready, not terminating, pods the selector picks.
func readyPods(t *testing.T, kc kubernetes.Interface, ns, selector string) []types.UID {
	t.Helper()
	pods, err := kc.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	var out []types.UID
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && detect.Ready(&p) {
			out = append(out, p.UID)
		}
	}
	return out
}

// podNames returns the names of the live pods the selector picks.
func podNames(t *testing.T, kc kubernetes.Interface, ns, selector string) []string {
	t.Helper()
	pods, err := kc.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	return out
}

// endpointPods names the pods behind Service svc's EndpointSlices.
func endpointPods(t *testing.T, kc kubernetes.Interface, ns, svc string) []string {
	t.Helper()
	list, err := kc.DiscoveryV1().EndpointSlices(ns).List(t.Context(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	require.NoError(t, err)
	var out []string
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				out = append(out, ep.TargetRef.Name)
			}
		}
	}
	return out
}

// servedBy asks the Gateway for the app pinned to version by cookie and returns the pod (and
// the version it names) that answered.
func servedBy(s *stack, version string) (pod, answered string, err error) {
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.gateway+"/", nil)
	if err != nil {
		return "", "", err
	}
	req.Host = s.host()
	req.Header.Set("Cookie", "__plt_dpl="+version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var body struct {
		Version string `json:"version"`
		Pod     string `json:"pod"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Pod, body.Version, err
}
