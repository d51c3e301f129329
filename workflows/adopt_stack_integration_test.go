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
	"strings"
	"sync"
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
	"k8s.io/apimachinery/pkg/watch"
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
	team, before, ours := adoptRunning(t, s, adopted)
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

// TestAdoptedDeploymentRolledInPlaceKeepsItsPods: the team rolls the adopted Deployment in place
// with the same image and a new pod template (an env var added). The version is the same (its
// name comes from the image), so it stays Active and follows the Deployment: our Service moves
// to the new pod template when its first pod is Ready (audited), while the rollout still keeps
// old pods, so our Service's EndpointSlices never run out of Ready endpoints, and requests
// through Traefik, pinned or not, reach the new pods once the old ones are gone. (Before the
// fix our Service kept selecting the old template and ended without endpoints: every request
// of the Active version got 503.)
func TestAdoptedDeploymentRolledInPlaceKeepsItsPods(t *testing.T) {
	s := newStack(t, nil)
	const adopted = "v1.5.0"
	t.Cleanup(func() {
		_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(adopted)), "", "test done")
	})
	kc := s.kube.Kube
	ctx := t.Context()
	_, _, ours := adoptRunning(t, s, adopted)
	svc, err := kc.CoreV1().Services(s.ns).Get(ctx, ours, metav1.GetOptions{})
	require.NoError(t, err)
	oldHash := svc.Spec.Selector[kube.PodTemplateHashLabel]
	require.NotEmpty(t, oldHash)
	for _, pin := range []string{"", adopted} {
		s.eventually(30*time.Second, fmt.Sprintf("the gateway serves the adopted pods (pin %q)", pin), func() (bool, string) {
			_, err := servedByPin(s, pin)
			return err == nil, fmt.Sprint(err)
		})
	}

	// Every state of our Service's EndpointSlices from now on, as the API server sends them.
	readyCounts := watchReadyEndpoints(t, kc, s.ns, ours)

	// The rollout: same image, one env var more. Two replicas: at most one pod surges and none
	// is unavailable, so an old pod goes only when a new one is Ready.
	_, err = kc.AppsV1().Deployments(s.ns).Patch(ctx, app, types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"GREETING","value":"hello"}]}]}}}}`),
		metav1.PatchOptions{})
	require.NoError(t, err)
	var newHash string
	s.eventually(90*time.Second, "the rollout done: two Ready pods of the new template, no old pod left", func() (bool, string) {
		pods, err := kc.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: kube.AppLabel + "=" + app})
		if err != nil {
			return false, err.Error()
		}
		ready, hashes := 0, map[string]int{}
		for _, p := range pods.Items {
			h := p.Labels[kube.PodTemplateHashLabel]
			hashes[h]++
			if h != oldHash && p.DeletionTimestamp == nil && detect.Ready(&p) {
				ready, newHash = ready+1, h
			}
		}
		return ready == 2 && len(hashes) == 1, fmt.Sprint(hashes)
	})
	newPods := podNames(t, kc, s.ns, kube.AppLabel+"="+app)
	s.eventually(30*time.Second, "our Service's endpoints: the new pods", func() (bool, string) {
		got := endpointPods(t, kc, s.ns, ours)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(newPods))
		return slices.Equal(got, want), fmt.Sprint(got)
	})
	svc, err = kc.CoreV1().Services(s.ns).Get(ctx, ours, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{kube.AppLabel: app, kube.PodTemplateHashLabel: newHash}, svc.Spec.Selector,
		"our Service follows the Deployment's new template")
	counts := readyCounts()
	t.Logf("Ready endpoints of %s after each EndpointSlice change: %v", ours, counts)
	require.NotEmpty(t, counts)
	assert.NotContains(t, counts, 0, "our Service never had zero Ready endpoints during the rollout: %v", counts)

	assert.Equal(t, registry.Active, s.state(adopted).State, "the same version, still Active")
	v, err := s.reg.GetVersion(ctx, s.ref(adopted))
	require.NoError(t, err)
	assert.Equal(t, 1, v.Life, "no new life")
	assert.Equal(t, ours, v.ServiceName)
	assert.Contains(t, auditEvents(t, s.reg, s.ref(adopted)), detect.AuditTemplateFollowed)
	s.waitRouting(routing{Default: ours})
	for _, pin := range []string{"", adopted} {
		s.eventually(30*time.Second, fmt.Sprintf("the gateway serves the new pods (pin %q)", pin), func() (bool, string) {
			pod, err := servedByPin(s, pin)
			return err == nil && slices.Contains(newPods, pod), fmt.Sprint(pod, err)
		})
	}
	for i := range 10 {
		for _, pin := range []string{"", adopted} {
			pod, err := servedByPin(s, pin)
			require.NoError(t, err, "request %d pinned to %q", i, pin)
			assert.Contains(t, newPods, pod, "request %d pinned to %q reached a new pod", i, pin)
		}
	}
}

// TestAdoptedDeploymentRolledToANewImageExpiresTheOldVersion: the team rolls the adopted
// Deployment in place to a new image. The new pods are adopted as a new version, which becomes
// Active; the old version is Draining, but the rollout removes its pods, so a request pinned to
// it could only get a 503 until it expired. It is expired at once instead (well within its
// two-minute grace period, with the reason in the audit trail), so pinned requests fall back to
// the Active version; the team's Deployment, running the new version, is not scaled down.
func TestAdoptedDeploymentRolledToANewImageExpiresTheOldVersion(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "120000"})
	const adopted, next = "v1.6.0", "v1.7.0"
	t.Cleanup(func() {
		for _, v := range []string{adopted, next} {
			_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(v)), "", "test done")
		}
	})
	kc := s.kube.Kube
	ctx := t.Context()
	adoptRunning(t, s, adopted)

	rolledAt := time.Now()
	_, err := kc.AppsV1().Deployments(s.ns).Patch(ctx, app, types.StrategicMergePatchType,
		[]byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"echo:`+next+`"}]}}}}`),
		metav1.PatchOptions{})
	require.NoError(t, err)
	s.eventually(60*time.Second, "the new image adopted and Active", func() (bool, string) {
		v, err := s.reg.GetVersion(ctx, s.ref(next))
		if err != nil {
			return false, err.Error()
		}
		return v.State == registry.Active, string(v.State)
	})
	s.eventually(60*time.Second, "the old adopted version expired", func() (bool, string) {
		v, err := s.reg.GetVersion(ctx, s.ref(adopted))
		require.NoError(t, err)
		return v.State == registry.Expired, string(v.State)
	})
	t.Logf("the old adopted version expired %s after the rollout began (grace period 120s)", time.Since(rolledAt).Round(time.Millisecond))
	assert.Less(t, time.Since(rolledAt), 120*time.Second, "expired before its grace period ended")
	trail, err := s.reg.Audit(ctx, s.ref(adopted))
	require.NoError(t, err)
	var reasons []string
	for _, e := range trail {
		reasons = append(reasons, e.Reason)
	}
	assert.Condition(t, func() bool {
		return slices.ContainsFunc(reasons, func(r string) bool {
			return strings.Contains(r, "adopted pods gone: Deployment "+app+" rolled in place from pod template")
		})
	}, "the expiry says why: %q", reasons)

	s.eventually(30*time.Second, "the rollout done", func() (bool, string) {
		pods := podNames(t, kc, s.ns, kube.AppLabel+"="+app)
		return len(readyPods(t, kc, s.ns, kube.AppLabel+"="+app)) == 2 && len(pods) == 2, fmt.Sprint(pods)
	})
	newPods := podNames(t, kc, s.ns, kube.AppLabel+"="+app)
	theirs, err := kube.AdoptedServiceName(app, next)
	require.NoError(t, err)
	s.waitRouting(routing{Default: theirs})
	s.eventually(30*time.Second, "a request pinned to the expired version reaches the Active one", func() (bool, string) {
		pod, err := servedByPin(s, adopted)
		return err == nil && slices.Contains(newPods, pod), fmt.Sprint(pod, err)
	})
	for i := range 10 {
		pod, err := servedByPin(s, adopted)
		require.NoError(t, err, "request %d pinned to the expired version", i)
		assert.Contains(t, newPods, pod)
	}
	d, err := kc.AppsV1().Deployments(s.ns).Get(ctx, app, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(2), *d.Spec.Replicas, "the Deployment runs the new version: not scaled down")
}

