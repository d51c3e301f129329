package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Labels that identify a version's objects.
const (
	AppLabel     = "app.kubernetes.io/name"
	VersionLabel = "plt.dev/version"
)

// VersionSelector selects the objects (Deployments, Services) of one version of an app.
func VersionSelector(app, version string) string {
	return labels.SelectorFromSet(labels.Set{AppLabel: app, VersionLabel: version}).String()
}

// Workloads reads and retires the Kubernetes objects of versions: the readiness of a version's
// Service, and scaling down or deleting the Deployments that run it and its Services. Every
// write is safe to repeat.
type Workloads struct {
	Client kubernetes.Interface
	// Gateway reads the HTTPRoutes that still reference a version's Service before it is
	// retired; nil (skew protection off: no Gateway API calls at all) means no route can.
	Gateway gatewayclient.Interface
	// Prober is the optional TCP probe of Readiness (off by default).
	Prober
}

// Readiness reports whether Service namespace/name has a ready endpoint (by its EndpointSlice
// conditions) for Service port port (0: the Service's first port), with one GET and one LIST.
// It is the fallback of ReadinessWatcher when no watcher runs; with the probe on it also
// reports whether a ready address accepts TCP connections, which never changes Ready.
func (w Workloads) Readiness(ctx context.Context, namespace, name string, port int32) (Readiness, error) {
	svc, err := w.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r, _ := readinessOf(namespace, name, nil, nil, port)
		return r, fmt.Errorf("service %s/%s: %w", namespace, name, ErrNoService)
	}
	if err != nil {
		return Readiness{}, fmt.Errorf("get Service %s/%s: %w", namespace, name, err)
	}
	if _, ok := servicePort(svc, port); !ok {
		r, _ := readinessOf(namespace, name, svc, nil, port)
		return r, nil
	}
	list, err := w.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}).String(),
	})
	if err != nil {
		return Readiness{}, fmt.Errorf("list EndpointSlices of Service %s/%s: %w", namespace, name, err)
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(list.Items))
	for i := range list.Items {
		slices = append(slices, &list.Items[i])
	}
	r, addrs := readinessOf(namespace, name, svc, slices, port)
	w.probeAll(ctx, &r, addrs)
	return r, nil
}

// Scaled names what ScaleToZero found and scaled to 0 (those already at 0 included).
type Scaled struct {
	Deployments []string `json:"deployments"`
	// Skipped names, with the reason, Deployments that own pods or ReplicaSets of the version
	// but now run another one: they are never touched.
	Skipped []string `json:"skipped,omitempty"`
	// AdoptedServices names the Services skewguard created for the version, adopted, deleted
	// with it (the adopted Deployment is among Deployments, scaled to 0, never deleted).
	AdoptedServices []string `json:"adoptedServices,omitempty"`
}

// ScaleToZero sets the replicas of every Deployment that runs the version (see Owners) to 0
// through the scale subresource (not the Deployment spec, so an autoscaler or a GitOps tool sees
// an ordinary scale change); those already at 0 are left as they are. It first refuses, with an
// error wrapping ErrStillRouted and touching nothing, while a managed HTTPRoute still sends
// traffic to one of the version's Services (see VersionServices; services adds names the caller
// knows, such as the Service recorded at detection). No Deployment found is an empty result,
// not an error.
func (w Workloads) ScaleToZero(ctx context.Context, namespace, app, version string, services ...string) (Scaled, error) {
	if err := w.refuseWhileRouted(ctx, namespace, app, version, services); err != nil {
		return Scaled{}, err
	}
	owners, err := w.Owners(ctx, namespace, app, version)
	if err != nil {
		return Scaled{}, err
	}
	out := Scaled{Deployments: []string{}, Skipped: owners.Skipped}
	if len(owners.Deployments) == 0 {
		adopted, err := w.retireAdopted(ctx, namespace, app, version)
		out.Deployments, out.AdoptedServices = append(out.Deployments, adopted.ScaledDown...), adopted.Services
		out.Skipped = withoutAdopted(out.Skipped, adopted)
		if err != nil {
			return out, err
		}
	}
	for _, name := range owners.Deployments {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			scale, err := w.Client.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if scale.Spec.Replicas == 0 {
				return nil
			}
			scale.Spec.Replicas = 0
			_, err = w.Client.AppsV1().Deployments(namespace).UpdateScale(ctx, name, scale, metav1.UpdateOptions{})
			return err
		})
		if apierrors.IsNotFound(err) {
			continue // deleted meanwhile: as good as scaled down
		}
		if err != nil {
			return out, fmt.Errorf("scale Deployment %s/%s to 0: %w", namespace, name, err)
		}
		out.Deployments = append(out.Deployments, name)
	}
	return out, nil
}

// Deleted names what Delete removed (or found already gone).
type Deleted struct {
	Deployments []string `json:"deployments"`
	Services    []string `json:"services"`
	// Skipped: as in Scaled.
	Skipped []string `json:"skipped,omitempty"`
	// ScaledDown names adopted Deployments: retiring an adopted version scales the team's
	// Deployment to 0 and never deletes it (its Service of ours is among Services).
	ScaledDown []string `json:"scaledDown,omitempty"`
}

// Delete deletes every Deployment that runs the version (see Owners) and the Services labelled
// with it, after the same route check as ScaleToZero. Objects already gone count as deleted;
// dependents (ReplicaSets, pods) go in the background.
func (w Workloads) Delete(ctx context.Context, namespace, app, version string, services ...string) (Deleted, error) {
	if err := w.refuseWhileRouted(ctx, namespace, app, version, services); err != nil {
		return Deleted{}, err
	}
	owners, err := w.Owners(ctx, namespace, app, version)
	if err != nil {
		return Deleted{}, err
	}
	policy := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy}
	out := Deleted{Deployments: []string{}, Services: []string{}, Skipped: owners.Skipped}
	if len(owners.Deployments) == 0 {
		adopted, err := w.retireAdopted(ctx, namespace, app, version)
		out.ScaledDown, out.Services = adopted.ScaledDown, append(out.Services, adopted.Services...)
		out.Skipped = withoutAdopted(out.Skipped, adopted)
		if err != nil {
			return out, err
		}
	}
	for _, name := range owners.Deployments {
		if err := w.Client.AppsV1().Deployments(namespace).Delete(ctx, name, opts); err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("delete Deployment %s/%s: %w", namespace, name, err)
		}
		out.Deployments = append(out.Deployments, name)
	}
	svcs, err := w.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{LabelSelector: VersionSelector(app, version)})
	if err != nil {
		return out, fmt.Errorf("list Services of %s/%s@%s: %w", namespace, app, version, err)
	}
	for _, s := range svcs.Items {
		if slices.Contains(out.Services, s.Name) {
			continue
		}
		if err := w.Client.CoreV1().Services(namespace).Delete(ctx, s.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("delete Service %s/%s: %w", namespace, s.Name, err)
		}
		out.Services = append(out.Services, s.Name)
	}
	slices.Sort(out.Services)
	return out, nil
}

// withoutAdopted drops from skipped (Owners' report of unlabelled Deployments) the Deployments
// the adoption handled, scaled or skipped with its own reason.
func withoutAdopted(skipped []string, a AdoptedRetired) []string {
	handled := append(slices.Clone(a.ScaledDown), a.Skipped...)
	out := slices.DeleteFunc(slices.Clone(skipped), func(s string) bool {
		name, _, _ := strings.Cut(s, ":")
		return slices.ContainsFunc(handled, func(h string) bool { n, _, _ := strings.Cut(h, ":"); return n == name })
	})
	return append(out, a.Skipped...)
}
