//go:build integration

package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/internal/testenv"
)

const (
	labelApp     = "app.kubernetes.io/name"
	labelVersion = "plt.dev/version"
)

// eventually polls cond every 100 ms until it reports done, failing the test at the deadline
// with the last reason cond gave.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

type kube struct {
	core    kubernetes.Interface
	gateway gatewayclient.Interface
}

func newKube(t testing.TB) kube {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err, "load the stack's kubeconfig")
	core, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	gw, err := gatewayclient.NewForConfig(cfg)
	require.NoError(t, err)
	return kube{core: core, gateway: gw}
}

// namespace creates a fresh namespace, deleted when the test ends.
func (k kube) namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "-" + randomSuffix(t)
	_, err := k.core.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err, "create namespace %s", name)
	t.Cleanup(func() {
		_ = k.core.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// deployVersion applies the Deployment and Service of one app version, the way users do:
// <app>-v<version>, labelled with the app and the version, running the echo backend.
func (k kube) deployVersion(t testing.TB, ns, app, version string, replicas int32) string {
	t.Helper()
	name := app + "-v" + version
	labels := map[string]string{labelApp: app, labelVersion: version}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "skewguard/echo:" + version,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	ctx := context.Background()
	_, err := k.core.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	require.NoError(t, err, "create Deployment %s/%s", ns, name)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	_, err = k.core.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err, "create Service %s/%s", ns, name)
	return name
}

// readyPods waits until the Deployment's pods are exactly n, all Ready with an IP, and returns them.
func (k kube) readyPods(t testing.TB, ns, app, version string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	sel := fmt.Sprintf("%s=%s,%s=%s", labelApp, app, labelVersion, version)
	eventually(t, 60*time.Second, fmt.Sprintf("%d Ready pods of %s", n, sel), func() (bool, string) {
		list, err := k.core.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err.Error()
		}
		pods = list.Items
		if len(pods) != n {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		for _, p := range pods {
			if p.Status.PodIP == "" || !isReady(p) {
				return false, fmt.Sprintf("pod %s: phase %s, ip %q, ready %v", p.Name, p.Status.Phase, p.Status.PodIP, isReady(p))
			}
		}
		return true, ""
	})
	return pods
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// echoReply is what hack/echo-backend answers.
type echoReply struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
	Path    string `json:"path"`
	Cookie  string `json:"cookie"`
}

// get sends one request and decodes the echo backend's reply.
func get(t testing.TB, req *http.Request) (*http.Response, echoReply, error) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, echoReply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, echoReply{}, err
	}
	var r echoReply
	if resp.StatusCode != http.StatusOK {
		return resp, r, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return resp, r, fmt.Errorf("decode %q: %w", body, err)
	}
	return resp, r, nil
}
