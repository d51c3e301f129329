package traffic

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPresetsRender(t *testing.T) {
	p := Params{Namespace: "shop", App: "myapp", Version: "1.2.3", Service: "myapp-v1.2.3", Window: "5m", WindowSeconds: "300"}
	tests := []struct {
		preset string
		want   string
	}{
		{PresetWatt, `sum(sum_over_time(http_request_all_summary_seconds_count{callerTelemetryId=""}[5m]) * on(pod) group_left() ` +
			`kube_pod_labels{namespace="shop", label_app_kubernetes_io_name="myapp", label_plt_dev_version="1.2.3"}) / 300`},
		{PresetTraefik, `sum(rate(traefik_service_requests_total{service=~".+-svc-shop-myapp-v1\\.2\\.3-[0-9]+@kubernetesgateway"}[5m]))`},
	}
	for _, tt := range tests {
		t.Run(tt.preset, func(t *testing.T) {
			tmpl, err := Select(tt.preset, "")
			require.NoError(t, err)
			got, err := tmpl.Render(p)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestSelect(t *testing.T) {
	custom, err := Select(PresetWatt, `sum(rate(my_requests_total{v="{{str .Version}}"}[{{.Window}}]))`)
	require.NoError(t, err)
	assert.Contains(t, custom.String(), "my_requests_total", "a custom template replaces the preset")

	_, err = Select("nginx", "")
	assert.ErrorContains(t, err, `unknown traffic preset "nginx"`)

	for _, bad := range []string{"", "  ", "{{.Nope}}", "{{"} {
		_, err := Parse(bad)
		assert.Error(t, err, "template %q", bad)
	}
}

func TestEscaping(t *testing.T) {
	tmpl, err := Parse(`x{a="{{str .Version}}", b=~"{{re .Version}}"}`)
	require.NoError(t, err)
	got, err := tmpl.Render(Params{Version: `a"b\c.d`})
	require.NoError(t, err)
	assert.Equal(t, `x{a="a\"b\\c.d", b=~"a\"b\\\\c\\.d"}`, got)
}

func TestBatch(t *testing.T) {
	tmpl, err := Parse(`rate(req{ns="{{str .Namespace}}", app="{{str .App}}", svc="{{str .Service}}"}[{{.Window}}]) / {{.WindowSeconds}}`)
	require.NoError(t, err)
	q, err := tmpl.Batch("shop", "myapp", 1500*time.Millisecond, []Target{
		{Version: "41", Service: "myapp-41"},
		{Version: "4$2", Service: "myapp-42"},
	})
	require.NoError(t, err)
	assert.Equal(t,
		`label_replace(sum(rate(req{ns="shop", app="myapp", svc="myapp-41"}[1s500ms]) / 1.5), "skewguard_version", "41", "", "")`+
			` or `+
			`label_replace(sum(rate(req{ns="shop", app="myapp", svc="myapp-42"}[1s500ms]) / 1.5), "skewguard_version", "4$$2", "", "")`,
		q)

	_, err = tmpl.Batch("shop", "myapp", time.Minute, nil)
	assert.Error(t, err, "a query for no version is refused")

	// An app group's version: the members' traffic for the same version is added, in the same
	// query; a member without series adds zero, the version's own series decide if it is known.
	q, err = tmpl.Batch("shop", "front", time.Second, []Target{
		{Version: "1", Service: "front-1", Members: []Member{{App: "api", Service: "api-1"}}},
		{Version: "2", Service: "front-2"},
	})
	require.NoError(t, err)
	assert.Equal(t,
		`label_replace(sum(rate(req{ns="shop", app="front", svc="front-1"}[1s]) / 1) + `+
			`(sum(rate(req{ns="shop", app="api", svc="api-1"}[1s]) / 1) or vector(0)), "skewguard_version", "1", "", "")`+
			` or `+
			`label_replace(sum(rate(req{ns="shop", app="front", svc="front-2"}[1s]) / 1), "skewguard_version", "2", "", "")`,
		q)
}

func TestPromDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Minute, "5m"},
		{30 * time.Minute, "30m"},
		{90 * time.Minute, "1h30m"},
		{24 * time.Hour, "1d"},
		{1500 * time.Millisecond, "1s500ms"},
		{time.Second, "1s"},
		{500*time.Millisecond + 300*time.Microsecond, "500ms"},
		{0, "0s"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, PromDuration(tt.in), "%v", tt.in)
	}
}
