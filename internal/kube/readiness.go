package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Readiness is what a version's Service looks like from its EndpointSlices.
type Readiness struct {
	// Ready is true once the Service has an endpoint whose EndpointSlice condition says ready
	// for the checked port. The optional TCP probe never changes it.
	Ready bool `json:"ready"`
	// Endpoints counts the endpoints marked ready.
	Endpoints  int   `json:"endpoints"`
	TargetPort int32 `json:"targetPort,omitempty"`
	// Probed is the address that accepted a TCP connection on the target port, when the probe
	// is on and one did; ProbeError says why none did. The probe is informational: a
	// NetworkPolicy may rightly keep the worker from reaching pods the Gateway reaches.
	Probed     string `json:"probed,omitempty"`
	ProbeError string `json:"probeError,omitempty"`
	// Why says, when not ready, what is missing.
	Why string `json:"why,omitempty"`
	// Port is the Service port that was checked (the first one when none was asked for).
	Port int32 `json:"port"`
}

// ErrNoService is returned (wrapped) when the Service does not exist.
var ErrNoService = errors.New("service not found")

// Prober optionally dials a ready endpoint to report whether it accepts TCP connections.
type Prober struct {
	// Probe turns the TCP probe on; it is off by default.
	Probe bool
	// Dial opens the probe connection; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// ProbeTimeout bounds one TCP probe (default 1s).
	ProbeTimeout time.Duration
}

// probeAll records in r the first of addrs that accepts a connection, or why none did. It does
// nothing when the probe is off or the Service is not ready.
func (p Prober) probeAll(ctx context.Context, r *Readiness, addrs []string) {
	if !p.Probe || !r.Ready {
		return
	}
	for _, addr := range addrs {
		if p.dial(ctx, addr) == nil {
			r.Probed = addr
			return
		}
	}
	r.ProbeError = fmt.Sprintf("none of %d ready endpoint(s) accepts TCP connections on port %d from here", r.Endpoints, r.TargetPort)
}

func (p Prober) dial(ctx context.Context, addr string) error {
	timeout := p.ProbeTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// readinessOf computes the readiness of Service namespace/name (svc nil: it does not exist) on
// Service port port (0: its first port) from its EndpointSlices, and returns the ready
// addresses with their target port for an optional probe.
func readinessOf(namespace, name string, svc *corev1.Service, slices []*discoveryv1.EndpointSlice, port int32) (Readiness, []string) {
	if svc == nil {
		return Readiness{Port: port, Why: fmt.Sprintf("Service %s/%s does not exist yet", namespace, name)}, nil
	}
	sp, ok := servicePort(svc, port)
	if !ok {
		return Readiness{Port: port, Why: fmt.Sprintf("Service %s/%s has no port %d", namespace, name, port)}, nil
	}
	r := Readiness{Port: sp.Port}
	var addrs []string
	for _, s := range slices {
		target, ok := slicePort(s, sp.Name)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			// The API defines a nil ready condition as ready (an unknown state is to be
			// interpreted as ready by consumers).
			if (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) || len(ep.Addresses) == 0 {
				continue
			}
			r.Endpoints++
			r.TargetPort = target
			addrs = append(addrs, net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(target))))
		}
	}
	if r.Endpoints == 0 {
		r.Why = fmt.Sprintf("Service %s/%s has no ready endpoint for port %d", namespace, name, sp.Port)
		return r, nil
	}
	r.Ready = true
	return r, addrs
}

