// Package bounds is the one definition of the range every duration setting may take, used by
// the global configuration (internal/config, the PLT_SKEW_*_MS variables) and by the per-app
// policy (internal/registry.Policy, set through the API) alike, so that the two can never
// disagree: Overrides.Check is the one check of the settings a policy overrides, naming each
// by its variable for the one and by its field for the other. A value is checked against its
// range before it is ever multiplied into a time.Duration: the largest maximum here, 400 days
// in milliseconds, is some 3.5e10, far from the 9.2e12 milliseconds at which time.Duration
// overflows.
//
// The ranges:
//
//	setting                                policy field     unit  minimum  maximum
//	PLT_SKEW_HTTP_GRACE_PERIOD_MS          gracePeriodMs    ms    0        30 days (and ≤ max alive)
//	PLT_SKEW_HTTP_MAX_ALIVE_MS             maxAliveMs       ms    1 s      30 days
//	PLT_SKEW_CHECK_INTERVAL_MS             checkIntervalMs  ms    1 s      24 hours
//	PLT_SKEW_TRAFFIC_WINDOW_MS             trafficWindowMs  ms    1 s      24 hours
//	PLT_SKEW_COOKIE_MAX_AGE                cookieMaxAge     s     1 s      400 days
//	PLT_SKEW_READINESS_TIMEOUT_MS          (global only)    ms    1 s      24 hours
//	PLT_SKEW_ACTION_WAIT_MS                (global only)    ms    1 s      60 s
//	PLT_SKEW_MAX_VERSIONS                  maxVersions      -     0        1000 (0: no cap)
//
// Why these: a check more often than once a second only loads Prometheus and Temporal (the
// workflow already waits at least a second between retries); a version drained for more than
// 30 days is a forgotten one; a rate window shorter than a second reads nothing and one longer
// than a day is not "recent traffic"; user agents cap a cookie's Max-Age at 400 days (RFC
// 6265bis, section 5.6.2), so a longer one would be a promise the browser does not keep; a
// readiness wait beyond a day is a stuck rollout. The grace period may be zero (drain-checks
// start at once) but not longer than the max alive it is part of. An API call waits for a
// workflow's answer at most PLT_SKEW_ACTION_WAIT_MS before it answers 202: less than a second
// would answer 202 to actions that take a normal workflow task round trip, and more than a
// minute outlives the read timeout of common proxies and load balancers (60 s), whose 504
// would hide our 202. maxVersions is a count, not a duration (Unit 0): how many versions may be
// Draining at once beside the Active one, 0 for no cap; a thousand versions of one app kept for
// their pins is a forgotten cleanup, not a cap anyone means.
package bounds

import (
	"fmt"
	"strconv"
	"time"
)

const (
	day = 24 * time.Hour
)

// Range is the inclusive range of one setting, in the setting's own unit.
type Range struct {
	// Env is the configuration variable, Field the per-app policy field ("" when the setting
	// cannot be overridden per app).
	Env, Field string
	Unit       time.Duration // time.Millisecond or time.Second; 0 for a count
	Min, Max   int64
}

// The ranges of every duration setting.
var (
	GracePeriod      = Range{Env: "PLT_SKEW_HTTP_GRACE_PERIOD_MS", Field: "gracePeriodMs", Unit: time.Millisecond, Min: 0, Max: ms(30 * day)}
	MaxAlive         = Range{Env: "PLT_SKEW_HTTP_MAX_ALIVE_MS", Field: "maxAliveMs", Unit: time.Millisecond, Min: ms(time.Second), Max: ms(30 * day)}
	CheckInterval    = Range{Env: "PLT_SKEW_CHECK_INTERVAL_MS", Field: "checkIntervalMs", Unit: time.Millisecond, Min: ms(time.Second), Max: ms(day)}
	TrafficWindow    = Range{Env: "PLT_SKEW_TRAFFIC_WINDOW_MS", Field: "trafficWindowMs", Unit: time.Millisecond, Min: ms(time.Second), Max: ms(day)}
	CookieMaxAge     = Range{Env: "PLT_SKEW_COOKIE_MAX_AGE", Field: "cookieMaxAge", Unit: time.Second, Min: 1, Max: int64(400 * day / time.Second)}
	ReadinessTimeout = Range{Env: "PLT_SKEW_READINESS_TIMEOUT_MS", Unit: time.Millisecond, Min: ms(time.Second), Max: ms(day)}
	ActionWait       = Range{Env: "PLT_SKEW_ACTION_WAIT_MS", Unit: time.Millisecond, Min: ms(time.Second), Max: ms(time.Minute)}
	// MaxVersions is a count (Unit 0): 0 means no cap.
	MaxVersions = Range{Env: "PLT_SKEW_MAX_VERSIONS", Field: "maxVersions", Min: 0, Max: 1000}
)

