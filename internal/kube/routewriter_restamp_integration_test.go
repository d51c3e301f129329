//go:build integration

package kube

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestRestampAgainstAPIServer: the real API server applies the writer's metadata patch to a
// shard whose spec did not change, leaves its spec (metadata.generation) alone, and refuses
// the same patch once the route changed since it was read: a restamp is fenced as an update is.
func TestRestampAgainstAPIServer(t *testing.T) {
	c, ns := routeNamespace(t)
	ctx := context.Background()
	w := NewRouteWriter(c.Gateway)
	_, err := w.ApplyRoutes(ctx, ns, "myapp", 1, renderedIn(t, ns, 1, 12))
	require.NoError(t, err)
	before := liveRoutes(t, c, ns)
	want := renderedIn(t, ns, 2, 12) // only the Active version changes: the shards keep their spec
	res, err := w.ApplyRoutes(ctx, ns, "myapp", 2, want)
	require.NoError(t, err)
	assert.Equal(t, []string{"myapp"}, res.Updated)
	assert.Len(t, res.Restamped, len(want)-1)
	assertRoutesAre(t, c, ns, want)
	after := liveRoutes(t, c, ns)
	for _, name := range res.Restamped {
		assert.Equal(t, before[name].Generation, after[name].Generation, "%s: no spec change", name)
	}

	shard := after[res.Restamped[0]]
	client := c.Gateway.GatewayV1().HTTPRoutes(ns)
	_, err = client.Patch(ctx, shard.Name, types.MergePatchType, metadataPatch(&shard, &want[1]), metav1.PatchOptions{})
	require.NoError(t, err, "nothing to change, nothing refused")
	stale := before[shard.Name]
	_, err = client.Patch(ctx, shard.Name, types.MergePatchType, metadataPatch(&stale, &want[1]), metav1.PatchOptions{})
	assert.True(t, apierrors.IsConflict(err), "a patch carrying an old resourceVersion is refused: %v", err)
}
