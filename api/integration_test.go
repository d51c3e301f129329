//go:build integration

package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"go.temporal.io/sdk/client"

	"github.com/skewguard/skewguard/internal/auth"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
	"github.com/skewguard/skewguard/workflows"
)

// cluster is a throwaway namespace on the stack's real API server.
type cluster struct {
	kube kubernetes.Interface
	ns   string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	ns := "sgapi-" + randomHex(4)
	ctx := context.Background()
	_, err = clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	// The controller-manager creates the default ServiceAccount shortly after the namespace.
	require.Eventually(t, func() bool {
		_, err := clients.Kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "default ServiceAccount of %s", ns)
	return &cluster{kube: clients.Kube, ns: ns}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *cluster) createPod(t *testing.T, name string, labels, annotations map[string]string, port int32) *corev1.Pod {
	t.Helper()
	pod, err := c.kube.CoreV1().Pods(c.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "app", Image: "skewguard/app:test",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return pod
}

func (c *cluster) createService(t *testing.T, name string, selector map[string]string, targetPort int32) {
	t.Helper()
	_, err := c.kube.CoreV1().Services(c.ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(targetPort)}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// boundToken requests a token of the default ServiceAccount bound to pod, as a kubelet does.
func (c *cluster) boundToken(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	tr, err := c.kube.CoreV1().ServiceAccounts(c.ns).CreateToken(context.Background(), "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: new(int64(600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// userToken creates a ServiceAccount and returns a token for it (an operator's identity).
func (c *cluster) userToken(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	_, err := c.kube.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	tr, err := c.kube.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// grantVersions binds a Role on versions.skewguard.dev with verbs to the ServiceAccount sa.
func (c *cluster) grantVersions(t *testing.T, sa string, verbs ...string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.kube.RbacV1().Roles(c.ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "versions-" + sa},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{auth.Group}, Resources: []string{auth.Resource}, Verbs: verbs}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.kube.RbacV1().RoleBindings(c.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "versions-" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "versions-" + sa},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: c.ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// registryLifecycle acts directly on the registry: the RBAC test is about who may act, not
// about the workflow (the workflows' own tests cover the Updates on the real stack).
type registryLifecycle struct{ store *registry.Store }

func (l registryLifecycle) PolicyChanged(context.Context, registry.VersionRef, registry.Actor) error {
	return nil
}

func (l registryLifecycle) Act(ctx context.Context, ref registry.VersionRef, action string, req workflows.ActionRequest) (workflows.ActionResult, error) {
	if action != workflows.UpdateExpire {
		return workflows.ActionResult{}, &workflows.RejectedError{Message: "only expire in this test"}
	}
	tr, err := l.store.Expire(ctx, ref, req.Actor, req.Reason)
	if err != nil {
		return workflows.ActionResult{}, &workflows.RejectedError{Message: err.Error()}
	}
	return workflows.ActionResult{State: tr.Version.State, Message: "expired"}, nil
}

// recordingStarter records the versions registrations start.
type recordingStarter struct {
	mu   sync.Mutex
	refs []registry.VersionRef
}

func (s *recordingStarter) StartVersion(_ context.Context, req detect.StartRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs = append(s.refs, req.Ref)
	return nil
}

func (s *recordingStarter) started() []registry.VersionRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]registry.VersionRef(nil), s.refs...)
}

// liveServer is the API on the real API server, registry and (optionally) Temporal.
type liveServer struct {
	*httptest.Server
	store  *registry.Store
	cache  *detect.Cache
	server *Server
	mu     sync.Mutex
	seen   []string // "METHOD path status" of every request
}

// hijackRecorder records a WebSocket upgrade when it happens, not when the connection ends.
type hijackRecorder struct {
	recorder
	hijacked bool
	onHijack func()
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	h.onHijack()
	return h.recorder.Hijack()
}

func (l *liveServer) requests() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

func startLive(t *testing.T, c *cluster, starter detect.Starter, lifecycle func(*registry.Store) Lifecycle) *liveServer {
	t.Helper()
	store := registrytest.New(t)
	cache, err := detect.NewCache(c.kube, []string{c.ns}, 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cache.Start(ctx)
	require.True(t, cache.WaitForSync(ctx))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	det := detect.NewDetector(detect.Options{Registry: store, Starter: starter, Lookup: cache, Enabled: true, Logger: log})
	srv, err := New(Options{
		Logger: log, Registry: store, Pods: cache, Detector: det, Lifecycle: lifecycle(store),
		Authenticator: auth.NewAuthenticator(c.kube, auth.AuthenticatorOptions{}),
		Authorizer:    auth.NewAuthorizer(c.kube, auth.AuthorizerOptions{}),
		Synced:        cache.HasSynced,
	})
	require.NoError(t, err)
	live := &liveServer{store: store, cache: cache, server: srv}
	h := srv.Handler()
	live.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record := func(status int) {
			live.mu.Lock()
			defer live.mu.Unlock()
			live.seen = append(live.seen, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, status))
		}
		rec := &hijackRecorder{recorder: recorder{ResponseWriter: w}, onHijack: func() { record(http.StatusSwitchingProtocols) }}
		h.ServeHTTP(rec, r)
		if !rec.hijacked {
			record(rec.status)
		}
	}))
	live.Start()
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = srv.Close(cctx)
		live.Close()
	})
	return live
}

