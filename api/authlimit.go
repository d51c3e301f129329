package api

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// AuthFailureLimit bounds failed authentications (answers 401) per source address: each
// failure spends one of Burst; one comes back every Every. A source with none left is answered
// 429 too_many_auth_failures, with Retry-After, before its token is looked at: no TokenReview is
// made for it, whatever token it brings, until the budget refills.
type AuthFailureLimit struct {
	Burst int
	Every time.Duration
	// Off turns the limit off (tests of other things that fail authentication on purpose).
	Off bool
}

// DefaultAuthFailureLimit: 20 failures at once, then one every 2 s (30 a minute). A caller with
// a good token never fails; an agent whose token is refused retries about once a second, and
// is slowed to this pace.
var DefaultAuthFailureLimit = AuthFailureLimit{Burst: 20, Every: 2 * time.Second}

// Bounds of the table of sources: entries whose budget is full again are dropped once a minute;
// beyond maxSources the table forgets an arbitrary source to make room.
const (
	maxSources         = 10_000
	sourceSweepEvery   = time.Minute
	authFailureLogNote = "failed authentications from one source are being refused"
)

// exemptFromAuthLimit are the routes that never authenticate: a source that is refused still
// gets its probes and metrics answered (kubelet probes come from the node's address).
var exemptFromAuthLimit = map[string]bool{
	"/healthz": true, "/readyz": true, "/metrics": true, "/api/v1/openapi.yaml": true,
}

type authLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	sources   map[string]*rate.Limiter
	lastSweep time.Time
}

func newAuthLimiter(l AuthFailureLimit) *authLimiter {
	if l.Off {
		return nil
	}
	if l.Burst <= 0 {
		l.Burst = DefaultAuthFailureLimit.Burst
	}
	if l.Every <= 0 {
		l.Every = DefaultAuthFailureLimit.Every
	}
	return &authLimiter{limit: rate.Every(l.Every), burst: l.Burst, now: time.Now, sources: map[string]*rate.Limiter{}}
}

// refused says whether src has no failure left, and when it will have one.
func (a *authLimiter) refused(src string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lim := a.sources[src]
	if lim == nil {
		return 0, false
	}
	tokens := lim.TokensAt(a.now())
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(a.limit) * float64(time.Second)), true
}

// failed spends one failure of src; it reports whether src has just run out.
func (a *authLimiter) failed(src string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweepLocked(now)
	lim := a.sources[src]
	if lim == nil {
		lim = rate.NewLimiter(a.limit, a.burst)
		a.sources[src] = lim
	}
	lim.AllowN(now, 1)
	return lim.TokensAt(now) < 1
}

func (a *authLimiter) sweepLocked(now time.Time) {
	if now.Sub(a.lastSweep) >= sourceSweepEvery || len(a.sources) >= maxSources {
		a.lastSweep = now
		for src, lim := range a.sources {
			if lim.TokensAt(now) >= float64(a.burst) {
				delete(a.sources, src)
			}
		}
	}
	for src := range a.sources {
		if len(a.sources) < maxSources {
			break
		}
		delete(a.sources, src)
	}
}

// sourceOf is the address failures are counted against: the peer's IP (never a forwarded-for
// header, which the caller writes), an IPv6 peer's /64.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitAuthFailures is router middleware: it refuses a source out of failures with 429 and
// counts every 401 the route answers against its source.
func (s *Server) limitAuthFailures(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, ok := w.(*recorder)
		if s.authFailures == nil || !ok || exemptFromAuthLimit[rec.route] {
			next.ServeHTTP(w, r)
			return
		}
		src := sourceOf(r)
		if wait, refused := s.authFailures.refused(src); refused {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, CodeTooManyAuthFailures,
				"too many failed authentications from this address; retry in %d s", secs)
			return
		}
		next.ServeHTTP(w, r)
		if rec.status == http.StatusUnauthorized && s.authFailures.failed(src) {
			s.log.Warn(authFailureLogNote, "source", src, "route", rec.route)
		}
	})
}
