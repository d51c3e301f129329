package routes

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzRouteNamePairs: any two (app, shard) pairs of one namespace get valid, stable names, and
// distinct pairs get distinct names. Random pairs almost never meet, so each run also pits the
// first pair against the pairs most likely to share its name: the app named after its route,
// the app that spells the old "<app>-pins-<n>" or the new "<app>--pins-<n>", and the app's name
// lowered or with its '.' and '_' made '-' (what a hashed name's readable part keeps).
//
//	go test ./internal/routes -run '^$' -fuzz '^FuzzRouteNamePairs$' -fuzztime 30s
func FuzzRouteNamePairs(f *testing.F) {
	f.Add("web", 1, "web-pins-1", 0) // the old scheme's collision (issue 12)
	f.Add("web", 1, "web--pins-1", 0)
	f.Add("web", 0, "web", 1)
	f.Add("Web", 0, "web", 0)
	f.Add("web.v2", 0, "web-v2", 0)
	f.Add("web_v2", 3, "web.v2", 3)
	f.Add("a--b", 0, "a-b", 0)
	f.Add(strings.Repeat("a", 63), 1, strings.Repeat("a", 63), 2)
	f.Add(strings.Repeat("a", 55)+"-pins-1", 0, strings.Repeat("a", 55), 1)
	f.Add(strings.Repeat("a", 63)[:63-len("--pins-1")], 1, strings.Repeat("a", 63)[:63-len("--pins-1")+1], 1)
	f.Add("é", 0, "x", 0)
	f.Add("", 0, "x", 0)
	f.Add("___", 2, "x", 2)
	f.Add("web", 10, "web", 1)
	f.Add("web", 1<<62, "web", 0)
	for _, app := range trickyApps() {
		f.Add(app, 1, RouteName(app, 1), 0)
	}
	f.Fuzz(func(t *testing.T, app1 string, shard1 int, app2 string, shard2 int) {
		if shard1 < 0 || shard2 < 0 {
			return // shards count from 0
		}
		type pair struct {
			app   string
			shard int
		}
		p := pair{app1, shard1}
		name := RouteName(p.app, p.shard)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Fatalf("RouteName(%q, %d) = %q: %v", p.app, p.shard, name, errs)
		}
		if again := RouteName(p.app, p.shard); again != name {
			t.Fatalf("RouteName(%q, %d) is %q, then %q", p.app, p.shard, name, again)
		}
		n := strconv.Itoa(shard1)
		others := []pair{{app2, shard2}}
		for _, a := range []string{
			app2, name, app1 + "-pins-" + n, app1 + "--pins-" + n, strings.ToLower(app1),
			strings.NewReplacer(".", "-", "_", "-").Replace(app1), readable(app1), readable(app1) + "-pins-" + n,
		} {
			for _, s := range []int{0, 1, shard1, shard2} {
				others = append(others, pair{a, s})
			}
		}
		for _, o := range others {
			if o == p {
				continue
			}
			if other := RouteName(o.app, o.shard); other == name {
				t.Fatalf("%q is the name of both (%q, %d) and (%q, %d)", name, p.app, p.shard, o.app, o.shard)
			}
		}
	})
}

// readable is app as a DNS label would spell it: lowered, every other character '-', runs of '-'
// made one, trimmed.
func readable(app string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(app) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}