// servicePort finds the Service port numbered port, or the first port when port is 0.
func servicePort(svc *corev1.Service, port int32) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if port == 0 || p.Port == port {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// slicePort finds the slice's port for the Service port named name (EndpointSlice ports carry
// the Service port's name, empty for an unnamed single port).
func slicePort(s *discoveryv1.EndpointSlice, name string) (int32, bool) {
	for _, p := range s.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// ErrNotWatched is returned (wrapped) for a namespace outside the watcher's namespaces.
var ErrNotWatched = errors.New("namespace is not watched")

// ErrNotSynced is returned (wrapped, with the last list or watch error, e.g. a Forbidden one)
// when the context ends before the informers have listed once.
var ErrNotSynced = errors.New("readiness informers have not synced")

// sliceServiceIndex indexes EndpointSlices by namespace/Service.
const sliceServiceIndex = "service"

// ReadinessWatcher answers readiness from shared informers over Services and EndpointSlices,
// and wakes waiters on the informer events of the Service they wait for: no polling, and no
// load on the API server beyond one watch per resource.
type ReadinessWatcher struct {
	// Prober is the optional TCP probe; set it before the first Wait.
	Prober

	scopes    []*readinessScope
	startOnce sync.Once
	stop      context.CancelFunc

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // namespace/service → wake-up channels
}

// readinessScope is one informer factory: one namespace, or all of them.
type readinessScope struct {
	namespace string
	factory   informers.SharedInformerFactory
	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer

	mu      sync.Mutex
	lastErr error // the last list or watch error, to explain a cache that does not sync
}

// NewReadinessWatcher builds (but does not start) informers over namespaces; none means all.
// Start runs them; Wait starts them on first use when Start was not called.
func NewReadinessWatcher(client kubernetes.Interface, namespaces []string) (*ReadinessWatcher, error) {
	if client == nil {
		return nil, errors.New("readiness watcher: no Kubernetes client")
	}
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	w := &ReadinessWatcher{waiters: map[string]map[chan struct{}]struct{}{}}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    w.notify,
		UpdateFunc: func(_, obj any) { w.notify(obj) },
		DeleteFunc: w.notify,
	}
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithNamespace(ns), informers.WithTransform(dropManagedFields))
		s := &readinessScope{namespace: ns, factory: f,
			services: f.Core().V1().Services().Informer(), slices: f.Discovery().V1().EndpointSlices().Informer()}
		if err := s.slices.AddIndexers(cache.Indexers{sliceServiceIndex: func(obj any) ([]string, error) {
			if key, ok := readinessKey(obj); ok {
				return []string{key}, nil
			}
			return nil, nil
		}}); err != nil {
			return nil, fmt.Errorf("index EndpointSlices by Service: %w", err)
		}
		for _, inf := range []cache.SharedIndexInformer{s.services, s.slices} {
			if err := inf.SetWatchErrorHandlerWithContext(s.recordError); err != nil {
				return nil, err
			}
			if _, err := inf.AddEventHandler(handler); err != nil {
				return nil, err
			}
		}
		w.scopes = append(w.scopes, s)
	}
	return w, nil
}

// dropManagedFields keeps the cache small: readiness never reads managedFields.
func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func (s *readinessScope) recordError(ctx context.Context, r *cache.Reflector, err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	cache.DefaultWatchErrorHandler(ctx, r, err) // keep client-go's logging
}

func (s *readinessScope) synced() bool { return s.services.HasSynced() && s.slices.HasSynced() }

// Start runs the informers until ctx ends or Stop is called. Only the first call (or the first
// Wait) starts them.
func (w *ReadinessWatcher) Start(ctx context.Context) {
	w.startOnce.Do(func() {
		ctx, w.stop = context.WithCancel(ctx)
		for _, s := range w.scopes {
			s.factory.Start(ctx.Done())
		}
	})
}

// Stop ends the informers.
func (w *ReadinessWatcher) Stop() {
	w.startOnce.Do(func() {}) // a later Start must not run informers nobody stops
	if w.stop != nil {
		w.stop()
	}
	for _, s := range w.scopes {
		s.factory.Shutdown()
	}
}

// HasSynced reports whether every informer has listed once.
func (w *ReadinessWatcher) HasSynced() bool {
	for _, s := range w.scopes {
		if !s.synced() {
			return false
		}
	}
	return true
}

// Watches reports whether namespace is among the watched namespaces.
func (w *ReadinessWatcher) Watches(namespace string) bool {
	return w.scope(namespace) != nil
}

func (w *ReadinessWatcher) scope(namespace string) *readinessScope {
	for _, s := range w.scopes {
		if s.namespace == metav1.NamespaceAll || s.namespace == namespace {
			return s
		}
	}
	return nil
}

// Wait returns as soon as Service namespace/service has a ready endpoint for Service port port
// (0: its first port), woken by the informer events of that Service and its EndpointSlices. A
// missing Service is waited for. When ctx ends first it returns the last readiness seen and
// ctx's error (wrapped in ErrNotSynced if the informers never listed).
func (w *ReadinessWatcher) Wait(ctx context.Context, namespace, service string, port int32) (Readiness, error) {
	return w.Watch(ctx, namespace, service, port, nil)
}

// Watch is Wait that also calls onChange (when not nil) with every readiness it computes: once
// at the start and after each event of the Service or its EndpointSlices.
func (w *ReadinessWatcher) Watch(ctx context.Context, namespace, service string, port int32, onChange func(Readiness)) (Readiness, error) {
	s, err := w.begin(ctx, namespace, service)
	if err != nil {
		return Readiness{Port: port, Why: err.Error()}, err
	}
	key := namespace + "/" + service
	wake := w.subscribe(key)
	defer w.unsubscribe(key, wake)
	for {
		// Subscribed before reading the cache: an event landing between the read and the
		// select still wakes us (the channel holds one pending wake-up).
		r, addrs := s.readiness(namespace, service, port)
		if r.Ready {
			w.probeAll(ctx, &r, addrs)
			return r, nil
		}
		if onChange != nil {
			onChange(r)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-wake:
		}
	}
}

