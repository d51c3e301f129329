package routes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from Render's output")

// TestRenderGolden renders every testdata/<case>.in.yaml and compares the result with
// testdata/<case>.out.yaml. Run with -update to regenerate the outputs, then review the diff.
func TestRenderGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(inputs), 14, "golden cases")

	for _, inPath := range inputs {
		name := strings.TrimSuffix(filepath.Base(inPath), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			in := readInput(t, inPath)
			got, err := Render(in)
			require.NoError(t, err)
			checkInvariants(t, in, got)

			encoded := EncodeGolden(t, got)
			outPath := filepath.Join("testdata", name+".out.yaml")
			if *update {
				require.NoError(t, os.WriteFile(outPath, encoded, 0o644))
				return
			}
			want, err := os.ReadFile(outPath)
			require.NoError(t, err, "missing golden output: run go test ./internal/routes -run TestRenderGolden -update")
			assert.Equal(t, string(want), string(encoded))
		})
	}
}

// TestRenderIsDeterministic guards the golden files against map or scheduling order leaking
// into the output.
func TestRenderIsDeterministic(t *testing.T) {
	in := readInput(t, "testdata/pins-200.in.yaml")
	first, err := Render(in)
	require.NoError(t, err)
	for range 5 {
		again, err := Render(in)
		require.NoError(t, err)
		assert.Equal(t, EncodeGolden(t, first), EncodeGolden(t, again))
	}
}

func TestRenderShardCounts(t *testing.T) {
	tests := []struct {
		name    string
		pins    int
		active  bool
		rewrite bool
		want    []int // pins per route
	}{
		{"nothing", 0, false, false, nil},
		{"active only", 0, true, false, []int{0}},
		{"9 pins fill the default route", 9, true, false, []int{9}},
		{"10th pin opens a shard", 10, true, false, []int{9, 1}},
		{"shards hold 10", 9 + 10 + 1, true, false, []int{9, 10, 1}},
		{"no active: 10 in the first route", 11, false, false, []int{10, 1}},
		{"rewritten: 2 beside the default", 2, true, true, []int{2}},
		{"rewritten: 3rd opens a shard", 3, true, true, []int{2, 1}},
		{"rewritten: shards hold 3", 2 + 3 + 1, true, true, []int{2, 3, 1}},
		{"rewritten, no active: 3 in the first route", 4, false, true, []int{3, 1}},
		{"1000 pins", 1000, true, false, append(append([]int{9}, repeat(10, 99)...), 1)},
		{"1000 pins rewritten", 1000, true, true, append(append([]int{2}, repeat(3, 332)...), 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := benchInput(tt.pins)
			in.RewritePrefix = tt.rewrite
			if !tt.active {
				in.Active = nil
			}
			got, err := Render(in)
			require.NoError(t, err)
			var perRoute []int
			for _, r := range got {
				perRoute = append(perRoute, len(pinVersions(in, r)))
			}
			assert.Equal(t, tt.want, perRoute)
			checkInvariants(t, in, got)
		})
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Input)
		want   string
	}{
		{"empty version", func(in *Input) { in.Pinned[0].Version = "" }, `pinned version "": must not be empty`},
		{"version with a slash", func(in *Input) { in.Pinned[0].Version = "1/2" }, `pinned version "1/2"`},
		{"version with a regex metacharacter", func(in *Input) { in.Pinned[0].Version = "1|2" }, `pinned version "1|2"`},
		{"version of 64 characters", func(in *Input) { in.Pinned[0].Version = strings.Repeat("9", 64) }, "must be no more than 63"},
		{"version ending in a dot", func(in *Input) { in.Active.Version = "2." }, `active version "2."`},
		{"duplicate pinned version", func(in *Input) { in.Pinned = append(in.Pinned, in.Pinned[0]) }, `pinned version "1": listed more than once`},
		{"active also pinned", func(in *Input) { in.Pinned[0].Version = in.Active.Version }, `pinned version "2": listed more than once`},
		{"staged active", func(in *Input) { in.Active.Staged = true }, "cannot be staged"},
		{"bad service name", func(in *Input) { in.Active.ServiceName = "My_Svc" }, `service name "My_Svc"`},
		{"port zero", func(in *Input) { in.Pinned[0].Port = 0 }, "port 0"},
		{"cookie name with '='", func(in *Input) { in.CookieName = "a=b" }, `cookie name "a=b"`},
		{"empty cookie name", func(in *Input) { in.CookieName = "" }, `cookie name ""`},
		{"cookie max age zero", func(in *Input) { in.CookieMaxAge = 0 }, "cookie max age 0"},
		{"no parentRefs", func(in *Input) { in.ParentRefs = nil }, "at least one is required"},
		{"same gateway twice without section", func(in *Input) {
			in.ParentRefs = append(in.ParentRefs, ParentRef{Namespace: "gw", Name: "public"})
		}, "sectionName is required"},
		{"same listener twice", func(in *Input) { in.ParentRefs = append(in.ParentRefs, in.ParentRefs[0]) }, "listed more than once"},
		{"bad namespace", func(in *Input) { in.Namespace = "Shop" }, `namespace "Shop"`},
		{"empty app", func(in *Input) { in.App = "" }, `app "": must not be empty`},
		{"negative generation", func(in *Input) { in.Generation = -1 }, "generation -1"},
		{"path with ';'", func(in *Input) { in.Path = "/a;b" }, "must not contain ';'"},
		{"path with '//'", func(in *Input) { in.Path = "/a//b" }, `must not contain "//"`},
		{"path with space", func(in *Input) { in.Path = "/a b" }, "characters not allowed"},
		{"ip hostname", func(in *Input) { in.Hostnames = []string{"10.0.0.1"} }, "IP addresses"},
		{"upper-case hostname", func(in *Input) { in.Hostnames = []string{"Shop.example.com"} }, `hostname "Shop.example.com"`},
		{"hostname with '_' and upper case", func(in *Input) { in.Hostnames = []string{"Web_App.example.com"} },
			`hostname "Web_App.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters`},
		{"path with ';' in a segment", func(in *Input) { in.Path = "/shop;v=1/cart" }, `path "/shop;v=1/cart": must not contain ';' or ','`},
		{"path starting with '//'", func(in *Input) { in.Path = "//shop" }, `path "//shop": must not contain "//"`},
		{"duplicate hostname", func(in *Input) { in.Hostnames = []string{"a.example", "a.example"} }, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := benchInput(1)
			tt.mutate(&in)
			got, err := Render(in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidInput)
			assert.Contains(t, err.Error(), tt.want)
			assert.Nil(t, got)

			// Validate refuses what Render refuses, with the same message.
			verr := Validate(in)
			require.Error(t, verr)
			assert.ErrorIs(t, verr, ErrInvalidInput)
			assert.Equal(t, err.Error(), verr.Error())
		})
	}
}

