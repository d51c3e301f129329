package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"

	"github.com/skewguard/skewguard/internal/validate"
)

// Adoption of an app that runs as one Deployment without the version label: its running pods
// become a version (named after their image) without a restart. The team's Service selects
// every pod of the app, so it cannot be the version's backend once a labelled version runs
// beside it. skewguard creates a Service of its own for the adopted version, selecting the
// app label and the pod-template-hash the Deployment controller put on the adopted
// ReplicaSet's pods: those pods, and no pod of any later template.
const (
	// PodTemplateHashLabel is the label the Deployment controller puts on a ReplicaSet's pods.
	PodTemplateHashLabel = appsv1.DefaultDeploymentUniqueLabelKey
	// AdoptedLabel marks a Service skewguard created for an adopted version.
	AdoptedLabel = "skewguard.dev/adopted"
	// AdoptedDeploymentAnnotation names the adopted Deployment on our Service.
	AdoptedDeploymentAnnotation = "skewguard.dev/adopted-deployment"
	// adoptedManagedBy is the app.kubernetes.io/managed-by value of our Services.
	managedByLabel   = "app.kubernetes.io/managed-by"
	adoptedManagedBy = "skewguard"
	// revisionAnnotation is the Deployment controller's revision of a ReplicaSet.
	revisionAnnotation = "deployment.kubernetes.io/revision"
)

// nameHashLen is how many hex digits of SHA-256("<app>\x00<version>") an adopted Service's name
// keeps when the readable form had to be changed to be a DNS label.
const nameHashLen = 8

// AdoptedServiceName is the name of the Service skewguard owns for version of app, adopted:
// "<app>-skew-<version>" when that is a valid Service name (a DNS-1035 label), else a readable
// form of it (lower case, other characters as '-', at most 54 characters, starting with a
// letter) and 8 hex digits of the hash of app and version, so two versions never share a name.
func AdoptedServiceName(app, version string) (string, error) {
	if app == "" || version == "" {
		return "", fmt.Errorf("adopted Service name: app and version must be set (app %q, version %q)", app, version)
	}
	plain := app + "-skew-" + version
	if validate.ServiceName(plain) == nil {
		return plain, nil
	}
	var b strings.Builder
	for _, r := range strings.ToLower(plain) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	readable := b.String()
	if readable[0] < 'a' || readable[0] > 'z' {
		readable = "s-" + readable
	}
	readable = strings.TrimRight(readable[:min(len(readable), 63-1-nameHashLen)], "-")
	sum := sha256.Sum256([]byte(app + "\x00" + version))
	name := readable + "-" + hex.EncodeToString(sum[:])[:nameHashLen]
	if err := validate.ServiceName(name); err != nil {
		return "", fmt.Errorf("adopted Service name %q: %w", name, err)
	}
	return name, nil
}

// Adoption is what the Service of an adopted version is made from.
type Adoption struct {
	Namespace string
	App       string
	Version   string
	// Deployment runs the adopted pods; PodTemplateHash is their pod-template-hash label.
	Deployment      string
	PodTemplateHash string
	// Ports are the team's Service's ports (targets included), copied unchanged.
	Ports []corev1.ServicePort
}

// AdoptedService derives the Service skewguard owns for an adopted version: named by
// AdoptedServiceName, labelled with the app, the version, AdoptedLabel and managed-by
// skewguard (so retiring the version finds it, and nothing the team applies owns it), selecting
// the app label and the pod-template-hash, with the team's ports (node ports dropped: ours is a
// ClusterIP Service).
func AdoptedService(a Adoption) (*corev1.Service, error) {
	name, err := AdoptedServiceName(a.App, a.Version)
	if err != nil {
		return nil, err
	}
	if err := validate.LabelValue(a.Version); err != nil {
		return nil, fmt.Errorf("adopt %s/%s: version %q: %w", a.Namespace, a.App, a.Version, err)
	}
	if a.Deployment == "" || a.PodTemplateHash == "" {
		return nil, fmt.Errorf("adopt %s/%s@%s: the Deployment and the pods' %s must be known", a.Namespace, a.App,
			a.Version, PodTemplateHashLabel)
	}
	if err := validate.LabelValue(a.PodTemplateHash); err != nil {
		return nil, fmt.Errorf("adopt %s/%s@%s: %s %q: %w", a.Namespace, a.App, a.Version, PodTemplateHashLabel,
			a.PodTemplateHash, err)
	}
	if len(a.Ports) == 0 {
		return nil, fmt.Errorf("adopt %s/%s@%s: the team's Service has no port", a.Namespace, a.App, a.Version)
	}
	ports := make([]corev1.ServicePort, len(a.Ports))
	for i, p := range a.Ports {
		ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol,
			Port: p.Port, TargetPort: p.TargetPort}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: a.Namespace,
			Labels: map[string]string{AppLabel: a.App, VersionLabel: a.Version, AdoptedLabel: "true",
				managedByLabel: adoptedManagedBy},
			Annotations: map[string]string{AdoptedDeploymentAnnotation: a.Deployment},
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{AppLabel: a.App, PodTemplateHashLabel: a.PodTemplateHash},
			Ports:    ports,
		},
	}, nil
}

