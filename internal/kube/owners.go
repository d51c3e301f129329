package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skewguard/skewguard/internal/routes"
)

// Owners names the Deployments that run a version.
type Owners struct {
	Deployments []string `json:"deployments"`
	// Skipped names, with the reason, Deployments that own pods or ReplicaSets of the version
	// but whose pod template now carries another version: retiring the old version must not
	// scale down the one they run now.
	Skipped []string `json:"skipped,omitempty"`
}

// Owners finds the Deployments in namespace that run version of app, sorted by name:
//   - the Deployments labelled with the app and the version;
//   - the Deployments owning (through their ReplicaSet) the pods labelled with them;
//   - the Deployments owning the ReplicaSets labelled with them: the Deployment controller copies
//     the pod template's labels to its ReplicaSets, so this finds a Deployment labelled only in
//     its pod template even once its pods are gone (scaled to 0 before).
//
// A Deployment found only through its pods or ReplicaSets counts only while its pod template
// still carries the app and the version; one that has moved on to another version is Skipped.
func (w Workloads) Owners(ctx context.Context, namespace, app, version string) (Owners, error) {
	deps, err := w.ownerDeployments(ctx, namespace, app, version)
	if err != nil {
		return Owners{}, err
	}
	out := Owners{Deployments: []string{}}
	for _, d := range deps {
		if why := runsOther(d, app, version); why != "" {
			out.Skipped = append(out.Skipped, d.Name+": "+why)
			continue
		}
		out.Deployments = append(out.Deployments, d.Name)
	}
	if len(out.Deployments) == 0 {
		unlabelled, err := w.unlabelledDeployments(ctx, namespace, app)
		if err != nil {
			return Owners{}, err
		}
		out.Skipped = append(out.Skipped, unlabelled...)
	}
	return out, nil
}

// unlabelledDeployments names, with the reason, the Deployments of app in namespace whose pod
// template carries no version label. Their pods' version, when they have one, was derived from
// their image (detect.ImageVersion), and no selector tells which of them runs which version:
// retiring such a version never scales down or deletes anything; these are reported instead.
func (w Workloads) unlabelledDeployments(ctx context.Context, namespace, app string) ([]string, error) {
	list, err := w.Client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Deployments in %s: %w", namespace, err)
	}
	var out []string
	for _, d := range list.Items {
		if tl := d.Spec.Template.Labels; tl[AppLabel] == app && tl[VersionLabel] == "" && d.DeletionTimestamp == nil {
			out = append(out, d.Name+": its pod template carries no "+VersionLabel+" label: skewguard cannot tell "+
				"which version it runs (a version derived from the image is never retired) and leaves it alone")
		}
	}
	slices.Sort(out)
	return out, nil
}

// runsOther says why Deployment d does not run version of app now, or "" when it does (or is
// labelled with it and its template names no other version).
func runsOther(d *appsv1.Deployment, app, version string) string {
	tl := d.Spec.Template.Labels
	if tl[AppLabel] == app && tl[VersionLabel] == version {
		return ""
	}
	if d.Labels[AppLabel] == app && d.Labels[VersionLabel] == version {
		if v, ok := tl[VersionLabel]; ok && v != version {
			return fmt.Sprintf("labelled version %q but its pod template runs version %q", version, v)
		}
		return ""
	}
	return fmt.Sprintf("its pod template now runs version %q", tl[VersionLabel])
}

// ownerDeployments returns the candidate Deployments of the version, deduplicated, by name.
func (w Workloads) ownerDeployments(ctx context.Context, namespace, app, version string) ([]*appsv1.Deployment, error) {
	sel := metav1.ListOptions{LabelSelector: VersionSelector(app, version)}
	what := fmt.Sprintf("%s/%s@%s", namespace, app, version)
	found := map[string]*appsv1.Deployment{}
	var byOwner []string // Deployment names seen in owner references

	deps, err := w.Client.AppsV1().Deployments(namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list Deployments of %s: %w", what, err)
	}
	for i := range deps.Items {
		found[deps.Items[i].Name] = &deps.Items[i]
	}

	rsList, err := w.Client.AppsV1().ReplicaSets(namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list ReplicaSets of %s: %w", what, err)
	}
	seenRS := map[string]bool{}
	for _, rs := range rsList.Items {
		seenRS[rs.Name] = true
		if name, ok := controllerNamed(&rs.ObjectMeta, "apps", "Deployment"); ok {
			byOwner = append(byOwner, name)
		}
	}

	// Pods whose ReplicaSet does not carry the labels (relabelled pods, or a ReplicaSet created
	// otherwise): follow their owner references one by one.
	pods, err := w.Client.CoreV1().Pods(namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list pods of %s: %w", what, err)
	}
	for _, p := range pods.Items {
		rsName, ok := controllerNamed(&p.ObjectMeta, "apps", "ReplicaSet")
		if !ok || seenRS[rsName] {
			continue
		}
		seenRS[rsName] = true
		rs, err := w.Client.AppsV1().ReplicaSets(namespace).Get(ctx, rsName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get ReplicaSet %s/%s of pod %s: %w", namespace, rsName, p.Name, err)
		}
		if name, ok := controllerNamed(&rs.ObjectMeta, "apps", "Deployment"); ok {
			byOwner = append(byOwner, name)
		}
	}

	for _, name := range byOwner {
		if found[name] != nil {
			continue
		}
		d, err := w.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // being deleted: nothing left to retire
		}
		if err != nil {
			return nil, fmt.Errorf("get Deployment %s/%s: %w", namespace, name, err)
		}
		found[name] = d
	}
	out := make([]*appsv1.Deployment, 0, len(found))
	for _, d := range found {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *appsv1.Deployment) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// controllerNamed returns the name of the object's controller when it is a kind of group.
