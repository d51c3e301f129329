package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const fieldManager = "skewguard-launcher"

// launcher keeps one supervised local process per Running pod.
type launcher struct {
	cfg    *Config
	client kubernetes.Interface
	pods   listersv1.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]
	addrs  *addresses
	state  *stateFile

	mu    sync.Mutex
	procs map[string]*podProc // by namespace/name
}

func newLauncher(cfg *Config, client kubernetes.Interface, pods listersv1.PodLister, addrs *addresses, state *stateFile) *launcher {
	return &launcher{
		cfg:    cfg,
		client: client,
		pods:   pods,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		addrs:  addrs,
		state:  state,
		procs:  map[string]*podProc{},
	}
}

func (l *launcher) handler() cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			l.queue.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

func (l *launcher) runWorkers(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for l.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

func (l *launcher) processNext(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.sync(ctx, key); err != nil {
		slog.Error("sync pod", "pod", key, "err", err)
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}

// sync makes the pod's process match the pod: started when wanted, restarted when its spec
// changed, stopped when the pod is gone or no longer Running.
func (l *launcher) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := l.pods.Pods(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var want *spec
	if pod != nil {
		want, err = l.desired(pod)
		if err != nil {
			slog.Warn("pod not launched", "pod", key, "err", err)
		}
	}
	l.mu.Lock()
	cur := l.procs[key]
	l.mu.Unlock()
	if cur != nil && (want == nil || !cur.spec.sameAs(*want)) {
		l.stop(cur)
		cur = nil
	}
	if want != nil && cur == nil {
		return l.start(ctx, key, *want, pod)
	}
	return nil
}

func (l *launcher) desired(pod *corev1.Pod) (*spec, error) {
	ip, ok := l.cfg.PodIP(pod)
	if !ok {
		return nil, nil
	}
	program, err := l.cfg.ProgramFor(pod)
	if err != nil {
		return nil, err
	}
	prog := l.cfg.Programs[program]
	return &spec{
		uid:     string(pod.UID),
		ip:      ip,
		port:    podPorts(pod)[0],
		program: program,
		env:     l.cfg.ProcessEnv(pod, prog, ip),
		prog:    prog,
	}, nil
}

func (l *launcher) start(ctx context.Context, key string, s spec, pod *corev1.Pod) error {
	// A recycled pod IP may still be held by the process of a pod that is going away.
	l.waitForIPRelease(s.ip, key)
	if err := l.addrs.acquire(s.ip); err != nil {
		return err
	}
	if podReady(pod) {
		// A process (re)starting is not serving yet, whatever the pod said before.
		l.setReady(ctx, key, false, "ProcessStarting")
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &podProc{key: key, spec: s, cancel: cancel, done: make(chan struct{})}
	l.mu.Lock()
	l.procs[key] = p
	l.mu.Unlock()
	go p.run(pctx, hooks{
		setReady:    l.setReady,
		token:       l.token,
		started:     l.started,
		exited:      l.exited,
		logDir:      l.cfg.LogDir,
		killTimeout: 5 * time.Second,
	})
	return nil
}

func (l *launcher) waitForIPRelease(ip netip.Addr, key string) {
	for {
		l.mu.Lock()
		var holder *podProc
		for k, p := range l.procs {
			if k != key && p.spec.ip == ip {
				holder = p
				break
			}
		}
		l.mu.Unlock()
		if holder == nil {
			return
		}
		slog.Info("pod IP still held by a previous pod's process; stopping it", "ip", ip, "holder", holder.key, "pod", key)
		l.stop(holder)
	}
}

// stop cancels a pod's supervisor, waits for its process to end, and releases its IP.
func (l *launcher) stop(p *podProc) {
	p.cancel()
	<-p.done
	l.mu.Lock()
	if l.procs[p.key] == p {
		delete(l.procs, p.key)
	}
	l.mu.Unlock()
	l.addrs.release(p.spec.ip)
	slog.Info("stopped pod process", "pod", p.key, "addr", addr(p.spec))
}

func (l *launcher) started(p *podProc, pid int) {
	l.mu.Lock()
	p.pid = pid
	l.mu.Unlock()
	l.state.addProcess(pid)
}

func (l *launcher) exited(p *podProc) {
	l.mu.Lock()
	pid := p.pid
	p.pid = 0
	l.mu.Unlock()
	l.state.removeProcess(pid)
}

// shutdown stops every pod process and removes every address the launcher added.
func (l *launcher) shutdown() {
	l.mu.Lock()
	procs := make([]*podProc, 0, len(l.procs))
	for _, p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { l.stop(p) })
	}
	wg.Wait()
	l.addrs.releaseAll()
}

// setReady reports the process's readiness as the pod's Ready and ContainersReady conditions
// (kwok leaves them False; see hack/kwok/pod-running.yaml), which is what EndpointSlices follow.
func (l *launcher) setReady(ctx context.Context, key string, ready bool, reason string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	// Always patch: the cache may not show our previous patch yet, and the patch is idempotent.
	pod, err := l.pods.Pods(ns).Get(name)
	if err != nil {
		return
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	conds := []corev1.PodCondition{
		{Type: corev1.PodReady, Status: status, Reason: reason, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: status, Reason: reason, LastTransitionTime: now},
	}
	ctrs := make([]corev1.ContainerStatus, len(pod.Status.ContainerStatuses))
	for i, cs := range pod.Status.ContainerStatuses {
		cs.Ready = ready
		ctrs[i] = cs
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds, "containerStatuses": ctrs}})
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = l.client.CoreV1().Pods(ns).Patch(pctx, name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		slog.Error("set pod readiness", "pod", key, "ready", ready, "err", err)
		return
	}
	slog.Info("pod readiness set", "pod", key, "ready", ready, "reason", reason)
}

// token requests a token of the pod's ServiceAccount bound to the pod, as a kubelet does for a
// projected ServiceAccount token volume.
func (l *launcher) token(ctx context.Context, key string) (string, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := l.pods.Pods(ns).Get(name)
	if err != nil {
		return "", fmt.Errorf("get pod %s: %w", key, err)
	}
	expiry := int64((24 * time.Hour).Seconds())
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &expiry,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	out, err := l.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, serviceAccountName(pod), tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s bound to pod %s: %w", ns, serviceAccountName(pod), name, err)
	}
	return out.Status.Token, nil
}

func podReady(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// snapshot lists the managed pods for /pods.
func (l *launcher) snapshot() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]map[string]any, 0, len(l.procs))
	for k, p := range l.procs {
		out = append(out, map[string]any{"pod": k, "program": p.spec.program, "address": addr(p.spec), "pid": p.pid})
	}
	return out
}
