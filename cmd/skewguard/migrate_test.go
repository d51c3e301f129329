//go:build integration

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// TestMigrateCommand runs `skewguard migrate` against an already migrated database: the
// command connects through DATABASE_URL and reports that nothing was left to apply.
func TestMigrateCommand(t *testing.T) {
	t.Setenv("DATABASE_URL", registrytest.NewURL(t))
	code, stdout, stderr := runCLI("migrate")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "registry schema up to date\n", stdout)
}

func TestMigrateCommandReportsConnectionErrors(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	code, _, stderr := runCLI("migrate")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "skewguard migrate:")
	assert.Contains(t, stderr, "127.0.0.1:1")
}