// ErrAdoptionConflict is returned (wrapped) when the adopted Service's name is taken by a
// Service that is not ours for that version, or ours selects another pod template: nothing is
// changed, as moving it would silently send the version's pins to other pods.
var ErrAdoptionConflict = errors.New("adoption conflict")

// EnsureAdoptedService creates the Service of an adopted version, or finds it: safe to repeat.
// A Service of that name that is ours for the same app, version, Deployment and pod template
// is the one (returned as it is); any other is an ErrAdoptionConflict.
func (w Workloads) EnsureAdoptedService(ctx context.Context, a Adoption) (*corev1.Service, error) {
	want, err := AdoptedService(a)
	if err != nil {
		return nil, err
	}
	svcs := w.Client.CoreV1().Services(a.Namespace)
	got, err := svcs.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return got, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create Service %s/%s for adopted %s@%s: %w", a.Namespace, want.Name, a.App, a.Version, err)
	}
	got, err = svcs.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Service %s/%s for adopted %s@%s: %w", a.Namespace, want.Name, a.App, a.Version, err)
	}
	if why := notOurs(got, want); why != "" {
		return nil, fmt.Errorf("%w: Service %s/%s %s; skewguard leaves it alone", ErrAdoptionConflict, a.Namespace,
			want.Name, why)
	}
	return got, nil
}

// notOurs says why existing is not the adopted Service want, or "".
func notOurs(existing, want *corev1.Service) string {
	for _, k := range []string{AppLabel, VersionLabel, AdoptedLabel, managedByLabel} {
		if existing.Labels[k] != want.Labels[k] {
			return fmt.Sprintf("exists without label %s=%s (not created by skewguard for this version)", k, want.Labels[k])
		}
	}
	if d := existing.Annotations[AdoptedDeploymentAnnotation]; d != want.Annotations[AdoptedDeploymentAnnotation] {
		return fmt.Sprintf("adopts Deployment %q, not %q", d, want.Annotations[AdoptedDeploymentAnnotation])
	}
	if !maps.Equal(existing.Spec.Selector, want.Spec.Selector) {
		return fmt.Sprintf("selects %v, not %v", existing.Spec.Selector, want.Spec.Selector)
	}
	return ""
}

// AdoptedRetired says what retiring an adopted version did.
type AdoptedRetired struct {
	// ScaledDown: adopted Deployments scaled to 0 (never deleted: they are the team's).
	ScaledDown []string
	// Services: our Services deleted.
	Services []string
	// Skipped: adopted Deployments left alone, with the reason.
	Skipped []string
}

