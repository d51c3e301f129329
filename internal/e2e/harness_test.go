//go:build integration

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/internal/deploytest/charttest"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

// binary is the skewguard binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skewguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "skewguard")
	build := exec.Command("go", "build", "-o", binary, "github.com/skewguard/skewguard/cmd/skewguard")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build skewguard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is what a test needs of the real API server.
type cluster struct {
	kube kubernetes.Interface
	gw   gatewayclient.Interface
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	cfg.QPS, cfg.Burst = 100, 200
	return &cluster{kube: kubernetes.NewForConfigOrDie(cfg), gw: gatewayclient.NewForConfigOrDie(cfg)}
}

// namespace creates a fresh namespace for one test and deletes it afterwards.
func (c *cluster) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := c.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// appVersion is one version of a test app: a Deployment and a Service whose pods the stack's launcher
// runs as the echo backend, which answers with its version.
type appVersion struct {
	Namespace, App, Version, Hostname string
	Replicas                          int32
	// Path, when set, is the version's path prefix: the pods' plt.dev/path annotation (a label
	// value cannot hold a slash).
	Path string
	// Launch names the launcher program the pods run; empty runs the echo backend. A name the
	// launcher does not know leaves the pods Running but never Ready (nothing is started).
	Launch string
	// Env is added to the pods' container environment (ECHO_START_DELAY delays the echo backend).
	Env map[string]string
	// Group, when set, is the version's app group (the plt.dev/group label).
	Group string
}

func (v appVersion) name() string {
	return v.App + "-v" + strings.NewReplacer(".", "-", "_", "-").Replace(strings.ToLower(v.Version))
}

func (v appVersion) env() []corev1.EnvVar {
	var env []corev1.EnvVar
	for _, k := range slices.Sorted(maps.Keys(v.Env)) {
		env = append(env, corev1.EnvVar{Name: k, Value: v.Env[k]})
	}
	return env
}

func (v appVersion) labels() map[string]string {
	l := map[string]string{"app.kubernetes.io/name": v.App, "plt.dev/version": v.Version}
	if v.Hostname != "" {
		l["plt.dev/hostname"] = v.Hostname
	}
	if v.Group != "" {
		l["plt.dev/group"] = v.Group
	}
	return l
}

func (v appVersion) podAnnotations() map[string]string {
	launch := v.Launch
	if launch == "" {
		launch = "echo"
	}
	a := map[string]string{launchAnnotation: launch}
	if v.Path != "" {
		a["plt.dev/path"] = v.Path
	}
	return a
}

// deploy applies the version's Deployment and Service, as `kubectl apply` of a user's manifest would.
func (c *cluster) deploy(t testing.TB, v appVersion) {
	t.Helper()
	ctx := context.Background()
	replicas := v.Replicas
	if replicas == 0 {
		replicas = 1
	}
	selector := map[string]string{"app.kubernetes.io/name": v.App, "plt.dev/version": v.Version}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: v.name(), Namespace: v.Namespace, Labels: v.labels()},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: v.labels(), Annotations: v.podAnnotations()},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "echo", Env: v.env(),
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	_, err := c.kube.AppsV1().Deployments(v.Namespace).Create(ctx, dep, metav1.CreateOptions{})
	require.NoError(t, err)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: v.name(), Namespace: v.Namespace, Labels: v.labels()},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	_, err = c.kube.CoreV1().Services(v.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
}

// waitPodsReady waits until the version's Deployment has as many pods as it wants replicas and
// every one of them is Ready (the launcher's echo backend answering).
func (c *cluster) waitPodsReady(t testing.TB, v appVersion, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, timeout, "pods of "+v.name()+" Ready", func() (bool, string) {
		dep, err := c.kube.AppsV1().Deployments(v.Namespace).Get(ctx, v.name(), metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		pods, err := c.kube.CoreV1().Pods(v.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=" + v.App + ",plt.dev/version=" + v.Version,
		})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
		}
		return ready == int(want) && len(pods.Items) == int(want), fmt.Sprintf("%d of %d pods Ready, want %d", ready, len(pods.Items), want)
	})
}

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// launchAnnotation tells the stack's pod launcher which local program a pod runs.
const launchAnnotation = "skewguard.dev/launch"

