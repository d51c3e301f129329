package api

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFailedAuthenticationsAreLimitedPerSource(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const attacker, neighbour = "192.0.2.66:40000", "198.51.100.7:40000"
	from := func(addr, method, path, token string) *http.Request {
		req := h.request(method, path, token, "")
		req.RemoteAddr = addr
		return req
	}
	reviews := func() int {
		n := 0
		for _, a := range h.kube.Actions() {
			if a.GetVerb() == "create" && a.GetResource().Resource == "tokenreviews" {
				n++
			}
		}
		return n
	}

	// A fresh garbage token each time, so the review cache does not hide the cost.
	for i := range DefaultAuthFailureLimit.Burst {
		rec := h.serve(from(attacker, "GET", "/api/v1/apps", fmt.Sprint("garbage-", i)))
		require.Equal(t, http.StatusUnauthorized, rec.Code, "failure %d is within the burst", i+1)
	}
	before := reviews()
	rec := h.serve(from(attacker, "GET", "/api/v1/apps", "garbage-next"))
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, CodeTooManyAuthFailures, errorCode(t, rec))
	assert.NotEmpty(t, rec.Header().Get("Retry-After"))
	// The agent's routes too, and without a TokenReview.
	rec = h.serve(from(attacker, "POST", "/control-plane/pods/web-v1-a/instance", "garbage-agent"))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, before, reviews(), "a refused source costs no TokenReview")

	// Probes from the same address are answered.
	assert.Equal(t, http.StatusOK, h.serve(from(attacker, "GET", "/readyz", "")).Code)
	assert.Equal(t, http.StatusOK, h.serve(from(attacker, "GET", "/healthz", "")).Code)

	// Another address is unaffected: good calls pass, its own failures are still 401.
	assert.Equal(t, http.StatusOK, h.serve(from(neighbour, "GET", "/api/v1/apps", tokenAdmin)).Code)
	assert.Equal(t, http.StatusOK, h.serve(from(neighbour, "POST", "/control-plane/pods/web-v1-a/instance", tokenPodA)).Code)
	assert.Equal(t, http.StatusUnauthorized, h.serve(from(neighbour, "GET", "/api/v1/apps", "garbage-n")).Code)
	// Only 401s count: 403s (a valid token, RBAC says no) do not.
	for range 2 * DefaultAuthFailureLimit.Burst {
		require.Equal(t, http.StatusForbidden, h.serve(from(neighbour, "GET", "/api/v1/apps/other/web/versions", tokenViewer)).Code)
	}
	assert.Equal(t, http.StatusOK, h.serve(from(neighbour, "GET", "/api/v1/apps", tokenAdmin)).Code)
}

func TestAuthLimiterRefillsAndForgets(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newAuthLimiter(AuthFailureLimit{Burst: 2, Every: time.Second})
	l.now = func() time.Time { return now }
	assert.False(t, l.failed("a"))
	assert.True(t, l.failed("a"), "the second failure spends the burst")
	wait, refused := l.refused("a")
	require.True(t, refused)
	assert.Equal(t, time.Second, wait)
	_, refused = l.refused("b")
	assert.False(t, refused, "sources are counted apart")

	now = now.Add(time.Second)
	_, refused = l.refused("a")
	assert.False(t, refused, "one failure came back")

	now = now.Add(time.Minute) // full again: the next sweep forgets it
	l.failed("b")
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.NotContains(t, l.sources, "a")
	assert.Contains(t, l.sources, "b")
}

func TestAuthLimiterTableIsBounded(t *testing.T) {
	l := newAuthLimiter(AuthFailureLimit{Burst: 1, Every: time.Hour})
	for i := range maxSources + 10 {
		l.failed(fmt.Sprint("10.0.", i/256, ".", i%256))
	}
	assert.LessOrEqual(t, len(l.sources), maxSources)
}

func TestSourceOf(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.1:1234":                    "192.0.2.1",
		"[::ffff:192.0.2.1]:1234":           "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:1]:1": "2001:db8:1:2::/64",
		"unix":                              "unix",
	} {
		assert.Equal(t, want, sourceOf(&http.Request{RemoteAddr: remote}), remote)
	}
}
