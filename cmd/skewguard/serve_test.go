package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/api"
)

// listenAddr is a slog handler that hands over the address serveHTTP says it listens on.
type listenAddr struct {
	slog.Handler
	addr chan string
}

func (l listenAddr) Enabled(context.Context, slog.Level) bool { return true }

func (l listenAddr) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "listening" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "address" {
				l.addr <- a.Value.String()
			}
			return true
		})
	}
	return l.Handler.Handle(ctx, r)
}

// startServeHTTP runs serveHTTP on a loopback port until the test ends and returns its address.
func startServeHTTP(t *testing.T, h http.Handler) string { return startServeHTTPS(t, h, nil) }

// startServeHTTPS is startServeHTTP with a TLS configuration (nil: plain HTTP).
func startServeHTTPS(t *testing.T, h http.Handler, tlsConfig *tls.Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(listenAddr{Handler: slog.DiscardHandler, addr: make(chan string, 1)})
	done := make(chan error, 1)
	go func() { done <- serveHTTP(ctx, log, "127.0.0.1:0", h, tlsConfig) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case addr := <-log.Handler().(listenAddr).addr:
		return addr
	case err := <-done:
		t.Fatalf("serveHTTP: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("serveHTTP did not listen")
	}
	return ""
}

// A client that sends its headers and a Content-Length, then nothing, is cut off: it does not
// hold a connection of the ops listener (a worker-only process) forever.
func TestServeHTTPCutsOffSlowBodies(t *testing.T) {
	saved := listenerLimits
	t.Cleanup(func() { listenerLimits = saved })
	const deadline = 300 * time.Millisecond
	listenerLimits.ReadTimeout = deadline
	addr := startServeHTTP(t, api.OpsHandler(slog.New(slog.DiscardHandler), nil, false))

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	_, err = io.WriteString(conn, "POST /readyz HTTP/1.1\r\nHost: skewguard\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(start.Add(2*deadline)))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("still open after %s (got %q)", time.Since(start), got)
	}
	assert.Contains(t, string(got), "405 Method Not Allowed")
}

func TestServeHTTPRefusesOversizedHeaders(t *testing.T) {
	addr := startServeHTTP(t, api.OpsHandler(slog.New(slog.DiscardHandler), nil, false))
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("a", 2*api.DefaultLimits.MaxHeaderBytes))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}
