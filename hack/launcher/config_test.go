package main

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testConfig = `{
  "podCIDR": "198.19.0.0/16",
  "defaultProgram": "echo",
  "iccURL": "http://127.0.0.1:3000",
  "programs": {
    "echo": {"command": ["/bin/echo-backend"]},
    "watt": {"command": ["/bin/watt-pod.sh"], "podHostname": true, "serviceAccountToken": true,
             "startTimeout": "90s", "env": {"SKEWGUARD_WATT_DIR": "/cache/watt"}}
  },
  "images": {"registry.example/team/frontend": "watt"}
}`

func mustConfig(t *testing.T, s string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(s))
	require.NoError(t, err)
	return c
}

func podWith(annotations map[string]string, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop-v1-abc", Namespace: "ns", Annotations: annotations}}
	for _, img := range images {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c", Image: img})
	}
	return p
}

func TestProgramFor(t *testing.T) {
	c := mustConfig(t, testConfig)
	tests := []struct {
		name    string
		pod     *corev1.Pod
		want    string
		wantErr string
	}{
		{name: "annotation wins over image", pod: podWith(map[string]string{AnnotationLaunch: "watt"}, "skewguard/echo:1"), want: "watt"},
		{name: "unknown annotation is an error", pod: podWith(map[string]string{AnnotationLaunch: "nginx"}), wantErr: `names no program (known: echo, watt)`},
		{name: "image repository mapped", pod: podWith(nil, "registry.example/team/frontend:v3"), want: "watt"},
		{name: "image with digest mapped", pod: podWith(nil, "registry.example/team/frontend@sha256:abc"), want: "watt"},
		{name: "last path element names a program", pod: podWith(nil, "localhost:5000/x/watt:2"), want: "watt"},
		{name: "second container's image counts", pod: podWith(nil, "busybox", "skewguard/watt"), want: "watt"},
		{name: "anything else runs the default", pod: podWith(nil, "nginx:1.27"), want: "echo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.ProgramFor(tt.pod)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("no default and no match is an error", func(t *testing.T) {
		c := mustConfig(t, `{"podCIDR": "198.19.0.0/16", "programs": {"echo": {"command": ["x"]}}}`)
		_, err := c.ProgramFor(podWith(nil, "nginx"))
		assert.Error(t, err)
	})
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	_, err := ParseConfig([]byte(`{"podCIDR": "fe80::/64", "defaultProgram": "x",
		"programs": {"a": {"command": []}}, "images": {"i": "b"}}`))
	require.Error(t, err)
	for _, want := range []string{`podCIDR "fe80::/64"`, `program "a" has no command`, `defaultProgram "x"`, `image "i" maps to unknown program "b"`} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestPodIP(t *testing.T) {
	c := mustConfig(t, testConfig)
	now := metav1.Now()
	running := func(ip string) *corev1.Pod {
		p := podWith(nil, "x")
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
		return p
	}
	deleting := running("198.19.0.5")
	deleting.DeletionTimestamp = &now
	pending := running("198.19.0.5")
	pending.Status.Phase = corev1.PodPending
	tests := []struct {
		name string
		pod  *corev1.Pod
		ok   bool
	}{
		{"running in the CIDR", running("198.19.3.7"), true},
		{"outside the CIDR", running("10.1.2.3"), false},
		{"no IP yet", running(""), false},
		{"not running", pending, false},
		{"being deleted", deleting, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, ok := c.PodIP(tt.pod)
			assert.Equal(t, tt.ok, ok)
			if ok {
				assert.Equal(t, tt.pod.Status.PodIP, ip.String())
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	c := mustConfig(t, testConfig)
	pod := podWith(map[string]string{AnnotationICCURL: "http://icc.local:3000"}, "x")
	pod.UID = "uid-1"
	pod.Labels = map[string]string{labelApp: "shop", labelVersion: "42"}
	pod.Spec.ServiceAccountName = "shop-sa"
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 3042}, {ContainerPort: 9000, Protocol: corev1.ProtocolUDP}, {ContainerPort: 3043}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "PLT_DEPLOYMENT_ID", Value: "build-42"},
		{Name: "PORT", Value: "1"}, // the launcher's own variables win
		{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{}},
	}
	env := c.ProcessEnv(pod, c.Programs["watt"], netip.MustParseAddr("198.19.0.9"))
	assert.Equal(t, map[string]string{
		"PLT_DEPLOYMENT_ID":  "build-42",
		"POD_NAME":           "shop-v1-abc",
		"POD_NAMESPACE":      "ns",
		"POD_UID":            "uid-1",
		"POD_IP":             "198.19.0.9",
		"HOST":               "198.19.0.9",
		"PORT":               "3042",
		"PORTS":              "3042,3043",
		"APP_VERSION":        "42",
		"APP_NAME":           "shop",
		"SERVICE_ACCOUNT":    "shop-sa",
		"PLT_ICC_URL":        "http://icc.local:3000",
		"SKEWGUARD_WATT_DIR": "/cache/watt",
	}, env)

	t.Run("defaults", func(t *testing.T) {
		env := c.ProcessEnv(podWith(nil, "x"), c.Programs["echo"], netip.MustParseAddr("198.19.0.1"))
		assert.Equal(t, "8080", env["PORT"])
		assert.Equal(t, "default", env["SERVICE_ACCOUNT"])
		assert.Equal(t, "http://127.0.0.1:3000", env["PLT_ICC_URL"])
	})
}

func TestBuildCommandRunsUnderThePodHostname(t *testing.T) {
	s := spec{prog: Program{Command: []string{"/bin/app", "start"}, PodHostname: true}}
	cmd := buildCommand(s, map[string]string{"POD_NAME": "shop-v1-abc"})
	assert.Equal(t, []string{"unshare", "--uts", "--", "/bin/sh", "-c", `hostname "$0" && exec "$@"`, "shop-v1-abc", "/bin/app", "start"}, cmd.Args)
	assert.Contains(t, cmd.Env, "POD_NAME=shop-v1-abc")
	assert.True(t, cmd.SysProcAttr.Setpgid, "own process group, so stopping reaches its children")

	plain := buildCommand(spec{prog: Program{Command: []string{"/bin/app"}}}, nil)
	assert.Equal(t, []string{"/bin/app"}, plain.Args)
}

func TestSpecSameAs(t *testing.T) {
	base := spec{uid: "u", ip: netip.MustParseAddr("198.19.0.1"), port: 8080, program: "echo", env: map[string]string{"A": "1"}}
	changed := func(f func(*spec)) spec {
		s := base
		s.env = map[string]string{"A": "1"}
		f(&s)
		return s
	}
	assert.True(t, base.sameAs(changed(func(*spec) {})))
	assert.False(t, base.sameAs(changed(func(s *spec) { s.uid = "v" })), "a new pod with the same name")
	assert.False(t, base.sameAs(changed(func(s *spec) { s.ip = netip.MustParseAddr("198.19.0.2") })))
	assert.False(t, base.sameAs(changed(func(s *spec) { s.env["A"] = "2" })), "a label or env change")
}
