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

// TestRestartDuringDrainConverges stops skewguard (API and worker) while v1 is draining and starts it again:
// the pinned session keeps reaching v1 until it expires, the lifecycle completes, and routing ends right.
func TestRestartDuringDrainConverges(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-restart")
	dbURL, st := newDatabase(t)
	host := ns + ".restart.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "6000"
	sg := startSkewguard(t, s)
	gw := newGateway(t)

	c.deploy(t, appVersion{Namespace: ns, App: "svc", Version: "1", Hostname: host})
	gw.waitServed(t, host, "1", 90*time.Second)
	c.deploy(t, appVersion{Namespace: ns, App: "svc", Version: "2", Hostname: host})
	gw.waitServed(t, host, "2", 90*time.Second)
	ref := registry.VersionRef{Namespace: ns, App: "svc", Label: "1"}
	waitState(t, st, ref, registry.Draining, 30*time.Second)

	sg.restart()

	r, err := gw.get(host, "/", withCookie("__plt_dpl=1"))
	require.NoError(t, err)
	assert.Equal(t, "1", r.Version, "a pinned session reaches its draining version across the restart")

	waitState(t, st, ref, registry.Expired, 2*time.Minute)
	waitFor(t, 30*time.Second, "v1 scaled to 0", func() (bool, string) {
		dep, err := c.kube.AppsV1().Deployments(ns).Get(context.Background(), "svc-v1", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return *dep.Spec.Replicas == 0, fmt.Sprint(*dep.Spec.Replicas)
	})
	waitFor(t, 30*time.Second, "expired pin to fall through to v2", func() (bool, string) {
		r, err := gw.get(host, "/", withCookie("__plt_dpl=1"))
		if err != nil {
			return false, err.Error()
		}
		return r.Version == "2", r.Version
	})
	active, err := st.GetVersion(context.Background(), registry.VersionRef{Namespace: ns, App: "svc", Label: "2"})
	require.NoError(t, err)
	assert.Equal(t, registry.Active, active.State)
}