// retireAdopted retires the adopted version app@version: for each Service of ours for it, the
// adopted Deployment is scaled to 0 while its current pod template is still the adopted one
// (one that rolled to another template runs another version now and is left alone), and
// our Service is deleted. The team's Deployment and Service are never deleted. The caller has
// checked that no managed route references our Services (they carry the version label).
func (w Workloads) retireAdopted(ctx context.Context, namespace, app, version string) (AdoptedRetired, error) {
	out := AdoptedRetired{}
	sel := labels.SelectorFromSet(labels.Set{AppLabel: app, VersionLabel: version, AdoptedLabel: "true",
		managedByLabel: adoptedManagedBy}).String()
	list, err := w.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return out, fmt.Errorf("list adopted Services of %s/%s@%s: %w", namespace, app, version, err)
	}
	for _, svc := range list.Items {
		dep, hash := svc.Annotations[AdoptedDeploymentAnnotation], svc.Spec.Selector[PodTemplateHashLabel]
		if dep != "" && hash != "" {
			scaled, why, err := w.scaleAdopted(ctx, namespace, dep, hash)
			if err != nil {
				return out, err
			}
			switch {
			case scaled:
				out.ScaledDown = append(out.ScaledDown, dep)
			case why != "":
				out.Skipped = append(out.Skipped, dep+": "+why)
			}
		}
		err := w.Client.CoreV1().Services(namespace).Delete(ctx, svc.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &svc.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return out, fmt.Errorf("delete adopted Service %s/%s: %w", namespace, svc.Name, err)
		}
		out.Services = append(out.Services, svc.Name)
	}
	slices.Sort(out.ScaledDown)
	slices.Sort(out.Services)
	return out, nil
}

// scaleAdopted scales Deployment name to 0 when its newest ReplicaSet (by revision) still has
// pod-template-hash hash: the Deployment runs the adopted pods and nothing newer. scaled is
// true when it is at 0 now; why says why it was left alone ("" and false: it is gone).
func (w Workloads) scaleAdopted(ctx context.Context, namespace, name, hash string) (scaled bool, why string, err error) {
	dep, err := w.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("get adopted Deployment %s/%s: %w", namespace, name, err)
	}
	current, err := w.currentTemplateHash(ctx, dep)
	if err != nil {
		return false, "", err
	}
	if current != hash {
		return false, fmt.Sprintf("rolled from pod template %s to %q since it was adopted: it runs another version now "+
			"and is left alone", hash, current), nil
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := w.Client.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil || scale.Spec.Replicas == 0 {
			return err
		}
		scale.Spec.Replicas = 0
		_, err = w.Client.AppsV1().Deployments(namespace).UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("scale adopted Deployment %s/%s to 0: %w", namespace, name, err)
	}
	return true, "", nil
}

// currentTemplateHash returns the pod-template-hash of dep's newest ReplicaSet (the highest
// revision among those it controls), "" when it has none.
func (w Workloads) currentTemplateHash(ctx context.Context, dep *appsv1.Deployment) (string, error) {
	list, err := w.Client.AppsV1().ReplicaSets(dep.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list ReplicaSets of Deployment %s/%s: %w", dep.Namespace, dep.Name, err)
	}
	best, hash := int64(-1), ""
	for _, rs := range list.Items {
		ref := metav1.GetControllerOfNoCopy(&rs.ObjectMeta)
		if ref == nil || ref.UID != dep.UID {
			continue
		}
		rev, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			rev = 0
		}
		if rev > best {
			best, hash = rev, rs.Labels[PodTemplateHashLabel]
		}
	}
	return hash, nil
}

// TemplateFollowed says what FollowAdoptedTemplate did.
type TemplateFollowed struct {
	// Service is our Service's name; From the pod-template-hash it selected before.
	Service string
	From    string
	// Moved: our Service now selects Adoption.PodTemplateHash and did not before.
	Moved bool
	// Why, when nothing moved although the hashes differ, says why it was left alone.
	Why string
}