// TestValidateAcceptsWhatRenderRenders: every golden input and the shard-count inputs pass.
func TestValidateAcceptsWhatRenderRenders(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	require.NoError(t, err)
	for _, path := range inputs {
		in := readInput(t, path)
		assert.NoError(t, Validate(in), path)
		_, err := Render(in)
		assert.NoError(t, err, path)
	}
	assert.NoError(t, Validate(benchInput(1000)))
}

func TestRenderReportsEveryProblem(t *testing.T) {
	in := benchInput(1)
	in.CookieName = ""
	in.ParentRefs = nil
	in.Pinned[0].Port = -1
	_, err := Render(in)
	require.Error(t, err)
	for _, want := range []string{"cookie name", "parentRefs", "port -1"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestPathPrefix(t *testing.T) {
	tests := []struct {
		app, label string
		hostnames  []string
		want       string
	}{
		{"myapp", "", nil, "/myapp"},
		{"myapp", "", []string{"myapp.example.com"}, "/"},
		{"myapp", "/api/leads", []string{"myapp.example.com"}, "/api/leads"},
		{"myapp", "api", nil, "/api"},
		{"myapp", "/api/", nil, "/api"},
		{"myapp", "/", nil, "/"},
		{"myapp", "/shop//", nil, "/shop"}, // trailing slashes are what PathPrefix ignores anyway
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, PathPrefix(tt.app, tt.label, tt.hostnames), "%+v", tt)
	}
}

func TestRouteName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		app   string
		shard int
		want  string
	}{
		{"myapp", 0, "myapp"},
		{"myapp", 3, "myapp--pins-3"},
		{"My.App_1", 0, "my-app-1--" + hashOf("My.App_1")},
		{"My.App_1", 2, "my-app-1--" + hashOf("My.App_1") + "-pins-2"},
		{long, 0, long},
		{long, 1, strings.Repeat("a", 63-len("--")-hashLen-len("-pins-1")) + "--" + hashOf(long) + "-pins-1"},
		{long, 1000, strings.Repeat("a", 63-len("--")-hashLen-len("-pins-1000")) + "--" + hashOf(long) + "-pins-1000"},
	}
	for _, tt := range tests {
		got := RouteName(tt.app, tt.shard)
		assert.Equal(t, tt.want, got)
		assert.Empty(t, validation.IsDNS1123Label(got), got)
	}
	// Apps that differ only in what a DNS label cannot hold keep distinct names.
	assert.NotEqual(t, RouteName("my.app", 0), RouteName("my_app", 0))
	assert.NotEqual(t, RouteName("MyApp", 0), RouteName("myapp", 0))
	assert.NotEqual(t, RouteName(long, 1), RouteName(strings.Repeat("a", 62)+"b", 1))
}

func hashOf(app string) string {
	sum := sha256.Sum256([]byte(app))
	return hex.EncodeToString(sum[:])[:hashLen]
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func readInput(t testing.TB, path string) Input {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var in Input
	require.NoError(t, yaml.UnmarshalStrict(raw, &in), path)
	return in
}

// EncodeGolden writes routes as a multi-document YAML stream, the way a reviewer (and kubectl)
// reads them: status and creationTimestamp, which Render never sets, are left out.
func EncodeGolden(t testing.TB, routes []gatewayv1.HTTPRoute) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range routes {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&routes[i])
		require.NoError(t, err)
		delete(obj, "status")
		if meta, ok := obj["metadata"].(map[string]any); ok {
			delete(meta, "creationTimestamp")
		}
		doc, err := yaml.Marshal(obj)
		require.NoError(t, err)
		buf.WriteString("---\n")
		buf.Write(doc)
	}
	return buf.Bytes()
}
