package claims

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const doc = `
allow:
  - namespace: shop
    hosts: [shop.example.com, "*.shop.example.com"]
    paths: [/]
  - namespace: blog
    apps: [web]
    hosts: [blog.example.com]
    paths: [/blog, /static/]
  - namespace: blog
    apps: [admin]
    hosts: ["*"]
    paths: [/admin]
  - namespace: mixed
    hosts: [a.example.com]
    paths: [/a]
  - namespace: mixed
    hosts: [b.example.com]
    paths: [/b]
`

func TestCheckMatches(t *testing.T) {
	p, err := Parse([]byte(doc))
	require.NoError(t, err)
	tests := []struct {
		ns, app, host, path string
		reason              string // "" = allowed
	}{
		{"shop", "web", "shop.example.com", "/", ""},
		{"shop", "any", "SHOP.example.com", "/x/y", ""},                 // any app of the namespace; hosts compare lowercased
		{"shop", "web", "a.shop.example.com", "/", ""},                  // wildcard: one label
		{"shop", "web", "a.b.shop.example.com", "/", ""},                // wildcard: several labels (Gateway API)
		{"shop", "web", "*.x.shop.example.com", "/", ""},                // a wildcard claim inside the allowed one
		{"shop", "web", "evilshop.example.com", "/", ReasonHost},        // not a label boundary
		{"shop", "web", "example.com", "/", ReasonHost},                 // the wildcard needs a label in front
		{"shop", "web", "", "/", ReasonHost},                            // no hostname = every host: needs "*"
		{"shop", "web", "blog.example.com", "/", ReasonHost},            // another team's host
		{"team-b", "web", "shop.example.com", "/", ReasonNamespace},     // a namespace without an entry
		{"blog", "web", "blog.example.com", "/blog", ""},                // exact prefix
		{"blog", "web", "blog.example.com", "/blog/", ""},               // trailing slash
		{"blog", "web", "blog.example.com", "/blog/a/b", ""},            // below it
		{"blog", "web", "blog.example.com", "/static", ""},              // "/static/" allowed as "/static"
		{"blog", "web", "blog.example.com", "/blogging", ReasonPath},    // segment-aware
		{"blog", "web", "blog.example.com", "/", ReasonPath},            // wider than allowed
		{"blog", "web", "", "/admin", ReasonHost},                       // web's entry has no "*"
		{"blog", "admin", "", "/admin", ""},                             // "*" allows no hostname
		{"blog", "admin", "anything.example.org", "/admin/x", ""},       // and any hostname
		{"blog", "admin", "blog.example.com", "/blog", ReasonPath},      // per-app: admin may not take web's path
		{"blog", "other", "blog.example.com", "/blog", ReasonNamespace}, // no entry for this app
		{"mixed", "m", "a.example.com", "/a", ""},
		{"mixed", "m", "a.example.com", "/b", ReasonPath}, // host and path come from the same entry
		{"mixed", "m", "b.example.com", "/b/c", ""},
	}
	for _, tt := range tests {
		err := p.Check(tt.ns, tt.app, tt.host, tt.path, "ConfigMap sg/claims")
		if tt.reason == "" {
			assert.NoError(t, err, "%+v", tt)
			continue
		}
		var na *NotAllowedError
		if assert.ErrorAs(t, err, &na, "%+v", tt) {
			assert.Equal(t, tt.reason, na.Reason, "%+v: %v", tt, err)
		}
	}
}

func TestEveryPathWithSlash(t *testing.T) {
	p, err := Parse([]byte("allow:\n- namespace: a\n  hosts: ['*']\n  paths: ['/']\n"))
	require.NoError(t, err)
	for _, path := range []string{"/", "/x", "/x/y", ""} {
		assert.NoError(t, p.Check("a", "web", "", path, "s"), path)
	}
}

func TestRefusalNamesEverything(t *testing.T) {
	p, err := Parse([]byte(doc))
	require.NoError(t, err)
	err = p.Check("team-b", "web", "shop.example.com", "/cart", "ConfigMap skewguard-system/skewguard-claims (key claims.yaml)")
	require.Error(t, err)
	for _, want := range []string{`"team-b"`, `"web"`, `"shop.example.com"`, `"/cart"`, "ConfigMap skewguard-system/skewguard-claims"} {
		assert.Contains(t, err.Error(), want)
	}
	err = p.Check("shop", "web", "", "/", "ConfigMap x/y")
	assert.Contains(t, err.Error(), "every host (no hostname)")
	assert.Contains(t, err.Error(), `hosts: ["*"]`)
}

