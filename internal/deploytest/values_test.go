package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/skewguard/skewguard/internal/deploytest/charttest"
)

// documented is the public documentation's table: Helm key, environment variable, default.
var documented = []struct {
	key, env, def string
}{
	{"services.icc.features.skew_protection.enable", "PLT_FEATURE_SKEW_PROTECTION", "false"},
	{"services.icc.skew_protection.http_grace_period_ms", "PLT_SKEW_HTTP_GRACE_PERIOD_MS", "1800000"},
	{"services.icc.skew_protection.http_max_alive_ms", "PLT_SKEW_HTTP_MAX_ALIVE_MS", "86400000"},
	{"services.icc.skew_protection.cookie_max_age", "PLT_SKEW_COOKIE_MAX_AGE", "43200"},
	{"services.icc.skew_protection.auto_cleanup", "PLT_SKEW_AUTO_CLEANUP", "false"},
	{"services.icc.skew_protection.check_interval_ms", "PLT_SKEW_CHECK_INTERVAL_MS", "60000"},
	{"services.icc.skew_protection.traffic_window_ms", "PLT_SKEW_TRAFFIC_WINDOW_MS", "300000"},
}

func chartDir(t testing.TB) string { return charttest.Dir(t) }

func loadValues(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(data, &v))
	return v
}

// lookup follows a dotted key through nested maps.
func lookup(v map[string]any, key string) (any, bool) {
	var cur any = v
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// scalar prints a YAML scalar as the environment would carry it (numbers decode as float64).
func scalar(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case string:
		return v
	}
	return fmt.Sprint(v)
}

// Users of the documentation expect exactly its keys, with its defaults, and the binary must
// default to the same values when a variable is unset.
func TestValuesCarryTheDocumentedKeysAndDefaults(t *testing.T) {
	values := loadValues(t)
	binary := configVariables(t)
	for _, d := range documented {
		t.Run(d.key, func(t *testing.T) {
			v, ok := lookup(values, d.key)
			require.True(t, ok, "values.yaml has no %s", d.key)
			assert.Equal(t, d.def, scalar(v), "values.yaml default of %s", d.key)
			assert.Equal(t, d.def, binary[d.env], "the binary's default of %s", d.env)
		})
	}
}

// The documented groups hold the documented keys and nothing else, so a key the documentation
// does not name cannot creep in beside them.
func TestDocumentedGroupsHoldNothingElse(t *testing.T) {
	values := loadValues(t)
	for group, want := range map[string][]string{
		"services":                              {"icc"},
		"services.icc":                          {"features", "skew_protection"},
		"services.icc.features":                 {"skew_protection"},
		"services.icc.features.skew_protection": {"enable"},
		"services.icc.skew_protection":          {"auto_cleanup", "check_interval_ms", "cookie_max_age", "http_grace_period_ms", "http_max_alive_ms", "traffic_window_ms"},
	} {
		v, ok := lookup(values, group)
		require.True(t, ok, group)
		m, ok := v.(map[string]any)
		require.True(t, ok, group)
		var got []string
		for k := range m {
			got = append(got, k)
		}
		assert.ElementsMatch(t, want, got, group)
	}
}
