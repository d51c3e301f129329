package config

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/routes"
)

func load(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	return LoadFrom(context.Background(), envconfig.MapLookuper(env))
}

// problems returns the problems LoadFrom reported, failing the test if it reported none.
func problems(t *testing.T, err error) Problems {
	t.Helper()
	var p Problems
	require.True(t, errors.As(err, &p), "want config.Problems, got %v", err)
	return p
}

// TestDocumentedDefaults: the seven documented variables, unset, take the published defaults.
func TestDocumentedDefaults(t *testing.T) {
	cfg, err := load(t, nil)
	require.NoError(t, err)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"PLT_FEATURE_SKEW_PROTECTION", cfg.SkewProtection, false},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", cfg.GracePeriodMS, int64(1800000)},
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", cfg.MaxAliveMS, int64(86400000)},
		{"PLT_SKEW_COOKIE_MAX_AGE", cfg.CookieMaxAge, int64(43200)},
		{"PLT_SKEW_AUTO_CLEANUP", cfg.AutoCleanup, false},
		{"PLT_SKEW_CHECK_INTERVAL_MS", cfg.CheckIntervalMS, int64(60000)},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", cfg.TrafficWindowMS, int64(300000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.got)
		})
	}
	assert.Equal(t, 30*time.Minute, cfg.GracePeriod())
	assert.Equal(t, 24*time.Hour, cfg.MaxAlive())
	assert.Equal(t, time.Minute, cfg.CheckInterval())
	assert.Equal(t, 5*time.Minute, cfg.TrafficWindow())
}

// TestOtherDefaults: the connection settings and skewguard's own settings.
func TestOtherDefaults(t *testing.T) {
	cfg, err := load(t, nil)
	require.NoError(t, err)
	assert.Equal(t, Config{
		SkewProtection:     false,
		GracePeriodMS:      1800000,
		MaxAliveMS:         86400000,
		CookieMaxAge:       43200,
		AutoCleanup:        false,
		CheckIntervalMS:    60000,
		TrafficWindowMS:    300000,
		TemporalAddress:    "localhost:7233",
		TemporalNamespace:  "default",
		ListenAddress:      ":8080",
		TaskQueue:          "skewguard",
		CookieName:         "__plt_dpl",
		RewritePathPrefix:  true,
		ReadinessTimeoutMS: 600000,
		Mode:               "manage",
		ActionWaitMS:       10000,
		TrafficPreset:      "watt",
		WatchPods:          true,
		LogLevel:           "info",
		LogFormat:          "json",
	}, cfg)
	assert.Equal(t, 10*time.Minute, cfg.ReadinessTimeout())
}

