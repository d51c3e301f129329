package api

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
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
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// ReadyHandler answers /readyz: it runs every check (PostgreSQL, Temporal, informers synced)
// concurrently, answers 200 or 503 with the names of the failed checks, and logs each failure
// with its error.
func ReadyHandler(log *slog.Logger, checks []ReadyCheck) http.Handler {
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
