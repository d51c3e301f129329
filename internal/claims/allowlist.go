package claims

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skewguard/skewguard/internal/metrics"
	"github.com/skewguard/skewguard/internal/validate"
)

var (
	// Refusals counts refused claims by reason (detection and the flip both count).
	Refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "skewguard",
		Name:      "claim_refusals_total",
		Help:      "Claims of a hostname and path refused by the claims allowlist, by reason: unconfigured, unavailable, namespace, host, path.",
	}, []string{"reason"})
	// Valid is 1 when the allowlist in force is the ConfigMap's current content, 0 when none was
	// loaded yet or the ConfigMap's latest content does not parse (the last good one is kept).
	Valid = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "skewguard",
		Name:      "claims_allowlist_valid",
		Help:      "1 when the claims allowlist in force is the ConfigMap's current content; 0 when none is loaded or its latest content does not parse (the last good allowlist is kept).",
	})
	// Reloads counts loads of the allowlist ConfigMap by result (ok, error, deleted).
	Reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "skewguard",
		Name:      "claims_allowlist_reloads_total",
		Help:      "Loads of the claims allowlist ConfigMap by result: ok, error (kept the last good one), deleted (refuses everything).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(Refusals, Valid, Reloads)
}

// ErrNotSynced: the allowlist's informer has not listed the ConfigMap yet. It is transient:
// callers retry rather than refuse.
var ErrNotSynced = errors.New("the claims allowlist ConfigMap has not been read yet")

// Allowlist is the allowlist in force, kept current from its ConfigMap. Its zero value and a nil
// *Allowlist refuse every claim: allowing everything takes AllowAll, explicitly.
type Allowlist struct {
	allowAll bool
	source   string // "ConfigMap ns/name, key claims.yaml"
	policy   atomic.Pointer[Policy]
	synced   func() bool

	mu      sync.Mutex
	lastErr error // the latest content's parse error, nil when it is in force
}

// AllowAll allows every claim. It is for tests and development stacks that build activities in
// process; production wiring never uses it.
func AllowAll() *Allowlist { return &Allowlist{allowAll: true, source: "AllowAll"} }

// Static is an allowlist fixed to p (tests).
func Static(p *Policy, source string) *Allowlist {
	a := &Allowlist{source: source}
	a.policy.Store(p)
	return a
}

// Source names the allowlist, as refusals do.
func (a *Allowlist) Source() string {
	if a == nil || a.source == "" {
		return "PLT_SKEW_CLAIMS_CONFIGMAP (not set)"
	}
	return a.source
}

// Configured reports whether the allowlist comes from somewhere (a ConfigMap, AllowAll or Static).
func (a *Allowlist) Configured() bool { return a != nil && a.source != "" }

// Check reports whether app of namespace may claim host (empty: every host) with path prefix
// path. A refusal is a *NotAllowedError, counted in skewguard_claim_refusals_total. Before the
// ConfigMap has been read it waits up to 10 seconds, then returns ErrNotSynced.
func (a *Allowlist) Check(namespace, app, host, path string) error {
	if a != nil && a.allowAll {
		return nil
	}
	if a == nil || a.source == "" {
		return count(&NotAllowedError{Namespace: namespace, App: app, Host: host, Path: path, Reason: ReasonUnconfigured,
			Source: a.Source(), Detail: "no claims allowlist is configured, so no namespace may claim a hostname or path"})
	}
	if a.synced != nil && !a.synced() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok := cache.WaitForCacheSync(ctx.Done(), a.synced)
		cancel()
		if !ok {
			return ErrNotSynced
		}
	}
	p := a.policy.Load()
	if p == nil {
		return count(&NotAllowedError{Namespace: namespace, App: app, Host: host, Path: path, Reason: ReasonUnavailable,
			Source: a.source, Detail: "the allowlist ConfigMap is missing or has never held a valid allowlist, so every claim is refused"})
	}
	return count(p.Check(namespace, app, host, path, a.source))
}

func count(err error) error {
	var na *NotAllowedError
	if errors.As(err, &na) {
		Refusals.WithLabelValues(na.Reason).Inc()
	}
	return err
}

// HasSynced reports whether the ConfigMap has been read (always true when not from a ConfigMap).
func (a *Allowlist) HasSynced() bool { return a == nil || a.synced == nil || a.synced() }

// LastError is the parse error of the ConfigMap's latest content (the last good allowlist is in
// force meanwhile), nil when that content is in force.
func (a *Allowlist) LastError() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

// ParseRef parses PLT_SKEW_CLAIMS_CONFIGMAP: "namespace/name".
func ParseRef(ref string) (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(strings.TrimSpace(ref), "/")
	if !ok || validate.DNSLabel(namespace) != nil || validate.DNSSubdomain(name) != nil {
		return "", "", fmt.Errorf("PLT_SKEW_CLAIMS_CONFIGMAP: %q is not namespace/name of a ConfigMap", ref)
	}
	return namespace, name, nil
}

// Watch returns the allowlist read from the ConfigMap namespace/name (key claims.yaml) by an
// informer that watches only that object; the informer runs until ctx ends. Until its first list
// Check waits (then ErrNotSynced); a missing ConfigMap, an empty one or one that never parsed
// refuses every claim; an edit that does not parse keeps the last good allowlist, logs an error
// and sets skewguard_claims_allowlist_valid to 0.
func Watch(ctx context.Context, client kubernetes.Interface, namespace, name string, log *slog.Logger) (*Allowlist, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &Allowlist{source: fmt.Sprintf("ConfigMap %s/%s (key %s)", namespace, name, Key)}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	load := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != name {
			return
		}
		p, err := Parse([]byte(cm.Data[Key]))
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil {
			a.lastErr = err
			Valid.Set(0)
			Reloads.WithLabelValues("error").Inc()
			kept := "no allowlist was loaded before: every claim is refused"
			if a.policy.Load() != nil {
				kept = "the last good allowlist stays in force"
			}
			log.Error("claims allowlist does not parse: "+kept, "configMap", namespace+"/"+name,
				"resourceVersion", cm.ResourceVersion, "error", err)
			return
		}
		a.lastErr = nil
		a.policy.Store(p)
		Valid.Set(1)
		Reloads.WithLabelValues("ok").Inc()
		log.Info("claims allowlist loaded", "configMap", namespace+"/"+name, "resourceVersion", cm.ResourceVersion,
			"entries", len(p.entries))
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    load,
		UpdateFunc: func(_, obj any) { load(obj) },
		DeleteFunc: func(obj any) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.lastErr = nil
			a.policy.Store(nil) // missing: every claim is refused, as at a start without it
			Valid.Set(0)
			Reloads.WithLabelValues("deleted").Inc()
			log.Warn("claims allowlist ConfigMap deleted: every new claim is refused", "configMap", namespace+"/"+name)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("claims allowlist informer: %w", err)
	}
	// The allowlist is what the handler loaded, so it is synced when the handler has seen the
	// first list, not when the informer's store has it (a check between the two was refused as
	// unavailable: TestWatchFailsClosedAtStart saw it once in make test).
	a.synced = reg.HasSynced
	factory.Start(ctx.Done())
	return a, nil
}

// WaitForSync waits until the ConfigMap has been read or ctx ends.
func (a *Allowlist) WaitForSync(ctx context.Context) bool {
	if a == nil || a.synced == nil {
		return true
	}
	return cache.WaitForCacheSync(ctx.Done(), a.synced)
}