// skewguard is one running skewguard process (`skewguard serve`).
type skewguard struct {
	t      testing.TB
	env    []string
	url    string
	cmd    *exec.Cmd
	done   chan error
	logMu  sync.Mutex
	logBuf strings.Builder
}

// settings are the environment a test gives skewguard on top of the stack's.
type settings map[string]string

// baseSettings returns fast lifecycle durations and the stack's connections for one namespace.
func baseSettings(t testing.TB, ns, databaseURL string) settings {
	t.Helper()
	return settings{
		"DATABASE_URL":                    databaseURL,
		"TEMPORAL_ADDRESS":                testenv.Get(t, testenv.TemporalAddr),
		"KUBECONFIG":                      testenv.Get(t, testenv.Kubeconfig),
		"PROMETHEUS_URL":                  testenv.Get(t, testenv.PrometheusURL),
		"PLT_FEATURE_SKEW_PROTECTION":     "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS":    testenv.Get(t, testenv.GatewayRef),
		"PLT_SKEW_NAMESPACES":             ns,
		"PLT_SKEW_TASK_QUEUE":             "e2e-" + ns,
		"PLT_SKEW_TRAFFIC_PRESET":         "traefik",
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS":   "2000",
		"PLT_SKEW_TRAFFIC_WINDOW_MS":      "3000",
		"PLT_SKEW_CHECK_INTERVAL_MS":      "1000", // the minimum (internal/bounds)
		"PLT_SKEW_HTTP_MAX_ALIVE_MS":      "600000",
		"PLT_SKEW_INSECURE_SKIP_API_AUTH": "true",
		"PLT_SKEW_LOG_FORMAT":             "text",
	}
}

// startSkewguard runs `skewguard serve` and waits until it is ready. It authenticates to Kubernetes as
// the Helm chart's ServiceAccount, bound to the chart's RBAC rendered for the same settings (namespaced
// Roles when the test limits PLT_SKEW_NAMESPACES), so every end-to-end test also proves that the
// chart grants what a full lifecycle needs.
func startSkewguard(t testing.TB, s settings) *skewguard {
	t.Helper()
	args := []string{
		"--set", "services.icc.features.skew_protection.enable=" + orFalse(s["PLT_FEATURE_SKEW_PROTECTION"]),
		"--set", "services.icc.skew_protection.auto_cleanup=" + orFalse(s["PLT_SKEW_AUTO_CLEANUP"]),
		"--set", "gateway.parentRefs[0].namespace=skewguard-system", "--set", "gateway.parentRefs[0].name=gw",
	}
	if ns := s["PLT_SKEW_NAMESPACES"]; ns != "" {
		// Limited namespaces: the chart's namespaced Roles, and only claim checks cluster-wide.
		args = append(args, "--set", "config.namespaces={"+ns+"}")
	}
	// The chart's claims allowlist lets each watched namespace claim any host and path (a test
	// that means to refuse claims gives claimsAllow its own entries).
	allow := s.claimsAllow()
	for i, ns := range allow {
		args = append(args, "--set", fmt.Sprintf("claims.allow[%d].namespace=%s", i, ns),
			"--set-string", fmt.Sprintf("claims.allow[%d].hosts[0]=*", i), "--set", fmt.Sprintf("claims.allow[%d].paths[0]=/", i))
	}
	rbac := charttest.InstallRBAC(t, 2*time.Hour, args...)
	s["KUBECONFIG"] = rbac.Kubeconfig
	s["PLT_SKEW_CLAIMS_CONFIGMAP"] = rbac.ClaimsConfigMap
	addr := freeAddr(t)
	s["PLT_SKEW_LISTEN_ADDRESS"] = addr
	env := os.Environ()
	for k, v := range s {
		env = append(env, k+"="+v)
	}
	sg := &skewguard{t: t, env: env, url: "http://" + addr}
	sg.start()
	t.Cleanup(sg.stop)
	return sg
}

func (s *skewguard) start() { s.startRole("serve") }

