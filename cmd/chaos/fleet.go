package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// fleet is the concurrent sessions sending requests through the gateway.
type fleet struct {
	gateway string // Traefik's web entrypoint
	host    string // the app's hostname
	cookie  string // the pin cookie's name
	client  *http.Client
	faults  func() string // the faults in force now

	mu       sync.Mutex
	requests []request
}

var carriers = []string{"cookie", "header", "dpl"}

// run keeps n sessions going until ctx ends: each starts anonymous, is pinned by the gateway's
// Set-Cookie, then sends requests carrying its pin (by its carrier) at random intervals, and ends
// after a random lifetime; another session takes its place.
func (f *fleet) run(ctx context.Context, n int, seed int64) {
	var wg sync.WaitGroup
	for slot := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(slot)+1))
			for id := slot; ctx.Err() == nil; id += n {
				f.session(ctx, id, rng)
			}
		})
	}
	wg.Wait()
}

func (f *fleet) session(ctx context.Context, id int, rng *rand.Rand) {
	carrier := carriers[rng.IntN(len(carriers))]
	life := time.Duration(2000+rng.IntN(18000)) * time.Millisecond
	end := time.Now().Add(life)
	pin, name := "", f.cookie
	for ctx.Err() == nil && time.Now().Before(end) {
		r, setName, setPin := f.get(ctx, id, carrier, name, pin)
		if ctx.Err() != nil {
			return // a request cut short by the end of the run is not recorded
		}
		f.mu.Lock()
		f.requests = append(f.requests, r)
		f.mu.Unlock()
		if setPin != "" {
			// The gateway pinned (or re-pinned) the session: a browser keeps the cookie, an app
			// that pins by header or query reads it too.
			pin, name = setPin, setName
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(100+rng.IntN(400)) * time.Millisecond):
		}
	}
}

// get sends one request carrying pin (none when empty) by carrier; it returns the record and the
// cookie name and version a Set-Cookie of the answer pins. The cookie name is the configured one,
// or the app's own (<name>_<namespace>_<app>) when its host and path nest with another app's.
func (f *fleet) get(ctx context.Context, id int, carrier, cookie, pin string) (request, string, string) {
	r := request{Session: id, Pinned: pin, Faults: f.faults()}
	u := f.gateway + "/"
	if pin != "" {
		r.Carrier = carrier
		if carrier == "dpl" {
			u += "?dpl=" + url.QueryEscape(pin)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		r.Err = err.Error()
		return r, "", ""
	}
	req.Host = f.host
	if pin != "" {
		switch carrier {
		case "cookie":
			req.Header.Add("Cookie", "theme=dark; "+cookie+"="+pin)
		case "header":
			req.Header.Set("x-deployment-id", pin)
		}
	}
	r.Start = time.Now()
	resp, err := f.client.Do(req)
	r.End = time.Now()
	if err != nil {
		r.Err = shortErr(err)
		return r, "", ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	resp.Body.Close()
	r.Status = resp.StatusCode
	r.Answered = resp.Header.Get("X-Skewguard-Version")
	if r.Status/100 != 2 {
		r.Err = strings.TrimSpace(string(body))
		if len(r.Err) > 40 {
			r.Err = r.Err[:40]
		}
	}
	for _, c := range resp.Cookies() {
		if c.Name == f.cookie || strings.HasPrefix(c.Name, f.cookie+"_") {
			return r, c.Name, c.Value
		}
	}
	return r, "", ""
}

// shortErr keeps the kind of a transport error, not its addresses.
func shortErr(err error) string {
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "timeout", "deadline exceeded"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 60 {
		s = s[len(s)-60:]
	}
	return s
}

func (f *fleet) records() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// newVisitors sends one request without a pin every interval until ctx ends (answered by the
// Active version); they are not recorded.
func (f *fleet) newVisitors(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() { f.get(ctx, -2, "", f.cookie, "") })
}

// every calls fn once per interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}
