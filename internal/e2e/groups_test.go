//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestAppGroupSharesOnePin: front (at /) and api (at /api) are deployed together in the app
// group "shop" (plt.dev/group), blog (at /blog) on the same host is not in it. A session that
// front pinned to v1 reaches v1 of front and v1 of api after both moved to v2; a new visitor
// reaches v2 of both; the group's cookie does not pin blog.
func TestAppGroupSharesOnePin(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-groups")
	dbURL, st := newDatabase(t)
	host := ns + ".group.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000" // v1 stays pinned throughout
	startSkewguard(t, s)
	gw := newGateway(t)

	front := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "front", Version: label, Hostname: host, Group: "shop"}
	}
	api := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "api", Version: label, Hostname: host, Path: "/api", Group: "shop"}
	}
	blog := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "blog", Version: label, Hostname: host, Path: "/blog"}
	}
	group := "__plt_dpl__g_" + ns + "_shop"

	c.deploy(t, front("1"))
	gw.waitServedBy(t, host, "/x", front("1"), 90*time.Second)
	c.deploy(t, api("1"))
	gw.waitServedBy(t, host, "/api/x", api("1"), 90*time.Second)
	c.deploy(t, blog("1"))
	gw.waitServedBy(t, host, "/blog/x", blog("1"), 90*time.Second)

	// The session starts on front v1: its cookie is whatever front's reply sets.
	first, err := gw.getServed(host, "/x", nil)
	require.NoError(t, err)
	require.True(t, first.servedBy(front("1")), "first visit: %+v", first)
	session, path, ok := first.setCookie(group)
	require.True(t, ok, "front v1 sets the group's cookie %s; got %q", group, first.SetCookie)
	require.Equal(t, "1", session)
	require.Equal(t, "/", path, "the group's cookie covers every member")
	sessionCookie := group + "=" + session

	c.deploy(t, front("2"))
	gw.waitServedBy(t, host, "/x", front("2"), 90*time.Second)
	c.deploy(t, api("2"))
	gw.waitServedBy(t, host, "/api/x", api("2"), 90*time.Second)
	c.deploy(t, blog("2"))
	gw.waitServedBy(t, host, "/blog/x", blog("2"), 90*time.Second)
	for _, app := range []string{"front", "api", "blog"} {
		waitState(t, st, registry.VersionRef{Namespace: ns, App: app, Label: "1"}, registry.Draining, 30*time.Second)
		waitState(t, st, registry.VersionRef{Namespace: ns, App: app, Label: "2"}, registry.Active, 30*time.Second)
	}
	blogCookie := "__plt_dpl_" + ns + "_blog" // blog's claim nests under front's: a cookie of its own

	type expect struct {
		served           appVersion
		setName, setPath string // the pin cookie the reply must set, for Path ("" if none may be set)
		setValue         string
	}
	cases := []struct {
		name, path string
		cookie     string
		want       expect
	}{
		{name: "the v1 session reaches front v1", path: "/x", cookie: sessionCookie, want: expect{served: front("1")}},
		{name: "the v1 session reaches api v1", path: "/api/x", cookie: sessionCookie, want: expect{served: api("1")}},
		{name: "a new visitor of front reaches v2", path: "/x",
			want: expect{served: front("2"), setName: group, setPath: "/", setValue: "2"}},
		{name: "a new visitor of api reaches v2", path: "/api/x",
			want: expect{served: api("2"), setName: group, setPath: "/", setValue: "2"}},
		{name: "the group's cookie does not pin blog", path: "/blog/x", cookie: sessionCookie,
			want: expect{served: blog("2"), setName: blogCookie, setPath: "/blog", setValue: "2"}},
		{name: "blog's own cookie pins blog", path: "/blog/x", cookie: blogCookie + "=1; " + group + "=2",
			want: expect{served: blog("1")}},
	}
	check := func(r servedReply, w expect) []string {
		var problems []string
		if r.Status != http.StatusOK || !r.servedBy(w.served) {
			problems = append(problems, fmt.Sprintf("served by pod %q (version %q, status %d), want %s", r.Pod, r.Version, r.Status, w.served.name()))
		}
		if w.setName == "" && len(r.SetCookie) > 0 {
			problems = append(problems, fmt.Sprintf("a pinned request must not be re-pinned; got %q", r.SetCookie))
		}
		if w.setName != "" {
			if v, p, ok := r.setCookie(w.setName); !ok || v != w.setValue || p != w.setPath || len(r.SetCookie) != 1 {
				problems = append(problems, fmt.Sprintf("want exactly Set-Cookie %s=%s Path=%s; got %q", w.setName, w.setValue, w.setPath, r.SetCookie))
			}
		}
		return problems
	}
	get := func(path, cookie string) (servedReply, error) {
		var mutate func(*http.Request)
		if cookie != "" {
			mutate = withCookie(cookie)
		}
		return gw.getServed(host, path, mutate)
	}
	// The last flip's routes may still be on their way into Traefik: wait (bounded) until one
	// full round is right, then hold it 10 times.
	waitFor(t, 30*time.Second, "every case right once", func() (bool, string) {
		for _, tc := range cases {
			r, err := get(tc.path, tc.cookie)
			if err != nil {
				return false, tc.name + ": " + err.Error()
			}
			if p := check(r, tc.want); len(p) > 0 {
				return false, tc.name + ": " + strings.Join(p, "; ")
			}
		}
		return true, ""
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 10 {
				r, err := get(tc.path, tc.cookie)
				require.NoError(t, err)
				if p := check(r, tc.want); len(p) > 0 {
					t.Fatalf("request %d: %s", i+1, strings.Join(p, "; "))
				}
			}
		})
	}
}
