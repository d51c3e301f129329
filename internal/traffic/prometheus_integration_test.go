//go:build integration

package traffic

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/testenv"
)

// TestPresetsParseOnRealPrometheus has the stack's Prometheus parse the batched query of every
// preset, so a template that PromQL refuses fails here rather than at a version's first check.
func TestPresetsParseOnRealPrometheus(t *testing.T) {
	url := testenv.Get(t, testenv.PrometheusURL)
	for name, text := range Presets {
		t.Run(name, func(t *testing.T) {
			tmpl, err := Parse(text)
			require.NoError(t, err)
			q, err := NewQuerier(url, tmpl)
			require.NoError(t, err)
			require.NoError(t, q.Validate(t.Context()))

			// A query for versions with no series at all answers "unknown" for each, never zero.
			rates, err := q.Rates(t.Context(), "no-such-namespace", "no-such-app", time.Minute,
				[]Target{{Version: "1", Service: "no-such-app-1"}, {Version: "2.0", Service: "no-such-app-2"}})
			require.NoError(t, err)
			assert.Equal(t, map[string]Reading{"1": {}, "2.0": {}}, rates.Readings)
		})
	}
	t.Run("a broken template is refused", func(t *testing.T) {
		tmpl, err := Parse(`sum(rate(x[{{.Window}}]`)
		require.NoError(t, err, "text/template accepts it")
		q, err := NewQuerier(url, tmpl)
		require.NoError(t, err)
		assert.ErrorContains(t, q.Validate(t.Context()), "does not parse")
	})
}
