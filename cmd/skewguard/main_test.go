package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestInvalidConfigurationNamesEveryVariable is the acceptance case of the configuration:
// every command that reads it refuses to start and names each bad variable.
func TestInvalidConfigurationNamesEveryVariable(t *testing.T) {
	t.Setenv("PLT_SKEW_HTTP_GRACE_PERIOD_MS", "abc")
	t.Setenv("PLT_SKEW_COOKIE_MAX_AGE", "-1")
	for _, cmd := range []string{"serve", "api", "worker", "migrate"} {
		t.Run(cmd, func(t *testing.T) {
			code, stdout, stderr := runCLI(cmd)
			assert.NotEqual(t, 0, code)
			assert.Contains(t, stderr, "PLT_SKEW_HTTP_GRACE_PERIOD_MS")
			assert.Contains(t, stderr, "PLT_SKEW_COOKIE_MAX_AGE")
			assert.Empty(t, stdout)
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, 2, "usage: skewguard"},
		{"help", []string{"help"}, 0, "usage: skewguard"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"migrate takes no arguments", []string{"migrate", "down"}, 2, "migrate takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(tc.args...)
			assert.Equal(t, tc.code, code)
			assert.Contains(t, stderr, tc.stderr)
		})
	}
}

func TestVersionCommand(t *testing.T) {
	code, stdout, stderr := runCLI("version")
	assert.Equal(t, 0, code)
	assert.NotEmpty(t, stdout)
	assert.Empty(t, stderr)
}
