//go:build integration

package stacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/testenv"
)

// TraefikServiceSelector is the PromQL label matcher for requests Traefik's Gateway provider
// sent to one Kubernetes Service: the provider names each backend
// "httproute-<route ns>-<route>-gw-<gw ns>-<gw>-ep-<entrypoint>-<rule index>-<rule hash>-svc-<ns>-<service>-<backend index>@kubernetesgateway".
func TraefikServiceSelector(ns, svc string) string {
	return fmt.Sprintf(`service=~".+-svc-%s-%s-[0-9]+@kubernetesgateway"`, ns, svc)
}

// Prometheus scrapes Traefik every second, and its per-Service request counter counts the
// requests sent through the Gateway to a version's Service.
func TestPrometheusCountsTraefikRequestsPerService(t *testing.T) {
	prom := testenv.Get(t, testenv.PrometheusURL)
	k := newKube(t)
	ns := k.namespace(t, "smoke-prom")
	svc := k.deployVersion(t, ns, "shop", "3", 1)
	k.readyPods(t, ns, "shop", "3", 1)
	host := ns + ".stacktest.example"
	k.applyRoute(t, route{ns: ns, name: "shop", host: host, prefix: "/", active: "3", activeSvc: svc})
	eventually(t, 30*time.Second, "the Gateway serves the route", func() (bool, string) {
		_, _, err := get(t, gatewayRequest(t, host, "/", ""))
		return err == nil, fmt.Sprint(err)
	})

	const sent = 5
	for range sent {
		_, reply, err := get(t, gatewayRequest(t, host, "/count", ""))
		require.NoError(t, err)
		require.Equal(t, "3", reply.Version)
	}

	eventually(t, 20*time.Second, "Prometheus reports Traefik up", func() (bool, string) {
		v, err := promScalar(prom, `sum(up{job="traefik"})`)
		return err == nil && v == 1, fmt.Sprintf("value %v, err %v", v, err)
	})
	query := fmt.Sprintf(`sum(traefik_service_requests_total{%s})`, TraefikServiceSelector(ns, svc))
	eventually(t, 60*time.Second, "Prometheus counts the requests of "+svc, func() (bool, string) {
		// Traffic goes on while we wait, as it does to a live version. Once in make test, while the
		// previous test's 150 Services were being deleted, the series of 5 requests sent once never
		// showed in 20 s (Traefik's metrics of a Service can go with a configuration reload, as
		// the chaos run also saw); counting requests that keep coming is the property we rely on.
		// Another time every scrape of Traefik timed out for 20 s (scrape_duration_seconds at the
		// 1 s timeout, up 0: the stack's Prometheus history showed it), with both cores busy and
		// Traefik's metrics of every route of the integration tests: a failed scrape makes the
		// series stale, so none is found until a scrape succeeds again. Hence 60 s.
		if _, reply, err := get(t, gatewayRequest(t, host, "/count", "")); err != nil || reply.Version != "3" {
			return false, fmt.Sprintf("request through the gateway: version %q, %v", reply.Version, err)
		}
		v, err := promScalar(prom, query)
		// At least the requests counted above, plus the ones that waited for the route.
		return err == nil && v >= sent, fmt.Sprintf("%s = %v (err %v)", query, v, err)
	})
}

// promScalar runs an instant query whose result is one sample (or none, reported as an error).
func promScalar(base, query string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("decode Prometheus answer: %w", err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", query, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("query %q: %d samples", query, len(body.Data.Result))
	}
	s, ok := body.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("query %q: value %v is not a string", query, body.Data.Result[0].Value[1])
	}
	return strconv.ParseFloat(s, 64)
}
