package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/detect"
)

func dialUpdates(t *testing.T, srv *httptest.Server, appID, token string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/updates/applications/" + appID + "?runtimeId=9955e776-c1bc-467c-9aec-6e0ff2d6f50a"
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	// The agent offers permessage-deflate (capture.txt); the server may decline it.
	hdr.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
}

func TestUpdatesAcknowledgesSubscribe(t *testing.T) {
	h := newHarness(t, harnessOptions{pingInterval: 20 * time.Millisecond})
	srv := httptest.NewServer(h.handler)
	defer srv.Close()

	conn, _, err := dialUpdates(t, srv, detect.ApplicationID("shop", "web"), tokenPodA)
	require.NoError(t, err)
	defer conn.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Frames the agent sends besides subscribe (job replies) are ignored, not answered.
	require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(`{"requestId":"req-1","success":false}`)))
	require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(`{"command":"subscribe","topic":"/config"}`)))
	typ, msg, err := conn.Read(ctx)
	require.NoError(t, err)
	assert.Equal(t, websocket.MessageText, typ)
	assert.JSONEq(t, `{"command":"ack"}`, string(msg))

	// The server pings; the client library answers while it reads. Reading with a deadline
	// past several ping intervals proves the connection stays open.
	rctx, rcancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer rcancel()
	_, _, err = conn.Read(rctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing but pings may arrive")

	require.Eventually(t, func() bool { return h.starter.count() == 1 },
		5*time.Second, 5*time.Millisecond, "a reconnecting pod is detected again")
}

func TestUpdatesEndOnShutdown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	srv := httptest.NewServer(h.handler)
	defer srv.Close()
	conn, _, err := dialUpdates(t, srv, detect.ApplicationID("shop", "web"), tokenPodA)
	require.NoError(t, err)
	defer conn.CloseNow()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	readErr := make(chan error, 1)
	go func() { // the agent always reads, so it answers the close handshake
		_, _, err := conn.Read(ctx)
		readErr <- err
	}()
	require.NoError(t, h.server.Close(ctx))
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(<-readErr))
}

func TestUpdatesRefusals(t *testing.T) {
	tests := []struct {
		name   string
		appID  string
		token  string
		status int
	}{
		{"no token", detect.ApplicationID("shop", "web"), "", http.StatusUnauthorized},
		{"another app's id", detect.ApplicationID("shop", "api"), tokenPodA, http.StatusForbidden},
		{"user token", detect.ApplicationID("shop", "web"), tokenAdmin, http.StatusForbidden},
		{"malformed id", "a%20b", tokenPodA, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			srv := httptest.NewServer(h.handler)
			defer srv.Close()
			conn, resp, err := dialUpdates(t, srv, tc.appID, tc.token)
			if conn != nil {
				conn.CloseNow()
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}
}