func controllerNamed(m *metav1.ObjectMeta, group, kind string) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil || ref.Kind != kind {
		return "", false
	}
	if g, _, _ := strings.Cut(ref.APIVersion, "/"); g != group {
		return "", false
	}
	return ref.Name, true
}

// VersionServices names the Services in namespace that belong to version of app: those labelled
// with both, and those whose selector picks the version (it names the version, and the app
// when it names one). A Service that selects every version of the app is not the version's.
func (w Workloads) VersionServices(ctx context.Context, namespace, app, version string) ([]string, error) {
	list, err := w.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services of %s/%s@%s: %w", namespace, app, version, err)
	}
	var out []string
	for _, s := range list.Items {
		labelled := s.Labels[AppLabel] == app && s.Labels[VersionLabel] == version
		sel := s.Spec.Selector
		a, hasApp := sel[AppLabel]
		selects := sel[VersionLabel] == version && (!hasApp || a == app)
		if labelled || selects {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ErrStillRouted is returned (wrapped in a *StillRoutedError) when a version is not retired
// because a managed HTTPRoute still sends traffic to its Service. It is transient: the routes
// converge, and retiring again then succeeds.
var ErrStillRouted = errors.New("still referenced by live HTTPRoutes")

// StillRoutedError names the Service and the routes that still reference it.
type StillRoutedError struct {
	Namespace string
	Service   string
	Routes    []string
}

func (e *StillRoutedError) Error() string {
	return fmt.Sprintf("Service %s/%s is still referenced by HTTPRoute %s; waiting for routes to converge",
		e.Namespace, e.Service, strings.Join(e.Routes, ", "))
}

func (e *StillRoutedError) Is(target error) bool { return target == ErrStillRouted }

// managedRoutesSelector selects every HTTPRoute skewguard writes, of any app.
func managedRoutesSelector() (string, error) {
	managed, err := labels.NewRequirement(routes.ManagedByLabel, selection.Equals, []string{routes.ManagedByValue})
	if err != nil {
		return "", err
	}
	hasApp, err := labels.NewRequirement(routes.AppLabel, selection.Exists, nil)
	if err != nil {
		return "", err
	}
	return labels.NewSelector().Add(*managed, *hasApp).String(), nil
}

// RoutesReferencing names, sorted, the live (not being deleted) HTTPRoutes skewguard manages in
// namespace that send traffic to Service service: a backendRef (of a rule, or of a
// RequestMirror filter) of kind Service in the core group naming it in that namespace. With no
// Gateway client (skew protection off) no route can, and it returns none.
func (w Workloads) RoutesReferencing(ctx context.Context, namespace, service string) ([]string, error) {
	found, err := w.routesReferencing(ctx, namespace, []string{service})
	return found[service], err
}

func (w Workloads) routesReferencing(ctx context.Context, namespace string, services []string) (map[string][]string, error) {
	if w.Gateway == nil || len(services) == 0 {
		return nil, nil
	}
	sel, err := managedRoutesSelector()
	if err != nil {
		return nil, err
	}
	list, err := w.Gateway.GatewayV1().HTTPRoutes(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list HTTPRoutes in %s: %w", namespace, err)
	}
	out := map[string][]string{}
	for _, r := range list.Items {
		if r.DeletionTimestamp != nil {
			continue
		}
		for _, svc := range services {
			if routeReferences(&r, namespace, svc) {
				out[svc] = append(out[svc], r.Name)
			}
		}
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out, nil
}

// routeReferences reports whether route r (in namespace) has a backendRef to Service service.
func routeReferences(r *gatewayv1.HTTPRoute, namespace, service string) bool {
	refers := func(ref gatewayv1.BackendObjectReference) bool {
		if ref.Group != nil && *ref.Group != "" {
			return false
		}
		if ref.Kind != nil && *ref.Kind != "Service" {
			return false
		}
		if ref.Namespace != nil && string(*ref.Namespace) != namespace {
			return false
		}
		return string(ref.Name) == service
	}
	filters := func(fs []gatewayv1.HTTPRouteFilter) bool {
		for _, f := range fs {
			if f.RequestMirror != nil && refers(f.RequestMirror.BackendRef) {
				return true
			}
		}
		return false
	}
	for _, rule := range r.Spec.Rules {
		if filters(rule.Filters) {
			return true
		}
		for _, b := range rule.BackendRefs {
			if refers(b.BackendObjectReference) || filters(b.Filters) {
				return true
			}
		}
	}
	return false
}

// refuseWhileRouted returns a *StillRoutedError when a managed route still references one of
// the version's Services (VersionServices, plus extra).
func (w Workloads) refuseWhileRouted(ctx context.Context, namespace, app, version string, extra []string) error {
	if w.Gateway == nil {
		return nil
	}
	svcs, err := w.VersionServices(ctx, namespace, app, version)
	if err != nil {
		return err
	}
	for _, s := range extra {
		if s != "" && !slices.Contains(svcs, s) {
			svcs = append(svcs, s)
		}
	}
	slices.Sort(svcs)
	found, err := w.routesReferencing(ctx, namespace, svcs)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		if len(found[s]) > 0 {
			return &StillRoutedError{Namespace: namespace, Service: s, Routes: found[s]}
		}
	}
	return nil
}
