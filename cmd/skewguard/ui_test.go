package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The local proxy of `skewguard ui` sends the panel's calls with its user's token (never the
// page's), and refuses what another site could make a browser send it.
func TestUIProxyAddsCredentialsAndRefusesForeignPages(t *testing.T) {
	var got *http.Request
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	defer api.Close()
	target, _ := url.Parse(api.URL)
	rt, _, err := credentials("the-users-token", "")
	require.NoError(t, err)
	const addr = "127.0.0.1:8001"
	h := uiProxy(target, rt, addr)
	send := func(method, path, host, origin string) int {
		req := httptest.NewRequest(method, "http://"+addr+path, nil)
		req.Host = host
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Authorization", "Bearer from-the-page")
		req.Header.Set("Cookie", "a=b")
		rec := httptest.NewRecorder()
		got = nil
		h.ServeHTTP(rec, req)
		return rec.Code
	}

	require.Equal(t, http.StatusNoContent, send("POST", "/api/v1/apps/shop/web/versions/1/expire", addr, "http://"+addr))
	require.NotNil(t, got)
	assert.Equal(t, "Bearer the-users-token", got.Header.Get("Authorization"))
	assert.Empty(t, got.Header.Get("Cookie"))
	assert.Empty(t, got.Header.Get("Origin"))
	assert.Equal(t, "/api/v1/apps/shop/web/versions/1/expire", got.URL.Path)
	assert.Equal(t, http.StatusNoContent, send("GET", "/ui/app.js", addr, ""))

	assert.Equal(t, http.StatusForbidden, send("POST", "/api/v1/apps/shop/web/versions/1/expire", addr, "https://evil.example"))
	assert.Nil(t, got, "a foreign page's request never reaches the API")
	assert.Equal(t, http.StatusForbidden, send("GET", "/api/v1/apps", "evil.example:8001", ""), "DNS rebinding")
	assert.Nil(t, got)
	assert.Equal(t, http.StatusNotFound, send("GET", "/metrics", addr, ""))
	assert.Nil(t, got)
}
