// Package detect owns how skewguard learns that a version exists: a shared informer cache of
// pods (indexed by name, because the agent knows only its hostname), Services, and the
// ReplicaSets and Deployments that own the pods (for when a version was deployed), the lookup of
// a version's Service by selector, the one idempotent detection path that registrations and the
// pod watch both go through, and the pod watch itself.
package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersappsv1 "k8s.io/client-go/listers/apps/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skewguard/skewguard/internal/registry"
)

// The labels (and, for the path, the annotation) skewguard reads from pods.
const (
	LabelApp      = "app.kubernetes.io/name"
	LabelVersion  = "plt.dev/version"
	LabelPath     = "plt.dev/path"
	LabelHostname = "plt.dev/hostname"
	// LabelGroup puts the version in an app group: the versions of one group in one namespace
	// share one pin cookie across apps (a label, so it travels with the Deployment in Git and
	// with each version; the API server has checked it is a valid label value).
	LabelGroup = "plt.dev/group"
)

const podNameIndex = "pod-name"

// Cache holds the pods, Services, ReplicaSets and Deployments of the watched namespaces in
// shared informers. Reads never go to the API server.
type Cache struct {
	scopes []scope
}

// scope is one informer factory: one namespace, or all of them.
type scope struct {
	factory  informers.SharedInformerFactory
	pods     cache.SharedIndexInformer
	services cache.SharedIndexInformer
	svcList  listersv1.ServiceLister
	// The owners of pods, read only for their creation time: which of several versions found
	// at once was deployed last.
	replicaSets    cache.SharedIndexInformer
	rsList         listersappsv1.ReplicaSetLister
	deployments    cache.SharedIndexInformer
	deploymentList listersappsv1.DeploymentLister
}

func (s scope) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{s.pods, s.services, s.replicaSets, s.deployments}
}

// NewCache builds (but does not start) informers over namespaces; none means all namespaces.
func NewCache(kube kubernetes.Interface, namespaces []string, resync time.Duration) (*Cache, error) {
	if len(namespaces) == 0 {
		namespaces = []string{corev1.NamespaceAll}
	}
	c := &Cache{}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(kube, resync,
			informers.WithNamespace(ns), informers.WithTransform(slim))
		pods := f.Core().V1().Pods()
		svcs := f.Core().V1().Services()
		rss := f.Apps().V1().ReplicaSets()
		deps := f.Apps().V1().Deployments()
		s := scope{factory: f, pods: pods.Informer(), services: svcs.Informer(), svcList: svcs.Lister(),
			replicaSets: rss.Informer(), rsList: rss.Lister(), deployments: deps.Informer(), deploymentList: deps.Lister()}
		if err := s.pods.AddIndexers(cache.Indexers{podNameIndex: func(obj any) ([]string, error) {
			pod, ok := obj.(*corev1.Pod)
			if !ok {
				return nil, nil
			}
			return []string{pod.Name}, nil
		}}); err != nil {
			return nil, fmt.Errorf("index pods by name: %w", err)
		}
		c.scopes = append(c.scopes, s)
	}
	return c, nil
}

// Start runs the informers until ctx ends.
func (c *Cache) Start(ctx context.Context) {
	for _, s := range c.scopes {
		s.factory.Start(ctx.Done())
	}
}

// WaitForSync blocks until every informer has listed once, or ctx ends. The owners count too:
// the versions found at start-up are exactly the ones whose deploy times must be known.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	for _, s := range c.scopes {
		var synced []cache.InformerSynced
		for _, inf := range s.informers() {
			synced = append(synced, inf.HasSynced)
		}
		if !cache.WaitForCacheSync(ctx.Done(), synced...) {
			return false
		}
	}
	return true
}

// HasSynced reports whether every informer has listed once (for /readyz).
func (c *Cache) HasSynced() bool {
	for _, s := range c.scopes {
		for _, inf := range s.informers() {
			if !inf.HasSynced() {
				return false
			}
		}
	}
	return true
}

