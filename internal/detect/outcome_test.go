package detect

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/metrics"
)

// An outcome's label is published (skewguard_registrations_total{outcome}) and named by
// dashboards and alerts: each outcome keeps the label it has, and every outcome has one.
func TestOutcomeLabels(t *testing.T) {
	want := map[Outcome]string{
		OutcomeFastPath:   "fast_path",
		OutcomeStarted:    "started",
		OutcomeDeduped:    "deduped",
		OutcomeFeatureOff: "feature_off",
		OutcomeNoLabels:   "no_labels",
		OutcomeNoService:  "no_service",
		OutcomeStale:      "stale",
		OutcomeInvalid:    "invalid",
		OutcomeError:      "error",
	}
	for o, label := range want {
		assert.Equal(t, label, o.String())
	}
	assert.Len(t, outcomeLabels, len(want)+1, "an outcome without a label, or a label without an outcome")
	assert.Equal(t, "Outcome(0)", Outcome(0).String(), "the zero value is no outcome")
	assert.Equal(t, "Outcome(10)", Outcome(10).String())
}

// registrations reads skewguard_registrations_total{source, outcome}.
func registrations(t *testing.T, source string, outcome Outcome) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, metrics.Registrations.WithLabelValues(source, outcome.String()).Write(&m))
	return m.GetCounter().GetValue()
}
