//go:build integration

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestFeatureFlagOffNeverTouchesTheGatewayAPI runs skewguard with skew protection off while versions come and
// go: no HTTPRoute is ever created in the namespace and no version is recorded.
func TestFeatureFlagOffNeverTouchesTheGatewayAPI(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-flagoff")
	dbURL, st := newDatabase(t)
	s := baseSettings(t, ns, dbURL)
	s["PLT_FEATURE_SKEW_PROTECTION"] = "false"
	startSkewguard(t, s)

	ctx := context.Background()
	w, err := c.gw.GatewayV1().HTTPRoutes(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	var routeEvents []watch.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Error { // a broken stream is not a route; the final List below still checks
				routeEvents = append(routeEvents, ev)
			}
		}
	}()

	for _, label := range []string{"1", "2", "3"} {
		// A hostname of its own: were the flag ignored, the routes would claim no host+path that
		// another test or the demo serves on the shared Gateway.
		v := appVersion{Namespace: ns, App: "quiet", Version: label, Hostname: ns + ".flagoff.test"}
		c.deploy(t, v)
		waitFor(t, 60*time.Second, "pods of "+label+" Ready", func() (bool, string) {
			pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=" + label})
			if err != nil || len(pods.Items) == 0 {
				return false, fmt.Sprint(err)
			}
			for _, p := range pods.Items {
				for _, cond := range p.Status.Conditions {
					if cond.Type == "Ready" && cond.Status == "True" {
						return true, ""
					}
				}
			}
			return false, "not ready"
		})
		if label == "2" {
			require.NoError(t, c.kube.AppsV1().Deployments(ns).Delete(ctx, appVersion{App: "quiet", Version: "1"}.name(), metav1.DeleteOptions{}))
		}
	}
	// A negative can't be awaited: give the pod watch a few seconds past the last Ready pod to misbehave.
	time.Sleep(5 * time.Second)
	w.Stop()
	<-done

	assert.Empty(t, routeEvents, "skewguard must not touch HTTPRoutes with the feature off")
	routes, err := c.gw.GatewayV1().HTTPRoutes(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, routes.Items)
	apps, err := st.ListApps(ctx)
	require.NoError(t, err)
	assert.Empty(t, apps, "no version tracking with the feature off")
	_, err = st.GetVersion(ctx, registry.VersionRef{Namespace: ns, App: "quiet", Label: "1"})
	assert.ErrorIs(t, err, registry.ErrNotFound)
}