// FollowAdoptedTemplate moves the Service of the adopted version a.Version to a.PodTemplateHash
// when the adopted Deployment rolled in place to a new pod template that runs the same version
// (the same image, another env): the version follows its Deployment, else the rollout would
// leave our Service selecting a ReplicaSet scaled to 0. It moves only our Service for that app,
// version and Deployment (an ErrAdoptionConflict otherwise), and only when a.PodTemplateHash is
// the Deployment's newest revision (a leftover pod of an older template never moves it back; a
// rollback, which makes the old template the newest revision again, does). The update carries
// the resourceVersion read, so a concurrent change is read again and judged afresh. Safe to
// repeat: a Service that selects a.PodTemplateHash already is left as it is.
func (w Workloads) FollowAdoptedTemplate(ctx context.Context, a Adoption) (TemplateFollowed, error) {
	want, err := AdoptedService(a)
	if err != nil {
		return TemplateFollowed{}, err
	}
	out := TemplateFollowed{Service: want.Name}
	svcs := w.Client.CoreV1().Services(a.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		out = TemplateFollowed{Service: want.Name}
		got, err := svcs.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		out.From = got.Spec.Selector[PodTemplateHashLabel]
		// Ours for this app, version and Deployment, selecting the app and one template.
		mine := want.DeepCopy()
		mine.Spec.Selector = map[string]string{AppLabel: a.App, PodTemplateHashLabel: out.From}
		if why := notOurs(got, mine); why != "" || out.From == "" {
			if why == "" {
				why = fmt.Sprintf("selects %v, without a %s", got.Spec.Selector, PodTemplateHashLabel)
			}
			return fmt.Errorf("%w: Service %s/%s %s; skewguard leaves it alone", ErrAdoptionConflict, a.Namespace,
				want.Name, why)
		}
		if out.From == a.PodTemplateHash {
			return nil
		}
		dep, err := w.Client.AppsV1().Deployments(a.Namespace).Get(ctx, a.Deployment, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out.Why = fmt.Sprintf("Deployment %s is gone", a.Deployment)
			return nil
		}
		if err != nil {
			return fmt.Errorf("get adopted Deployment %s/%s: %w", a.Namespace, a.Deployment, err)
		}
		current, err := w.currentTemplateHash(ctx, dep)
		if err != nil {
			return err
		}
		if current != a.PodTemplateHash {
			out.Why = fmt.Sprintf("pod template %s is not Deployment %s's newest revision (%q is)", a.PodTemplateHash,
				a.Deployment, current)
			return nil
		}
		upd := got.DeepCopy()
		upd.Spec.Selector = maps.Clone(got.Spec.Selector)
		upd.Spec.Selector[PodTemplateHashLabel] = a.PodTemplateHash
		// got's resourceVersion is the precondition: a Service changed since it was read is a
		// conflict, read and judged again.
		if _, err := svcs.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return err
		}
		out.Moved = true
		return nil
	})
	if apierrors.IsNotFound(err) {
		return TemplateFollowed{Service: want.Name, Why: fmt.Sprintf("Service %s is gone", want.Name)}, nil
	}
	if err != nil && !errors.Is(err, ErrAdoptionConflict) {
		return out, fmt.Errorf("move Service %s/%s of adopted %s@%s to pod template %s: %w", a.Namespace, want.Name,
			a.App, a.Version, a.PodTemplateHash, err)
	}
	return out, err
}

// AdoptedBackendGone reports whether the adopted version app@version has lost its pods for
// good: its adopted Deployment (deployment) rolled in place to another pod template, which is
// now its newest revision, and no pod of the template our Service selects is left (none that
// is not terminating). A request pinned to that version could only get a 503 until it expires.
// Our Service gone counts as gone too. A Deployment that still runs the adopted template
// (scaled down, or beside a labelled version) is not: it may come back.
func (w Workloads) AdoptedBackendGone(ctx context.Context, namespace, app, version, deployment string) (bool, string, error) {
	name, err := AdoptedServiceName(app, version)
	if err != nil {
		return false, "", err
	}
	svc, err := w.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, fmt.Sprintf("its Service %s is gone", name), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("get adopted Service %s/%s: %w", namespace, name, err)
	}
	hash := svc.Spec.Selector[PodTemplateHashLabel]
	if svc.Labels[AdoptedLabel] != "true" || hash == "" {
		return false, "", nil
	}
	current, depGone := "", false
	dep, err := w.Client.AppsV1().Deployments(namespace).Get(ctx, deployment, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		depGone = true
	case err != nil:
		return false, "", fmt.Errorf("get adopted Deployment %s/%s: %w", namespace, deployment, err)
	default:
		if current, err = w.currentTemplateHash(ctx, dep); err != nil {
			return false, "", err
		}
		if current == hash {
			return false, "", nil
		}
	}
	pods, err := w.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(
		labels.Set{AppLabel: app, PodTemplateHashLabel: hash}).String()})
	if err != nil {
		return false, "", fmt.Errorf("list pods of adopted %s/%s@%s: %w", namespace, app, version, err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			return false, "", nil
		}
	}
	if depGone || current == "" {
		return true, fmt.Sprintf("Deployment %s is gone and no pod of pod template %s is left", deployment, hash), nil
	}
	return true, fmt.Sprintf("Deployment %s rolled in place from pod template %s to %s and no pod of %s is left",
		deployment, hash, current, hash), nil
}
