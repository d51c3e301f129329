// Package traffic owns how skewguard measures the request rate of Draining versions: the PromQL
// templates (built-in presets and an operator's own), how the templates of every Draining version
// of an application are batched into one query, and the Prometheus client that runs it.
//
// A template describes one version. It sees .Namespace, .App, .Version, .Service (the version's
// Kubernetes Service), .Window (the traffic window as a PromQL duration such as 5m or 1500ms) and
// .WindowSeconds, and should evaluate to that version's requests per second. The functions str
// and re escape a value for a PromQL string literal and for a regular expression inside one.
// Each version's expression is wrapped in sum() and tagged with its version by label_replace, and
// the tagged expressions are joined with `or`, so one instant query answers for every version.
//
// An empty result means "unknown", never zero: a version whose series are missing (not scraped,
// never served a request, a typo in the template) is never expired for lack of traffic.
package traffic

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// VersionLabel is the label the batched query puts on each version's series.
const VersionLabel = "skewguard_version"

// Preset names.
const (
	PresetWatt    = "watt"
	PresetTraefik = "traefik"
)

// Presets are the built-in templates, by name.
//
// watt: Platformatic Watt exposes http_request_all_summary_seconds, a summary that is reset on
// every scrape, so its _count is a per-scrape delta rather than a counter and rate() would read
// ~0 under steady traffic; sum_over_time() adds the deltas over the window instead. Requests
// carrying a callerTelemetryId come from other services of the mesh and are not ingress. Pods
// are tied to their version through kube-state-metrics' kube_pod_labels, which must expose the
// app.kubernetes.io/name and plt.dev/version labels (--metric-labels-allowlist).
//
// traefik: Traefik's per-service counter. Its Gateway API provider names the load-balancer
// service of each backendRef "<router>-svc-<namespace>-<service>-<backend index>@kubernetesgateway",
// with one router per rule and match, so the version's Service is matched by suffix and summed.
var Presets = map[string]string{
	PresetWatt: `sum(` +
		`sum_over_time(http_request_all_summary_seconds_count{callerTelemetryId=""}[{{.Window}}])` +
		` * on(pod) group_left() ` +
		`kube_pod_labels{namespace="{{str .Namespace}}", label_app_kubernetes_io_name="{{str .App}}", label_plt_dev_version="{{str .Version}}"}` +
		`) / {{.WindowSeconds}}`,
	PresetTraefik: `sum(rate(traefik_service_requests_total{service=~".+-svc-{{re .Namespace}}-{{re .Service}}-[0-9]+@kubernetesgateway"}[{{.Window}}]))`,
}

// Params is what a template sees for one version.
type Params struct {
	Namespace     string
	App           string
	Version       string
	Service       string
	Window        string // PromQL duration, e.g. 5m, 1m30s, 1500ms
	WindowSeconds string // the same window in seconds, e.g. 300, 1.5
}

// Target is one version whose rate is wanted.
type Target struct {
	Version string
	Service string
	// Members are the other apps of the version's app group (plt.dev/group) that run the same
	// version: their traffic counts as the version's, so the group's version N reads zero only
	// when no member serves N any more.
	Members []Member
}

// Member is another app's Service of a grouped version (same namespace).
type Member struct {
	App     string
	Service string
}

// Template is a parsed per-version PromQL template.
type Template struct {
	text string
	tmpl *template.Template
}

var funcs = template.FuncMap{"str": escapeString, "re": escapeRegexp}

// Parse parses an operator's template, and checks that it renders for a sample version.
func Parse(text string) (*Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("traffic query template is empty")
	}
	tmpl, err := template.New("traffic").Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse traffic query template: %w", err)
	}
	t := &Template{text: text, tmpl: tmpl}
	if _, err := t.Render(Params{Namespace: "ns", App: "app", Version: "v1", Service: "app-v1",
		Window: "5m", WindowSeconds: "300"}); err != nil {
		return nil, err
	}
	return t, nil
}

// Select returns the operator's template when one is given, else the named preset.
func Select(preset, custom string) (*Template, error) {
	if custom != "" {
		return Parse(custom)
	}
	text, ok := Presets[preset]
	if !ok {
		return nil, fmt.Errorf("unknown traffic preset %q (have watt, traefik)", preset)
	}
	return Parse(text)
}

// String returns the template's source.
func (t *Template) String() string { return t.text }

// Render renders the template for one version.
func (t *Template) Render(p Params) (string, error) {
	var b bytes.Buffer
	if err := t.tmpl.Execute(&b, p); err != nil {
		return "", fmt.Errorf("render traffic query for %s/%s@%s: %w", p.Namespace, p.App, p.Version, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// Batch renders one query that returns one sample per target, labelled VersionLabel=<version>.
func (t *Template) Batch(namespace, app string, window time.Duration, targets []Target) (string, error) {
	if len(targets) == 0 {
		return "", fmt.Errorf("traffic query for %s/%s: no versions to query", namespace, app)
	}
	parts := make([]string, 0, len(targets))
	for _, tg := range targets {
		expr, err := t.Render(Params{
			Namespace: namespace, App: app, Version: tg.Version, Service: tg.Service,
			Window: PromDuration(window), WindowSeconds: seconds(window),
		})
		if err != nil {
			return "", err
		}
		sum := "sum(" + expr + ")"
		for _, m := range tg.Members {
			// A member's sum is added to the version's: the version's own series decide whether
			// the reading is known at all, a member without series (none served yet, or gone)
			// adds zero. Both sides have no labels, so they match.
			other, err := t.Render(Params{
				Namespace: namespace, App: m.App, Version: tg.Version, Service: m.Service,
				Window: PromDuration(window), WindowSeconds: seconds(window),
			})
			if err != nil {
				return "", err
			}
			sum += " + (sum(" + other + ") or vector(0))"
		}
		parts = append(parts, fmt.Sprintf(`label_replace(%s, "%s", "%s", "", "")`,
			sum, VersionLabel, escapeString(strings.ReplaceAll(tg.Version, "$", "$$"))))
	}
	return strings.Join(parts, " or "), nil
}

// PromDuration formats d as a PromQL duration (5m, 1h30m, 1s500ms); sub-millisecond parts are
// dropped because PromQL has no smaller unit.
func PromDuration(d time.Duration) string {
	d = d.Truncate(time.Millisecond)
	if d <= 0 {
		return "0s"
	}
	return model.Duration(d).String()
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(math.Round(d.Seconds()*1000)/1000, 'f', -1, 64)
}

// escapeString escapes s for a double-quoted PromQL string literal, whatever s holds: '\' and
// '"', control characters, and what PromQL's lexer refuses raw in a string: a byte that is not
// UTF-8 (written \xNN, so the literal still holds exactly s) and U+FFFD (which the lexer cannot
// tell from one).
func escapeString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// escapeRegexp escapes s for a regular expression written in a double-quoted PromQL string.
func escapeRegexp(s string) string { return escapeString(regexp.QuoteMeta(s)) }