// startRole runs `skewguard <role>` (serve, api or worker) with the process's settings and waits
// until its /readyz answers 200. Log lines of a role other than serve are prefixed with it.
func (s *skewguard) startRole(role string) {
	s.t.Helper()
	prefix, name := "", "skewguard"
	if role != "serve" {
		prefix, name = role+": ", "skewguard "+role
	}
	cmd := exec.Command(binary, role)
	cmd.Env = s.env
	out, err := cmd.StdoutPipe()
	require.NoError(s.t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(s.t, cmd.Start())
	s.cmd, s.done = cmd, make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			s.logMu.Lock()
			s.logBuf.WriteString(prefix + sc.Text() + "\n")
			s.logMu.Unlock()
		}
		s.done <- cmd.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.done:
			s.t.Fatalf("%s exited before it was ready: %v\n%s", name, err, s.logs())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not ready at %s after 60s\n%s", name, s.url, s.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restart stops the process with SIGTERM and starts it again with the same settings.
func (s *skewguard) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *skewguard) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("skewguard did not stop within 30s of SIGTERM")
	}
	if s.t.Failed() {
		s.t.Logf("skewguard logs:\n%s", s.logs())
	}
	s.cmd = nil
}

// cli runs a CLI subcommand of the binary against this process's API and returns its output.
func (s *skewguard) cli(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SKEWGUARD_URL="+s.url)
	out, err := cmd.CombinedOutput()
	require.NoError(s.t, err, "skewguard %s: %s", strings.Join(args, " "), out)
	return string(out)
}

func (s *skewguard) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.logBuf.String()
}

// claimsAllowKey, in settings, lists (comma separated) the namespaces the chart's claims
// allowlist lets claim any host and path; unset, the watched namespaces (PLT_SKEW_NAMESPACES).
// It is not passed to skewguard.
const claimsAllowKey = "e2e.claimsAllow"

func (s settings) claimsAllow() []string {
	v, ok := s[claimsAllowKey]
	if !ok {
		v = s["PLT_SKEW_NAMESPACES"]
	}
	delete(s, claimsAllowKey)
	var out []string
	for _, ns := range strings.Split(v, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

func orFalse(v string) string {
	if v == "" {
		return "false"
	}
	return v
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// newDatabase returns a fresh, migrated database and a registry store on it for the test's own reads.
func newDatabase(t testing.TB) (string, *registry.Store) {
	t.Helper()
	url := registrytest.NewURL(t)
	st, err := registry.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return url, st
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitState waits until the newest life of a version is in state want.
func waitState(t testing.TB, st *registry.Store, ref registry.VersionRef, want registry.State, timeout time.Duration) registry.Version {
	t.Helper()
	var v registry.Version
	waitFor(t, timeout, fmt.Sprintf("%s to be %s", ref, want), func() (bool, string) {
		var err error
		v, err = st.GetVersion(context.Background(), ref)
		if err != nil {
			return false, err.Error()
		}
		return v.State == want, string(v.State)
	})
	return v
}

// gateway sends requests to Traefik's web entrypoint.
type gateway struct {
	base   string
	client *http.Client
}

func newGateway(t testing.TB) *gateway {
	t.Helper()
	return &gateway{
		base: testenv.Get(t, testenv.GatewayURL),
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 100},
		},
	}
}

// reply is what the gateway answered.
type reply struct {
	Status    int
	Version   string // X-Skewguard-Version of the backend that served it ("" if none)
	SetCookie []string
}

// pinCookie returns the value the reply's Set-Cookie pins for cookie name, if any.
func (r reply) pinCookie(name string) (string, bool) {
	for _, c := range r.SetCookie {
		first, _, _ := strings.Cut(c, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(first), "=")
		if ok && k == name {
			return v, true
		}
	}
	return "", false
}

// get sends GET path with Host host; mutate may add cookies, headers or a query.
func (g *gateway) get(host, path string, mutate func(*http.Request)) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, g.base+path, nil)
	if err != nil {
		return reply{}, err
	}
	req.Host = host
	if mutate != nil {
		mutate(req)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return reply{Status: resp.StatusCode, Version: resp.Header.Get("X-Skewguard-Version"), SetCookie: resp.Header.Values("Set-Cookie")}, nil
}

// waitServed waits until an anonymous request to host is served by version want.
func (g *gateway) waitServed(t testing.TB, host, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("new visitors of %s served by %s", host, want), func() (bool, string) {
		r, err := g.get(host, "/", nil)
		if err != nil {
			return false, err.Error()
		}
		return r.Status == http.StatusOK && r.Version == want, fmt.Sprintf("status %d version %q", r.Status, r.Version)
	})
}

func withCookie(header string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Add("Cookie", header) }
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