func (l *liveServer) waitForPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	require.Eventually(t, func() bool {
		p, ok := l.cache.Pod(ns, name)
		pod = p
		return ok
	}, 30*time.Second, 20*time.Millisecond, "pod %s/%s in the informer cache", ns, name)
	return pod
}

func post(t *testing.T, url, token, body string) (int, Error, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "body: %s", raw)
	var e Error
	var m map[string]any
	if resp.StatusCode >= 400 {
		require.NoError(t, json.Unmarshal(raw, &e), "body: %s", raw)
	} else {
		require.NoError(t, json.Unmarshal(raw, &m), "body: %s", raw)
	}
	return resp.StatusCode, e, m
}

// TestRegistrationOnTheRealAPIServer: bound tokens, TokenReview and SubjectAccessReview as the
// real API server answers them.
func TestRegistrationOnTheRealAPIServer(t *testing.T) {
	c := newCluster(t)
	labels := map[string]string{detect.LabelApp: "web", detect.LabelVersion: "1"}
	podA := c.createPod(t, "web-v1-a", labels, nil, 8080)
	podB := c.createPod(t, "web-v1-b", labels, nil, 8080)
	c.createService(t, "web-v1", labels, 8080)
	starter := &recordingStarter{}
	live := startLive(t, c, starter, func(s *registry.Store) Lifecycle { return registryLifecycle{s} })
	live.waitForPod(t, c.ns, podA.Name)
	live.waitForPod(t, c.ns, podB.Name)
	tokenA := c.boundToken(t, podA)
	url := func(pod string) string { return live.URL + "/control-plane/pods/" + pod + "/instance" }

	t.Run("a bound token registers its own pod", func(t *testing.T) {
		status, _, body := post(t, url(podA.Name), tokenA, `{"podId":"web-v1-a","apiVersion":"v3"}`)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, detect.ApplicationID(c.ns, "web"), body["applicationId"])
		assert.Equal(t, "1", body["deploymentVersion"])
		assert.Equal(t, []registry.VersionRef{{Namespace: c.ns, App: "web", Label: "1"}}, starter.started())
	})
	t.Run("and is refused for another pod", func(t *testing.T) {
		status, e, _ := post(t, url(podB.Name), tokenA, `{}`)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, CodePodMismatch, e.Code)
	})
	t.Run("no token", func(t *testing.T) {
		status, e, _ := post(t, url(podA.Name), "", `{}`)
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, CodeUnauthenticated, e.Code)
	})
	t.Run("a forged token", func(t *testing.T) {
		forged := tokenA[:strings.LastIndexByte(tokenA, '.')+1] + "c2lnbmF0dXJl"
		status, e, _ := post(t, url(podA.Name), forged, `{}`)
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, CodeUnauthenticated, e.Code)
	})
	t.Run("malformed JSON", func(t *testing.T) {
		status, e, _ := post(t, url(podA.Name), tokenA, `{"podId":`)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Equal(t, CodeInvalidJSON, e.Code)
	})
	t.Run("unknown pod", func(t *testing.T) {
		status, e, _ := post(t, url("ghost"), tokenA, `{}`)
		assert.Equal(t, http.StatusNotFound, status)
		assert.Equal(t, CodePodNotFound, e.Code)
	})
	t.Run("a token that is not bound to a pod", func(t *testing.T) {
		status, e, _ := post(t, url(podA.Name), c.userToken(t, "ci"), `{}`)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, CodeNotPodToken, e.Code)
	})
	t.Run("a deleted pod's token stops working", func(t *testing.T) {
		tokenB := c.boundToken(t, podB)
		require.NoError(t, c.kube.CoreV1().Pods(c.ns).Delete(context.Background(), podB.Name, metav1.DeleteOptions{}))
		require.Eventually(t, func() bool {
			_, err := c.kube.CoreV1().Pods(c.ns).Get(context.Background(), podB.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, 30*time.Second, 50*time.Millisecond)
		status, _, _ := post(t, url(podB.Name), tokenB, `{}`)
		assert.Equal(t, http.StatusUnauthorized, status)
	})

	t.Run("RBAC decides who may expire", func(t *testing.T) {
		ctx := context.Background()
		ref := registry.VersionRef{Namespace: c.ns, App: "web", Label: "1"}
		_, _, err := live.store.ObserveVersion(ctx, registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80}},
			registry.Actor{Type: registry.ActorPod, ID: "test"})
		require.NoError(t, err)
		denied := c.userToken(t, "dev")
		allowed := c.userToken(t, "ops")
		c.grantVersions(t, "ops", "get", "list", "update")
		c.grantVersions(t, "dev", "get", "list")
		expire := live.URL + "/api/v1/apps/" + c.ns + "/web/versions/1/expire"

		status, e, _ := post(t, expire, denied, `{"reason":"not mine to do"}`)
		assert.Equal(t, http.StatusForbidden, status)
		assert.Equal(t, CodeForbidden, e.Code)
		v, err := live.store.GetVersion(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, registry.Pending, v.State, "a denied call changes nothing")

		// RBAC objects reach the authorizer's cache quickly, but not instantly.
		require.Eventually(t, func() bool {
			status, _, _ := post(t, expire, allowed, `{"reason":"cleanup"}`)
			return status == http.StatusOK
		}, 10*time.Second, 200*time.Millisecond)
		v, err = live.store.GetVersion(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, registry.Expired, v.State)
		audit, err := live.store.Audit(ctx, ref)
		require.NoError(t, err)
		last := audit[len(audit)-1]
		assert.Equal(t, "system:serviceaccount:"+c.ns+":ops", last.Actor.ID)
		assert.Equal(t, "cleanup", last.Reason)
	})
}