// setCases sets each variable to a valid value that is not its default.
var setCases = []struct {
	name  string
	value string
	got   func(Config) any
	want  any
}{
	{"PLT_FEATURE_SKEW_PROTECTION", "true", func(c Config) any { return c.SkewProtection }, true},
	{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "1000", func(c Config) any { return c.GracePeriodMS }, int64(1000)},
	{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "3600000", func(c Config) any { return c.MaxAliveMS }, int64(3600000)},
	{"PLT_SKEW_COOKIE_MAX_AGE", "60", func(c Config) any { return c.CookieMaxAge }, int64(60)},
	{"PLT_SKEW_AUTO_CLEANUP", "true", func(c Config) any { return c.AutoCleanup }, true},
	{"PLT_SKEW_CHECK_INTERVAL_MS", "5000", func(c Config) any { return c.CheckIntervalMS }, int64(5000)},
	{"PLT_SKEW_TRAFFIC_WINDOW_MS", "120000", func(c Config) any { return c.TrafficWindowMS }, int64(120000)},
	{"TEMPORAL_ADDRESS", "127.0.0.1:7299", func(c Config) any { return c.TemporalAddress }, "127.0.0.1:7299"},
	{"TEMPORAL_NAMESPACE", "skew", func(c Config) any { return c.TemporalNamespace }, "skew"},
	{"DATABASE_URL", "postgres://u@db/x", func(c Config) any { return c.DatabaseURL }, "postgres://u@db/x"},
	{"KUBECONFIG", "/tmp/kubeconfig", func(c Config) any { return c.Kubeconfig }, "/tmp/kubeconfig"},
	{"PROMETHEUS_URL", "http://prom:9090", func(c Config) any { return c.PrometheusURL }, "http://prom:9090"},
	{"PLT_SKEW_LISTEN_ADDRESS", "127.0.0.1:9000", func(c Config) any { return c.ListenAddress }, "127.0.0.1:9000"},
	{"PLT_SKEW_METRICS_ADDRESS", "127.0.0.1:9001", func(c Config) any { return c.MetricsAddress }, "127.0.0.1:9001"},
	{"PLT_SKEW_TEMPORAL_UI_URL", "http://temporal-ui:8233", func(c Config) any { return c.TemporalUIURL }, "http://temporal-ui:8233"},
	{"PLT_SKEW_TASK_QUEUE", "skew-q", func(c Config) any { return c.TaskQueue }, "skew-q"},
	{"PLT_SKEW_GATEWAY_PARENT_REFS", "infra/gw:http", func(c Config) any { return c.ParentRefs },
		[]routes.ParentRef{{Namespace: "infra", Name: "gw", SectionName: "http"}}},
	{"PLT_SKEW_COOKIE_NAME", "__dpl", func(c Config) any { return c.CookieName }, "__dpl"},
	{"PLT_SKEW_REWRITE_PATH_PREFIX", "false", func(c Config) any { return c.RewritePathPrefix }, false},
	{"PLT_SKEW_REQUIRE_APPROVAL", "true", func(c Config) any { return c.RequireApproval }, true},
	{"PLT_SKEW_MAX_VERSIONS", "3", func(c Config) any { return c.MaxVersions }, int64(3)},
	{"PLT_SKEW_MODE", "advise", func(c Config) any { return c.Mode }, "advise"},
	{"PLT_SKEW_READINESS_TCP_PROBE", "true", func(c Config) any { return c.ReadinessTCPProbe }, true},
	{"PLT_SKEW_READINESS_TIMEOUT_MS", "30000", func(c Config) any { return c.ReadinessTimeoutMS }, int64(30000)},
	{"PLT_SKEW_TRAFFIC_PRESET", "traefik", func(c Config) any { return c.TrafficPreset }, "traefik"},
	{"PLT_SKEW_TRAFFIC_QUERY", `sum(rate(x{v="{{.Version}}"}[5m]))`, func(c Config) any { return c.TrafficQuery },
		`sum(rate(x{v="{{.Version}}"}[5m]))`},
	{"PLT_SKEW_WATCH_PODS", "false", func(c Config) any { return c.WatchPods }, false},
	{"PLT_SKEW_VERSION_FROM_IMAGE", "true", func(c Config) any { return c.VersionFromImage }, true},
	{"PLT_SKEW_NAMESPACES", "shop,blog", func(c Config) any { return c.Namespaces }, []string{"shop", "blog"}},
	{"PLT_SKEW_INSECURE_SKIP_POD_AUTH", "true", func(c Config) any { return c.InsecureSkipPodAuth }, true},
	{"PLT_SKEW_INSECURE_SKIP_API_AUTH", "true", func(c Config) any { return c.InsecureSkipAPIAuth }, true},
	{"PLT_SKEW_LOG_LEVEL", "debug", func(c Config) any { return c.LogLevel }, "debug"},
	{"PLT_SKEW_LOG_FORMAT", "text", func(c Config) any { return c.LogFormat }, "text"},
	// Claims (issue 12, item 1).
	{"PLT_SKEW_CLAIMS_CONFIGMAP", "skewguard-system/skewguard-claims", func(c Config) any { return c.ClaimsConfigMap }, "skewguard-system/skewguard-claims"},
}

// TestEachVariableSet sets one variable at a time; the skew-protection flag needs a parent ref.
func TestEachVariableSet(t *testing.T) {
	for _, tc := range setCases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{tc.name: tc.value}
			if tc.name == "PLT_FEATURE_SKEW_PROTECTION" {
				env["PLT_SKEW_GATEWAY_PARENT_REFS"] = "infra/gw"
			}
			for k, v := range pairedWith[tc.name] { // security_test.go
				env[k] = v
			}
			cfg, err := load(t, env)
			require.NoError(t, err)
			assert.Equal(t, tc.want, tc.got(cfg))
		})
	}
}

