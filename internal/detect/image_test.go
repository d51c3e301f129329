package detect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/validate"
)

const (
	digestA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	digestB = "sha256:fedcba98765443210123456789abcdef0123456789abcdef0123456789abcdef"
	// digestC shares digestA's first 12 hex digits: the bound of digestShortLen.
	digestC = "sha256:0123456789abffff0123456789abcdef0123456789abcdef0123456789abcdef"
)

// cookieValue is RFC 6265's cookie-octet set, without the optional quotes.
func cookieValue(v string) bool {
	for _, c := range []byte(v) {
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return v != ""
}

func TestImageVersion(t *testing.T) {
	long := strings.Repeat("a", 60) + "-build.42"
	tests := []struct {
		name, image, want string
	}{
		{"a tag", "ghcr.io/acme/web:v1.2.3", "v1.2.3"},
		{"a registry with a port and a tag", "registry.local:5000/web:2026.11.30-1", "2026.11.30-1"},
		{"a digest", "ghcr.io/acme/web@" + digestA, "sha256-0123456789ab"},
		{"a digest wins over a tag", "ghcr.io/acme/web:v1@" + digestA, "sha256-0123456789ab"},
		{"sha512", "web@sha512:" + strings.Repeat("ab", 64), "sha512-abababababab"},
		{"a tag ending in a dot", "web:v1.", "v1-" + tagHash("v1.")},
		{"a tag starting with an underscore", "web:_rc1", "rc1-" + tagHash("_rc1")},
		{"a tag of underscores only", "web:___", tagHash("___")},
		{"a tag longer than a label", "web:" + long, strings.Repeat("a", 52) + "-" + tagHash(long)},
		{"the longest tag", "web:" + strings.Repeat("b", 128), strings.Repeat("b", 52) + "-" + tagHash(strings.Repeat("b", 128))},
		{"spaces around", "  web:v7 ", "v7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ImageVersion(tc.image)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.NoError(t, validate.LabelValue(got), "a valid label value")
			assert.True(t, cookieValue(got), "a valid cookie value")
			again, err := ImageVersion(tc.image)
			require.NoError(t, err)
			assert.Equal(t, got, again, "deterministic")
		})
	}
}

// tagHash is the hash part of the version of a tag that is not a label value as it stands.
func tagHash(tag string) string {
	sum := sha256.Sum256([]byte(tag))
	return hex.EncodeToString(sum[:])[:tagHashLen]
}

