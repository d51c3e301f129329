package api

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

// /readyz answers anyone: it names the failed checks and logs their errors, which carry the
// database's host and user.
func TestReadyzNamesFailedChecksOnly(t *testing.T) {
	secret := "failed to connect to `user=skewguard database=skewguard`: 10.1.2.3:5432 (postgres.db.svc): dial error"
	var logged bytes.Buffer
	handler := ReadyHandler(slog.New(slog.NewTextHandler(&logged, nil)), []ReadyCheck{
		{Name: "postgres", Check: func(context.Context) error { return errors.New(secret) }},
		{Name: "temporal", Check: func(context.Context) error { return nil }},
		{Name: "informers", Check: func(context.Context) error { return errors.New("not synced") }},
	})
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.JSONEq(t, `{"status":"unavailable","ready":false,"failed":["informers","postgres"]}`, rec.Body.String())
	for _, leak := range []string{"10.1.2.3", "user=", "postgres.db.svc", "not synced"} {
		assert.NotContains(t, rec.Body.String(), leak)
	}
	assert.Contains(t, logged.String(), "10.1.2.3:5432", "the details are logged")
	assert.Contains(t, logged.String(), "check=postgres")
}
