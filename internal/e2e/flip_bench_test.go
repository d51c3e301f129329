//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkFlip measures, over 20 flips, the time from the first registration of a new version (as the agent
// sends it) to (a) the HTTPRoute whose default rule points at it being written and (b) the first new visitor
// served by it through Traefik. Run it with:
//
//	go test -tags integration -run '^$' -bench Flip -benchtime 1x ./internal/e2e
func BenchmarkFlip(b *testing.B) {
	for range b.N {
		runFlips(b, 20)
	}
}

func runFlips(b *testing.B, flips int) {
	b.Helper()
	var tb testing.TB = b
	c := newCluster(tb)
	ns := c.namespace(tb, "e2e-flip")
	dbURL, _ := newDatabase(tb)
	host := ns + ".flip.test"
	s := baseSettings(tb, ns, dbURL)
	s["PLT_SKEW_WATCH_PODS"] = "false" // registration is the trigger being measured
	s["PLT_SKEW_INSECURE_SKIP_POD_AUTH"] = "true"
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000"
	sg := startSkewguard(tb, s)
	gw := newGateway(tb)
	ctx := context.Background()

	// Every version's pods run before the clock starts, so the readiness gate is not what is measured.
	for i := 0; i <= flips; i++ {
		c.deploy(tb, appVersion{Namespace: ns, App: "flip", Version: "f" + strconv.Itoa(i), Hostname: host})
	}
	podOf := func(label string) string {
		var name string
		waitFor(tb, 60*time.Second, "a Ready pod of "+label, func() (bool, string) {
			pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "plt.dev/version=" + label})
			if err != nil || len(pods.Items) == 0 || pods.Items[0].Status.PodIP == "" {
				return false, fmt.Sprint(err)
			}
			name = pods.Items[0].Name
			return true, ""
		})
		return name
	}
	register := func(pod string) {
		resp, err := http.Post(sg.url+"/control-plane/pods/"+pod+"/instance", "application/json",
			bytes.NewBufferString(`{"podId":"`+pod+`","apiVersion":"v3"}`))
		require.NoError(tb, err)
		resp.Body.Close()
		require.Equal(tb, http.StatusOK, resp.StatusCode)
	}
	routedTo := func(svc string) bool {
		routes, err := c.gw.GatewayV1().HTTPRoutes(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=skewguard"})
		if err != nil {
			return false
		}
		for _, r := range routes.Items {
			for _, rule := range r.Spec.Rules {
				isDefault := len(rule.Matches) == 0 ||
					len(rule.Matches) == 1 && len(rule.Matches[0].Headers) == 0 && len(rule.Matches[0].QueryParams) == 0
				if isDefault && len(rule.BackendRefs) == 1 && string(rule.BackendRefs[0].Name) == svc {
					return true
				}
			}
		}
		return false
	}

	register(podOf("f0"))
	gw.waitServed(tb, host, "f0", 90*time.Second)
	var toRoute, toVisitor []time.Duration
	for i := 1; i <= flips; i++ {
		label := "f" + strconv.Itoa(i)
		pod := podOf(label)
		svc := appVersion{App: "flip", Version: label}.name()
		start := time.Now()
		register(pod)
		for !routedTo(svc) {
			if time.Since(start) > 60*time.Second {
				b.Fatalf("flip %d: route not written after 60s", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		toRoute = append(toRoute, time.Since(start))
		for {
			r, err := gw.get(host, "/", nil)
			if err == nil && r.Version == label {
				break
			}
			if time.Since(start) > 60*time.Second {
				b.Fatalf("flip %d: new visitors not served by %s after 60s", i, label)
			}
			time.Sleep(5 * time.Millisecond)
		}
		toVisitor = append(toVisitor, time.Since(start))
	}
	report := func(name string, d []time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		p50, p99 := d[len(d)/2], d[(len(d)*99+99)/100-1]
		b.ReportMetric(float64(p50.Milliseconds()), name+"-p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), name+"-p99-ms")
		b.Logf("%s over %d flips: p50 %v, p99 %v, min %v, max %v", name, len(d), p50, p99, d[0], d[len(d)-1])
	}
	report("register-to-route", toRoute)
	report("register-to-visitor", toVisitor)
}
