package activities

import (
	"context"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// AdmitResult is what a lifecycle needs before it can route a new version: the version as
// recorded, the app's policy, and, when the readiness informers already know it, whether the
// version's Service has a ready endpoint now.
type AdmitResult struct {
	Version registry.Version `json:"version"`
	Policy  Policy           `json:"policy"`
	// Readiness is the Service's readiness from the informer cache at admission; nil when the
	// cache does not watch the namespace, has not synced yet, or could not tell. Only a Ready
	// one is acted on: anything else is waited for with WaitReady, as before.
	Readiness *kube.Readiness `json:"readiness,omitempty"`
}

// Admit is the first step of a version's lifecycle in one call: Observe (record the version),
// LoadPolicy (the app's effective policy) and a look at the readiness cache, so that a version
// whose pods are already ready is activated by the very next step. It is meant to run as a local
// activity: both registry calls are short, idempotent and safe to repeat.
func (a *Activities) Admit(ctx context.Context, in ObserveInput) (AdmitResult, error) {
	v, err := a.Observe(ctx, in)
	if err != nil {
		return AdmitResult{}, err
	}
	p, err := a.LoadPolicy(ctx, in.Ref.AppRef())
	if err != nil {
		return AdmitResult{}, err
	}
	return AdmitResult{Version: v, Policy: p, Readiness: a.readyNow(ctx, in)}, nil
}

// readyNow returns the Service's readiness from the informer cache if it is ready now, else nil.
// Admission runs inside a workflow task, so it never waits for the informers to sync: an
// unsynced cache is the same as not knowing.
func (a *Activities) readyNow(ctx context.Context, in ObserveInput) *kube.Readiness {
	if a.Readiness == nil || !a.Readiness.Watches(in.Ref.Namespace) || !a.Readiness.HasSynced() {
		return nil
	}
	r, err := a.Readiness.Current(ctx, in.Ref.Namespace, in.ServiceName, in.ServicePort)
	if err != nil || !r.Ready {
		return nil
	}
	return &r
}
