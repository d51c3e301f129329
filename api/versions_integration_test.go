//go:build integration

package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// TestListVersionsPagesAndFiltersInPostgreSQL lists 25 versions of one app in every state
// through the API over the real registry: the order (Active first, then the newest recorded),
// the state filters, the pages and the totals are PostgreSQL's.
func TestListVersionsPagesAndFiltersInPostgreSQL(t *testing.T) {
	store := registrytest.New(t)
	ctx := t.Context()
	user := registry.Actor{Type: registry.ActorUser, ID: "test"}
	ref := func(i int) registry.VersionRef {
		return registry.VersionRef{Namespace: "shop", App: "web", Label: strconv.Itoa(i)}
	}
	for i := 1; i <= 25; i++ {
		_, _, err := store.ObserveVersion(ctx, registry.Observation{Ref: ref(i),
			Placement: registry.Placement{ServiceName: fmt.Sprintf("web-v%d", i), ServicePort: 80}}, user)
		require.NoError(t, err)
	}
	// 1-10 expired, 11-19 draining, 20 active, 21-22 staged, 23 failed, 24-25 pending.
	for i := 1; i <= 20; i++ {
		_, err := store.Activate(ctx, ref(i), user, "test")
		require.NoError(t, err)
	}
	for i := 1; i <= 10; i++ {
		_, err := store.Expire(ctx, ref(i), user, "test")
		require.NoError(t, err)
	}
	for _, i := range []int{21, 22} {
		_, err := store.Stage(ctx, ref(i), user, "test")
		require.NoError(t, err)
	}
	_, err := store.Fail(ctx, ref(23), user, "test")
	require.NoError(t, err)
	// Another app's versions never show.
	_, _, err = store.ObserveVersion(ctx, registry.Observation{Ref: registry.VersionRef{Namespace: "shop", App: "api", Label: "1"}}, user)
	require.NoError(t, err)

	h := newHarness(t, harnessOptions{registry: store})
	list := func(t *testing.T, query string) VersionList {
		t.Helper()
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions"+query, tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		return decode[VersionList](t, rec)
	}
	labelsOf := func(ids ...int) []string {
		out := make([]string, 0, len(ids))
		for _, i := range ids {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}
	span := func(from, to int) []int { // from down to to
		var out []int
		for i := from; i >= to; i-- {
			out = append(out, i)
		}
		return out
	}
	// Active first, then by recording, newest first.
	all := labelsOf(slices.Concat([]int{20}, span(25, 21), span(19, 1))...)

	t.Run("no parameters: every version, Active first, then the newest", func(t *testing.T) {
		got := list(t, "")
		assert.Equal(t, all, labels(got.Versions))
		assert.Equal(t, 25, got.Total)
		assert.Equal(t, registry.DefaultVersionsLimit, got.Limit)
		assert.Equal(t, registry.Active, got.Versions[0].State)
	})
	t.Run("pages of 10 add up to the whole list, each with the total", func(t *testing.T) {
		var pages []string
		for offset := 0; offset < 30; offset += 10 {
			got := list(t, fmt.Sprintf("?limit=10&offset=%d", offset))
			assert.Equal(t, 25, got.Total, "offset %d", offset)
			assert.Equal(t, offset, got.Offset)
			assert.LessOrEqual(t, len(got.Versions), 10)
			pages = append(pages, labels(got.Versions)...)
		}
		assert.Equal(t, all, pages)
	})
	tests := []struct {
		query  string
		labels []string
		total  int
	}{
		{"?state=draining", labelsOf(span(19, 11)...), 9},
		{"?state=active", []string{"20"}, 1},
		{"?state=expired", labelsOf(span(10, 1)...), 10},
		{"?state=pending,failed", []string{"25", "24", "23"}, 3},
		{"?state=staged&state=active", []string{"20", "22", "21"}, 3},
		{"?state=draining,staged&limit=3&offset=2", []string{"19", "18", "17"}, 11},
		{"?state=active,draining&limit=2", []string{"20", "19"}, 10},
		{"?state=expired&offset=10", []string{}, 10},
		{"?offset=25", []string{}, 25},
		{"?limit=1", []string{"20"}, 25},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			got := list(t, tc.query)
			assert.Equal(t, tc.labels, labels(got.Versions))
			assert.Equal(t, tc.total, got.Total)
		})
	}
	t.Run("an unknown app has none", func(t *testing.T) {
		rec := h.do(t, "GET", "/api/v1/apps/shop/nope/versions?state=active", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		assert.JSONEq(t, `{"app":{"namespace":"shop","name":"nope"},"versions":[],"total":0,"limit":100,"offset":0}`, rec.Body.String())
	})
	t.Run("bad input never reaches the database", func(t *testing.T) {
		for query, code := range map[string]string{"?state=gone": CodeInvalidState, "?limit=0": CodeInvalidPaging, "?offset=-3": CodeInvalidPaging} {
			rec := h.do(t, "GET", "/api/v1/apps/shop/web/versions"+query, tokenViewer, "")
			require.Equal(t, http.StatusBadRequest, rec.Code, query)
			assert.Equal(t, code, errorCode(t, rec), query)
		}
	})
	t.Run("the registry refuses bad options itself", func(t *testing.T) {
		for _, o := range []registry.ListVersionsOptions{{States: []registry.State{"gone"}}, {Limit: -1},
			{Limit: registry.MaxVersionsLimit + 1}, {Offset: -1}} {
			_, err := store.ListVersionsPage(ctx, registry.AppRef{Namespace: "shop", Name: "web"}, o)
			assert.ErrorIs(t, err, registry.ErrInvalid, "%+v", o)
		}
	})
}
