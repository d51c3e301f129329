package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// AnnotationAdopt, "true" on a Deployment (its own metadata, not its pod template, so that
// setting it restarts nothing), asks skewguard to adopt the app it runs without the
// plt.dev/version label: its running pods become a version named after their image
// (ImageVersion, as with AnnotationVersionFrom=image), reached through a Service skewguard
// creates for it (kube.AdoptedService: the app label and the pods' pod-template-hash), so
// that a labelled version deployed later is never selected by the adopted version's pins.
// Without it no unlabelled Deployment is adopted; PLT_SKEW_VERSION_FROM_IMAGE alone never
// writes anything.
const AnnotationAdopt = "plt.dev/adopt"

// AdoptionTarget is what an adopted pod's version is made of: the Deployment that runs it and
// the pod-template-hash of its ReplicaSet.
type AdoptionTarget struct {
	Deployment      string
	PodTemplateHash string
}

// AdoptionLookup is what adoption reads from the informer cache (Cache implements it). A
// Lookup without it adopts nothing.
type AdoptionLookup interface {
	// AdoptionOf reports whether pod, without the version label, runs under a Deployment
	// annotated AnnotationAdopt=true, and which.
	AdoptionOf(pod *corev1.Pod) (AdoptionTarget, bool)
	// TeamServiceFor returns a Service of the team that selects pod (one selecting every pod
	// of the app included), never one of skewguard's adopted Services.
	TeamServiceFor(pod *corev1.Pod) (*corev1.Service, bool)
}

// Adopter creates (or finds) the Service of an adopted version (kube.Workloads implements it).
// It must be idempotent.
type Adopter interface {
	EnsureAdoptedService(ctx context.Context, a kube.Adoption) (*corev1.Service, error)
}

// AdoptionOf implements AdoptionLookup from the cached owners: pod → ReplicaSet → Deployment,
// each matched by UID.
func (c *Cache) AdoptionOf(pod *corev1.Pod) (AdoptionTarget, bool) {
	hash := pod.Labels[kube.PodTemplateHashLabel]
	if pod.Labels[LabelApp] == "" || pod.Labels[LabelVersion] != "" || hash == "" {
		return AdoptionTarget{}, false
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" || !isAppsGroup(ref.APIVersion) {
		return AdoptionTarget{}, false
	}
	rs, ok := c.replicaSet(pod.Namespace, ref.Name)
	if !ok || rs.UID != ref.UID {
		return AdoptionTarget{}, false
	}
	ref = metav1.GetControllerOf(rs)
	if ref == nil || ref.Kind != "Deployment" || !isAppsGroup(ref.APIVersion) {
		return AdoptionTarget{}, false
	}
	dep, ok := c.deployment(pod.Namespace, ref.Name)
	if !ok || dep.UID != ref.UID || !adoptRequested(dep) {
		return AdoptionTarget{}, false
	}
	return AdoptionTarget{Deployment: dep.Name, PodTemplateHash: hash}, true
}

// adoptRequested reports whether dep opted into adoption.
func adoptRequested(dep *appsv1.Deployment) bool {
	return dep.DeletionTimestamp == nil && strings.TrimSpace(dep.Annotations[AnnotationAdopt]) == "true"
}

