package kube

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/internal/routes"
)

// RouteAcceptance is what the Gateways said about an app's HTTPRoutes, read back from their
// status after a write.
type RouteAcceptance struct {
	// Accepted: every parent of every route accepted its current generation.
	Accepted bool `json:"accepted"`
	// Waiting lists route/parent pairs that have not reported on the current generation yet.
	Waiting []string `json:"waiting,omitempty"`
	// Refused lists route/parent pairs whose Gateway did not accept the route, with its reason.
	Refused []string `json:"refused,omitempty"`
}

// RouteStatus reads the status of the app's managed HTTPRoutes: for each parentRef of each
// route, the parent's Accepted condition for the route's current generation.
func RouteStatus(ctx context.Context, gw gatewayclient.Interface, namespace, app string) (RouteAcceptance, error) {
	list, err := gw.GatewayV1().HTTPRoutes(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(routes.Labels(app)).String(),
	})
	if err != nil {
		return RouteAcceptance{}, fmt.Errorf("list HTTPRoutes of %s/%s: %w", namespace, app, err)
	}
	var out RouteAcceptance
	for _, r := range list.Items {
		for _, ref := range r.Spec.ParentRefs {
			where := r.Name + " on " + parentName(r.Namespace, ref)
			st := parentStatus(r.Status.Parents, r.Namespace, ref)
			cond := findCondition(st, string(gatewayv1.RouteConditionAccepted))
			switch {
			case cond == nil || cond.ObservedGeneration < r.Generation:
				out.Waiting = append(out.Waiting, where)
			case cond.Status != metav1.ConditionTrue:
				out.Refused = append(out.Refused, fmt.Sprintf("%s: %s: %s", where, cond.Reason, cond.Message))
			}
		}
	}
	slices.Sort(out.Waiting)
	slices.Sort(out.Refused)
	out.Accepted = len(out.Waiting) == 0 && len(out.Refused) == 0
	return out, nil
}

func parentName(routeNS string, ref gatewayv1.ParentReference) string {
	ns := routeNS
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	s := ns + "/" + string(ref.Name)
	if ref.SectionName != nil {
		s += ":" + string(*ref.SectionName)
	}
	return s
}

// parentStatus finds the status a parent reported for ref (any controller).
func parentStatus(parents []gatewayv1.RouteParentStatus, routeNS string, ref gatewayv1.ParentReference) []metav1.Condition {
	want := parentName(routeNS, ref)
	for _, p := range parents {
		if parentName(routeNS, p.ParentRef) == want {
			return p.Conditions
		}
	}
	return nil
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}