func TestImageVersionRefusals(t *testing.T) {
	for _, tc := range []struct{ name, image, want string }{
		{"latest", "ghcr.io/acme/web:latest", "tagged latest"},
		{"Latest in capitals", "web:LATEST", "tagged latest"},
		{"no tag, no digest", "ghcr.io/acme/web", "neither a tag nor a digest"},
		{"a port but no tag", "registry.local:5000/web", "neither a tag nor a digest"},
		{"no image", "", "no image"},
		{"a short digest", "web@sha256:0123", "digest"},
		{"an uppercase digest", "web@sha256:" + strings.ToUpper(digestA[7:]), "digest"},
		{"an unknown algorithm", "web@md5:0123456789abcdef0123456789abcdef", "digest"},
		{"a tag that is no tag", "web:v1+build", "not a valid image tag"},
		{"a tag starting with a dot", "web:.v1", "not a valid image tag"},
		{"a tag longer than 128", "web:" + strings.Repeat("c", 129), "not a valid image tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ImageVersion(tc.image)
			require.Error(t, err, "got %q", v)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestImageVersionsOfDifferentImagesDiffer(t *testing.T) {
	seen := map[string]string{}
	for _, image := range []string{
		"web:v1", "web:v2", "web:V1", "web@" + digestA, "web@" + digestB,
		"web:" + strings.Repeat("a", 70), "web:" + strings.Repeat("a", 69) + "b",
		"web:v1.", "web:v1-", "web:v1_",
	} {
		v, err := ImageVersion(image)
		require.NoError(t, err, image)
		if prev, ok := seen[v]; ok {
			t.Errorf("%s and %s both give %q", prev, image, v)
		}
		seen[v] = image
	}
	// The bound: digests equal in their first 12 hex digits (1 in 2^48 for two images) are
	// one version.
	a, err := ImageVersion("web@" + digestA)
	require.NoError(t, err)
	c, err := ImageVersion("web@" + digestC)
	require.NoError(t, err)
	assert.Equal(t, a, c)
}

// imagePod is a pod of app web without a version label, running image in container "app"
// (beside a sidecar), with the annotation when from is not empty.
func imagePod(name, image, from string, created time.Time) *corev1.Pod {
	p := pod("shop", name, map[string]string{LabelApp: "web", "instance": name[:len(name)-2]}, true, created)
	p.Spec.Containers = []corev1.Container{{Name: "proxy", Image: "envoy:v1.30"}, {Name: "app", Image: image}}
	if from != "" {
		p.Annotations = map[string]string{AnnotationVersionFrom: from}
	}
	return p
}

func TestVersionOf(t *testing.T) {
	now := time.Now()
	labelled := imagePod("web-1-a", "web:v9", "image", now)
	labelled.Labels[LabelVersion] = "7"
	tests := []struct {
		name    string
		pod     *corev1.Pod
		global  bool
		want    string
		derived bool
		err     string
	}{
		{"no opt-in: as today", imagePod("web-1-a", "web:v9", "", now), false, "", false, ""},
		{"the label always wins", labelled, true, "7", false, ""},
		{"annotation: the first container", imagePod("web-1-a", "web:v9", "image", now), false, "v1.30", true, ""},
		{"annotation: a named container", imagePod("web-1-a", "web:v9", "image:app", now), false, "v9", true, ""},
		{"global: the first container", imagePod("web-1-a", "web:v9", "", now), true, "v1.30", true, ""},
		{"global, opted out", imagePod("web-1-a", "web:v9", "label", now), true, "", false, ""},
		{"a container that is not there", imagePod("web-1-a", "web:v9", "image:api", now), false, "", false, `no container named "api"`},
		{"a container name that cannot be", imagePod("web-1-a", "web:v9", "image:API_1", now), false, "", false, "container name"},
		{"an unknown annotation value", imagePod("web-1-a", "web:v9", "tag", now), false, "", false, "want"},
		{"latest refused", imagePod("web-1-a", "web:latest", "image:app", now), false, "", false, "latest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, derived, err := versionOf(tc.pod, tc.global)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.want, v)
			assert.Equal(t, tc.derived, derived)
		})
	}
}

// A pod without the version label that opted in is detected with the version of its image:
// every pod of the image gets the same version, another image another one; without the opt-in
// nothing changes; a refusal is recorded like a pod without labels, with its reason.
func TestDetectVersionFromImage(t *testing.T) {
	base := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	sel := func(instance string) map[string]string {
		return map[string]string{LabelApp: "web", "instance": instance}
	}
	for _, tc := range []struct {
		name     string
		global   bool
		pods     []*corev1.Pod
		services []runtime.Object
		outcome  Outcome
		version  string
		reason   string
	}{
		{name: "annotated pod: the version of its image", pods: []*corev1.Pod{imagePod("web-a1-x", "web@"+digestA, "image:app", base)},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeStarted, version: "sha256-0123456789ab"},
		{name: "global setting: the first container's image", global: true,
			pods:     []*corev1.Pod{imagePod("web-a1-x", "web:v3", "", base)},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeStarted, version: "v1.30"},
		{name: "without the opt-in: as today", pods: []*corev1.Pod{imagePod("web-a1-x", "web:v3", "", base)},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeNoLabels,
			reason: "pod lacks the app.kubernetes.io/name or plt.dev/version label"},
		{name: "latest refused with its reason", pods: []*corev1.Pod{imagePod("web-a1-x", "web:latest", "image:app", base)},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeNoLabels,
			reason: "no version could be derived from its image: image \"web:latest\" is tagged latest"},
		{name: "a Service shared with another image is no version's own",
			pods: []*corev1.Pod{imagePod("web-a1-x", "web:v3", "image:app", base),
				func() *corev1.Pod {
					p := imagePod("web-a1-y", "web:v4", "image:app", base)
					p.Labels["instance"] = "web-a1"
					return p
				}()},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeNoService, version: "v3",
			reason: `Service web-a1 also selects pod web-a1-y of version "v4"`},
		{name: "a Service shared with the same image is fine",
			pods: []*corev1.Pod{imagePod("web-a1-x", "web:v3", "image:app", base),
				func() *corev1.Pod {
					p := imagePod("web-a1-y", "web:v3", "image:app", base.Add(-time.Minute))
					p.Labels["instance"] = "web-a1"
					return p
				}()},
			services: []runtime.Object{service("shop", "web-a1", sel("web-a1"))}, outcome: OutcomeStarted, version: "v3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]runtime.Object{}, tc.services...)
			for _, p := range tc.pods {
				objs = append(objs, p)
			}
			c, _ := startedCache(t, objs...)
			reg := newFakeRegistry()
			st := &fakeStarter{reg: reg}
			d := NewDetector(Options{Registry: reg, Starter: st, Lookup: c, Enabled: true, VersionFromImage: tc.global,
				Now: func() time.Time { return base }})
			cached, ok := c.Pod("shop", tc.pods[0].Name)
			require.True(t, ok)
			res, err := d.Detect(context.Background(), cached, SourcePodWatch, Hint{})
			require.NoError(t, err)
			assert.Equal(t, tc.outcome, res.Outcome, res.Reason)
			assert.Contains(t, res.Reason, tc.reason)
			assert.Equal(t, tc.version, res.DeploymentVersion)
			assert.Equal(t, tc.version != "", res.FromImage)
			if tc.outcome != OutcomeStarted {
				assert.Empty(t, st.requests())
				return
			}
			require.Len(t, st.requests(), 1)
			req := st.requests()[0]
			assert.Equal(t, registry.VersionRef{Namespace: "shop", App: "web", Label: tc.version}, req.Ref)
			assert.Equal(t, "web-a1", req.ServiceName)
			if len(tc.pods) > 1 {
				assert.Equal(t, tc.pods[1].CreationTimestamp.Time, req.PodsCreatedAt, "the earliest pod of the image")
			}

			// Another pod of the same image is the same version: the fast path.
			again, err := d.Detect(context.Background(), cached, SourceAgent, Hint{})
			require.NoError(t, err)
			assert.Equal(t, OutcomeFastPath, again.Outcome)
			assert.Equal(t, tc.version, again.DeploymentVersion)
		})
	}
}

// Two Deployments of two images, each with its own Service: two versions, found by the pod
// watch from the pods' images alone.
func TestWatchDetectsVersionsFromImages(t *testing.T) {
	now := time.Now()
	h := newWatchHarnessWith(t, true, func(o *Options) { o.VersionFromImage = false },
		imagePod("web-a1-x", "web:v1", "image:app", now),
		imagePod("web-b2-x", "web@"+digestB, "image:app", now),
		imagePod("web-c3-x", "web:v3", "", now)) // not opted in
	ctx := context.Background()
	for _, name := range []string{"web-a1", "web-b2", "web-c3"} {
		_, err := h.kube.CoreV1().Services("shop").Create(ctx,
			service("shop", name, map[string]string{LabelApp: "web", "instance": name}), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(h.startedRefs()) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.ElementsMatch(t, []registry.VersionRef{
		{Namespace: "shop", App: "web", Label: "v1"},
		{Namespace: "shop", App: "web", Label: "sha256-fedcba987654"},
	}, h.startedRefs())
}
