package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandlerAnswersWithItsVersion(t *testing.T) {
	h := handler("42", "shop-v42-abc")
	for _, path := range []string{"/", "/deep/path", "/favicon.ico"} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path+"?q=1", nil)
			req.Header.Set("Cookie", "a=1; __plt_dpl=42")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "42", rec.Header().Get("X-Skewguard-Version"))
			var got Response
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			assert.Equal(t, Response{Version: "42", Pod: "shop-v42-abc", Path: path, Cookie: "a=1; __plt_dpl=42"}, got)
		})
	}
}

func TestPorts(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"PORTS wins", map[string]string{"PORTS": "3042,3043", "PORT": "1"}, []string{"3042", "3043"}},
		{"PORT", map[string]string{"PORT": "3042"}, []string{"3042"}},
		{"default", map[string]string{}, []string{"8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ports(func(k string) string { return tt.env[k] }))
		})
	}
}
