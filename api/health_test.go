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
	handler := readyHandler(slog.New(slog.NewTextHandler(&logged, nil)), []ReadyCheck{
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

// A worker-only process (OpsHandler) names the failed check, never its error (database host and
// user); the error is logged. Moved from cmd/skewguard (TestOpsReadyzHidesErrors), where the
// worker's handler used to be built.
func TestOpsReadyzHidesErrors(t *testing.T) {
	var logged bytes.Buffer
	h := OpsHandler(slog.New(slog.NewTextHandler(&logged, nil)), []ReadyCheck{
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

// Every role answers /healthz and /readyz alike: a worker-only process (OpsHandler) gives the
// status, headers and body the API gives, and the same JSON errors around them.
func TestOpsHandlerAnswersAsTheAPI(t *testing.T) {
	for _, ready := range [][]ReadyCheck{
		{{Name: "postgres", Check: func(context.Context) error { return nil }}},
		{
			{Name: "postgres", Check: func(context.Context) error { return nil }},
			{Name: "temporal", Check: func(context.Context) error { return errors.New("connection refused") }},
		},
	} {
		apiRole := newHarness(t, harnessOptions{ready: ready})
		ops := OpsHandler(slog.New(slog.DiscardHandler), ready, true)
		for _, req := range []struct{ method, path string }{
			{"GET", "/healthz"}, {"GET", "/readyz"}, {"POST", "/readyz"}, {"GET", "/no/such/path"},
		} {
			want := apiRole.do(t, req.method, req.path, "", "")
			got := httptest.NewRecorder()
			ops.ServeHTTP(got, httptest.NewRequest(req.method, req.path, nil))
			assert.Equal(t, want.Code, got.Code, "%s %s", req.method, req.path)
			for _, h := range []string{"Content-Type", "Cache-Control"} {
				assert.Equal(t, want.Header().Get(h), got.Header().Get(h), "%s %s: %s", req.method, req.path, h)
			}
			assert.Equal(t, want.Body.String(), got.Body.String(), "%s %s", req.method, req.path)
		}
		got := httptest.NewRecorder()
		ops.ServeHTTP(got, httptest.NewRequest("GET", "/metrics", nil))
		assert.Equal(t, http.StatusOK, got.Code, "/metrics, without a metrics address of its own")
	}
}