// TestEveryVariableHasASetCase keeps setCases complete when a variable is added to Config.
func TestEveryVariableHasASetCase(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range setCases {
		covered[tc.name] = true
	}
	for name := range fieldKinds(reflect.TypeOf(Config{})) {
		assert.True(t, covered[name], "%s has no case in setCases", name)
	}
}

// TestInvalidValueNamesItsVariable: each bad value is one problem that names its variable, and
// nothing else is reported (a bad value does not stop the rest from decoding).
func TestInvalidValueNamesItsVariable(t *testing.T) {
	tests := []struct {
		name, value string
		says        string // part of the message after the variable name
	}{
		{"PLT_FEATURE_SKEW_PROTECTION", "yes please", "is not true or false"},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "abc", "is not a whole number"},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "1.5", "is not a whole number"},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "-1", "must be between 0 and 2592000000 milliseconds (0 to 30d), got -1"},
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "1d", "is not a whole number"},
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "0", "must be between 1000 and 2592000000 milliseconds (1s to 30d), got 0"},
		{"PLT_SKEW_COOKIE_MAX_AGE", "-1", "must be between 1 and 34560000 seconds (1s to 400d), got -1"},
		{"PLT_SKEW_COOKIE_MAX_AGE", "0", "got 0"},
		{"PLT_SKEW_COOKIE_MAX_AGE", "99999999999999999999", "is not a whole number"},
		{"PLT_SKEW_AUTO_CLEANUP", "2", "is not true or false"},
		{"PLT_SKEW_MAX_VERSIONS", "-1", "must be between 0 and 1000, got -1"},
		{"PLT_SKEW_MAX_VERSIONS", "three", "is not a whole number"},
		{"PLT_SKEW_MODE", "plan", `PLT_SKEW_MODE: "plan" is not one of manage, advise, observe`},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "0", "must be between 1000 and 86400000 milliseconds (1s to 1d), got 0"},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "1m", "is not a whole number"},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "-300000", "got -300000"},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "0", "got 0"},
		{"PLT_SKEW_GATEWAY_PARENT_REFS", "gateway", "is not namespace/name[:sectionName]"},
		{"PLT_SKEW_COOKIE_NAME", "a;b", "is not a valid cookie name"},
		{"PLT_SKEW_TRAFFIC_PRESET", "nginx", "is not one of watt, traefik"},
		{"PLT_SKEW_NAMESPACES", "shop,Bad_NS", "is not a namespace name"},
		{"PLT_SKEW_REWRITE_PATH_PREFIX", "nope", "is not true or false"},
		{"PLT_SKEW_WATCH_PODS", "on", "is not true or false"},
		{"PLT_SKEW_VERSION_FROM_IMAGE", "yes", "is not true or false"},
		{"PLT_SKEW_LOG_LEVEL", "verbose", "is not one of debug, info, warn, error"},
		{"PLT_SKEW_LOG_FORMAT", "xml", "is not one of json, text"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := load(t, map[string]string{tc.name: tc.value})
			p := problems(t, err)
			require.Len(t, p, 1, "problems: %v", p)
			assert.True(t, strings.HasPrefix(p[0], tc.name+": "), "%q does not start with the variable name", p[0])
			assert.Contains(t, p[0], tc.says)
		})
	}
}

// TestSeveralProblemsAtOnce is the acceptance case: both variables are named in one error.
func TestSeveralProblemsAtOnce(t *testing.T) {
	cfg, err := load(t, map[string]string{
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "abc",
		"PLT_SKEW_COOKIE_MAX_AGE":       "-1",
	})
	p := problems(t, err)
	assert.Equal(t, Problems{
		"PLT_SKEW_COOKIE_MAX_AGE: must be between 1 and 34560000 seconds (1s to 400d), got -1",
		`PLT_SKEW_HTTP_GRACE_PERIOD_MS: "abc" is not a whole number`,
	}, p)
	assert.Contains(t, err.Error(), "PLT_SKEW_HTTP_GRACE_PERIOD_MS")
	assert.Contains(t, err.Error(), "PLT_SKEW_COOKIE_MAX_AGE")
	assert.Equal(t, int64(1800000), cfg.GracePeriodMS, "an unparsable value leaves the default for the other checks")
}

