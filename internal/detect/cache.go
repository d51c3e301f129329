// Package detect owns how skewguard learns that a version exists: a shared informer cache of
// pods (indexed by name, because the agent knows only its hostname) and Services, the lookup of
// a version's Service by selector, the one idempotent detection path that registrations and the
// pod watch both go through, and the pod watch itself.
package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// The labels (and, for the path, the annotation) skewguard reads from pods.
const (
	LabelApp      = "app.kubernetes.io/name"
	LabelVersion  = "plt.dev/version"
	LabelPath     = "plt.dev/path"
	LabelHostname = "plt.dev/hostname"
)

const podNameIndex = "pod-name"

// Cache holds the pods and Services of the watched namespaces in shared informers. Reads never
// go to the API server.
type Cache struct {
	scopes []scope
}

// scope is one informer factory: one namespace, or all of them.
type scope struct {
	factory  informers.SharedInformerFactory
	pods     cache.SharedIndexInformer
	services cache.SharedIndexInformer
	svcList  listersv1.ServiceLister
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
		s := scope{factory: f, pods: pods.Informer(), services: svcs.Informer(), svcList: svcs.Lister()}
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

// WaitForSync blocks until every informer has listed once, or ctx ends.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	for _, s := range c.scopes {
		if !cache.WaitForCacheSync(ctx.Done(), s.pods.HasSynced, s.services.HasSynced) {
			return false
		}
	}
	return true
}

// HasSynced reports whether every informer has listed once (for /readyz).
func (c *Cache) HasSynced() bool {
	for _, s := range c.scopes {
		if !s.pods.HasSynced() || !s.services.HasSynced() {
			return false
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
	var candidates []*corev1.Service
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
			if labels.SelectorFromSet(sel).Matches(podLabels) && !selectsWholeApp(sel) {
				candidates = append(candidates, svc)
			}
		}
	}
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
		meta.Annotations = keep(meta.Annotations, LabelPath, LabelHostname)
		return &corev1.Pod{
			ObjectMeta: meta,
			Spec:       corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, NodeName: o.Spec.NodeName},
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
	}
	return obj, nil
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