// TeamServiceFor implements AdoptionLookup: among the Services of pod's namespace with ports
// whose selector matches pod and that skewguard did not create, the one with the largest
// selector, then by name.
func (c *Cache) TeamServiceFor(pod *corev1.Pod) (*corev1.Service, bool) {
	candidates := c.servicesSelecting(pod, func(svc *corev1.Service) bool { return svc.Labels[kube.AdoptedLabel] == "" })
	if len(candidates) == 0 {
		return nil, false
	}
	slices.SortFunc(candidates, func(a, b *corev1.Service) int {
		if len(a.Spec.Selector) != len(b.Spec.Selector) {
			return len(b.Spec.Selector) - len(a.Spec.Selector)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return candidates[0], true
}

// podsOfDeployment returns the cached pods dep's selector picks.
func (c *Cache) podsOfDeployment(dep *appsv1.Deployment) []*corev1.Pod {
	if dep.Spec.Selector == nil || len(dep.Spec.Selector.MatchLabels) == 0 {
		return nil
	}
	return c.PodsSelectedBy(dep.Namespace, dep.Spec.Selector.MatchLabels)
}

// adoptionOf reports whether pod is to be adopted (an Adopter is configured and the lookup
// says its Deployment asked for it).
func (d *Detector) adoptionOf(pod *corev1.Pod) (AdoptionTarget, bool) {
	al, ok := d.opts.Lookup.(AdoptionLookup)
	if d.opts.Adopter == nil || !ok || pod.Labels[LabelVersion] != "" {
		return AdoptionTarget{}, false
	}
	return al.AdoptionOf(pod)
}

// errNoTeamService: an adopted pod is selected by no Service of the team yet.
var errNoTeamService = errors.New("no Service in the namespace selects the adopted pods yet")

// adopt makes sure the Service of ref, adopted, exists, and returns it with the port to route
// to (the team's Service's, whose ports ours copies).
func (d *Detector) adopt(ctx context.Context, pod *corev1.Pod, ref registry.VersionRef, t AdoptionTarget) (*corev1.Service, int32, error) {
	team, ok := d.opts.Lookup.(AdoptionLookup).TeamServiceFor(pod)
	if !ok {
		return nil, 0, errNoTeamService
	}
	svc, err := d.opts.Adopter.EnsureAdoptedService(ctx, kube.Adoption{
		Namespace: ref.Namespace, App: ref.App, Version: ref.Label,
		Deployment: t.Deployment, PodTemplateHash: t.PodTemplateHash, Ports: team.Spec.Ports,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("adopt Deployment %s/%s (pod template %s) as %s: %w", ref.Namespace, t.Deployment,
			t.PodTemplateHash, ref, err)
	}
	return svc, servicePort(team), nil
}

// adoptionRefused says why ref may not be adopted now (empty: it may): adoption creates a
// Service, a write that only the manage mode allows.
func (d *Detector) adoptionRefused(ctx context.Context, ref registry.VersionRef) (string, error) {
	if d.opts.ModeOf == nil {
		return "", nil
	}
	mode, err := d.opts.ModeOf(ctx, registry.AppRef{Namespace: ref.Namespace, Name: ref.App})
	if err != nil {
		return "", fmt.Errorf("mode of %s/%s: %w", ref.Namespace, ref.App, err)
	}
	if mode == "" || mode == registry.ModeManage {
		return "", nil
	}
	name, err := kube.AdoptedServiceName(ref.App, ref.Label)
	if err != nil {
		name = "its own Service"
	}
	return fmt.Sprintf("adoption creates a Service (%s), which mode %s does not allow: switch the app to manage, "+
		"or give the version a Deployment and Service of its own labelled plt.dev/version", name, mode), nil
}

// TemplateFollower moves the Service of an adopted version to the adopted Deployment's newest
// pod template when it still runs the same version (kube.Workloads implements it). An Adopter
// that is not one never follows: an in-place rollout with the same image then leaves the
// version's Service without pods.
type TemplateFollower interface {
	FollowAdoptedTemplate(ctx context.Context, a kube.Adoption) (kube.TemplateFollowed, error)
}

// serviceGetter reads a Service from the informer cache (Cache implements it), so that a pod
// of the template our Service selects already costs no API call.
type serviceGetter interface {
	Service(namespace, name string) (*corev1.Service, bool)
}

// Service returns the cached Service namespace/name.
func (c *Cache) Service(namespace, name string) (*corev1.Service, bool) {
	for _, s := range c.scopes {
		if svc, err := s.svcList.Services(namespace).Get(name); err == nil {
			return svc, true
		}
	}
	return nil, false
}

// AuditTemplateFollowed is the audit event of an adopted version whose Service moved to its
// Deployment's new pod template.
const AuditTemplateFollowed = "adopted-template-followed"

// followTemplate keeps live, an adopted version, on its Deployment's current pod template. pod,
// Ready (the pod watch looks at Ready pods only), runs live's version under live's adopted
// Deployment; when its pod-template-hash is not the one our Service selects, the Deployment
// rolled in place to a new template with the same image (an env change): the version is the
// same, so our Service follows the newest template (kube.FollowAdoptedTemplate: only to the
// Deployment's newest revision). It moves when the first pod of the new template is Ready,
// while the rollout still keeps old pods up to its maxUnavailable, so the Service always has
// Ready endpoints unless the rollout itself removes every old pod first (maxUnavailable 100%,
// or the Recreate strategy), and then only until the first new pod is Ready. An error is
// returned only when it is worth retrying; a refusal is logged.
func (d *Detector) followTemplate(ctx context.Context, pod *corev1.Pod, live registry.Version, adopted bool,
	t AdoptionTarget, source string) error {
	follower, ok := d.opts.Adopter.(TemplateFollower)
	if !adopted || !ok || live.AdoptedDeployment == "" || live.AdoptedDeployment != t.Deployment {
		return nil
	}
	if sg, ok := d.opts.Lookup.(serviceGetter); ok && live.ServiceName != "" {
		if svc, ok := sg.Service(pod.Namespace, live.ServiceName); ok &&
			svc.Spec.Selector[kube.PodTemplateHashLabel] == t.PodTemplateHash {
			return nil // the template our Service selects: the common case, no API call
		}
	}
	ref := live.Ref()
	log := d.opts.Logger.With("pod", pod.Namespace+"/"+pod.Name, "app", ref.App, "version", ref.Label,
		"deployment", t.Deployment, "podTemplateHash", t.PodTemplateHash)
	if refusal, err := d.adoptionRefused(ctx, ref); err != nil {
		return err
	} else if refusal != "" {
		log.Warn("the adopted Deployment rolled to a new pod template of the same version, but its Service is not moved",
			"reason", refusal)
		return nil
	}
	team, ok := d.opts.Lookup.(AdoptionLookup).TeamServiceFor(pod)
	if !ok {
		log.Warn("the adopted Deployment rolled to a new pod template, but no Service of the team selects its pods: " +
			"the version's Service is not moved")
		return nil
	}
	got, err := follower.FollowAdoptedTemplate(ctx, kube.Adoption{Namespace: ref.Namespace, App: ref.App,
		Version: ref.Label, Deployment: t.Deployment, PodTemplateHash: t.PodTemplateHash, Ports: team.Spec.Ports})
	switch {
	case errors.Is(err, kube.ErrAdoptionConflict):
		log.Warn("the adopted version's Service is not moved to the new pod template", "error", err)
		return nil
	case err != nil:
		return err
	case !got.Moved:
		if got.Why != "" {
			log.Debug("the adopted version's Service is left on its pod template", "reason", got.Why)
		}
		return nil
	}
	reason := fmt.Sprintf("Deployment %s rolled in place to pod template %s with the same image: Service %s moved "+
		"from pod template %s, so the version keeps its pods", t.Deployment, t.PodTemplateHash, got.Service, got.From)
	log.Info("adopted version follows its Deployment's new pod template", "service", got.Service, "from", got.From)
	if d.opts.Audit != nil {
		actor := registry.Actor{Type: registry.ActorPod, ID: pod.Namespace + "/" + pod.Name, Name: source}
		detail := map[string]string{"deployment": t.Deployment, "service": got.Service, "fromPodTemplateHash": got.From,
			"toPodTemplateHash": t.PodTemplateHash}
		if err := d.opts.Audit(ctx, ref, AuditTemplateFollowed, actor, reason, detail); err != nil {
			// The move is done and will not be repeated: the audit entry is lost, not the traffic.
			log.Error("recording the move in the audit trail failed", "error", err)
		}
	}
	return nil
}
