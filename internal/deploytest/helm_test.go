//go:build integration

package deploytest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/deploytest/charttest"
)

// helmTemplate runs `helm template` on the chart.
func helmTemplate(t testing.TB, release, namespace string, args ...string) ([]byte, error) {
	t.Helper()
	return charttest.Render(t, release, namespace, args...)
}

// render renders the chart and parses the result, failing the test on any error.
func render(t testing.TB, release, namespace string, args ...string) manifests {
	t.Helper()
	out, err := helmTemplate(t, release, namespace, args...)
	require.NoError(t, err)
	return parseManifests(t, out)
}
