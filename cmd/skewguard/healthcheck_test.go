package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocalURL(t *testing.T) {
	for listen, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/readyz",
		"0.0.0.0:8080":   "http://127.0.0.1:8080/readyz",
		"[::]:8080":      "http://127.0.0.1:8080/readyz",
		"127.0.0.1:9000": "http://127.0.0.1:9000/readyz",
		"[::1]:9000":     "http://[::1]:9000/readyz",
		"api.local:80":   "http://api.local:80/readyz",
	} {
		got, err := localURL(listen, "/readyz", false)
		require.NoError(t, err, listen)
		assert.Equal(t, want, got, listen)
	}
	got, err := localURL(":8443", "/healthz", true)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:8443/healthz", got)
	_, err = localURL("8080", "/readyz", false)
	assert.ErrorContains(t, err, "PLT_SKEW_LISTEN_ADDRESS")
}

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.WriteHeader(http.StatusOK)
		case r.URL.Path == "/readyz" && ready.Load():
			w.WriteHeader(http.StatusOK)
		default:
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	t.Setenv("PLT_SKEW_LISTEN_ADDRESS", strings.TrimPrefix(srv.URL, "http://"))

	code, stdout, _ := runCLI("healthcheck")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "/readyz: 200 OK")

	ready.Store(false)
	code, _, stderr := runCLI("healthcheck")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "503 Service Unavailable: informers not synced")

	code, _, _ = runCLI("healthcheck", "-path", "/healthz")
	assert.Equal(t, 0, code, "alive though not ready")

	code, _, stderr = runCLI("healthcheck", "extra")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "no arguments")
}
