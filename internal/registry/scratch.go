package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CreateDatabase creates database name on the server of admin (a PostgreSQL URL whose path names
// a database and which has a query string), migrates it, and returns its URL and a function that
// drops it. The load tools (cmd/chaos, cmd/lifecycles) give each run a registry of its own.
func CreateDatabase(ctx context.Context, admin, name string) (string, func(context.Context) error, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	pc, err := pgx.ParseConfig(admin)
	if err != nil {
		return "", nil, err
	}
	u := strings.Replace(admin, "/"+pc.Database+"?", "/"+name+"?", 1)
	if !strings.Contains(u, "/"+name+"?") {
		return "", nil, fmt.Errorf("cannot derive the database URL from %s (want .../<db>?...)", admin)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	}
	if _, err := Migrate(ctx, u); err != nil {
		return "", nil, errors.Join(fmt.Errorf("migrate %s: %w", name, err), drop(ctx))
	}
	return u, drop, nil
}
