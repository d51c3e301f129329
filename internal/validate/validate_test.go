package validate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TestKubernetesRules: each name is held to apimachinery's rule, and the reason is its messages
// joined, nothing added: the renderer's and the configuration's messages quote it as it is.
func TestKubernetesRules(t *testing.T) {
	join := func(msgs []string) string { return strings.Join(msgs, "; ") }
	tests := []struct {
		name  string
		check func(string) error
		rule  func(string) []string
		ok    []string
		bad   []string
	}{
		{"DNSLabel", DNSLabel, validation.IsDNS1123Label,
			[]string{"shop", "a", "1-2", strings.Repeat("n", 63)},
			[]string{"", "Shop", "-a", "a-", "a.b", "a_b", strings.Repeat("n", 64)}},
		{"DNSSubdomain", DNSSubdomain, validation.IsDNS1123Subdomain,
			[]string{"gw", "gw.edge", "web.tls-1", strings.Repeat("g", 253)},
			[]string{"", "Gw", "a..b", "a.-b", ".a", "web_1", strings.Repeat("g", 254)}},
		{"ServiceName", ServiceName, validation.IsDNS1035Label,
			[]string{"web", "web-v1", "a1"},
			[]string{"", "1web", "Web", "web.v1", strings.Repeat("w", 64)}},
		{"LabelValue", LabelValue, validation.IsValidLabelValue,
			[]string{"web", "A.b_C-9", "1", strings.Repeat("v", 63)},
			[]string{"-v", "v-", "v/1", "v 1", "é", strings.Repeat("v", 64)}},
	}
	for _, tc := range tests {
		for _, s := range tc.ok {
			assert.NoError(t, tc.check(s), "%s(%q)", tc.name, s)
		}
		for _, s := range tc.bad {
			if err := tc.check(s); assert.Error(t, err, "%s(%q)", tc.name, s) && len(tc.rule(s)) > 0 {
				assert.Equal(t, join(tc.rule(s)), err.Error(), "%s(%q)", tc.name, s)
			}
		}
	}
	// apimachinery accepts the empty label value; a version or an app name is never empty.
	assert.EqualError(t, LabelValue(""), "must not be empty")
}

func TestHostname(t *testing.T) {
	for _, h := range []string{"example.com", "*.example.com", "a.b.c", "localhost"} {
		assert.NoError(t, Hostname(h), h)
	}
	assert.EqualError(t, Hostname("10.0.0.1"), "IP addresses are not allowed")
	assert.EqualError(t, Hostname("::1"), "IP addresses are not allowed")
	for _, h := range []string{"", "*", "*.", "a.*.com", "**.example.com", "Example.com", "ex_ample.com", "example.com."} {
		assert.Error(t, Hostname(h), h)
	}
}

func TestPathPrefix(t *testing.T) {
	for _, p := range []string{"/", "/shop", "/a/b/", "/%20x", "/a.b/c~d", "/..a", "/a:b@c", strings.Repeat("/a", 512)} {
		assert.NoError(t, PathPrefix(p), p)
	}
	for p, want := range map[string]string{
		"/" + strings.Repeat("a", 1024): "longer than 1024 characters",
		"":                              "must start with '/'",
		"shop":                          "must start with '/'",
		"/a b":                          "contains characters not allowed in a URL path",
		"/a%2":                          "contains characters not allowed in a URL path",
		"/a;b":                          "must not contain ';' or ',' (it becomes the cookie's Path)",
		"/a,b":                          "must not contain ';' or ',' (it becomes the cookie's Path)",
		"/a//b":                         `must not contain "//"`,
		"/a/./b":                        `must not contain "/./"`,
		"/a/../b":                       `must not contain "/../"`,
		"/a%2fb":                        `must not contain "%2f"`,
		"/a%2Fb":                        `must not contain "%2F"`,
		"/a/..":                         "must not end with '/.' or '/..'",
		"/a/.":                          "must not end with '/.' or '/..'",
	} {
		assert.EqualError(t, PathPrefix(p), want, "%q", p)
	}
}

func TestCookieName(t *testing.T) {
	for name, want := range map[string]bool{
		"__plt_dpl": true, "sg.version": true, "a+b": true, "!#$%&'*+-.^_`|~": true,
		"": false, "a b": false, "a=b": false, "a;b": false, "a,b": false, `a"b`: false, "é": false, "a\tb": false,
	} {
		assert.Equal(t, want, CookieName(name), "%q", name)
	}
}