// TestRealAgentRegisters runs a real Watt app wrapped by @platformatic/watt-extra in a pod (the
// launcher's watt program) against this API with authentication on, and checks the whole
// protocol: init, WebSocket subscribe/ack, state, and PLT_DEPLOYMENT_VERSION in the workers.
func TestRealAgentRegisters(t *testing.T) {
	installWatt(t)
	c := newCluster(t)
	tc, err := client.Dial(client.Options{
		HostPort:  testenv.Get(t, testenv.TemporalAddr),
		Namespace: envOr("TEMPORAL_NAMESPACE", "default"),
	})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	// A task queue nobody polls: the test checks that registration starts the workflow, the
	// workflows' own tests cover what it then does.
	temporal := workflows.NewClient(tc, "sgapi-test-"+randomHex(4), 0)
	live := startLive(t, c, temporal, func(*registry.Store) Lifecycle { return temporal })

	labels := map[string]string{detect.LabelApp: "wattapp", detect.LabelVersion: "7"}
	c.createService(t, "wattapp-v7", labels, 3042)
	pod := c.createPod(t, "wattapp-v7-x1", labels, map[string]string{
		"skewguard.dev/launch":  "watt",
		"skewguard.dev/icc-url": live.URL,
	}, 3042)
	ref := registry.VersionRef{Namespace: c.ns, App: "wattapp", Label: "7"}
	t.Cleanup(func() {
		_ = tc.TerminateWorkflow(context.Background(), workflows.WorkflowID(ref), "", "test over")
	})

	// The launcher starts the app once the pod runs; Watt needs 5-30 s on a busy machine.
	var answer struct {
		Pod               string  `json:"pod"`
		Version           string  `json:"version"`
		DeploymentVersion *string `json:"deploymentVersion"`
	}
	require.Eventually(t, func() bool {
		p, err := c.kube.CoreV1().Pods(c.ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil || p.Status.PodIP == "" || !detect.Ready(p) {
			return false
		}
		resp, err := http.Get("http://" + net.JoinHostPort(p.Status.PodIP, "3042") + "/version")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&answer) == nil
	}, 4*time.Minute, time.Second, "the Watt app of pod %s never answered; see .stack/pods/%s_%s.log", pod.Name, c.ns, pod.Name)
	assert.Equal(t, pod.Name, answer.Pod, "watt-extra's pod id is the hostname")
	require.NotNil(t, answer.DeploymentVersion, "PLT_DEPLOYMENT_VERSION is unset in the app's worker")
	assert.Equal(t, "7", *answer.DeploymentVersion, "PLT_DEPLOYMENT_VERSION equals the version label")

	// The state report comes only after the WebSocket subscription was acknowledged.
	require.Eventually(t, func() bool {
		p, err := live.store.GetPod(context.Background(), pod.Name)
		return err == nil && len(p.Metadata) > 0
	}, time.Minute, 200*time.Millisecond, "the agent never reported its state; requests seen: %v", live.requests())
	reqs := live.requests()
	assert.Contains(t, reqs, "POST /control-plane/pods/"+pod.Name+"/instance 200")
	assert.Contains(t, reqs, "GET /api/updates/applications/"+detect.ApplicationID(c.ns, "wattapp")+" 101")
	assert.Contains(t, reqs, "POST /control-plane/pods/"+pod.Name+"/instance/state 200")
	for _, r := range reqs {
		assert.NotRegexp(t, ` (4|5)\d\d$`, r, "the agent never met an error")
	}
	var state struct {
		Metadata struct {
			PlatformaticVersion string `json:"platformaticVersion"`
		} `json:"metadata"`
	}
	p, err := live.store.GetPod(context.Background(), pod.Name)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(p.Metadata, &state))
	assert.NotEmpty(t, state.Metadata.PlatformaticVersion)

	desc, err := tc.DescribeWorkflowExecution(context.Background(), workflows.WorkflowID(ref), "")
	require.NoError(t, err, "registration started the version's workflow")
	assert.Equal(t, workflows.WorkflowType, desc.GetWorkflowExecutionInfo().GetType().GetName())
}

// installWatt runs hack/setup-watt.sh, a no-op once installed.
func installWatt(t *testing.T) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "hack", "setup-watt.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script).CombinedOutput()
	require.NoError(t, err, "hack/setup-watt.sh: %s", out)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
