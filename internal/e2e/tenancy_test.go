//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestPinsNeverCrossApps serves two apps on one host, shop at / and blog at /blog, both with
// versions "1" (draining) and "2" (active). The labels collide on purpose: a pin meant for one app
// must never select the other app's version of the same label. Blog claims second and nests under
// shop's /, so it gets a pin cookie of its own (__plt_dpl_<ns>_blog, Path=/blog), and shop's
// __plt_dpl cookie, which browsers also send to /blog, means nothing to it.
//
// The echo backend reports only its version, which both apps share; which app served is told by the
// pod name it also reports (the launcher gives it POD_NAME), since pods are named after their
// Deployment: shop-v1-…, blog-v1-…. This needs no change to the backend or the launcher.
func TestPinsNeverCrossApps(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t, "e2e-tenancy")
	dbURL, st := newDatabase(t)
	host := ns + ".shared.test"
	s := baseSettings(t, ns, dbURL)
	s["PLT_SKEW_HTTP_GRACE_PERIOD_MS"] = "600000" // v1 of both apps stays pinned throughout
	startSkewguard(t, s)
	gw := newGateway(t)

	shop := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "shop", Version: label, Hostname: host}
	}
	blog := func(label string) appVersion {
		return appVersion{Namespace: ns, App: "blog", Version: label, Hostname: host, Path: "/blog"}
	}
	// Shop claims first so that blog is the one whose claim nests under another app's.
	c.deploy(t, shop("1"))
	gw.waitServedBy(t, host, "/x", shop("1"), 90*time.Second)
	c.deploy(t, blog("1"))
	gw.waitServedBy(t, host, "/blog/x", blog("1"), 90*time.Second)
	c.deploy(t, shop("2"))
	gw.waitServedBy(t, host, "/x", shop("2"), 90*time.Second)
	c.deploy(t, blog("2"))
	gw.waitServedBy(t, host, "/blog/x", blog("2"), 90*time.Second)
	for _, app := range []string{"shop", "blog"} {
		waitState(t, st, registry.VersionRef{Namespace: ns, App: app, Label: "1"}, registry.Draining, 30*time.Second)
		waitState(t, st, registry.VersionRef{Namespace: ns, App: app, Label: "2"}, registry.Active, 30*time.Second)
	}

	blogCookie := "__plt_dpl_" + ns + "_blog"
	apps, err := st.ListApps(context.Background())
	require.NoError(t, err)
	cookies := map[string]string{}
	for _, a := range apps {
		if a.Namespace == ns {
			cookies[a.Name] = a.CookieName
		}
	}
	assert.Equal(t, map[string]string{"shop": "", "blog": blogCookie}, cookies,
		"the app claiming first keeps the default cookie, the nested one gets its own")

	type expect struct {
		served     appVersion
		setName    string // the pin cookie the reply must set ("" if none may be set)
		setValue   string
		setPath    string
		notSetName string // a pin cookie the reply must not set
	}
	cases := []struct {
		name   string
		path   string
		mutate func(*http.Request)
		want   expect
	}{
		{
			name: "shop's cookie sent to blog is not a blog pin", path: "/blog/x", mutate: withCookie("__plt_dpl=1"),
			want: expect{served: blog("2"), setName: blogCookie, setValue: "2", setPath: "/blog", notSetName: "__plt_dpl"},
		},
		{
			name: "blog's own cookie pins blog whatever shop's says", path: "/blog/x",
			mutate: withCookie(blogCookie + "=1; __plt_dpl=2"),
			want:   expect{served: blog("1"), notSetName: blogCookie},
		},
		{
			name: "shop's cookie pins shop", path: "/x", mutate: withCookie("__plt_dpl=1"),
			want: expect{served: shop("1"), notSetName: "__plt_dpl"},
		},
		{
			name: "blog's cookie sent to shop is not a shop pin", path: "/x", mutate: withCookie(blogCookie + "=1"),
			want: expect{served: shop("2"), setName: "__plt_dpl", setValue: "2", setPath: "/", notSetName: blogCookie},
		},
		{
			name: "new visitor of shop", path: "/x",
			want: expect{served: shop("2"), setName: "__plt_dpl", setValue: "2", setPath: "/", notSetName: blogCookie},
		},
		{
			name: "new visitor of blog", path: "/blog/x",
			want: expect{served: blog("2"), setName: blogCookie, setValue: "2", setPath: "/blog", notSetName: "__plt_dpl"},
		},
		{
			name: "header pin to blog", path: "/blog/x",
			mutate: func(r *http.Request) { r.Header.Set("x-deployment-id", "1") },
			want:   expect{served: blog("1"), notSetName: blogCookie},
		},
		{
			name: "header pin to blog beats shop's cookie", path: "/blog/x",
			mutate: func(r *http.Request) {
				r.Header.Set("x-deployment-id", "1")
				r.Header.Add("Cookie", "__plt_dpl=2")
			},
			want: expect{served: blog("1"), notSetName: blogCookie},
		},
	}
	check := func(r servedReply, w expect) []string {
		var problems []string
		if r.Status != http.StatusOK || !r.servedBy(w.served) {
			problems = append(problems, fmt.Sprintf("served by pod %q (version %q, status %d), want %s", r.Pod, r.Version, r.Status, w.served.name()))
		}
		if w.setName != "" {
			v, path, ok := r.setCookie(w.setName)
			if !ok || v != w.setValue || path != w.setPath {
				problems = append(problems, fmt.Sprintf("Set-Cookie %s=%q Path=%q (set: %v), want %q Path=%q; all: %q",
					w.setName, v, path, ok, w.setValue, w.setPath, r.SetCookie))
			}
		}
		if w.notSetName != "" {
			if _, _, ok := r.setCookie(w.notSetName); ok {
				problems = append(problems, fmt.Sprintf("must not set %s; got %q", w.notSetName, r.SetCookie))
			}
		}
		if w.setName == "" && len(r.SetCookie) > 0 {
			problems = append(problems, fmt.Sprintf("a pinned request must not be re-pinned; got %q", r.SetCookie))
		}
		return problems
	}

	// Every pin was written with the flip that made v2 Active, but Traefik may still be taking
	// the last routes in: wait (bounded) until one full round is right, then hold it 20 times.
	waitFor(t, 30*time.Second, "every case right once", func() (bool, string) {
		for _, tc := range cases {
			r, err := gw.getServed(host, tc.path, tc.mutate)
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
			for i := range 20 {
				r, err := gw.getServed(host, tc.path, tc.mutate)
				require.NoError(t, err)
				if p := check(r, tc.want); len(p) > 0 {
					t.Fatalf("request %d: %s", i+1, strings.Join(p, "; "))
				}
			}
		})
	}
}

