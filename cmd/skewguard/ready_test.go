package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/skewguard/skewguard/api"
)

// A worker-only process's /readyz names the failed check, never its error (database host and
// user); the error is logged.
func TestOpsReadyzHidesErrors(t *testing.T) {
	var logged bytes.Buffer
	h := opsHandler(slog.New(slog.NewTextHandler(&logged, nil)), []api.ReadyCheck{
		{Name: "postgres", Check: func(context.Context) error {
			return errors.New("failed to connect to `user=skewguard database=skewguard`: 10.1.2.3:5432")
		}},
		{Name: "temporal", Check: func(context.Context) error { return nil }},
	}, false)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.JSONEq(t, `{"status":"unavailable","ready":false,"failed":["postgres"]}`, rec.Body.String())
	assert.Contains(t, logged.String(), "10.1.2.3:5432")
}
