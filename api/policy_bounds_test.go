package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/skewguard/skewguard/internal/bounds"
)

// TestPolicyOutOfRange: a policy value outside its range is a 400 invalid_policy whose message
// names the field and the range, and nothing is stored. Before the bounds, 9.3e12 ms of max alive
// (a negative time.Duration once multiplied: immediate expiry) and a 1 ms check interval were
// stored with 200.
func TestPolicyOutOfRange(t *testing.T) {
	h := seeded(t, harnessOptions{})
	tests := []struct {
		body string
		says []string
	}{
		{`{"maxAliveMs":9300000000000}`, []string{"maxAliveMs", "between 1000 and 2592000000 milliseconds (1s to 30d)", "got 9300000000000"}},
		{`{"checkIntervalMs":1}`, []string{"checkIntervalMs", "between 1000 and 86400000 milliseconds (1s to 1d)", "got 1"}},
		{`{"gracePeriodMs":-1}`, []string{"gracePeriodMs", "between 0 and 2592000000", "got -1"}},
		{`{"trafficWindowMs":0}`, []string{"trafficWindowMs", "got 0"}},
		{`{"cookieMaxAge":34560001}`, []string{"cookieMaxAge", "between 1 and 34560000 seconds (1s to 400d)"}},
		{`{"cookieMaxAge":9223372036854775807}`, []string{"cookieMaxAge", "got 9223372036854775807"}},
		{`{"gracePeriodMs":7200000,"maxAliveMs":3600000}`, []string{"maxAliveMs: 3600000 is shorter than gracePeriodMs 7200000"}},
		{`{"maxVersions":-1}`, []string{"maxVersions: must be between 0 and 1000, got -1"}},
		{`{"maxVersions":1001}`, []string{"maxVersions", "got 1001"}},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			rec := h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, tc.body)
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			assert.Equal(t, CodeInvalidPolicy, errorCode(t, rec))
			var e Error
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e))
			for _, s := range tc.says {
				assert.Contains(t, e.Message, s)
			}
		})
	}
	rec := h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
	assert.JSONEq(t, `{}`, overridesOf(t, rec), "nothing stored")

	for _, body := range []string{`{"maxAliveMs":2592000000,"gracePeriodMs":2592000000}`,
		`{"checkIntervalMs":1000,"trafficWindowMs":1000,"cookieMaxAge":34560000,"gracePeriodMs":0,"maxAliveMs":1000}`} {
		rec := h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, body)
		assert.Equal(t, http.StatusOK, rec.Code, "the boundaries themselves are accepted: %s", rec.Body.String())
	}
}

// TestOpenAPIPolicyBounds: the published schema states the ranges the server enforces.
func TestOpenAPIPolicyBounds(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Policy struct {
					Properties map[string]struct {
						Minimum *int64 `json:"minimum"`
						Maximum *int64 `json:"maximum"`
					} `json:"properties"`
				} `json:"Policy"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, yaml.Unmarshal(OpenAPI, &doc))
	props := doc.Components.Schemas.Policy.Properties
	for _, r := range bounds.All {
		if r.Field == "" {
			continue
		}
		p, ok := props[r.Field]
		if assert.True(t, ok, "%s is in the Policy schema", r.Field) {
			assert.Equal(t, &r.Min, p.Minimum, "%s minimum", r.Field)
			assert.Equal(t, &r.Max, p.Maximum, "%s maximum", r.Field)
		}
	}
}