// watchReadyEndpoints watches the EndpointSlices of Service svc and returns a function that
// reports the number of Ready endpoints after each change seen so far (starting with the state
// when the watch began).
func watchReadyEndpoints(t *testing.T, kc kubernetes.Interface, ns, svc string) func() []int {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc}
	list, err := kc.DiscoveryV1().EndpointSlices(ns).List(t.Context(), sel)
	require.NoError(t, err)
	ready := func(sl *discoveryv1.EndpointSlice) int {
		n := 0
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n++
			}
		}
		return n
	}
	slicesNow := map[string]int{}
	for i := range list.Items {
		slicesNow[list.Items[i].Name] = ready(&list.Items[i])
	}
	total := func() int {
		n := 0
		for _, c := range slicesNow {
			n += c
		}
		return n
	}
	sel.ResourceVersion = list.ResourceVersion
	w, err := kc.DiscoveryV1().EndpointSlices(ns).Watch(t.Context(), sel)
	require.NoError(t, err)
	var mu sync.Mutex
	counts := []int{total()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			sl, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			mu.Lock()
			if ev.Type == watch.Deleted {
				delete(slicesNow, sl.Name)
			} else {
				slicesNow[sl.Name] = ready(sl)
			}
			counts = append(counts, total())
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return func() []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(counts)
	}
}

