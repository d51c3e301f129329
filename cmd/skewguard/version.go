package main

import (
	"context"
	"fmt"
	"io"

	"github.com/skewguard/skewguard/internal/buildinfo"
)

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	_, err := fmt.Fprintln(stdout, buildinfo.String())
	return err
}
