//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestTwentyPinnedVersionsAllReachable deploys 21 versions of one app: 20 stay live as pins, which needs
// more than one HTTPRoute (16 rules per route), and each is reachable by cookie, header and query.
func TestTwentyPinnedVersionsAllReachable(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-pins")
	dbURL, st := newDatabase(t)
	host := ns + ".pins.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000" // nothing expires during the test
	startSkewguard(t, s)
	gw := newGateway(t)

	const total = 21
	for i := 1; i <= total; i++ {
		c.deploy(t, appVersion{Namespace: ns, App: "many", Version: "r" + strconv.Itoa(i), Hostname: host})
	}
	app := registry.AppRef{Namespace: ns, Name: "many"}
	var active string
	waitFor(t, 3*time.Minute, "1 active and 20 draining versions", func() (bool, string) {
		vs, err := st.ListVersions(context.Background(), app)
		if err != nil {
			return false, err.Error()
		}
		counts := map[registry.State]int{}
		for _, v := range vs {
			counts[v.State]++
			if v.State == registry.Active {
				active = v.Label
			}
		}
		return counts[registry.Active] == 1 && counts[registry.Draining] == total-1, fmt.Sprint(counts)
	})
	gw.waitServed(t, host, active, 60*time.Second)

	routes, err := c.gw.GatewayV1().HTTPRoutes(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/managed-by=skewguard",
	})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(routes.Items), 2, "20 pins need more than one HTTPRoute")

	carriers := map[string]func(string) func(*http.Request){
		"cookie": func(v string) func(*http.Request) { return withCookie("__plt_dpl=" + v) },
		"header": func(v string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("x-deployment-id", v) }
		},
		"query": func(v string) func(*http.Request) {
			return func(r *http.Request) { r.URL.RawQuery = "dpl=" + v }
		},
	}
	checked := 0
	for i := 1; i <= total; i++ {
		label := "r" + strconv.Itoa(i)
		for name, carrier := range carriers {
			want := label
			// Propagation of the last routes may still be under way: poll briefly per pin.
			waitFor(t, 30*time.Second, fmt.Sprintf("%s pin %s", name, label), func() (bool, string) {
				r, err := gw.get(host, "/", carrier(label))
				if err != nil {
					return false, err.Error()
				}
				return r.Version == want, fmt.Sprintf("status %d version %q", r.Status, r.Version)
			})
			checked++
		}
	}
	t.Logf("%d versions reachable by %d pins over %d HTTPRoutes", total, checked, len(routes.Items))
}
