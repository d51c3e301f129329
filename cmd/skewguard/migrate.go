package main

import (
	"context"
	"errors"
	"io"
)

func runMigrate(ctx context.Context, _ []string, _, _ io.Writer) error {
	if _, err := loadConfig(ctx); err != nil {
		return err
	}
	return errors.New("migrate: not implemented yet")
}
