package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skewguard/skewguard/internal/validate"
)

// AnnotationVersionFrom opts a pod (in practice its Deployment's pod template) into a version
// derived from its image when it carries no plt.dev/version label. Its values:
//
//	image              the image of the pod's first container
//	image:<container>  the image of the container of that name
//	label              only the label: opts the pod out of PLT_SKEW_VERSION_FROM_IMAGE
//
// The label, when present, always wins: a derived version never replaces one the pod names.
const AnnotationVersionFrom = "plt.dev/version-from"

// Values of AnnotationVersionFrom.
const (
	VersionFromLabel = "label"
	VersionFromImage = "image"
)

// digestShortLen is how many hex digits of an image digest a derived version keeps: 48 bits.
// Two different digests of one app get the same version with probability at most
// n(n-1)/2 / 2^48 over n images of that app (under 2e-7 for 10,000 images); versions of
// different apps never meet (a version is always read with its namespace and app).
const digestShortLen = 12

// tagHashLen is how many hex digits of the tag's SHA-256 a tag that is not a valid label value
// as it stands keeps beside its readable prefix (40 bits).
const tagHashLen = 10

// versionSource is where a pod's version comes from.
type versionSource struct {
	// fromImage: derive it from an image when the label is missing.
	fromImage bool
	// container names the container whose image is read; empty: the first one.
	container string
	// optedIn: the pod asked for it through the annotation (not only the global setting).
	optedIn bool
}

// sourceOf reads how pod's version is found: the annotation, else the global setting.
func sourceOf(pod *corev1.Pod, global bool) (versionSource, error) {
	v, ok := pod.Annotations[AnnotationVersionFrom]
	if !ok {
		return versionSource{fromImage: global}, nil
	}
	switch v = strings.TrimSpace(v); {
	case v == VersionFromLabel:
		return versionSource{}, nil
	case v == VersionFromImage:
		return versionSource{fromImage: true, optedIn: true}, nil
	case strings.HasPrefix(v, VersionFromImage+":"):
		name := strings.TrimPrefix(v, VersionFromImage+":")
		if err := validate.DNSLabel(name); err != nil {
			return versionSource{}, fmt.Errorf("annotation %s=%q: container name: %w", AnnotationVersionFrom, v, err)
		}
		return versionSource{fromImage: true, optedIn: true, container: name}, nil
	}
	return versionSource{}, fmt.Errorf("annotation %s=%q: want %q, %q or %q", AnnotationVersionFrom, v,
		VersionFromImage, VersionFromImage+":<container>", VersionFromLabel)
}

// versionOf returns pod's version: its plt.dev/version label, else (when the pod opted in, or
// global is on) the version derived from its image. derived reports the latter. An empty
// version with a nil error means the pod names none and did not ask for one to be derived; an
// error says why a version that was asked for could not be derived.
func versionOf(pod *corev1.Pod, global bool) (version string, derived bool, err error) {
	if v := pod.Labels[LabelVersion]; v != "" {
		return v, false, nil
	}
	src, err := sourceOf(pod, global)
	if err != nil || !src.fromImage {
		return "", false, err
	}
	image, err := containerImage(pod, src.container)
	if err != nil {
		return "", false, err
	}
	v, err := ImageVersion(image)
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

// containerImage returns the image reference of the named container of pod (the first one
// when name is empty), as the pod's spec names it.
func containerImage(pod *corev1.Pod, name string) (string, error) {
	if len(pod.Spec.Containers) == 0 {
		return "", fmt.Errorf("pod has no container to read an image from")
	}
	if name == "" {
		return pod.Spec.Containers[0].Image, nil
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image, nil
		}
	}
	return "", fmt.Errorf("pod has no container named %q (annotation %s)", name, AnnotationVersionFrom)
}

// ImageVersion derives a version from an image reference ("registry:5000/team/app:v1.2",
// "app@sha256:…", "app:v1@sha256:…"). It reads the reference only, never the pod's status,
// so every pod created from one template gets the same version from the moment it exists,
// whichever node runs it and whether or not its container has started:
//
//   - with a digest, "<algorithm>-<first 12 hex digits>" ("sha256-0123456789ab"); the digest
//     wins over a tag, as it does for the container runtime;
//   - with a tag that is a valid label value, the tag itself ("v1.2.3");
//   - with another tag (longer than 63 characters, or not starting and ending with a letter or
//     digit), its longest valid prefix of at most 52 characters, "-", and the first 10 hex
//     digits of the tag's SHA-256 (a different tag gets the same version with probability 2^-40);
//   - "latest", or neither tag nor digest (which pulls latest): refused, as a tag that moves
//     to every new build is no version.
//
// The result is a valid label value and cookie value ([A-Za-z0-9._-], at most 63 characters,
// a letter or digit at each end). Like a label, a tag is taken at its word: an image pushed
// again under the same tag, or the same tag from another repository, is the same version.
func ImageVersion(image string) (string, error) {
	ref := strings.TrimSpace(image)
	if ref == "" {
		return "", fmt.Errorf("the container has no image to derive a version from")
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest {
		return digestVersion(ref, digest)
	}
	// A tag follows the last ':' after the last '/': a ':' before it is a registry's port.
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag = name[i+1:]
	}
	switch {
	case tag == "":
		return "", fmt.Errorf("image %q has neither a tag nor a digest (it runs whatever latest is): "+
			"no stable version can be derived; set the %s label or deploy the image by tag or digest", ref, LabelVersion)
	case strings.EqualFold(tag, "latest"):
		return "", fmt.Errorf("image %q is tagged latest, which moves with every build: "+
			"no stable version can be derived; set the %s label or deploy the image by tag or digest", ref, LabelVersion)
	}
	if !validTag(tag) {
		return "", fmt.Errorf("image %q: tag %q is not a valid image tag", ref, tag)
	}
	if validate.LabelValue(tag) == nil {
		return tag, nil
	}
	sum := sha256.Sum256([]byte(tag))
	prefix := strings.TrimRight(tag[:min(len(tag), 63-1-tagHashLen)], "._-")
	prefix = strings.TrimLeft(prefix, "._-")
	if prefix == "" {
		return hex.EncodeToString(sum[:])[:tagHashLen], nil
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:tagHashLen], nil
}

// digestVersion derives the version of an image pinned by digest ("sha256:<64 hex>").
func digestVersion(ref, digest string) (string, error) {
	algo, hexPart, ok := strings.Cut(digest, ":")
	want := map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}[algo]
	if !ok || want == 0 || len(hexPart) != want || !isLowerHex(hexPart) {
		return "", fmt.Errorf("image %q: digest %q is not <sha256|sha384|sha512>:<lowercase hex>", ref, digest)
	}
	return algo + "-" + hexPart[:digestShortLen], nil
}

// validTag reports whether tag follows the image tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(tag string) bool {
	if len(tag) == 0 || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