// All lists every range, for documentation and tests.
var All = []Range{GracePeriod, MaxAlive, CheckInterval, TrafficWindow, CookieMaxAge, ReadinessTimeout, ActionWait, MaxVersions}

func ms(d time.Duration) int64 { return int64(d / time.Millisecond) }

// Contains reports whether v is within the range.
func (r Range) Contains(v int64) bool { return v >= r.Min && v <= r.Max }

// Check returns nil for a value within the range, or an error that gives the value and the
// range in the setting's unit and readably, e.g.
// "must be between 1000 and 2592000000 milliseconds (1s to 30d), got 9300000000000".
// The caller prefixes the name (variable or field).
func (r Range) Check(v int64) error {
	if r.Contains(v) {
		return nil
	}
	if r.Unit == 0 {
		return fmt.Errorf("must be between %d and %d, got %d", r.Min, r.Max, v)
	}
	return fmt.Errorf("must be between %d and %d %s (%s to %s), got %d",
		r.Min, r.Max, r.unitName(), Human(time.Duration(r.Min)*r.Unit), Human(time.Duration(r.Max)*r.Unit), v)
}

// Duration is v in the range's unit as a time.Duration, v clamped into the range first: a
// value stored before these bounds existed can neither overflow nor go below the minimum.
// Callers that must refuse such a value use Check. For a count (Unit 0) use Clamp.
func (r Range) Duration(v int64) time.Duration {
	return time.Duration(min(max(v, r.Min), r.Max)) * r.Unit
}

// Clamp is v clamped into the range.
func (r Range) Clamp(v int64) int64 { return min(max(v, r.Min), r.Max) }

func (r Range) unitName() string {
	if r.Unit == time.Second {
		return "seconds"
	}
	return "milliseconds"
}

// Human writes d in the largest whole unit of days, hours, minutes, seconds or milliseconds
// that divides it: 30d, 24h, 1s, 1500ms, 0.
func Human(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// CheckGraceWithinMaxAlive is the one rule between two settings: the grace period is part of
// the time spent Draining, so max alive may not be shorter. graceName names the grace period
// setting in the caller's terms (variable or field); the caller prefixes the max alive's name.
func CheckGraceWithinMaxAlive(grace, maxAlive int64, graceName string) error {
	if maxAlive < grace {
		return fmt.Errorf("%d is shorter than %s %d", maxAlive, graceName, grace)
	}
	return nil
}

// Overrides holds the settings a per-app policy may override (internal/registry.Policy), nil
// for one that is not set. The configuration checks its values through it too, so that both
// hold the same settings to the same ranges and the same rule between them.
type Overrides struct {
	GracePeriodMS, MaxAliveMS, CheckIntervalMS, TrafficWindowMS, CookieMaxAge *int64
	MaxVersions                                                               *int64
}

// ByEnv names a setting by its configuration variable, ByField by its policy field: the name
// function of Overrides.Check and Checks.
func ByEnv(r Range) string   { return r.Env }
func ByField(r Range) string { return r.Field }

// Check checks every value that is set against its range and, when the grace period and max
// alive are both set and within range, the one against the other (CheckGraceWithinMaxAlive).
// It returns one problem per failure, "name: reason", with name(r) naming the setting, in the
// order grace period, max alive, check interval, traffic window, cookie Max-Age, max versions,
// then the rule between two settings; nil when there is none.
func (o Overrides) Check(name func(Range) string) []string {
	problems := Checks(name, []Range{GracePeriod, MaxAlive, CheckInterval, TrafficWindow, CookieMaxAge, MaxVersions},
		o.GracePeriodMS, o.MaxAliveMS, o.CheckIntervalMS, o.TrafficWindowMS, o.CookieMaxAge, o.MaxVersions)
	g, m := o.GracePeriodMS, o.MaxAliveMS
	if g != nil && m != nil && GracePeriod.Contains(*g) && MaxAlive.Contains(*m) {
		if err := CheckGraceWithinMaxAlive(*g, *m, name(GracePeriod)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name(MaxAlive), err))
		}
	}
	return problems
}

// Checks checks values[i], when it is not nil, against ranges[i] (one value per range), and
// returns one problem "name: reason" per value out of its range, in order.
func Checks(name func(Range) string, ranges []Range, values ...*int64) []string {
	var problems []string
	for i, r := range ranges {
		if values[i] == nil {
			continue
		}
		if err := r.Check(*values[i]); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name(r), err))
		}
	}
	return problems
}
