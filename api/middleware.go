package api

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/skewguard/skewguard/internal/metrics"
)

func metricsHandler() http.Handler { return metrics.Handler() }

// recorder remembers the status written through it. It keeps the Hijacker and Flusher of the
// writer it wraps (the WebSocket upgrade needs them).
type recorder struct {
	http.ResponseWriter
	status int
	route  string // the matched route's template, set by nameRoute
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("api: the response writer cannot be hijacked")
	}
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// instrument records every request's latency by route template, turns a panic into a JSON 500,
// and logs failures.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, route: "unmatched"}
		defer func() {
			route := rec.route
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic in handler", "route", route, "method", r.Method, "panic", p)
				if rec.status == 0 {
					writeError(rec, http.StatusInternalServerError, CodeInternal, "internal error")
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			if status != http.StatusSwitchingProtocols { // a WebSocket's lifetime is no latency
				metrics.ObserveHTTP(route, r.Method, status, elapsed)
			}
			if status >= 500 {
				s.log.Warn("request failed", "route", route, "method", r.Method, "status", status, "duration", elapsed)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// nameRoute is router middleware (it runs once a route matched): it tells the recorder which
// route template to report, so metrics never carry raw paths.
func nameRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			if route := mux.CurrentRoute(r); route != nil {
				if tpl, err := route.GetPathTemplate(); err == nil {
					rec.route = tpl
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
