//go:build integration

package registry_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// TestAppGroups: the group (plt.dev/group) is recorded per version and kept by every later read,
// so an app that leaves its group keeps its earlier versions in it (their routes keep reading
// the group's cookie); GroupVersions finds a version's label in the group's apps of its own
// namespace only, a group of the same name in another namespace being another group; a group
// that is not a label value is refused.
func TestAppGroups(t *testing.T) {
	ctx := context.Background()
	s := registrytest.New(t)
	observeIn := func(ns, app, label, group string) registry.Version {
		t.Helper()
		v, _, err := s.ObserveVersion(ctx, registry.Observation{
			Ref:       registry.VersionRef{Namespace: ns, App: app, Label: label},
			Placement: registry.Placement{ServiceName: app + "-" + label, ServicePort: 80, Group: group},
		}, system)
		require.NoError(t, err)
		return v
	}
	activate := func(ns, app, label string) {
		t.Helper()
		_, err := s.Activate(ctx, registry.VersionRef{Namespace: ns, App: app, Label: label}, system, "ready")
		require.NoError(t, err)
	}
	for _, app := range []string{"front", "api"} {
		assert.Equal(t, "shop", observeIn("team-a", app, "1", "shop").Group)
		activate("team-a", app, "1")
	}
	observeIn("team-b", "front", "1", "shop") // the same group name, another namespace
	observeIn("team-a", "blog", "1", "")      // not in the group

	got, err := s.GroupVersions(ctx, "team-a", "shop", "1")
	require.NoError(t, err)
	var apps []string
	for _, v := range got {
		apps = append(apps, v.Namespace+"/"+v.App)
		assert.Equal(t, "shop", v.Group)
	}
	assert.Equal(t, []string{"team-a/api", "team-a/front"}, apps, "the namespace's members only")

	// front leaves the group with v2: v1 stays in it, in the snapshot the routes are rendered from.
	assert.Equal(t, "", observeIn("team-a", "front", "2", "").Group)
	activate("team-a", "front", "2")
	snap, err := s.Snapshot(ctx, registry.AppRef{Namespace: "team-a", Name: "front"})
	require.NoError(t, err)
	require.NotNil(t, snap.Active)
	assert.Equal(t, "", snap.Active.Group)
	require.Len(t, snap.Pinned, 1)
	assert.Equal(t, "shop", snap.Pinned[0].Group, "a version keeps the group it was deployed with")

	// A Pending version takes a group seen later (like its path), and is audited.
	observeIn("team-a", "api", "2", "")
	assert.Equal(t, "shop", observeIn("team-a", "api", "2", "shop").Group)

	_, _, err = s.ObserveVersion(ctx, registry.Observation{
		Ref:       registry.VersionRef{Namespace: "team-a", App: "api", Label: "3"},
		Placement: registry.Placement{ServiceName: "api-3", ServicePort: 80, Group: "not a label/value"},
	}, system)
	require.ErrorIs(t, err, registry.ErrInvalid)
}
