package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/detect"
)

// serveLimited serves h within l on a loopback listener, as cmd/skewguard's serveHTTP does, and
// returns its address.
func serveLimited(t *testing.T, h http.Handler, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := l.HTTPServer(h)
	srv.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// slowBody sends a request's head announcing a 1,000-byte body, then nothing, and returns what
// the server sent until it closed the connection, and how long that took. It fails the test when
// the connection is still open after within.
func slowBody(t *testing.T, addr, path, token string, within time.Duration) (string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	head := "POST " + path + " HTTP/1.1\r\nHost: skewguard\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
	if token != "" {
		head += "Authorization: Bearer " + token + "\r\n"
	}
	start := time.Now()
	_, err = io.WriteString(conn, head+"\r\n{")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(start.Add(within)))
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection of a client that never sends its body is still open after %s (got %q)", elapsed, got)
	}
	return string(got), elapsed
}

func TestSlowBodyIsCutOff(t *testing.T) {
	const deadline = 300 * time.Millisecond
	h := newHarness(t, harnessOptions{})
	addr := serveLimited(t, h.handler, Limits{ReadTimeout: deadline})

	t.Run("refused before authentication", func(t *testing.T) {
		// The handler answers 401 without reading; the server then drains the body it announced.
		got, elapsed := slowBody(t, addr, "/control-plane/pods/web-v1-a/instance", "", 2*deadline)
		assert.Contains(t, got, "401 Unauthorized")
		assert.GreaterOrEqual(t, elapsed, deadline/2)
	})
	t.Run("authenticated, reading the body", func(t *testing.T) {
		got, _ := slowBody(t, addr, "/control-plane/pods/web-v1-a/instance", tokenPodA, 2*deadline)
		assert.Contains(t, got, "408 Request Timeout")
		assert.Contains(t, got, `"code":"`+CodeRequestTimeout+`"`)
	})
	t.Run("management", func(t *testing.T) {
		got, _ := slowBody(t, addr, "/api/v1/apps/shop/web/versions/1/promote", tokenAdmin, 2*deadline)
		assert.Contains(t, got, "408 Request Timeout")
	})
}

// A handler that has read its body may work for longer than the read deadline (an action
// waits on its workflow): the deadline must neither cancel it nor its connection.
func TestReadTimeoutDoesNotCutWork(t *testing.T) {
	const deadline = 100 * time.Millisecond
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "context canceled while working", http.StatusInternalServerError)
		case <-time.After(4 * deadline): // the work outlasts the read deadline
			_, _ = fmt.Fprintf(w, "read %q", body)
		}
	})
	addr := serveLimited(t, handler, Limits{ReadTimeout: deadline})
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 2 { // twice on one keep-alive connection, with a body and without
		var body io.Reader = http.NoBody
		if i == 0 {
			body = strings.NewReader("body")
		}
		resp, err := client.Post("http://"+addr+"/", "text/plain", body)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", got)
	}
}

// The agent's WebSocket is a GET without a body, hijacked: no deadline ever applies to it.
func TestWebSocketOutlivesReadDeadlines(t *testing.T) {
	const deadline = 100 * time.Millisecond
	h := newHarness(t, harnessOptions{pingInterval: time.Hour})
	addr := serveLimited(t, h.handler, Limits{ReadTimeout: deadline, ReadHeaderTimeout: deadline})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/api/updates/applications/"+detect.ApplicationID("shop", "web"),
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tokenPodA}}})
	require.NoError(t, err)
	defer conn.CloseNow()
	// One reader for the connection's whole life (a Read whose context ends closes it).
	frames, readErr := make(chan []byte), make(chan error, 1)
	go func() {
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			frames <- msg
		}
	}()
	for range 2 {
		require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(`{"command":"subscribe","topic":"/config"}`)))
		select {
		case msg := <-frames:
			assert.JSONEq(t, `{"command":"ack"}`, string(msg))
		case err := <-readErr:
			t.Fatalf("the WebSocket ended: %v", err)
		}
		// Quiet for longer than both deadlines: nothing may close the connection.
		select {
		case err := <-readErr:
			t.Fatalf("the WebSocket ended while quiet: %v", err)
		case msg := <-frames:
			t.Fatalf("unexpected frame %s", msg)
		case <-time.After(4 * deadline):
		}
	}
}

func TestOversizedHeadersAre431(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	addr := serveLimited(t, h.handler, Limits{}) // the defaults
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/apps", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tokenAdmin)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*DefaultLimits.MaxHeaderBytes))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// A bearer token's worth of headers is served.
	req.Header.Set("X-Padding", strings.Repeat("a", 4<<10))
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// rawGet sends GET path on conn and reads the answer, waiting at most until deadline.
func rawGet(conn net.Conn, br *bufio.Reader, path string, deadline time.Time) (*http.Response, error) {
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: skewguard\r\n\r\n"); err != nil {
		return nil, err
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

func TestConnectionsAreCapped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	addr := serveLimited(t, h.handler, Limits{MaxConnections: 2})
	var held []net.Conn
	for range 2 { // two keep-alive connections, served and held open
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		resp, err := rawGet(conn, bufio.NewReader(conn), "/healthz", time.Now().Add(5*time.Second))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		held = append(held, conn)
	}

	// The third connects (the kernel's backlog) but is not served while two are open...
	third, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer third.Close()
	br := bufio.NewReader(third)
	_, err = rawGet(third, br, "/healthz", time.Now().Add(300*time.Millisecond))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "a connection beyond the cap was served")

	// ...and is served as soon as one of them closes.
	require.NoError(t, held[0].Close())
	require.NoError(t, third.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