// servedReply is a gateway reply with what the echo backend says about itself.
type servedReply struct {
	reply
	Pod  string // the pod that served it, named after its Deployment
	Path string // the path the backend saw
}

// servedBy reports whether the reply came from a pod of v's Deployment (named <deployment>-<rs hash>-<suffix>).
func (r servedReply) servedBy(v appVersion) bool {
	return r.Version == v.Version && strings.HasPrefix(r.Pod, v.name()+"-")
}

// setCookie returns the value and Path attribute of the reply's Set-Cookie for name, if any.
func (r servedReply) setCookie(name string) (value, path string, ok bool) {
	for _, line := range r.SetCookie {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != name {
			continue
		}
		return c.Value, c.Path, true
	}
	return "", "", false
}

// getServed is get that also reads the echo backend's body, which names the pod that served.
func (g *gateway) getServed(host, path string, mutate func(*http.Request)) (servedReply, error) {
	req, err := http.NewRequest(http.MethodGet, g.base+path, nil)
	if err != nil {
		return servedReply{}, err
	}
	req.Host = host
	if mutate != nil {
		mutate(req)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return servedReply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return servedReply{}, err
	}
	out := servedReply{reply: reply{Status: resp.StatusCode, Version: resp.Header.Get("X-Skewguard-Version"),
		SetCookie: resp.Header.Values("Set-Cookie")}}
	if out.Version != "" {
		var echo struct{ Pod, Path string }
		if err := json.Unmarshal(body, &echo); err != nil {
			return out, fmt.Errorf("echo backend body %q: %w", body, err)
		}
		out.Pod, out.Path = echo.Pod, echo.Path
	}
	return out, nil
}

// waitServedBy waits until an anonymous request for path on host is served by a pod of v.
func (g *gateway) waitServedBy(t testing.TB, host, path string, v appVersion, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("new visitors of %s%s served by %s", host, path, v.name()), func() (bool, string) {
		r, err := g.getServed(host, path, nil)
		if err != nil {
			return false, err.Error()
		}
		return r.Status == http.StatusOK && r.servedBy(v), fmt.Sprintf("status %d version %q pod %q", r.Status, r.Version, r.Pod)
	})
}

// waitEvent waits for an events.k8s.io/v1 Event with reason about the Deployment named deployment
// and returns it.
func (c *cluster) waitEvent(t testing.TB, ns, deployment, reason string, timeout time.Duration) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	waitFor(t, timeout, fmt.Sprintf("Event %s on Deployment %s/%s", reason, ns, deployment), func() (bool, string) {
		evs, err := c.kube.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, ev := range evs.Items {
			seen = append(seen, ev.Reason+"@"+ev.Regarding.Kind+"/"+ev.Regarding.Name)
			if ev.Reason == reason && ev.Regarding.Kind == "Deployment" && ev.Regarding.Name == deployment {
				found = ev
				return true, ""
			}
		}
		return false, fmt.Sprintf("events: %v", seen)
	})
	return found
}
