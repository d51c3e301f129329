package api

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// healthz answers while the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// readyz runs every readiness check (PostgreSQL, Temporal, informers synced) concurrently.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	h := Health{Status: "ok", Checks: make(map[string]string, len(s.opts.Ready))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.opts.Ready {
		wg.Go(func() {
			result := "ok"
			if err := c.Check(ctx); err != nil {
				result = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			h.Checks[c.Name] = result
			if result != "ok" {
				h.Status = "unavailable"
			}
		})
	}
	wg.Wait()
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}
