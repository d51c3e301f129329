// Command echo-backend is the tiny HTTP backend the local stack's launcher runs for a pod (test
// and demo only). It answers every path with the version of the app it plays, so tests can tell
// which version a request reached:
//
//	{"version": APP_VERSION, "pod": POD_NAME, "path": "/x", "cookie": "<Cookie header>"}
//
// with header X-Skewguard-Version: APP_VERSION. It listens on HOST:PORT (and every port in PORTS).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Response is what every request gets.
type Response struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
	Path    string `json:"path"`
	Cookie  string `json:"cookie"`
}

func handler(version, pod string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Skewguard-Version", version)
		_ = json.NewEncoder(w).Encode(Response{Version: version, Pod: pod, Path: r.URL.Path, Cookie: r.Header.Get("Cookie")})
	})
}

// ports returns PORTS (comma separated) or PORT.
func ports(env func(string) string) []string {
	if v := env("PORTS"); v != "" {
		return strings.Split(v, ",")
	}
	if v := env("PORT"); v != "" {
		return []string{v}
	}
	return []string{"8080"}
}

func main() {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	if err := run(); err != nil {
		slog.Error("echo-backend failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	if v := os.Getenv("ECHO_START_DELAY"); v != "" {
		// A backend that takes a while to start (a benchmark's pods that register before they
		// are Ready): it listens, and so is reported Ready, only after this delay.
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("ECHO_START_DELAY=%q: %w", v, err)
		}
		time.Sleep(d)
	}
	srv := &http.Server{Handler: handler(os.Getenv("APP_VERSION"), os.Getenv("POD_NAME")), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	for _, p := range ports(os.Getenv) {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		slog.Info("serving", "addr", ln.Addr().String(), "version", os.Getenv("APP_VERSION"), "pod", os.Getenv("POD_NAME"))
		go func() { errc <- srv.Serve(ln) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