func TestManyProblemsAreAllReported(t *testing.T) {
	_, err := load(t, map[string]string{
		"PLT_FEATURE_SKEW_PROTECTION":   "true", // without parent refs
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "x",
		"PLT_SKEW_HTTP_MAX_ALIVE_MS":    "-5",
		"PLT_SKEW_CHECK_INTERVAL_MS":    "0",
		"PLT_SKEW_AUTO_CLEANUP":         "maybe",
		"PLT_SKEW_LOG_FORMAT":           "xml",
	})
	p := problems(t, err)
	var names []string
	for _, line := range p {
		name, _, _ := strings.Cut(line, ":")
		names = append(names, name)
	}
	assert.Equal(t, []string{
		"PLT_SKEW_AUTO_CLEANUP",
		"PLT_SKEW_CHECK_INTERVAL_MS",
		"PLT_SKEW_GATEWAY_PARENT_REFS",
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS",
		"PLT_SKEW_HTTP_MAX_ALIVE_MS",
		"PLT_SKEW_LOG_FORMAT",
	}, names)
}

func TestMaxAliveShorterThanGrace(t *testing.T) {
	tests := []struct {
		grace, maxAlive string
		ok              bool
	}{
		{"2000", "1000", false},
		{"1000", "1000", true},
		{"0", "1000", true},
		{"", "1000", false}, // the default grace period is 30 minutes
	}
	for _, tc := range tests {
		t.Run(tc.grace+"/"+tc.maxAlive, func(t *testing.T) {
			env := map[string]string{"PLT_SKEW_HTTP_MAX_ALIVE_MS": tc.maxAlive}
			if tc.grace != "" {
				env["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = tc.grace
			}
			_, err := load(t, env)
			if tc.ok {
				assert.NoError(t, err)
				return
			}
			p := problems(t, err)
			require.Len(t, p, 1)
			assert.Contains(t, p[0], "PLT_SKEW_HTTP_MAX_ALIVE_MS: "+tc.maxAlive+" is shorter than PLT_SKEW_HTTP_GRACE_PERIOD_MS")
		})
	}
}

// TestDurationBounds: every duration variable has the range of internal/bounds (the same the
// per-app policy has), checked at start-up: 9.3e12 ms, which overflows time.Duration into a
// negative value, and 1 ms for the check interval were accepted before.
func TestDurationBounds(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "9300000000000", false},
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "2592000001", false},
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "2592000000", true}, // 30 days
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "1800000", true},    // equal to the default grace period
		{"PLT_SKEW_HTTP_MAX_ALIVE_MS", "-1", false},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "0", true},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "86400000", true}, // equal to the default max alive
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "9300000000000", false},
		{"PLT_SKEW_HTTP_GRACE_PERIOD_MS", "-1", false},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "1", false},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "999", false},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "1000", true},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "86400000", true},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "86400001", false},
		{"PLT_SKEW_CHECK_INTERVAL_MS", "9300000000000", false},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "0", false},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "999", false},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "1000", true},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "86400000", true},
		{"PLT_SKEW_TRAFFIC_WINDOW_MS", "86400001", false},
		{"PLT_SKEW_COOKIE_MAX_AGE", "1", true},
		{"PLT_SKEW_MAX_VERSIONS", "0", true},
		{"PLT_SKEW_MAX_VERSIONS", "1000", true},
		{"PLT_SKEW_MAX_VERSIONS", "1001", false},
		{"PLT_SKEW_COOKIE_MAX_AGE", "34560000", true}, // 400 days
		{"PLT_SKEW_COOKIE_MAX_AGE", "34560001", false},
		{"PLT_SKEW_COOKIE_MAX_AGE", "9300000000000", false},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "1000", true},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "999", false},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "86400000", true},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "9300000000000", false},
		{"PLT_SKEW_READINESS_TIMEOUT_MS", "-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			cfg, err := load(t, map[string]string{tc.name: tc.value})
			if tc.ok {
				require.NoError(t, err)
				for _, d := range []time.Duration{cfg.GracePeriod(), cfg.MaxAlive(), cfg.CheckInterval(),
					cfg.TrafficWindow(), cfg.ReadinessTimeout()} {
					assert.GreaterOrEqual(t, d, time.Duration(0))
				}
				return
			}
			p := problems(t, err)
			require.Len(t, p, 1, "problems: %v", p)
			assert.True(t, strings.HasPrefix(p[0], tc.name+": must be between "), p[0])
			assert.True(t, strings.HasSuffix(p[0], ", got "+tc.value), p[0])
		})
	}
}

