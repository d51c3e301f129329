//go:build integration

package registry_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/testenv"
)

// emptyDatabase creates a database with no schema of ours and drops it when t ends.
func emptyDatabase(t *testing.T, prefix string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), rand.Uint32())
	admin := testenv.Get(t, testenv.PostgresURL)
	conn, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	_, err = conn.Exec(ctx, `CREATE DATABASE `+ident)
	require.NoError(t, err)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	require.NoError(t, err, "%s must be a URL", testenv.PostgresURL)
	u.Path = "/" + name
	return u.String()
}

func TestMigrateFromEmptyThenNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := emptyDatabase(t, "skewguard_t_migrate")

	applied, err := registry.Migrate(ctx, dsn)
	require.NoError(t, err)
	assert.Equal(t, []string{"00001_registry.sql", "00002_safety.sql", "00003_version_changes.sql", "00004_max_versions.sql", "00005_app_enabled.sql", "00006_adoption.sql", "00007_app_groups.sql", "00008_modes.sql"}, applied)

	applied, err = registry.Migrate(ctx, dsn)
	require.NoError(t, err)
	assert.Empty(t, applied, "a second run is a no-op")

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var tables []string
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	require.NoError(t, err)
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"app_policies", "applications", "goose_db_version", "plans", "pods", "version_audit", "versions"}, tables)

	// The schema works: a store on it can record a version.
	s, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Ping(ctx))
	_, created, err := s.ObserveVersion(ctx, registry.Observation{Ref: ref("1")}, system)
	require.NoError(t, err)
	assert.True(t, created)
}

// TestMigrateConcurrently: replicas starting together apply each migration exactly once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := emptyDatabase(t, "skewguard_t_migrate_concurrent")
	results := make([][]string, 4)
	errs := runAll(len(results), func(i int) error {
		var err error
		results[i], err = registry.Migrate(ctx, dsn)
		return err
	})
	var all []string
	for i, err := range errs {
		require.NoError(t, err, "migration %d", i)
		all = append(all, results[i]...)
	}
	assert.Equal(t, []string{"00001_registry.sql", "00002_safety.sql", "00003_version_changes.sql", "00004_max_versions.sql", "00005_app_enabled.sql", "00006_adoption.sql", "00007_app_groups.sql", "00008_modes.sql"}, all)
}
