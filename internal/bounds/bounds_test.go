package bounds

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRanges(t *testing.T) {
	assert.Equal(t, Range{Env: "PLT_SKEW_HTTP_MAX_ALIVE_MS", Field: "maxAliveMs", Unit: time.Millisecond,
		Min: 1000, Max: 2_592_000_000}, MaxAlive)
	assert.Equal(t, int64(34_560_000), CookieMaxAge.Max, "400 days in seconds (RFC 6265bis)")
	for _, r := range All {
		assert.LessOrEqual(t, r.Min, r.Max, r.Env)
		assert.GreaterOrEqual(t, r.Min, int64(0), r.Env)
		if r.Unit == 0 {
			continue // a count: nothing to overflow
		}
		// The maximum times the unit must not overflow: that is the point of the bounds.
		assert.Less(t, r.Max, int64(math.MaxInt64)/int64(r.Unit), r.Env)
		assert.Positive(t, time.Duration(r.Max)*r.Unit, r.Env)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		r    Range
		v    int64
		want string // "" for in range
	}{
		{MaxAlive, 9.3e12, "must be between 1000 and 2592000000 milliseconds (1s to 30d), got 9300000000000"},
		{MaxAlive, math.MaxInt64, "must be between 1000 and 2592000000 milliseconds (1s to 30d), got 9223372036854775807"},
		{MaxAlive, 999, "must be between 1000 and 2592000000 milliseconds (1s to 30d), got 999"},
		{MaxAlive, 1000, ""},
		{MaxAlive, 2_592_000_000, ""},
		{MaxAlive, 2_592_000_001, "got 2592000001"},
		{MaxAlive, 0, "got 0"},
		{MaxAlive, -1, "got -1"},
		{MaxAlive, math.MinInt64, "got -9223372036854775808"},
		{CheckInterval, 1, "must be between 1000 and 86400000 milliseconds (1s to 1d), got 1"},
		{CheckInterval, 1000, ""},
		{CheckInterval, 86_400_000, ""},
		{CheckInterval, 86_400_001, "got 86400001"},
		{GracePeriod, 0, ""},
		{GracePeriod, -1, "must be between 0 and 2592000000 milliseconds (0 to 30d), got -1"},
		{TrafficWindow, 999, "(1s to 1d), got 999"},
		{CookieMaxAge, 34_560_000, ""},
		{CookieMaxAge, 34_560_001, "must be between 1 and 34560000 seconds (1s to 400d), got 34560001"},
		{CookieMaxAge, 0, "got 0"},
		{ReadinessTimeout, 600_000, ""},
		{MaxVersions, 0, ""},
		{MaxVersions, 1000, ""},
		{MaxVersions, 1001, "must be between 0 and 1000, got 1001"},
		{MaxVersions, -1, "must be between 0 and 1000, got -1"},
	}
	for _, tc := range tests {
		err := tc.r.Check(tc.v)
		if tc.want == "" {
			assert.NoError(t, err, "%s=%d", tc.r.Env, tc.v)
			continue
		}
		if assert.Error(t, err, "%s=%d", tc.r.Env, tc.v) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}

func TestDurationClamps(t *testing.T) {
	assert.Equal(t, 30*24*time.Hour, MaxAlive.Duration(9.3e12), "no overflow into a negative duration")
	assert.Equal(t, 30*24*time.Hour, MaxAlive.Duration(math.MaxInt64))
	assert.Equal(t, time.Second, CheckInterval.Duration(1))
	assert.Equal(t, time.Second, CheckInterval.Duration(-5))
	assert.Equal(t, time.Duration(0), GracePeriod.Duration(0))
	assert.Equal(t, 90*time.Second, CheckInterval.Duration(90_000))
	assert.Equal(t, 12*time.Hour, CookieMaxAge.Duration(43200))
}

func TestGraceWithinMaxAlive(t *testing.T) {
	assert.NoError(t, CheckGraceWithinMaxAlive(1000, 1000, "g"))
	assert.NoError(t, CheckGraceWithinMaxAlive(0, 1000, "g"))
	assert.EqualError(t, CheckGraceWithinMaxAlive(2000, 1000, "gracePeriodMs"), "1000 is shorter than gracePeriodMs 2000")
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0", time.Second: "1s", 90 * time.Second: "90s",
		24 * time.Hour: "1d", 30 * time.Minute: "30m", 1500 * time.Millisecond: "1500ms", 36 * time.Hour: "36h"} {
		assert.Equal(t, want, Human(d))
	}
}

// TestOverridesCheck: the configuration (ByEnv) and the policy (ByField) get the same problems in
// their own names, an unset value is not checked, and the rule between grace period and max alive
// is checked only once both are set and within range.
func TestOverridesCheck(t *testing.T) {
	v := func(n int64) *int64 { return &n }
	o := Overrides{GracePeriodMS: v(10_000), MaxAliveMS: v(9_000), CheckIntervalMS: v(1), CookieMaxAge: v(0)}
	assert.Equal(t, []string{
		"PLT_SKEW_CHECK_INTERVAL_MS: must be between 1000 and 86400000 milliseconds (1s to 1d), got 1",
		"PLT_SKEW_COOKIE_MAX_AGE: must be between 1 and 34560000 seconds (1s to 400d), got 0",
		"PLT_SKEW_HTTP_MAX_ALIVE_MS: 9000 is shorter than PLT_SKEW_HTTP_GRACE_PERIOD_MS 10000",
	}, o.Check(ByEnv))
	assert.Equal(t, []string{
		"checkIntervalMs: must be between 1000 and 86400000 milliseconds (1s to 1d), got 1",
		"cookieMaxAge: must be between 1 and 34560000 seconds (1s to 400d), got 0",
		"maxAliveMs: 9000 is shorter than gracePeriodMs 10000",
	}, o.Check(ByField))
	assert.Nil(t, Overrides{}.Check(ByField), "nothing set, nothing to refuse")
	assert.Nil(t, Overrides{MaxAliveMS: v(1000)}.Check(ByField), "max alive alone")
	assert.Equal(t, []string{"gracePeriodMs: must be between 0 and 2592000000 milliseconds (0 to 30d), got 2592000001"},
		Overrides{GracePeriodMS: v(2_592_000_001), MaxAliveMS: v(1000)}.Check(ByField), "out of range: not compared")
	assert.Equal(t, []string{"maxVersions: must be between 0 and 1000, got -1"}, Overrides{MaxVersions: v(-1)}.Check(ByField))
	assert.Nil(t, Overrides{MaxVersions: v(3)}.Check(ByField))
	assert.Equal(t, []string{"PLT_SKEW_ACTION_WAIT_MS: must be between 1000 and 60000 milliseconds (1s to 1m), got 60001"},
		Checks(ByEnv, []Range{ReadinessTimeout, ActionWait}, nil, v(60_001)))
}
