//go:build integration

package api

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
)

// createEndpoints creates a Service without selector (no controller manages its endpoints)
// and one EndpointSlice of it with the given addresses and their ready condition.
func (c *cluster) createEndpoints(t *testing.T, service string, ready map[string]bool) *discoveryv1.EndpointSlice {
	t.Helper()
	ctx := t.Context()
	_, err := c.kube.CoreV1().Services(c.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: service},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: service + "-a", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	addrs := slices.Sorted(maps.Keys(ready))
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready[a])}})
	}
	es, err = c.kube.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, es, metav1.CreateOptions{})
	require.NoError(t, err)
	return es
}

// chromiumPath finds Debian's chromium. Missing, the test fails: hack/stack.sh up (and
// hack/stack.sh tools) installs it, so a machine without it is not set up.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("SKEWGUARD_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: the browser tests need Debian's chromium package (hack/stack.sh tools installs it; or set SKEWGUARD_CHROMIUM)")
	return ""
}

// artifactsDir is where the browser tests leave their screenshots: $SKEWGUARD_ARTIFACTS/ui, else
// .artifacts/ui at the repository's root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SKEWGUARD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts")
	}
	dir = filepath.Join(dir, "ui")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// browser starts a headless chromium; each tab (newTab) has its own sessionStorage.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-gpu", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	_, err := chromedp.Run(bctx, chromedp.Steps())
	require.NoError(t, err, "start chromium")
	return bctx
}

func newTab(t *testing.T, bctx context.Context) context.Context {
	t.Helper()
	tctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	tctx, tcancel := context.WithTimeout(tctx, 90*time.Second)
	t.Cleanup(tcancel)
	return tctx
}

