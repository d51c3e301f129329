package registry

import (
	"errors"
	"fmt"
	"math"
	"strings"
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
			CheckIntervalMS: ptr[int64](1000), TrafficWindowMS: ptr[int64](1000), CookieMaxAge: ptr[int64](60),
			AutoCleanup: ptr(true), RequireApproval: ptr(false)}},
		{name: "max alive equal to grace", policy: Policy{GracePeriodMS: ptr[int64](5000), MaxAliveMS: ptr[int64](5000)}},
		{name: "max alive alone may be short", policy: Policy{MaxAliveMS: ptr[int64](1000)}},
		{name: "each mode", policy: Policy{Mode: ptr(ModeObserve)}},
		{name: "unknown mode", policy: Policy{Mode: ptr("plan")},
			problems: []string{`mode: "plan" is not one of manage, advise, observe`}},
		{name: "negative grace", policy: Policy{GracePeriodMS: ptr[int64](-1)},
			problems: []string{"gracePeriodMs: must be between 0 and 2592000000 milliseconds (0 to 30d), got -1"}},
		{name: "zero check interval", policy: Policy{CheckIntervalMS: ptr[int64](0)},
			problems: []string{"checkIntervalMs: must be between 1000 and 86400000 milliseconds (1s to 1d), got 0"}},
		{name: "max alive shorter than grace", policy: Policy{GracePeriodMS: ptr[int64](10_000), MaxAliveMS: ptr[int64](9_000)},
			problems: []string{"maxAliveMs: 9000 is shorter than gracePeriodMs 10000"}},
		{name: "every problem at once", policy: Policy{GracePeriodMS: ptr[int64](10), MaxAliveMS: ptr[int64](-1),
			CheckIntervalMS: ptr[int64](-2), TrafficWindowMS: ptr[int64](0), CookieMaxAge: ptr[int64](-3)},
			problems: []string{
				"maxAliveMs: must be between 1000 and 2592000000 milliseconds (1s to 30d), got -1",
				"checkIntervalMs: must be between 1000 and 86400000 milliseconds (1s to 1d), got -2",
				"trafficWindowMs: must be between 1000 and 86400000 milliseconds (1s to 1d), got 0",
				"cookieMaxAge: must be between 1 and 34560000 seconds (1s to 400d), got -3",
			}},
		{name: "grace above max alive is reported once both are in range", policy: Policy{
			GracePeriodMS: ptr[int64](2_592_000_000), MaxAliveMS: ptr[int64](86_400_000)},
			problems: []string{"maxAliveMs: 86400000 is shorter than gracePeriodMs 2592000000"}},
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

// TestPolicyBounds: each duration field is held to the range of internal/bounds, the same as its
// global variable. 9.3e12 ms of max alive overflowed time.Duration into a negative value
// (immediate expiry) and a 1 ms check interval was accepted before.
func TestPolicyBounds(t *testing.T) {
	type field struct {
		name string
		set  func(*Policy, int64)
	}
	var (
		grace    = field{"gracePeriodMs", func(p *Policy, v int64) { p.GracePeriodMS = &v }}
		maxAlive = field{"maxAliveMs", func(p *Policy, v int64) { p.MaxAliveMS = &v }}
		check    = field{"checkIntervalMs", func(p *Policy, v int64) { p.CheckIntervalMS = &v }}
		window   = field{"trafficWindowMs", func(p *Policy, v int64) { p.TrafficWindowMS = &v }}
		cookie   = field{"cookieMaxAge", func(p *Policy, v int64) { p.CookieMaxAge = &v }}
	)
	tests := []struct {
		f     field
		value int64
		ok    bool
	}{
		{maxAlive, 9.3e12, false},
		{maxAlive, math.MaxInt64, false},
		{maxAlive, 2_592_000_001, false},
		{maxAlive, 2_592_000_000, true}, // 30 days
		{maxAlive, 1000, true},
		{maxAlive, 999, false},
		{maxAlive, 0, false},
		{maxAlive, -1, false},
		{grace, 0, true},
		{grace, 2_592_000_000, true},
		{grace, 2_592_000_001, false},
		{grace, 9.3e12, false},
		{grace, -1, false},
		{grace, math.MinInt64, false},
		{check, 1, false},
		{check, 999, false},
		{check, 1000, true},
		{check, 86_400_000, true},
		{check, 86_400_001, false},
		{check, 0, false},
		{check, -1000, false},
		{window, 0, false},
		{window, 999, false},
		{window, 1000, true},
		{window, 86_400_000, true},
		{window, 86_400_001, false},
		{window, 9.3e12, false},
		{cookie, 0, false},
		{cookie, 1, true},
		{cookie, 34_560_000, true}, // 400 days, the cap of RFC 6265bis
		{cookie, 34_560_001, false},
		{cookie, 9.3e12, false},
		{cookie, -1, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s=%d", tc.f.name, tc.value), func(t *testing.T) {
			var p Policy
			tc.f.set(&p, tc.value)
			err := p.Validate()
			if tc.ok {
				assert.NoError(t, err)
				return
			}
			var pe *PolicyError
			require.True(t, errors.As(err, &pe), "want *PolicyError, got %v", err)
			require.Len(t, pe.Problems, 1)
			assert.True(t, strings.HasPrefix(pe.Problems[0], tc.f.name+": must be between "), pe.Problems[0])
			assert.True(t, strings.HasSuffix(pe.Problems[0], fmt.Sprintf(", got %d", tc.value)), pe.Problems[0])
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
}
