// Package testenv owns how integration tests find the real stack that `make stack-up` starts.
// The stack writes its addresses to .stack/stack.env and `make test` exports them; a test that
// needs a part calls Require, which fails the test (never skips it) when the part is missing.
package testenv

import (
	"os"
	"testing"
)

// Names of the variables the stack exports for tests.
const (
	PostgresURL   = "SKEWGUARD_TEST_PG_URL"       // admin DSN; tests create their own databases
	Kubeconfig    = "KUBECONFIG"                  // admin identity on the real API server
	TemporalAddr  = "TEMPORAL_ADDRESS"            // Temporal dev server gRPC address
	TemporalCLI   = "SKEWGUARD_TEST_TEMPORAL_CLI" // path to the temporal binary
	PrometheusURL = "PROMETHEUS_URL"
	GatewayURL    = "SKEWGUARD_TEST_GATEWAY_URL" // Traefik's web entrypoint
	TraefikAPIURL = "SKEWGUARD_TEST_TRAEFIK_API" // Traefik's API/metrics entrypoint
	GatewayRef    = "SKEWGUARD_TEST_GATEWAY_REF" // namespace/name:section of the test Gateway
	StackDir      = "SKEWGUARD_STACK_DIR"
	HelmBinary    = "SKEWGUARD_TEST_HELM" // path to helm, built by hack/setup-helm.sh

	// Written by hack/stack.sh as well (see hack/README.md).
	Kubectl        = "SKEWGUARD_TEST_KUBECTL"         // kubectl matching the API server's version
	APIServerURL   = "SKEWGUARD_TEST_APISERVER_URL"   // https://127.0.0.1:<port>
	TemporalUIURL  = "SKEWGUARD_TEST_TEMPORAL_UI"     // Temporal Web UI
	MetricsAddr    = "SKEWGUARD_TEST_METRICS_ADDR"    // host:port Prometheus scrapes as job "skewguard"
	PodCIDR        = "SKEWGUARD_TEST_POD_CIDR"        // pod IPs the launcher serves on lo
	LauncherURL    = "SKEWGUARD_TEST_LAUNCHER_URL"    // the pod launcher's /healthz and /pods
	LauncherConfig = "SKEWGUARD_TEST_LAUNCHER_CONFIG" // the launcher's program map (JSON)
)

// Require returns the value of each named variable, failing the test if any is unset.
func Require(t testing.TB, names ...string) []string {
	t.Helper()
	vals := make([]string, len(names))
	var missing []string
	for i, n := range names {
		vals[i] = os.Getenv(n)
		if vals[i] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the real stack is not available (%v unset): run the integration tests with `make test`, which starts it", missing)
	}
	return vals
}

// Get returns the value of one required variable.
func Get(t testing.TB, name string) string {
	t.Helper()
	return Require(t, name)[0]
}
