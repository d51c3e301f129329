package registry

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ptr[T any](v T) *T { return &v }

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name     string
		policy   Policy
		problems []string // nil: valid
	}{
		{name: "empty inherits everything", policy: Policy{}},
		{name: "all set", policy: Policy{GracePeriodMS: ptr[int64](0), MaxAliveMS: ptr[int64](1000),
			CheckIntervalMS: ptr[int64](10), TrafficWindowMS: ptr[int64](10), CookieMaxAge: ptr[int64](60),
			AutoCleanup: ptr(true), RequireApproval: ptr(false)}},
		{name: "max alive equal to grace", policy: Policy{GracePeriodMS: ptr[int64](5), MaxAliveMS: ptr[int64](5)}},
		{name: "max alive alone may be short", policy: Policy{MaxAliveMS: ptr[int64](1)}},
		{name: "negative grace", policy: Policy{GracePeriodMS: ptr[int64](-1)},
			problems: []string{"gracePeriodMs: must not be negative, got -1"}},
		{name: "zero check interval", policy: Policy{CheckIntervalMS: ptr[int64](0)},
			problems: []string{"checkIntervalMs: must be greater than zero"}},
		{name: "max alive shorter than grace", policy: Policy{GracePeriodMS: ptr[int64](10), MaxAliveMS: ptr[int64](9)},
			problems: []string{"maxAliveMs: 9 is shorter than gracePeriodMs 10"}},
		{name: "every problem at once", policy: Policy{GracePeriodMS: ptr[int64](10), MaxAliveMS: ptr[int64](-1),
			CheckIntervalMS: ptr[int64](-2), TrafficWindowMS: ptr[int64](0), CookieMaxAge: ptr[int64](-3)},
			problems: []string{
				"maxAliveMs: must not be negative, got -1",
				"checkIntervalMs: must not be negative, got -2",
				"trafficWindowMs: must be greater than zero",
				"cookieMaxAge: must not be negative, got -3",
				"maxAliveMs: -1 is shorter than gracePeriodMs 10",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Validate()
			if tc.problems == nil {
				assert.NoError(t, err)
				return
			}
			var pe *PolicyError
			require.True(t, errors.As(err, &pe), "want *PolicyError, got %v", err)
			assert.Equal(t, tc.problems, pe.Problems)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
}
