//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestVersionsListCountsReadyPods runs `skewguard serve` (with the chart's RBAC) and reads the
// versions list through the CLI: a version with two ready pods behind its Service shows
// podsReady 2 of podsTotal 2, counted by the API process from its EndpointSlice informer.
func TestVersionsListCountsReadyPods(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-pods")
	dbURL, _ := newDatabase(t)
	host := ns + ".pods.test"
	sg := startSkewguard(t, baseSettings(t, ns, dbURL))
	gw := newGateway(t)
	c.deploy(t, appVersion{Namespace: ns, App: "api", Version: "1", Hostname: host, Replicas: 2})
	gw.waitServed(t, host, "1", 90*time.Second)

	waitFor(t, 30*time.Second, "v1 listed with 2 of 2 pods ready", func() (bool, string) {
		out := sg.cli("versions", ns+"/api", "-o", "json")
		var list struct {
			Versions []struct {
				Version   string `json:"version"`
				PodsReady *int   `json:"podsReady"`
				PodsTotal *int   `json:"podsTotal"`
			} `json:"versions"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return false, fmt.Sprintf("%v: %s", err, out)
		}
		for _, v := range list.Versions {
			if v.Version == "1" && v.PodsReady != nil && v.PodsTotal != nil {
				return *v.PodsReady == 2 && *v.PodsTotal == 2, out
			}
		}
		return false, out
	})
}