// Current returns the readiness of Service namespace/service as the synced cache has it now,
// without waiting for it to become ready.
func (w *ReadinessWatcher) Current(ctx context.Context, namespace, service string, port int32) (Readiness, error) {
	s, err := w.begin(ctx, namespace, service)
	if err != nil {
		return Readiness{Port: port, Why: err.Error()}, err
	}
	r, addrs := s.readiness(namespace, service, port)
	w.probeAll(ctx, &r, addrs)
	return r, nil
}

// begin checks the arguments, starts the informers if needed and waits until the scope has synced.
func (w *ReadinessWatcher) begin(ctx context.Context, namespace, service string) (*readinessScope, error) {
	if namespace == "" || service == "" {
		return nil, fmt.Errorf("readiness: namespace and Service name are required (got %q/%q)", namespace, service)
	}
	s := w.scope(namespace)
	if s == nil {
		return nil, fmt.Errorf("readiness of Service %s/%s: %w", namespace, service, ErrNotWatched)
	}
	w.Start(context.Background())
	if !cache.WaitForCacheSync(ctx.Done(), s.services.HasSynced, s.slices.HasSynced) {
		s.mu.Lock()
		last := s.lastErr
		s.mu.Unlock()
		if last != nil {
			return nil, fmt.Errorf("%w: %w (last error: %w)", ErrNotSynced, ctx.Err(), last)
		}
		return nil, fmt.Errorf("%w: %w", ErrNotSynced, ctx.Err())
	}
	return s, nil
}

// readiness computes from the cache.
func (s *readinessScope) readiness(namespace, service string, port int32) (Readiness, []string) {
	var svc *corev1.Service
	if obj, ok, err := s.services.GetIndexer().GetByKey(namespace + "/" + service); err == nil && ok {
		svc, _ = obj.(*corev1.Service)
	}
	objs, _ := s.slices.GetIndexer().ByIndex(sliceServiceIndex, namespace+"/"+service)
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, es)
		}
	}
	return readinessOf(namespace, service, svc, slices, port)
}

// readinessKey is the namespace/Service an informer object concerns: the Service itself, or
// the Service an EndpointSlice belongs to (its kubernetes.io/service-name label).
func readinessKey(obj any) (string, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *corev1.Service:
		return o.Namespace + "/" + o.Name, true
	case *discoveryv1.EndpointSlice:
		if name := o.Labels[discoveryv1.LabelServiceName]; name != "" {
			return o.Namespace + "/" + name, true
		}
	}
	return "", false
}

func (w *ReadinessWatcher) notify(obj any) {
	key, ok := readinessKey(obj)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.waiters[key] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

func (w *ReadinessWatcher) subscribe(key string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiters[key] == nil {
		w.waiters[key] = map[chan struct{}]struct{}{}
	}
	w.waiters[key][ch] = struct{}{}
	return ch
}

func (w *ReadinessWatcher) unsubscribe(key string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.waiters[key], ch)
	if len(w.waiters[key]) == 0 {
		delete(w.waiters, key)
	}
}

// PodCount is how many endpoints (pods) a Service's EndpointSlices list, and how many of them
// are ready.
type PodCount struct {
	Ready int
	Total int
}

// Pods counts the endpoints of Service namespace/service across its EndpointSlices as the cache
// has them now, without waiting and without calling the API server: an endpoint listed by
// several slices (one per address family) counts once, by its target (the pod) or else its first
// address; a nil ready condition is ready, as for Wait. ok is false when the count is unknown:
// the namespace is not watched, the informers have not listed yet, or the Service is not in the
// cache. Pods does not start the informers.
func (w *ReadinessWatcher) Pods(namespace, service string) (PodCount, bool) {
	s := w.scope(namespace)
	if s == nil || !s.synced() {
		return PodCount{}, false
	}
	if _, ok, err := s.services.GetIndexer().GetByKey(namespace + "/" + service); err != nil || !ok {
		return PodCount{}, false
	}
	objs, _ := s.slices.GetIndexer().ByIndex(sliceServiceIndex, namespace+"/"+service)
	seen := map[string]bool{} // endpoint → ready
	for _, o := range objs {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			var key string
			switch {
			case ep.TargetRef != nil && ep.TargetRef.Name != "":
				key = ep.TargetRef.Kind + "/" + ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
			case len(ep.Addresses) > 0:
				key = "addr/" + ep.Addresses[0]
			default:
				continue
			}
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			seen[key] = seen[key] || ready
		}
	}
	var c PodCount
	for _, ready := range seen {
		c.Total++
		if ready {
			c.Ready++
		}
	}
	return c, true
}