// servedByPin asks the Gateway for the app, pinned to pin by cookie unless empty, and returns
// the pod that answered.
func servedByPin(s *stack, pin string) (string, error) {
	if pin != "" {
		pod, _, err := servedBy(s, pin)
		return pod, err
	}
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, s.gateway+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = s.host()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var body struct {
		Pod string `json:"pod"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Pod, err
}

// adoptRunning runs app as a team does today (one Deployment of image echo:<adopted>, two
// replicas, without plt.dev/version, behind a Service selecting every pod of the app), starts
// detection as the api role runs it (the pod watch, with adoption), annotates the Deployment
// plt.dev/adopt=true and waits for the adopted version to be Active and routed through our
// Service. It returns the team's Service, the adopted pods' UIDs and our Service's name.
func adoptRunning(t *testing.T, s *stack, adopted string) (team *corev1.Service, before []types.UID, ours string) {
	t.Helper()
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
	team, err = kc.CoreV1().Services(s.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: corev1.ServiceSpec{Selector: map[string]string{kube.AppLabel: app},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	s.eventually(60*time.Second, "two Ready pods of the unlabelled Deployment", func() (bool, string) {
		before = readyPods(t, kc, s.ns, kube.AppLabel+"="+app)
		return len(before) == 2, fmt.Sprint(before)
	})

	// Detection as the api role runs it: the pod watch, with adoption.
	cache, err := detect.NewCache(kc, []string{s.ns}, 0)
	require.NoError(t, err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	det := detect.NewDetector(detect.Options{Registry: s.reg, Lookup: cache, Enabled: true, Logger: quiet,
		Starter: workflows.NewClient(s.temporal, s.cfg.TaskQueue, 0), Adopter: kube.Workloads{Client: kc}, Audit: s.reg.AppendAudit})
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
	ours, err = kube.AdoptedServiceName(app, adopted)
	require.NoError(t, err)
	v, err := s.reg.GetVersion(ctx, s.ref(adopted))
	require.NoError(t, err)
	assert.Equal(t, ours, v.ServiceName, "the version's backend is our Service")
	assert.Equal(t, app, v.AdoptedDeployment, "the registry records which Deployment was adopted")
	s.waitRouting(routing{Default: ours})
	assert.ElementsMatch(t, before, readyPods(t, kc, s.ns, kube.AppLabel+"="+app), "no pod restarted")
	return team, before, ours
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
