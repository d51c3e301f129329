//go:build integration

package registrytest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
	"github.com/skewguard/skewguard/internal/testenv"
)

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.Get(t, testenv.PostgresURL))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var exists bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	return exists
}

// TestFreshDatabasesAreMigratedIsolatedAndDropped: two tests get two empty, migrated databases,
// and each is gone once its test has ended.
func TestFreshDatabasesAreMigratedIsolatedAndDropped(t *testing.T) {
	ctx := context.Background()
	var names []string
	for _, sub := range []string{"first", "second"} {
		t.Run(sub, func(t *testing.T) {
			dsn := registrytest.NewURL(t)
			conn, err := pgx.Connect(ctx, dsn)
			require.NoError(t, err)
			var name string
			require.NoError(t, conn.QueryRow(ctx, `SELECT current_database()`).Scan(&name))
			require.NoError(t, conn.Close(ctx))
			names = append(names, name)
			require.True(t, databaseExists(t, name))

			applied, err := registry.Migrate(ctx, dsn)
			require.NoError(t, err)
			assert.Empty(t, applied, "already migrated")

			s := registrytest.New(t)
			apps, err := s.ListApps(ctx)
			require.NoError(t, err)
			assert.Empty(t, apps, "nothing left over from another test")
			_, _, err = s.ObserveVersion(ctx, registry.Observation{Ref: registry.VersionRef{Namespace: "ns", App: sub, Label: "1"}},
				registry.Actor{Type: registry.ActorSystem})
			require.NoError(t, err)
		})
	}
	require.Len(t, names, 2)
	assert.NotEqual(t, names[0], names[1])
	for _, name := range names {
		assert.False(t, databaseExists(t, name), "%s is dropped when its test ends", name)
	}
}
