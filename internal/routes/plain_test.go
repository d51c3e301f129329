package routes

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// With skew protection off for the app (Plain), the routes are one route holding one rule:
// everything under the prefix goes to the Active version, no Set-Cookie, no carrier or pin rule,
// whatever Pinned holds; with a rewrite, the rule keeps it. Without Plain the same input pins.
func TestRenderPlain(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		in := readInput(t, "testdata/active-and-draining.in.yaml")
		in.RewritePrefix = rewrite
		in.Pinned = append(in.Pinned, Backend{Version: "3", ServiceName: "myapp-v3", Port: 80, Staged: true})

		pinned, err := Render(in)
		require.NoError(t, err)
		require.True(t, hasSetCookie(pinned), "the input pins when not plain")

		in.Plain = true
		require.NoError(t, Validate(in))
		got, err := Render(in)
		require.NoError(t, err)
		require.Len(t, got, 1, "one route")
		r := got[0]
		assert.Equal(t, RouteName(in.App, 0), r.Name)
		assert.Equal(t, Labels(in.App), r.Labels)
		assert.Equal(t, "8", r.Annotations[GenerationAnnotation])
		assert.Equal(t, pinned[0].Spec.ParentRefs, r.Spec.ParentRefs)
		require.Len(t, r.Spec.Rules, 1, "the default rule only")
		rule := r.Spec.Rules[0]
		require.Len(t, rule.Matches, 1)
		assert.Equal(t, "/myapp", *rule.Matches[0].Path.Value)
		assert.Empty(t, rule.Matches[0].Headers, "no cookie or header carrier")
		assert.Empty(t, rule.Matches[0].QueryParams, "no query carrier")
		require.Len(t, rule.BackendRefs, 1)
		assert.Equal(t, gatewayv1.ObjectName("myapp-v2"), rule.BackendRefs[0].Name)
		assert.False(t, hasSetCookie(got), "no Set-Cookie")
		if rewrite {
			require.Len(t, rule.Filters, 1)
			assert.Equal(t, gatewayv1.HTTPRouteFilterURLRewrite, rule.Filters[0].Type)
		} else {
			assert.Empty(t, rule.Filters)
		}
	}
}

// Plain with no Active version renders nothing; a pinned entry is not even validated (it is not
// rendered).
func TestRenderPlainWithoutActive(t *testing.T) {
	in := readInput(t, "testdata/no-active.in.yaml")
	in.Plain = true
	got, err := Render(in)
	require.NoError(t, err)
	assert.Empty(t, got)

	in = readInput(t, "testdata/active-and-draining.in.yaml")
	in.Pinned[0].Port = 0 // unrenderable as a pin
	_, err = Render(in)
	require.ErrorIs(t, err, ErrInvalidInput)
	in.Plain = true
	_, err = Render(in)
	require.NoError(t, err)
}

func hasSetCookie(routes []gatewayv1.HTTPRoute) bool {
	for _, r := range routes {
		for _, rule := range r.Spec.Rules {
			for _, f := range rule.Filters {
				if f.ResponseHeaderModifier == nil {
					continue
				}
				for _, h := range append(f.ResponseHeaderModifier.Add, f.ResponseHeaderModifier.Set...) {
					if h.Name == "Set-Cookie" {
						return true
					}
				}
			}
		}
	}
	return false
}