func TestEmptyAllowsNothing(t *testing.T) {
	for _, data := range []string{"", "  \n", "allow: []\n"} {
		p, err := Parse([]byte(data))
		require.NoError(t, err, "%q", data)
		var na *NotAllowedError
		require.ErrorAs(t, p.Check("shop", "web", "shop.example.com", "/", "s"), &na)
		assert.Equal(t, ReasonNamespace, na.Reason)
	}
	var zero Policy
	assert.Error(t, zero.Check("shop", "web", "x.example.com", "/", "s"))
}

func TestParseErrors(t *testing.T) {
	tests := map[string]string{
		"not yaml":           "allow: [",
		"unknown key":        "allow:\n- namespace: a\n  host: [x.example.com]\n  paths: [/]\n",
		"bad namespace":      "allow:\n- namespace: A_B\n  hosts: ['*']\n  paths: [/]\n",
		"no namespace":       "allow:\n- hosts: ['*']\n  paths: [/]\n",
		"no hosts":           "allow:\n- namespace: a\n  paths: [/]\n",
		"no paths":           "allow:\n- namespace: a\n  hosts: ['*']\n",
		"relative path":      "allow:\n- namespace: a\n  hosts: ['*']\n  paths: [shop]\n",
		"wildcard in middle": "allow:\n- namespace: a\n  hosts: ['a.*.example.com']\n  paths: [/]\n",
		"bad host":           "allow:\n- namespace: a\n  hosts: ['exa mple.com']\n  paths: [/]\n",
		"top-level list":     "- namespace: a\n  hosts: ['*']\n  paths: [/]\n",
	}
	for name, data := range tests {
		_, err := Parse([]byte(data))
		assert.Error(t, err, name)
	}
	_, err := Parse([]byte("allow:\n- namespace: a\n  paths: [x]\n- namespace: B\n  hosts: ['*']\n  paths: [/]\n"))
	require.Error(t, err)
	for _, want := range []string{"allow[0]: hosts is empty", `allow[0]: path "x"`, `allow[1]: namespace "B"`} {
		assert.Contains(t, err.Error(), want, "every problem is reported at once")
	}
}

func TestAllowlistFailsClosed(t *testing.T) {
	var none *Allowlist
	before := counterValue(Refusals.WithLabelValues(ReasonUnconfigured))
	var na *NotAllowedError
	require.ErrorAs(t, none.Check("shop", "web", "shop.example.com", "/"), &na)
	assert.Equal(t, ReasonUnconfigured, na.Reason)
	assert.Contains(t, na.Error(), "PLT_SKEW_CLAIMS_CONFIGMAP")
	require.ErrorAs(t, (&Allowlist{}).Check("shop", "web", "shop.example.com", "/"), &na, "the zero value refuses too")
	assert.Equal(t, before+2, counterValue(Refusals.WithLabelValues(ReasonUnconfigured)), "refusals are counted")

	// Configured, read, but nothing valid in it yet.
	unloaded := &Allowlist{source: "ConfigMap sg/claims (key claims.yaml)", synced: func() bool { return true }}
	require.ErrorAs(t, unloaded.Check("shop", "web", "shop.example.com", "/"), &na)
	assert.Equal(t, ReasonUnavailable, na.Reason)

	assert.NoError(t, AllowAll().Check("anyone", "any", "", "/"))
}

func TestNotSyncedIsNotARefusal(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 10s")
	}
	a := &Allowlist{source: "ConfigMap sg/claims", synced: func() bool { return false }}
	err := a.Check("shop", "web", "x.example.com", "/")
	assert.ErrorIs(t, err, ErrNotSynced)
	var na *NotAllowedError
	assert.False(t, errors.As(err, &na))
}

func TestParseRef(t *testing.T) {
	ns, name, err := ParseRef("skewguard-system/skewguard-claims")
	require.NoError(t, err)
	assert.Equal(t, "skewguard-system", ns)
	assert.Equal(t, "skewguard-claims", name)
	for _, bad := range []string{"claims", "/claims", "ns/", "NS/claims", "ns/Claims", "a/b/c"} {
		_, _, err := ParseRef(bad)
		assert.Error(t, err, bad)
	}
}

// counterValue reads a counter without prometheus/testutil, whose dependencies go.mod lacks.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
