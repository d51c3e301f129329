package routes

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

// trickyApps are app names (label values) chosen to collide under a naive scheme: names that
// look like another app's shard, names holding the separator, names that differ only in what a
// DNS label cannot hold, and names at and over the length limits.
func trickyApps() []string {
	apps := []string{
		"web", "web-pins-1", "web-pins-2", "web--pins-1", "web-pins-01", "web-pins", "pins-1",
		"web--", "web--x", "web---pins-1", "a--b", "a-b", "a.b", "a_b", "A-b", "a..b", "a-.b", "a", "x", "X",
		"Web", "WEB", "web.v2", "web_v2", "web-v2", "web.pins-1", "web_pins-1", "Web-pins-1",
		"0", "1-2", "web-" + hashOf("Web"), "web--" + hashOf("Web"), "web--" + hashOf("Web") + "-pins-1",
		"x--" + hashOf("___"), "___", "", "é", "web-é",
		strings.Repeat("a", 63), strings.Repeat("a", 62) + "b", strings.Repeat("a", 61) + "--b",
		strings.Repeat("a", 56), strings.Repeat("a", 55) + "-pins-1", strings.Repeat("a", 54), strings.Repeat("a", 53),
		strings.Repeat("a", 63)[:63-len("--pins-1")], strings.Repeat("a", 63)[:63-len("--pins-1")+1],
		strings.Repeat("a.", 31) + "a", strings.Repeat("a_", 31) + "a", strings.Repeat("A", 63),
	}
	// Every app's own shard names are apps too: an app may be named after another's route.
	for _, a := range append([]string(nil), apps...) {
		for _, shard := range []int{0, 1, 2, 10} {
			apps = append(apps, RouteName(a, shard))
		}
	}
	return apps
}

// TestRouteNamesNeverCollide: over tricky app names and their shards, every name is a valid DNS
// label and no two (app, shard) pairs share one. Under the old scheme "web" shard 1 and
// "web-pins-1" shard 0 were both "web-pins-1".
func TestRouteNamesNeverCollide(t *testing.T) {
	type pair struct {
		app   string
		shard int
	}
	seen := map[string]pair{}
	apps := map[string]bool{}
	for _, app := range trickyApps() {
		if apps[app] {
			continue
		}
		apps[app] = true
		for _, shard := range []int{0, 1, 2, 9, 10, 11, 100, 1000, 99999} {
			name := RouteName(app, shard)
			assert.Empty(t, validation.IsDNS1123Label(name), "RouteName(%q, %d) = %q", app, shard, name)
			if prev, ok := seen[name]; ok {
				t.Errorf("%q is the name of both %q shard %d and %q shard %d", name, prev.app, prev.shard, app, shard)
			}
			seen[name] = pair{app, shard}
		}
	}
	assert.Equal(t, "web--pins-1", RouteName("web", 1))
	assert.Equal(t, "web-pins-1", RouteName("web-pins-1", 0), "shard 0 keeps the app's name")
}

// TestRouteNameShapes: the only names without "--" are plain apps' own names; every derived name
// has exactly one "--", which splits it into the app part and a tail of "pins-<n>" or the hash.
func TestRouteNameShapes(t *testing.T) {
	for _, app := range trickyApps() {
		plain := len(validation.IsDNS1123Label(app)) == 0 && !strings.Contains(app, "--")
		for _, shard := range []int{0, 1, 10, 1000} {
			name := RouteName(app, shard)
			if shard == 0 && plain {
				assert.Equal(t, app, name)
				continue
			}
			assert.Equal(t, 1, strings.Count(name, "--"), "%q (app %q shard %d)", name, app, shard)
			_, tail, _ := strings.Cut(name, "--")
			if strings.HasPrefix(tail, "pins-") {
				assert.True(t, plain, "%q: only a plain app's shard is unhashed", name)
				assert.Equal(t, app+"--pins-", name[:len(app)+len("--pins-")])
			} else {
				assert.True(t, strings.HasPrefix(tail, hashOf(app)), "%q: the tail starts with the app's hash", name)
			}
		}
	}
}

func FuzzRouteName(f *testing.F) {
	for _, app := range trickyApps() {
		f.Add(app, 1)
	}
	f.Fuzz(func(t *testing.T, app string, shard int) {
		shard = max(0, shard%100000)
		name := RouteName(app, shard)
		if len(validation.IsDNS1123Label(name)) > 0 {
			t.Fatalf("RouteName(%q, %d) = %q is not a DNS label", app, shard, name)
		}
		other := RouteName(name, 0) // an app named after this route
		if (other == name) != (shard == 0 && app == name) {
			t.Fatalf("app %q shard %d and app %q shard 0 are both %q", app, shard, name, name)
		}
	})
}
