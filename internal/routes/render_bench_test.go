package routes

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/skewguard/skewguard/internal/benchtable"
)

// benchInput is an app with one Active version and n draining ones, prefix not rewritten.
func benchInput(n int) Input {
	in := Input{
		Namespace:    "shop",
		App:          "myapp",
		Generation:   42,
		ParentRefs:   []ParentRef{{Namespace: "gw", Name: "public", SectionName: "http"}},
		CookieName:   "__plt_dpl",
		CookieMaxAge: 43200,
		Active:       &Backend{Version: "2", ServiceName: "myapp-v2", Port: 80},
		Pinned:       make([]Backend, n),
	}
	for i := range in.Pinned {
		v := "1." + strconv.Itoa(i)
		if i == 0 {
			v = "1"
		}
		in.Pinned[i] = Backend{Version: v, ServiceName: "myapp-v1-" + strconv.Itoa(i), Port: 80}
	}
	return in
}

// BenchmarkRender1000Pins renders an app with 1,000 pinned versions, with the prefix kept
// (one rule per pin) and rewritten (five rules per pin, the default configuration).
func BenchmarkRender1000Pins(b *testing.B) {
	for _, rewrite := range []bool{false, true} {
		name := "prefix-kept"
		if rewrite {
			name = "prefix-rewritten"
		}
		b.Run(name, func(b *testing.B) {
			in := benchInput(1000)
			in.RewritePrefix = rewrite
			b.ReportAllocs()
			var routes int
			for b.Loop() {
				out, err := Render(in)
				if err != nil {
					b.Fatal(err)
				}
				routes = len(out)
			}
			b.ReportMetric(float64(routes), "routes/render")
			perRender := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
			benchtable.Report(b, benchtable.Row{Figure: "render an app with 1,000 pins (" + name + ")",
				Value: fmt.Sprintf("%.2f ms, %d HTTPRoutes", perRender, routes)})
		})
	}
}
