package api

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/mux"
)

// Health is the body of /healthz.
type Health struct {
	Status string `json:"status"`
}

// Readiness is the body of /readyz: whether every check passed and, when not, the names of the
// checks that failed. It never carries a check's error: those name hosts, users and addresses,
// and /readyz answers anyone; they are logged instead.
type Readiness struct {
	Status string   `json:"status"` // "ok" or "unavailable"
	Ready  bool     `json:"ready"`
	Failed []string `json:"failed,omitempty"`
}

// readyTimeout bounds one round of readiness checks.
const readyTimeout = 3 * time.Second

// healthz answers while the process serves HTTP.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// opsRoutes adds the operations routes to r: /healthz, /readyz (the checks in ready) and, with
// withMetrics, /metrics. They are the same in every role: the API's router and OpsHandler both
// get them from here.
func opsRoutes(r *mux.Router, log *slog.Logger, ready []ReadyCheck, withMetrics bool) {
	r.HandleFunc("/healthz", healthz).Methods(http.MethodGet)
	r.Handle("/readyz", readyHandler(log, ready)).Methods(http.MethodGet)
	if withMetrics {
		r.Handle("/metrics", metricsHandler()).Methods(http.MethodGet)
	}
}

// OpsHandler serves the operations routes alone, for a process that serves no API (the worker
// role): /healthz, /readyz and, with withMetrics, /metrics, with the answers the API gives on
// them, and its JSON 404 and 405 on any other path or method.
func OpsHandler(log *slog.Logger, ready []ReadyCheck, withMetrics bool) http.Handler {
	r := newRouter()
	opsRoutes(r, log, ready, withMetrics)
	return r
}

// readyHandler answers /readyz: it runs every check (PostgreSQL, Temporal, informers synced)
// concurrently, answers 200 or 503 with the names of the failed checks, and logs each failure
// with its error.
func readyHandler(log *slog.Logger, checks []ReadyCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		res := Readiness{Status: "ok", Ready: true}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				err := c.Check(ctx)
				if err == nil {
					return
				}
				log.Warn("readiness check failed", "check", c.Name, "error", err)
				mu.Lock()
				defer mu.Unlock()
				res.Failed = append(res.Failed, c.Name)
			})
		}
		wg.Wait()
		if len(res.Failed) == 0 {
			writeJSON(w, http.StatusOK, res)
			return
		}
		slices.Sort(res.Failed)
		res.Status, res.Ready = "unavailable", false
		writeJSON(w, http.StatusServiceUnavailable, res)
	})
}
