//go:build integration

package stacktest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skewguard/skewguard/internal/testenv"
)

// A plain Deployment and Service go through the real controllers: ReplicaSet, scheduled pods
// with IPs (kwok), pods Ready once the launcher's process answers, an EndpointSlice listing them;
// scaling to 0 removes the pods, their processes and their addresses.
func TestDeploymentPodsBecomeReadyAndFillTheEndpointSlice(t *testing.T) {
	k := newKube(t)
	cidr, err := netip.ParsePrefix(testenv.Get(t, testenv.PodCIDR))
	require.NoError(t, err)
	ns := k.namespace(t, "smoke-k8s")
	svc := k.deployVersion(t, ns, "shop", "7", 2)
	pods := k.readyPods(t, ns, "shop", "7", 2)

	var ips []string
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		require.NoError(t, err)
		assert.True(t, cidr.Contains(ip), "pod IP %s inside the pod CIDR %s", ip, cidr)
		assert.NotEmpty(t, p.Spec.NodeName, "pod %s scheduled", p.Name)
		assert.True(t, onLoopback(t, p.Status.PodIP), "pod IP %s is on lo", ip)
		ips = append(ips, p.Status.PodIP)

		req, err := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/hello", nil)
		require.NoError(t, err)
		_, reply, err := get(t, req)
		require.NoError(t, err, "the launched process of pod %s answers", p.Name)
		assert.Equal(t, echoReply{Version: "7", Pod: p.Name, Path: "/hello"}, reply)
	}
	sort.Strings(ips)

	rs, err := k.core.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, rs.Items, 1, "the Deployment controller made one ReplicaSet")

	eventually(t, 30*time.Second, "EndpointSlice lists both pods as ready", func() (bool, string) {
		got := readyEndpoints(t, k, ns, svc)
		return fmt.Sprint(got) == fmt.Sprint(ips), fmt.Sprintf("ready endpoints %v, want %v", got, ips)
	})

	// Scale to 0: pods, endpoints, processes and addresses all go.
	_, err = k.core.AppsV1().Deployments(ns).Patch(context.Background(), svc, types.MergePatchType,
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	eventually(t, 30*time.Second, "pods gone after scaling to 0", func() (bool, string) {
		list, err := k.core.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d pods left", len(list.Items))
	})
	eventually(t, 30*time.Second, "EndpointSlice empty", func() (bool, string) {
		got := readyEndpoints(t, k, ns, svc)
		return len(got) == 0, fmt.Sprintf("ready endpoints %v", got)
	})
	for _, ip := range ips {
		eventually(t, 15*time.Second, "pod IP "+ip+" removed from lo", func() (bool, string) {
			return !onLoopback(t, ip), "still on lo"
		})
	}
}

// Pods can prove who they are: a ServiceAccount token bound to a pod names the pod, and
// TokenReview accepts it (later issues authenticate registering pods this way).
func TestBoundPodTokenPassesTokenReview(t *testing.T) {
	k := newKube(t)
	ns := k.namespace(t, "smoke-token")
	k.deployVersion(t, ns, "shop", "1", 1)
	pod := k.readyPods(t, ns, "shop", "1", 1)[0]
	ctx := context.Background()

	expiry := int64(600)
	tr, err := k.core.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "TokenRequest bound to pod %s", pod.Name)

	review, err := k.core.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.True(t, review.Status.Authenticated, "token authenticated: %s", review.Status.Error)
	assert.Equal(t, "system:serviceaccount:"+ns+":default", review.Status.User.Username)
	assert.Equal(t, authenticationv1.ExtraValue{pod.Name}, review.Status.User.Extra["authentication.kubernetes.io/pod-name"])
	assert.Equal(t, authenticationv1.ExtraValue{string(pod.UID)}, review.Status.User.Extra["authentication.kubernetes.io/pod-uid"])
}

func readyEndpoints(t testing.TB, k kube, ns, svc string) []string {
	t.Helper()
	slices, err := k.core.DiscoveryV1().EndpointSlices(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var ips []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	sort.Strings(ips)
	return ips
}

func onLoopback(t testing.TB, ip string) bool {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	addrs, err := lo.Addrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
			return true
		}
	}
	return false
}
