package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
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
// Service, and scaling down or deleting its Deployments and Services. Every write is safe to
// repeat.
type Workloads struct {
	Client kubernetes.Interface
	// Dial opens the TCP probe connection; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// ProbeTimeout bounds one TCP probe (default 1s).
	ProbeTimeout time.Duration
}

// Readiness is what a version's Service looks like from its EndpointSlices.
type Readiness struct {
	Ready bool `json:"ready"`
	// Endpoints counts the endpoints marked ready; Probed is the address that accepted a TCP
	// connection on the target port, when one did.
	Endpoints  int    `json:"endpoints"`
	TargetPort int32  `json:"targetPort,omitempty"`
	Probed     string `json:"probed,omitempty"`
	// Why says, when not ready, what is missing.
	Why string `json:"why,omitempty"`
	// Port is the Service port that was checked (the first one when none was asked for).
	Port int32 `json:"port"`
}

// ErrNoService is returned (wrapped) when the Service does not exist.
var ErrNoService = errors.New("service not found")

// Readiness reports whether Service namespace/name has a ready endpoint, and then whether one
// of the ready addresses accepts a TCP connection on the target port of the Service port port
// (0: the Service's first port). kwok and slow starters mark pods Ready before their process
// listens; the probe keeps a version from being routed before it can answer.
func (w Workloads) Readiness(ctx context.Context, namespace, name string, port int32) (Readiness, error) {
	svc, err := w.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Readiness{Why: fmt.Sprintf("Service %s/%s does not exist yet", namespace, name)},
			fmt.Errorf("service %s/%s: %w", namespace, name, ErrNoService)
	}
	if err != nil {
		return Readiness{}, fmt.Errorf("get Service %s/%s: %w", namespace, name, err)
	}
	sp, ok := servicePort(svc, port)
	if !ok {
		return Readiness{Port: port, Why: fmt.Sprintf("Service %s/%s has no port %d", namespace, name, port)}, nil
	}
	r := Readiness{Port: sp.Port}
	list, err := w.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}).String(),
	})
	if err != nil {
		return r, fmt.Errorf("list EndpointSlices of Service %s/%s: %w", namespace, name, err)
	}
	var addrs []string
	for _, s := range list.Items {
		target, ok := slicePort(s, sp.Name)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || len(ep.Addresses) == 0 {
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
	for _, addr := range addrs {
		if w.probe(ctx, addr) == nil {
			r.Ready, r.Probed = true, addr
			return r, nil
		}
	}
	r.Why = fmt.Sprintf("Service %s/%s: %d ready endpoint(s), none accepts connections on port %d yet",
		namespace, name, r.Endpoints, r.TargetPort)
	return r, nil
}

func (w Workloads) probe(ctx context.Context, addr string) error {
	timeout := w.ProbeTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := w.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
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
func slicePort(s discoveryv1.EndpointSlice, name string) (int32, bool) {
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

// ScaleToZero sets the replicas of every Deployment of the version to 0 through the scale
// subresource (not the Deployment spec, so an autoscaler or a GitOps tool sees an ordinary scale
// change). It returns the names of the Deployments it found; those already at 0 are left as they
// are.
func (w Workloads) ScaleToZero(ctx context.Context, namespace, app, version string) ([]string, error) {
	deps, err := w.Client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: VersionSelector(app, version)})
	if err != nil {
		return nil, fmt.Errorf("list Deployments of %s/%s@%s: %w", namespace, app, version, err)
	}
	names := make([]string, 0, len(deps.Items))
	for _, d := range deps.Items {
		names = append(names, d.Name)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			scale, err := w.Client.AppsV1().Deployments(namespace).GetScale(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if scale.Spec.Replicas == 0 {
				return nil
			}
			scale.Spec.Replicas = 0
			_, err = w.Client.AppsV1().Deployments(namespace).UpdateScale(ctx, d.Name, scale, metav1.UpdateOptions{})
			return err
		})
		if apierrors.IsNotFound(err) {
			continue // deleted meanwhile: as good as scaled down
		}
		if err != nil {
			return names, fmt.Errorf("scale Deployment %s/%s to 0: %w", namespace, d.Name, err)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Deleted names what Delete removed (or found already gone).
type Deleted struct {
	Deployments []string `json:"deployments"`
	Services    []string `json:"services"`
}

// Delete deletes every Deployment and Service of the version. Objects already gone count as
// deleted; dependents (ReplicaSets, pods) go in the background.
func (w Workloads) Delete(ctx context.Context, namespace, app, version string) (Deleted, error) {
	sel := metav1.ListOptions{LabelSelector: VersionSelector(app, version)}
	policy := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy}
	var out Deleted
	deps, err := w.Client.AppsV1().Deployments(namespace).List(ctx, sel)
	if err != nil {
		return out, fmt.Errorf("list Deployments of %s/%s@%s: %w", namespace, app, version, err)
	}
	for _, d := range deps.Items {
		if err := w.Client.AppsV1().Deployments(namespace).Delete(ctx, d.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("delete Deployment %s/%s: %w", namespace, d.Name, err)
		}
		out.Deployments = append(out.Deployments, d.Name)
	}
	svcs, err := w.Client.CoreV1().Services(namespace).List(ctx, sel)
	if err != nil {
		return out, fmt.Errorf("list Services of %s/%s@%s: %w", namespace, app, version, err)
	}
	for _, s := range svcs.Items {
		if err := w.Client.CoreV1().Services(namespace).Delete(ctx, s.Name, opts); err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("delete Service %s/%s: %w", namespace, s.Name, err)
		}
		out.Services = append(out.Services, s.Name)
	}
	slices.Sort(out.Deployments)
	slices.Sort(out.Services)
	return out, nil
}
