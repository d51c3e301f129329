package routes

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseParentRef(t *testing.T) {
	tests := []struct {
		in   string
		want ParentRef
		err  bool
	}{
		{in: "infra/gw", want: ParentRef{Namespace: "infra", Name: "gw"}},
		{in: "infra/gw:https", want: ParentRef{Namespace: "infra", Name: "gw", SectionName: "https"}},
		{in: "  infra/gw:web  ", want: ParentRef{Namespace: "infra", Name: "gw", SectionName: "web"}},
		{in: "gw", err: true},
		{in: "/gw", err: true},
		{in: "infra/", err: true},
		{in: "a/b/c", err: true},
		{in: "", err: true},
		{in: ":http", err: true},
		// Syntactically fine, but names the Gateway API would refuse.
		{in: "infra/Gw_1", err: true},
		{in: "Infra/gw", err: true},
		{in: "in_fra/gw", err: true},
		{in: strings.Repeat("n", 64) + "/gw", err: true}, // a namespace is at most 63
		{in: "infra/" + strings.Repeat("g", 254), err: true},
		{in: "infra/gw:HTTP", err: true},
		{in: "infra/gw:web_1", err: true},
		{in: "infra/gw:", err: true},
		{in: "infra/gw.edge", want: ParentRef{Namespace: "infra", Name: "gw.edge"}},
		{in: "infra/" + strings.Repeat("g", 253) + ":web.tls-1",
			want: ParentRef{Namespace: "infra", Name: strings.Repeat("g", 253), SectionName: "web.tls-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseParentRef(tc.in)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			back, err := ParseParentRef(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, back, "String round-trips")
		})
	}
}
