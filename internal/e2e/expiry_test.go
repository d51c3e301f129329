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

	"github.com/skewguard/skewguard/internal/registry"
)

// TestExpiryRetiresTheOldVersion lets an unused draining version expire by itself: with auto-cleanup off its
// Deployment is scaled to 0 and its pods go away; with auto-cleanup on its Deployment and Service are deleted.
func TestExpiryRetiresTheOldVersion(t *testing.T) {
	for _, autoCleanup := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto-cleanup=%v", autoCleanup), func(t *testing.T) {
			c := newCluster(t)
			ns := c.namespace(t, "e2e-expiry")
			dbURL, st := newDatabase(t)
			host := ns + ".expiry.test"
			s := baseSettings(t, ns, dbURL)
			s["PLT_SKEW_AUTO_CLEANUP"] = fmt.Sprint(autoCleanup)
			startSkewguard(t, s)
			gw := newGateway(t)
			v1 := appVersion{Namespace: ns, App: "api", Version: "1", Hostname: host, Replicas: 2}
			v2 := appVersion{Namespace: ns, App: "api", Version: "2", Hostname: host}
			c.deploy(t, v1)
			gw.waitServed(t, host, "1", 90*time.Second)
			c.deploy(t, v2)
			gw.waitServed(t, host, "2", 90*time.Second)

			ref := registry.VersionRef{Namespace: ns, App: "api", Label: "1"}
			waitState(t, st, ref, registry.Expired, 2*time.Minute)

			ctx := context.Background()
			if autoCleanup {
				waitFor(t, 30*time.Second, "v1 Deployment and Service deleted", func() (bool, string) {
					_, depErr := c.kube.AppsV1().Deployments(ns).Get(ctx, v1.name(), metav1.GetOptions{})
					_, svcErr := c.kube.CoreV1().Services(ns).Get(ctx, v1.name(), metav1.GetOptions{})
					return isNotFound(depErr) && isNotFound(svcErr), fmt.Sprintf("deployment: %v, service: %v", depErr, svcErr)
				})
			} else {
				waitFor(t, 30*time.Second, "v1 scaled to 0", func() (bool, string) {
					dep, err := c.kube.AppsV1().Deployments(ns).Get(ctx, v1.name(), metav1.GetOptions{})
					if err != nil {
						return false, err.Error()
					}
					return dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0, fmt.Sprint(*dep.Spec.Replicas)
				})
				_, err := c.kube.CoreV1().Services(ns).Get(ctx, v1.name(), metav1.GetOptions{})
				assert.NoError(t, err, "without auto-cleanup the Service is left for the user")
			}
			waitFor(t, 30*time.Second, "v1 pods gone", func() (bool, string) {
				pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=1"})
				if err != nil {
					return false, err.Error()
				}
				return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items))
			})
			// A session still holding the old cookie falls through to v2 and is re-pinned (once the
			// gateway has the routes without v1).
			waitFor(t, 30*time.Second, "the v1 cookie to fall through to v2", func() (bool, string) {
				r, err := gw.get(host, "/", withCookie("__plt_dpl=1"))
				if err != nil {
					return false, err.Error()
				}
				pin, _ := r.pinCookie("__plt_dpl")
				return r.Version == "2" && pin == "2", fmt.Sprintf("status %d version %q pin %q", r.Status, r.Version, pin)
			})

			audit, err := st.Audit(ctx, ref)
			require.NoError(t, err)
			var events []string
			for _, e := range audit {
				events = append(events, e.Event)
			}
			t.Logf("v1 audit: %v", events)
			assert.NotEmpty(t, events)
		})
	}
}