// AddPodHandler registers h for pod events in every scope.
func (c *Cache) AddPodHandler(h cache.ResourceEventHandler) error {
	for _, s := range c.scopes {
		if _, err := s.pods.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

// AddDeploymentHandler registers h for Deployment events in every scope.
func (c *Cache) AddDeploymentHandler(h cache.ResourceEventHandler) error {
	for _, s := range c.scopes {
		if _, err := s.deployments.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

// AddServiceHandler registers h for Service events in every scope.
func (c *Cache) AddServiceHandler(h cache.ResourceEventHandler) error {
	for _, s := range c.scopes {
		if _, err := s.services.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

// PodsNamed returns every cached pod called name, across namespaces, ordered by namespace.
func (c *Cache) PodsNamed(name string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, s := range c.scopes {
		objs, err := s.pods.GetIndexer().ByIndex(podNameIndex, name)
		if err != nil {
			continue
		}
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok {
				out = append(out, pod)
			}
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Namespace, b.Namespace) })
	return out
}

// Pod returns the cached pod namespace/name.
func (c *Cache) Pod(namespace, name string) (*corev1.Pod, bool) {
	for _, s := range c.scopes {
		obj, ok, err := s.pods.GetIndexer().GetByKey(namespace + "/" + name)
		if err == nil && ok {
			if pod, ok := obj.(*corev1.Pod); ok {
				return pod, true
			}
		}
	}
	return nil, false
}

// PodsSelectedBy returns the cached pods of namespace whose labels match selector.
func (c *Cache) PodsSelectedBy(namespace string, selector map[string]string) []*corev1.Pod {
	if len(selector) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(selector)
	var out []*corev1.Pod
	for _, s := range c.scopes {
		objs, err := s.pods.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
		if err != nil {
			continue
		}
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok && sel.Matches(labels.Set(pod.Labels)) {
				out = append(out, pod)
			}
		}
	}
	return out
}

// ServiceFor returns the Service of pod's version and the port to route to. Candidates are the
// Services of the pod's namespace whose non-empty selector is a subset of the pod's labels. A
// selector that names the version label wins (it selects this version only); then the larger
// selector; then the name, so the choice never depends on cache order. The port is the one
// named "http", else the first.
func (c *Cache) ServiceFor(pod *corev1.Pod) (*corev1.Service, int32, bool) {
	candidates := c.servicesSelecting(pod, func(svc *corev1.Service) bool { return !selectsWholeApp(svc.Spec.Selector) })
	if len(candidates) == 0 {
		return nil, 0, false
	}
	slices.SortFunc(candidates, func(a, b *corev1.Service) int {
		_, av := a.Spec.Selector[LabelVersion]
		_, bv := b.Spec.Selector[LabelVersion]
		switch {
		case av != bv && av:
			return -1
		case av != bv:
			return 1
		case len(a.Spec.Selector) != len(b.Spec.Selector):
			return len(b.Spec.Selector) - len(a.Spec.Selector)
		}
		return strings.Compare(a.Name, b.Name)
	})
	svc := candidates[0]
	return svc, servicePort(svc), true
}

// Origin is when a pod's version came to be, for ordering versions detected together: the
// registry's type, carried unchanged from detection to the registry.
type Origin = registry.Origin

// OriginOf returns when pod's version was deployed, read from the cached owners.
//
// DeployedAt is the creation time of the Deployment that owns the pod (pod → ReplicaSet →
// Deployment); of the ReplicaSet when it has no Deployment (or that is not cached); zero when
// the pod has no ReplicaSet owner, or that is not cached.
//
// PodsCreatedAt is the earliest creation time among pod and the cached Ready pods of its
// version (same namespace, app and version labels). The earliest, not pod's own, so it does
// not depend on which replica happened to be detected first.
func (c *Cache) OriginOf(pod *corev1.Pod) Origin {
	o := Origin{DeployedAt: c.deployedAt(pod), PodsCreatedAt: pod.CreationTimestamp.Time}
	app, version := pod.Labels[LabelApp], pod.Labels[LabelVersion]
	if app == "" || version == "" {
		return o
	}
	for _, p := range c.PodsSelectedBy(pod.Namespace, map[string]string{LabelApp: app, LabelVersion: version}) {
		if p.DeletionTimestamp == nil && Ready(p) && p.CreationTimestamp.Time.Before(o.PodsCreatedAt) {
			o.PodsCreatedAt = p.CreationTimestamp.Time
		}
	}
	return o
}

func (c *Cache) deployedAt(pod *corev1.Pod) time.Time {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" || !isAppsGroup(ref.APIVersion) {
		return time.Time{}
	}
	rs, ok := c.replicaSet(pod.Namespace, ref.Name)
	if !ok || rs.UID != ref.UID {
		// Not cached yet (informers are not ordered with each other), or a namesake.
		return time.Time{}
	}
	ref = metav1.GetControllerOf(rs)
	if ref == nil || ref.Kind != "Deployment" || !isAppsGroup(ref.APIVersion) {
		return rs.CreationTimestamp.Time
	}
	dep, ok := c.deployment(pod.Namespace, ref.Name)
	if !ok || dep.UID != ref.UID {
		return rs.CreationTimestamp.Time
	}
	return dep.CreationTimestamp.Time
}

func isAppsGroup(apiVersion string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	return group == appsv1.GroupName
}

func (c *Cache) replicaSet(namespace, name string) (*appsv1.ReplicaSet, bool) {
	for _, s := range c.scopes {
		if rs, err := s.rsList.ReplicaSets(namespace).Get(name); err == nil {
			return rs, true
		}
	}
	return nil, false
}

func (c *Cache) deployment(namespace, name string) (*appsv1.Deployment, bool) {
	for _, s := range c.scopes {
		if d, err := s.deploymentList.Deployments(namespace).Get(name); err == nil {
			return d, true
		}
	}
	return nil, false
}

// selectsWholeApp reports whether a selector picks every version of an app (only the app
// label): such a Service cannot be one version's backend.
func selectsWholeApp(sel map[string]string) bool {
	_, app := sel[LabelApp]
	return app && len(sel) == 1
}

func servicePort(svc *corev1.Service) int32 {
	for _, p := range svc.Spec.Ports {
		if p.Name == "http" {
			return p.Port
		}
	}
	return svc.Spec.Ports[0].Port
}

// slim keeps only what detection reads, so the cache of a large cluster stays small.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		meta := o.ObjectMeta
		meta.ManagedFields = nil
		meta.Annotations = keep(meta.Annotations, LabelPath, LabelHostname, AnnotationVersionFrom)
		// The containers' names and images only: a version may be derived from an image.
		containers := make([]corev1.Container, len(o.Spec.Containers))
		for i, c := range o.Spec.Containers {
			containers[i] = corev1.Container{Name: c.Name, Image: c.Image}
		}
		return &corev1.Pod{
			ObjectMeta: meta,
			Spec: corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, NodeName: o.Spec.NodeName,
				Containers: containers},
			Status: corev1.PodStatus{
				Phase: o.Status.Phase, Conditions: o.Status.Conditions, PodIP: o.Status.PodIP,
			},
		}, nil
	case *corev1.Service:
		meta := o.ObjectMeta
		meta.ManagedFields = nil
		meta.Annotations = nil
		return &corev1.Service{
			ObjectMeta: meta,
			Spec:       corev1.ServiceSpec{Selector: o.Spec.Selector, Ports: o.Spec.Ports},
		}, nil
	case *appsv1.ReplicaSet:
		// Only the owner chain and the creation time are read; a cluster keeps ten old
		// ReplicaSets per Deployment, each with a full pod template.
		return &appsv1.ReplicaSet{ObjectMeta: ownerMeta(o.ObjectMeta)}, nil
	case *appsv1.Deployment:
		// The last-applied-configuration annotation alone can be many kilobytes: only the
		// adoption opt-in is kept, and the selector (to find the pods of an adopted Deployment).
		meta := ownerMeta(o.ObjectMeta)
		meta.Annotations = keep(o.Annotations, AnnotationAdopt)
		return &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Selector: o.Spec.Selector}}, nil
	}
	return obj, nil
}

// ownerMeta keeps what resolving an owner chain needs: identity, creation time, owners.
func ownerMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
		OwnerReferences: m.OwnerReferences,
	}
}

func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

// servicesSelecting returns the cached Services of pod's namespace that have ports, are not
// being deleted, have a non-empty selector matching pod's labels, and that keep accepts.
func (c *Cache) servicesSelecting(pod *corev1.Pod, keep func(*corev1.Service) bool) []*corev1.Service {
	var out []*corev1.Service
	podLabels := labels.Set(pod.Labels)
	for _, s := range c.scopes {
		svcs, err := s.svcList.Services(pod.Namespace).List(labels.Everything())
		if err != nil {
			continue
		}
		for _, svc := range svcs {
			sel := svc.Spec.Selector
			if len(sel) == 0 || len(svc.Spec.Ports) == 0 || svc.DeletionTimestamp != nil {
				continue
			}
			if labels.SelectorFromSet(sel).Matches(podLabels) && keep(svc) {
				out = append(out, svc)
			}
		}
	}
	return out
}
