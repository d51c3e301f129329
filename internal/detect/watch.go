package detect

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// item is one pod to detect, and why.
type item struct {
	namespace, name string
	source          string // SourcePodWatch or SourceRetry
}

// Watcher is the agent-free source of detection: labelled pods (or pods whose version comes
// from their image, see Detector.Watchable) that turn Ready (and, on start,
// every labelled Ready pod, which is how versions are found again after a restart) go through
// the Detector from a rate-limited work queue. The same queue retries registrations whose
// detection failed or found no Service yet.
type Watcher struct {
	cache    *Cache
	detector *Detector
	queue    workqueue.TypedRateLimitingInterface[item]
	log      *slog.Logger
	// watchPods is PLT_SKEW_WATCH_PODS: off, only retries are processed.
	watchPods bool
}

// NewWatcher wires the watch into c's informers; call it before the cache starts so the
// initial list is seen.
func NewWatcher(c *Cache, d *Detector, watchPods bool, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.Default()
	}
	w := &Watcher{
		cache:    c,
		detector: d,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](500*time.Millisecond, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: "skewguard-detect"}),
		log:       logger,
		watchPods: watchPods,
	}
	if !watchPods {
		return w, nil
	}
	if err := c.AddPodHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok && d.Watchable(pod) {
				w.enqueue(pod, SourcePodWatch)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.Pod)
			pod, ok2 := newObj.(*corev1.Pod)
			if ok1 && ok2 && d.Watchable(pod) && (!d.Watchable(old) || !maps.Equal(old.Labels, pod.Labels) ||
				old.Annotations[AnnotationVersionFrom] != pod.Annotations[AnnotationVersionFrom]) {
				w.enqueue(pod, SourcePodWatch)
			}
		},
	}); err != nil {
		return nil, err
	}
	if err := c.AddDeploymentHandler(cache.ResourceEventHandlerFuncs{
		// A Deployment annotated for adoption: its pods are Ready already, and no pod event
		// would bring them here.
		AddFunc:    func(obj any) { w.deploymentChanged(nil, obj) },
		UpdateFunc: func(oldObj, newObj any) { w.deploymentChanged(oldObj, newObj) },
	}); err != nil {
		return nil, err
	}
	if err := c.AddServiceHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { w.serviceChanged(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.Service)
			svc, ok2 := newObj.(*corev1.Service)
			if ok1 && ok2 && !maps.Equal(old.Spec.Selector, svc.Spec.Selector) {
				w.serviceChanged(svc)
			}
		},
	}); err != nil {
		return nil, err
	}
	return w, nil
}

// Ready reports whether the pod's Ready condition is true.
func Ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// serviceChanged re-detects the Ready pods a new Service selects: their version may have been
// waiting for its Service.
func (w *Watcher) serviceChanged(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok || len(svc.Spec.Selector) == 0 {
		return
	}
	for _, pod := range w.cache.PodsSelectedBy(svc.Namespace, svc.Spec.Selector) {
		if w.detector.Watchable(pod) {
			w.enqueue(pod, SourcePodWatch)
		}
	}
}

// deploymentChanged queues the watchable pods of a Deployment that has just asked for adoption.
func (w *Watcher) deploymentChanged(oldObj, newObj any) {
	dep, ok := newObj.(*appsv1.Deployment)
	if !ok || !adoptRequested(dep) {
		return
	}
	if old, ok := oldObj.(*appsv1.Deployment); ok && adoptRequested(old) {
		return
	}
	for _, pod := range w.cache.podsOfDeployment(dep) {
		if w.detector.Watchable(pod) {
			w.enqueue(pod, SourcePodWatch)
		}
	}
}

// Retry queues pod for another detection, with backoff: its registration failed or found no
// Service.
func (w *Watcher) Retry(pod *corev1.Pod) {
	w.queue.AddRateLimited(item{namespace: pod.Namespace, name: pod.Name, source: SourceRetry})
}

func (w *Watcher) enqueue(pod *corev1.Pod, source string) {
	w.queue.Add(item{namespace: pod.Namespace, name: pod.Name, source: source})
}

// Run processes the queue with the given number of workers until ctx ends.
func (w *Watcher) Run(ctx context.Context, workers int) {
	if workers < 1 {
		workers = 1
	}
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for w.next(ctx) {
			}
		})
	}
	wg.Wait()
}

func (w *Watcher) next(parent context.Context) bool {
	it, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(it)

	pod, ok := w.cache.Pod(it.namespace, it.name)
	if !ok || pod.DeletionTimestamp != nil {
		w.queue.Forget(it)
		return true
	}
	if it.source == SourcePodWatch && !w.detector.Watchable(pod) {
		w.queue.Forget(it)
		return true
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	res, err := w.detector.Detect(ctx, pod, it.source, Hint{})
	switch {
	case err != nil && parent.Err() == nil,
		err == nil && res.Outcome == OutcomeNoService && it.source == SourceRetry,
		// Another detection holds the start of this life. Should that start fail with its pod
		// gone, or its workflow never record the life (a start that attached to a run just
		// finishing), no event would bring this pod back: look again, with backoff, until
		// the life is live or this pod starts it.
		err == nil && res.Outcome == OutcomeDeduped:
		w.log.Debug("detection queued again", "pod", it.namespace+"/"+it.name, "outcome", res.Outcome.String(),
			"attempts", w.queue.NumRequeues(it)+1)
		w.queue.AddRateLimited(it)
	default:
		w.queue.Forget(it)
	}
	return true
}