// TestVersionsPanelInChromium drives the panel /ui in headless chromium against the real API
// server (TokenReview, SubjectAccessReview with RBAC on versions.skewguard.dev) and the real
// registry in PostgreSQL: no identity sees nothing; an operator sees two apps with their
// versions and ticking countdowns, and expires a Draining version from the page; a viewer sees
// no action buttons, and an action it forges from the page is refused 403.
func TestVersionsPanelInChromium(t *testing.T) {
	c := newCluster(t)
	live := startLive(t, c, &recordingStarter{}, func(s *registry.Store) Lifecycle { return registryLifecycle{store: s} })
	live.server.opts.TemporalUIURL, live.server.opts.TemporalNamespace = "http://temporal-ui.test", "default"
	// Pods ready from the real API server's EndpointSlices, through the informer cache the API
	// process counts them from: shop v2's Service has two endpoints, one ready.
	endpoints, err := kube.NewReadinessWatcher(c.kube, []string{c.ns})
	require.NoError(t, err)
	endpoints.Start(t.Context())
	t.Cleanup(endpoints.Stop)
	live.server.opts.PodCounter = endpoints
	slice := c.createEndpoints(t, "shop-v2", map[string]bool{"10.9.0.1": true, "10.9.0.2": false})
	ctx := t.Context()
	sys := registry.Actor{Type: registry.ActorSystem, ID: "test"}
	// Two apps, each with an Active version 2 and a Draining version 1.
	for _, app := range []string{"shop", "blog"} {
		for _, label := range []string{"1", "2"} {
			ref := registry.VersionRef{Namespace: c.ns, App: app, Label: label}
			_, _, err := live.store.ObserveVersion(ctx, registry.Observation{Ref: ref,
				Placement: registry.Placement{ServiceName: app + "-v" + label, ServicePort: 80}}, sys)
			require.NoError(t, err)
			_, err = live.store.Activate(ctx, ref, sys, "test")
			require.NoError(t, err)
		}
	}
	operator, viewer := c.userToken(t, "operator"), c.userToken(t, "viewer")
	c.grantVersions(t, "operator", "get", "list", "update")
	c.grantVersions(t, "viewer", "get", "list")
	bctx := browser(t)
	page := live.URL + "/ui/"
	row := func(app, label string) string {
		return fmt.Sprintf(`section.app[data-app="%s/%s"] tr[data-version="%s"]`, c.ns, app, label)
	}
	art := artifactsDir(t)

	type step = chromedp.Action[chromedp.Void]
	do := func(t *testing.T, tab context.Context, steps ...step) {
		t.Helper()
		require.NoError(t, chromedp.Do(tab, steps...))
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	signIn := func(t *testing.T, tab context.Context, token string) {
		t.Helper()
		// Enter in the token field signs in: the form works from the keyboard.
		do(t, tab, chromedp.Navigate(page), chromedp.WaitVisible(css(`#token`)),
			chromedp.SendKeys(css(`#token`), token+kb.Enter))
	}
	text := func(t *testing.T, tab context.Context, sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.TextContent(css(sel)))
		require.NoError(t, err)
		return s
	}

	t.Run("no identity sees nothing", func(t *testing.T) {
		tab := newTab(t, bctx)
		do(t, tab, chromedp.Navigate(page), chromedp.WaitVisible(css(`#login-form`)))
		hidden, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("panel").hidden`))
		require.NoError(t, err)
		assert.True(t, hidden)
		// A made-up token is refused by the cluster: the page falls back to the sign-in form.
		signIn(t, tab, "not-a-token")
		msg, err := chromedp.Run(tab, chromedp.Poll[string](`document.getElementById("login-error").textContent`,
			chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err)
		assert.Contains(t, msg, "refused")
		assert.Empty(t, text(t, tab, `#apps`))
		for _, r := range live.requests() {
			if strings.Contains(r, "/api/v1/") {
				assert.NotRegexp(t, ` 2\d\d$`, r, "a data request succeeded without an identity")
			}
		}
	})

	t.Run("operator sees both apps, countdowns tick, expires from the page", func(t *testing.T) {
		tab := newTab(t, bctx)
		signIn(t, tab, operator)
		do(t, tab,
			chromedp.WaitVisible(css(row("shop", "1")+` .badge.s-draining`)),
			chromedp.WaitVisible(css(row("shop", "2")+` .badge.s-active`)),
			chromedp.WaitVisible(css(row("blog", "1")+` .badge.s-draining`)),
			chromedp.WaitVisible(css(row("blog", "2")+` .badge.s-active`)),
		)
		// Pods ready: shop v2 shows its Service's EndpointSlice, 1 of 2; blog v2 has no Service
		// (unknown); the count follows the slice without a reload, in a cell that keeps its width.
		pods := func(app, label string) string {
			return fmt.Sprintf(`(document.querySelector('%s .c-pods') || {textContent: "(no pods cell)"}).textContent`, row(app, label))
		}
		podsNow := func(app, label string) string {
			s, err := chromedp.Run(tab, chromedp.Evaluate[string](pods(app, label)))
			require.NoError(t, err)
			return s
		}
		podsWidth := fmt.Sprintf(`document.querySelector('%s .c-pods').getBoundingClientRect().width`, row("shop", "2"))
		_, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](pods("shop", "2")+` === "1/2"`, chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "shop v2 shows 1/2 pods ready; it shows %q", podsNow("shop", "2"))
		assert.Equal(t, "—", podsNow("blog", "2"))
		w1, err := chromedp.Run(tab, chromedp.Evaluate[float64](podsWidth))
		require.NoError(t, err)
		slice.Endpoints[1].Conditions.Ready = ptr.To(true)
		_, err = c.kube.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, slice, metav1.UpdateOptions{})
		require.NoError(t, err)
		_, err = chromedp.Run(tab, chromedp.Poll[chromedp.Void](pods("shop", "2")+` === "2/2"`, chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "the count follows the EndpointSlice; it shows %q", podsNow("shop", "2"))
		w2, err := chromedp.Run(tab, chromedp.Evaluate[float64](podsWidth))
		require.NoError(t, err)
		assert.Equal(t, w1, w2, "the pods cell changed width")

		timers := fmt.Sprintf(`document.querySelector('%s .c-timers').textContent`, row("shop", "1"))
		_, err = chromedp.Run(tab, chromedp.Poll[chromedp.Void](timers+`.includes("max alive in")`, chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err)
		first := text(t, tab, row("shop", "1")+` .c-timers`)
		assert.Contains(t, first, "grace ends in")
		href, err := chromedp.Run(tab, chromedp.AttributeValue(css(row("shop", "1")+` a.wf`), "href"))
		require.NoError(t, err)
		assert.Equal(t, "http://temporal-ui.test/namespaces/default/workflows/"+strings.ReplaceAll("skew/"+c.ns+"/shop/1", "/", "%2F"), href.Value)
		// The countdowns tick without a reload.
		_, err = chromedp.Run(tab, chromedp.Poll[chromedp.Void](fmt.Sprintf(`%s !== %q`, timers, first), chromedp.WithPollingTimeout(10*time.Second)))
		require.NoError(t, err)
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll('%s button.act-expire').length`, row("shop", "1"))))
		require.NoError(t, err)
		require.Equal(t, 1, n)

		// Keyboard and stability: a focused button keeps its focus and its row its place across
		// polls; Enter opens the confirmation, Escape cancels it and gives the focus back.
		blogExpire := row("blog", "1") + ` button.act-expire`
		rect := fmt.Sprintf(`JSON.stringify(document.querySelector('%s').getBoundingClientRect())`, row("blog", "1"))
		do(t, tab, chromedp.Focus(css(blogExpire)))
		before, err := chromedp.Run(tab, chromedp.Evaluate[string](rect))
		require.NoError(t, err)
		status := text(t, tab, `#status`)
		_, err = chromedp.Run(tab, chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById("status").textContent !== %q`, status),
			chromedp.WithPollingTimeout(10*time.Second)))
		require.NoError(t, err, "the page polls")
		after, err := chromedp.Run(tab, chromedp.Evaluate[string](rect))
		require.NoError(t, err)
		assert.Equal(t, before, after, "a poll moved the row")
		focused := fmt.Sprintf(`document.activeElement === document.querySelector('%s')`, blogExpire)
		still, err := chromedp.Run(tab, chromedp.Evaluate[bool](focused))
		require.NoError(t, err)
		assert.True(t, still, "a poll took the focus away")
		do(t, tab, chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(css(`dialog#confirm[open]`)),
			chromedp.KeyEvent(kb.Escape), chromedp.WaitNotPresent(css(`dialog#confirm[open]`)))
		still, err = chromedp.Run(tab, chromedp.Evaluate[bool](focused))
		require.NoError(t, err)
		assert.True(t, still, "the focus is back on the button after Escape")

		// Screenshots for the README and the test's artefacts, at desktop and phone widths.
		do(t, tab, chromedp.EmulateViewport(1280, 900))
		wide, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		do(t, tab, chromedp.EmulateViewport(390, 844), chromedp.WaitVisible(css(row("shop", "1"))))
		narrow, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		do(t, tab, chromedp.EmulateViewport(1280, 900))
		require.NoError(t, os.WriteFile(filepath.Join(art, "panel-1280.png"), wide, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(art, "panel-390.png"), narrow, 0o644))

		// Expire shop v1: the dialog says what will happen, then the version leaves the live list.
		do(t, tab,
			chromedp.Click(css(row("shop", "1")+` button.act-expire`)),
			chromedp.WaitVisible(css(`dialog#confirm[open]`)),
		)
		assert.Contains(t, text(t, tab, `#confirm-text`), "will be expired")
		do(t, tab,
			chromedp.SendKeys(css(`#confirm-reason`), "browser test"),
			chromedp.Click(css(`#confirm-ok`)),
			chromedp.WaitNotPresent(css(row("shop", "1"))),
		)
		v, err := live.store.GetVersion(ctx, registry.VersionRef{Namespace: c.ns, App: "shop", Label: "1"})
		require.NoError(t, err)
		assert.Equal(t, registry.Expired, v.State)
		audit, err := live.store.Audit(ctx, v.Ref())
		require.NoError(t, err)
		last := audit[len(audit)-1]
		assert.Equal(t, "system:serviceaccount:"+c.ns+":operator", last.Actor.ID)
		assert.Equal(t, "browser test", last.Reason)
	})

	t.Run("viewer sees no actions and a forged one is refused", func(t *testing.T) {
		tab := newTab(t, bctx)
		signIn(t, tab, viewer)
		do(t, tab,
			chromedp.WaitVisible(css(row("blog", "1")+` .badge.s-draining`)),
			chromedp.WaitVisible(css(row("blog", "1")+` button.audit`)),
		)
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("button.act, button.threshold").length`))
		require.NoError(t, err)
		assert.Zero(t, n, "a read-only identity is shown no action button")
		status, err := chromedp.Run(tab, chromedp.Evaluate[int](fmt.Sprintf(`fetch("/api/v1/apps/%s/blog/versions/1/expire", {method: "POST",
			headers: {Authorization: "Bearer " + sessionStorage.getItem("skewguard.token"), "Content-Type": "application/json"},
			body: "{}"}).then(r => r.status)`, c.ns), chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		assert.Equal(t, 403, status)
		v, err := live.store.GetVersion(ctx, registry.VersionRef{Namespace: c.ns, App: "blog", Label: "1"})
		require.NoError(t, err)
		assert.Equal(t, registry.Draining, v.State)
	})
}