// TestDurationGettersNeverOverflow: a Config that skipped LoadFrom still yields durations
// within range, never a negative one.
func TestDurationGettersNeverOverflow(t *testing.T) {
	c := Config{GracePeriodMS: 9.3e12, MaxAliveMS: 9.3e12, CheckIntervalMS: 1, TrafficWindowMS: -1, ReadinessTimeoutMS: 9.3e12}
	assert.Equal(t, 30*24*time.Hour, c.GracePeriod())
	assert.Equal(t, 30*24*time.Hour, c.MaxAlive())
	assert.Equal(t, time.Second, c.CheckInterval())
	assert.Equal(t, time.Second, c.TrafficWindow())
	assert.Equal(t, 24*time.Hour, c.ReadinessTimeout())
}

func TestParentRefsFromEnvironment(t *testing.T) {
	cfg, err := load(t, map[string]string{
		"PLT_FEATURE_SKEW_PROTECTION":  "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS": "infra/gw:http, edge/public",
	})
	require.NoError(t, err)
	assert.Equal(t, []routes.ParentRef{
		{Namespace: "infra", Name: "gw", SectionName: "http"},
		{Namespace: "edge", Name: "public"},
	}, cfg.ParentRefs)

	_, err = load(t, map[string]string{"PLT_SKEW_GATEWAY_PARENT_REFS": "infra/gw,broken,/x"})
	p := problems(t, err)
	require.Len(t, p, 1, "one problem per variable, listing each bad reference")
	assert.True(t, strings.HasPrefix(p[0], "PLT_SKEW_GATEWAY_PARENT_REFS: "))
	assert.Contains(t, p[0], `"broken"`)
	assert.Contains(t, p[0], `"/x"`)
}

// TestSurroundingSpaceIsTolerated: a value with stray spaces (common in YAML and .env files)
// parses as the number or boolean it holds and does not disturb the other variables.
func TestSurroundingSpaceIsTolerated(t *testing.T) {
	cfg, err := load(t, map[string]string{
		"PLT_SKEW_HTTP_GRACE_PERIOD_MS": " 5000 ",
		"PLT_SKEW_AUTO_CLEANUP":         " true",
	})
	require.NoError(t, err)
	assert.Equal(t, int64(5000), cfg.GracePeriodMS)
	assert.True(t, cfg.AutoCleanup)
	assert.Equal(t, int64(86400000), cfg.MaxAliveMS)
}

// TestEmptyValueMeansDefault: charts and compose files render optional settings as empty strings; an empty
// (or blank) value is treated as unset, so the default applies and nothing is reported.
func TestEmptyValueMeansDefault(t *testing.T) {
	cfg, err := load(t, map[string]string{
		"PLT_SKEW_TRAFFIC_WINDOW_MS":   "",
		"PLT_SKEW_COOKIE_NAME":         " ",
		"PLT_SKEW_TASK_QUEUE":          "",
		"TEMPORAL_NAMESPACE":           "",
		"PLT_FEATURE_SKEW_PROTECTION":  "",
		"PLT_SKEW_GATEWAY_PARENT_REFS": "",
	})
	require.NoError(t, err)
	assert.Equal(t, int64(300000), cfg.TrafficWindowMS)
	assert.Equal(t, "__plt_dpl", cfg.CookieName)
	assert.Equal(t, "skewguard", cfg.TaskQueue)
	assert.Equal(t, "default", cfg.TemporalNamespace)
	assert.False(t, cfg.SkewProtection)
	assert.Empty(t, cfg.ParentRefs)
}

