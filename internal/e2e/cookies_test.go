//go:build integration

package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestCookieEdgeCasesThroughTraefik checks the pin cookie as browsers and proxies really send it, with
// versions "1" and "10" both live so that a prefix match would be caught.
func TestCookieEdgeCasesThroughTraefik(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-cookie")
	dbURL, st := newDatabase(t)
	host := ns + ".cookie.test"
	sg := startSkewguard(t, baseSettings(t, ns, dbURL))
	gw := newGateway(t)
	v := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "web", Version: label, Hostname: host}
	}
	// "1" then "10" then "2": 1 and 10 draining (pinned), 2 active.
	for _, label := range []string{"1", "10", "2"} {
		c.deploy(t, v(label))
		gw.waitServed(t, host, label, 90*time.Second)
	}

	h2 := &http.Client{Timeout: 5 * time.Second, Transport: h2cTransport()}

	cases := []struct {
		name   string
		mutate func(*http.Request)
		client *http.Client
		want   string
		repin  bool // the reply must set the cookie to the Active version
	}{
		{name: "pin alone", mutate: withCookie("__plt_dpl=1"), want: "1"},
		{name: "pin 10 is not pin 1", mutate: withCookie("__plt_dpl=10"), want: "10"},
		{name: "pin among other cookies", mutate: withCookie("a=1; __plt_dpl=1; b=2"), want: "1"},
		{name: "pin last without space", mutate: withCookie("a=1;__plt_dpl=10"), want: "10"},
		{name: "two Cookie header lines", mutate: func(r *http.Request) {
			r.Header.Add("Cookie", "a=1")
			r.Header.Add("Cookie", "__plt_dpl=1")
		}, want: "1"},
		{name: "HTTP/2 prior knowledge", mutate: withCookie("a=1; __plt_dpl=10"), client: h2, want: "10"},
		{name: "lookalike name", mutate: withCookie("x__plt_dpl=1"), want: "2", repin: true},
		{name: "pin inside another value", mutate: withCookie("a=__plt_dpl=1"), want: "2", repin: true},
		{name: "unknown version falls through", mutate: withCookie("__plt_dpl=999"), want: "2", repin: true},
		{name: "header pin", mutate: func(r *http.Request) { r.Header.Set("x-deployment-id", "10") }, want: "10"},
		{name: "query pin", mutate: func(r *http.Request) { r.URL.RawQuery = "dpl=1" }, want: "1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := gw
			if tc.client != nil {
				g = &gateway{base: gw.base, client: tc.client}
			}
			r, err := g.get(host, "/", tc.mutate)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, r.Status)
			assert.Equal(t, tc.want, r.Version)
			pin, set := r.pinCookie("__plt_dpl")
			if tc.repin {
				assert.True(t, set, "expected the Active version to re-pin")
				assert.Equal(t, "2", pin)
			} else {
				assert.False(t, set, "a pinned request must not be re-pinned, got %v", r.SetCookie)
			}
		})
	}

	// A cookie for a version that expires falls through to the Active version and is re-pinned.
	ref := registry.VersionRef{Namespace: ns, App: "web", Label: "1"}
	waitState(t, st, ref, registry.Draining, 30*time.Second)
	sg.cli("expire", ref.Namespace+"/"+ref.App, ref.Label, "--reason", "e2e: cookie fall-through")
	waitState(t, st, ref, registry.Expired, 30*time.Second)
	waitFor(t, 30*time.Second, "expired pin to fall through", func() (bool, string) {
		r, err := gw.get(host, "/", withCookie("__plt_dpl=1"))
		if err != nil {
			return false, err.Error()
		}
		pin, _ := r.pinCookie("__plt_dpl")
		return r.Version == "2" && pin == "2", r.Version + " pin=" + pin
	})
}
