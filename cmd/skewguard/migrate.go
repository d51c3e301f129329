package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/skewguard/skewguard/internal/registry"
)

// runMigrate applies the registry's embedded migrations to DATABASE_URL (or the PG* variables)
// and says what it applied. Safe to run from several replicas at once: the migrations take a
// lock and a second run applies nothing.
func runMigrate(ctx context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return usageError{msg: "migrate takes no arguments, got " + strings.Join(args, " ")}
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	applied, err := registry.Migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		_, err = fmt.Fprintln(stdout, "registry schema up to date")
		return err
	}
	for _, name := range applied {
		if _, err := fmt.Fprintln(stdout, "applied", name); err != nil {
			return err
		}
	}
	return nil
}