// TestInvalidGatewayReferences: every reference the Gateway API would refuse is reported at
// start-up, in one problem naming the variable, with the part at fault.
func TestInvalidGatewayReferences(t *testing.T) {
	long := strings.Repeat("g", 300)
	tests := []struct {
		name  string
		value string
		says  []string
	}{
		{"name with capitals and underscore", "infra/Gw_1", []string{`"infra/Gw_1": name "Gw_1"`}},
		{"empty name", "default/", []string{`"default/" is not namespace/name[:sectionName]`}},
		{"300-character name", "infra/" + long, []string{`name "` + long + `"`, "253"}},
		{"namespace with capitals", "Infra/gw", []string{`namespace "Infra"`}},
		{"bad sectionName", "infra/gw:Web_1", []string{`sectionName "Web_1"`}},
		{"empty sectionName", "infra/gw:", []string{`sectionName ""`}},
		{"every bad part of every reference", "infra/gw,Edge/Public:x_y, ok/gw:web",
			[]string{`namespace "Edge"`, `name "Public"`, `sectionName "x_y"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, map[string]string{"PLT_SKEW_GATEWAY_PARENT_REFS": tc.value})
			p := problems(t, err)
			require.Len(t, p, 1, "problems: %v", p)
			assert.True(t, strings.HasPrefix(p[0], "PLT_SKEW_GATEWAY_PARENT_REFS: "), p[0])
			assert.NotContains(t, p[0], "\n", "one problem is one line")
			for _, want := range tc.says {
				assert.Contains(t, p[0], want)
			}
		})
	}
}

func TestCookieNameIsAToken(t *testing.T) {
	tests := []struct {
		value string
		ok    bool
	}{
		{"__plt_dpl", true},
		{"dpl-1.v2", true},
		{"a b", false},
		{"a=b", false},
		{"a;b", false},
		{`a"b`, false},
		{"a,b", false},
		{"\u00e9t\u00e9", false},
		{"a\tb", false},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			cfg, err := load(t, map[string]string{"PLT_SKEW_COOKIE_NAME": tc.value})
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, tc.value, cfg.CookieName)
				return
			}
			p := problems(t, err)
			require.Len(t, p, 1, "problems: %v", p)
			assert.True(t, strings.HasPrefix(p[0], "PLT_SKEW_COOKIE_NAME: "), p[0])
		})
	}
}

// TestInvalidReferencesAreNotAlsoMissing: with skew protection on, an invalid reference is
// reported as invalid, not also as missing.
func TestInvalidReferencesAreNotAlsoMissing(t *testing.T) {
	_, err := load(t, map[string]string{"PLT_FEATURE_SKEW_PROTECTION": "true", "PLT_SKEW_GATEWAY_PARENT_REFS": "infra/Gw_1"})
	p := problems(t, err)
	require.Len(t, p, 1, "problems: %v", p)
	assert.Contains(t, p[0], `name "Gw_1"`)
}

// TestGatewayAndCookieProblemsTogether: both are reported in one error, with the others.
func TestGatewayAndCookieProblemsTogether(t *testing.T) {
	_, err := load(t, map[string]string{
		"PLT_SKEW_GATEWAY_PARENT_REFS": "infra/Gw_1",
		"PLT_SKEW_COOKIE_NAME":         "dpl=1",
		"PLT_SKEW_LOG_LEVEL":           "loud",
	})
	p := problems(t, err)
	var names []string
	for _, line := range p {
		name, _, _ := strings.Cut(line, ":")
		names = append(names, name)
	}
	assert.Equal(t, []string{"PLT_SKEW_COOKIE_NAME", "PLT_SKEW_GATEWAY_PARENT_REFS", "PLT_SKEW_LOG_LEVEL"}, names)
}
