//go:build integration

package stacktest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/testenv"
)

func TestPostgresAcceptsConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.Get(t, testenv.PostgresURL))
	require.NoError(t, err, "connect to the stack's PostgreSQL")
	defer conn.Close(ctx)

	var version string
	require.NoError(t, conn.QueryRow(ctx, "SHOW server_version").Scan(&version))
	assert.Regexp(t, `^15\.`, version, "Debian's PostgreSQL 15")

	// A real round trip through a table, not just a ping.
	_, err = conn.Exec(ctx, "CREATE TEMP TABLE smoke (id serial PRIMARY KEY, v text NOT NULL)")
	require.NoError(t, err)
	var id int
	require.NoError(t, conn.QueryRow(ctx, "INSERT INTO smoke (v) VALUES ($1) RETURNING id", "hello").Scan(&id))
	var v string
	require.NoError(t, conn.QueryRow(ctx, "SELECT v FROM smoke WHERE id = $1", id).Scan(&v))
	assert.Equal(t, "hello", v)
}
