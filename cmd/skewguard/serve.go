package main

import (
	"context"
	"errors"
	"io"

	"github.com/skewguard/skewguard/internal/config"
)

// loadConfig reads and validates the environment; every problem is reported at once.
func loadConfig(ctx context.Context) (config.Config, error) {
	return config.Load(ctx)
}

func runServe(ctx context.Context, _ []string, _, _ io.Writer) error {
	if _, err := loadConfig(ctx); err != nil {
		return err
	}
	return errors.New("serve: not implemented yet")
}

func runAPI(ctx context.Context, _ []string, _, _ io.Writer) error {
	if _, err := loadConfig(ctx); err != nil {
		return err
	}
	return errors.New("api: not implemented yet")
}

func runWorker(ctx context.Context, _ []string, _, _ io.Writer) error {
	if _, err := loadConfig(ctx); err != nil {
		return err
	}
	return errors.New("worker: not implemented yet")
}
