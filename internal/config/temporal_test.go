package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The variables of issue 12's Temporal block, in setCases (TestEveryVariableHasASetCase).
func init() {
	const file = "temporal.go" // any readable file: tests run in the package's directory
	setCases = append(setCases, []struct {
		name  string
		value string
		got   func(Config) any
		want  any
	}{
		{"PLT_SKEW_ACTION_WAIT_MS", "2500", func(c Config) any { return c.ActionWaitMS }, int64(2500)},
		{"TEMPORAL_TLS", "true", func(c Config) any { return c.TemporalTLS }, true},
		{"TEMPORAL_TLS_SERVER_CA_CERT_PATH", file, func(c Config) any { return c.TemporalTLSCAFile }, file},
		{"TEMPORAL_TLS_SERVER_NAME", "temporal.internal", func(c Config) any { return c.TemporalTLSServerName }, "temporal.internal"},
		{"TEMPORAL_API_KEY", "k", func(c Config) any { return c.TemporalAPIKey }, "k"},
		{"PLT_SKEW_TEMPORAL_API_KEY_FILE", file, func(c Config) any { return c.TemporalAPIKeyFile }, file},
		// Cert and key come together: TestTemporalTLSValidation sets them.
		{"TEMPORAL_TLS_CLIENT_CERT_PATH", "", func(c Config) any { return c.TemporalTLSCertFile }, ""},
		{"TEMPORAL_TLS_CLIENT_KEY_PATH", "", func(c Config) any { return c.TemporalTLSKeyFile }, ""},
	}...)
}

func TestActionWait(t *testing.T) {
	cfg, err := load(t, nil)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, cfg.ActionWait())
	for value, says := range map[string]string{
		"999":   "PLT_SKEW_ACTION_WAIT_MS: must be between 1000 and 60000 milliseconds (1s to 1m), got 999",
		"60001": "PLT_SKEW_ACTION_WAIT_MS: must be between 1000 and 60000 milliseconds (1s to 1m), got 60001",
		"10s":   `PLT_SKEW_ACTION_WAIT_MS: "10s" is not a whole number`,
	} {
		_, err := load(t, map[string]string{"PLT_SKEW_ACTION_WAIT_MS": value})
		assert.Equal(t, Problems{says}, problems(t, err), value)
	}
}

func TestTemporalTLSValidation(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(cert, []byte("c"), 0o600))
	require.NoError(t, os.WriteFile(key, []byte("k"), 0o600))
	missing := filepath.Join(dir, "nope")

	cfg, err := load(t, map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": cert, "TEMPORAL_TLS_CLIENT_KEY_PATH": key})
	require.NoError(t, err)
	assert.True(t, cfg.TemporalTLSEnabled(), "a client certificate turns TLS on")

	tests := []struct {
		env  map[string]string
		says []string
	}{
		{map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": cert},
			[]string{"TEMPORAL_TLS_CLIENT_KEY_PATH: required with TEMPORAL_TLS_CLIENT_CERT_PATH"}},
		{map[string]string{"TEMPORAL_TLS_CLIENT_KEY_PATH": key},
			[]string{"TEMPORAL_TLS_CLIENT_CERT_PATH: required with TEMPORAL_TLS_CLIENT_KEY_PATH"}},
		{map[string]string{"TEMPORAL_TLS_SERVER_CA_CERT_PATH": missing},
			[]string{"TEMPORAL_TLS_SERVER_CA_CERT_PATH: open " + missing + ": no such file or directory"}},
		{map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": missing, "TEMPORAL_TLS_CLIENT_KEY_PATH": key},
			[]string{"TEMPORAL_TLS_CLIENT_CERT_PATH: open " + missing}},
		{map[string]string{"PLT_SKEW_TEMPORAL_API_KEY_FILE": dir},
			[]string{"PLT_SKEW_TEMPORAL_API_KEY_FILE: " + dir + " is a directory"}},
		{map[string]string{"PLT_SKEW_TEMPORAL_API_KEY_FILE": key, "TEMPORAL_API_KEY": "k"},
			[]string{"PLT_SKEW_TEMPORAL_API_KEY_FILE: set either it or TEMPORAL_API_KEY, not both"}},
	}
	for _, tc := range tests {
		_, err := load(t, tc.env)
		p := problems(t, err)
		require.Len(t, p, len(tc.says), "%v: %v", tc.env, p)
		for i, s := range tc.says {
			assert.True(t, strings.HasPrefix(p[i], s), "%q does not start with %q", p[i], s)
		}
	}
}

func TestTemporalTLSEnabled(t *testing.T) {
	assert.False(t, Config{}.TemporalTLSEnabled())
	for _, c := range []Config{{TemporalTLS: true}, {TemporalTLSCAFile: "x"}, {TemporalTLSServerName: "x"},
		{TemporalAPIKey: "x"}, {TemporalAPIKeyFile: "x"}, {TemporalTLSCertFile: "x", TemporalTLSKeyFile: "y"}} {
		assert.True(t, c.TemporalTLSEnabled(), "%+v", c)
	}
}
