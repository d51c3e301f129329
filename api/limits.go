package api

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Limits bound what one client can hold of a listener: a slow or silent client is cut off, a
// flood of connections waits in the kernel's backlog instead of exhausting file descriptors.
type Limits struct {
	// ReadHeaderTimeout is how long a client has to send the request line and headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a client has to send a whole request, headers and body. It also
	// bounds the server's draining of a body the handler did not read (a request refused before
	// authentication). net/http lifts the deadline once the body has been read to its end (and
	// at once for a request without one), so a handler that then waits on a Temporal update is
	// not cut, and a hijacked WebSocket has no deadline.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for its next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (net/http answers 431 beyond it).
	MaxHeaderBytes int
	// MaxConnections bounds the connections served at once, agents' WebSockets included; the
	// next one waits in the listen backlog until one closes.
	MaxConnections int
}

// DefaultLimits are the limits of every skewguard listener. A bearer token is 1–2 KiB and the
// agent's largest body 1 MiB, so neither limit is near what a legitimate caller sends; every
// agent holds one connection (its update WebSocket), so MaxConnections is sized for thousands
// of agent pods per replica.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       15 * time.Second,
	IdleTimeout:       2 * time.Minute,
	MaxHeaderBytes:    32 << 10,
	MaxConnections:    4096,
}

// orDefaults fills every zero field from DefaultLimits.
func (l Limits) orDefaults() Limits {
	d := DefaultLimits
	if l.ReadHeaderTimeout > 0 {
		d.ReadHeaderTimeout = l.ReadHeaderTimeout
	}
	if l.ReadTimeout > 0 {
		d.ReadTimeout = l.ReadTimeout
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.MaxHeaderBytes > 0 {
		d.MaxHeaderBytes = l.MaxHeaderBytes
	}
	if l.MaxConnections > 0 {
		d.MaxConnections = l.MaxConnections
	}
	return d
}

// HTTPServer is an http.Server serving h within l (zero fields take DefaultLimits). Serve it on
// l.Listener(ln) to cap connections too. The caller sets ErrorLog, BaseContext and TLS.
func (l Limits) HTTPServer(h http.Handler) *http.Server {
	l = l.orDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// Listener caps the connections ln hands out at once at l.MaxConnections (zero: the default):
// Accept blocks while the cap is reached, so the next client waits until a connection closes.
func (l Limits) Listener(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, l.orDefaults().MaxConnections)
}
