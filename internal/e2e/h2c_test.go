//go:build integration

package e2e

import "net/http"

// h2cTransport speaks HTTP/2 with prior knowledge over plain TCP, as a proxy in front of the gateway may.
func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p}
}
