//go:build integration

package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/ptr"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestMaxVersionsOnTheRealStack: maxVersions 3 (Draining versions beside the Active one, as in
// ICC) and five deploys, then a sixth. The fifth activation expires v1 and the sixth v2, each in
// the flip that activates the new version: their routes go in the same write, their workflows
// end Expired with the reason, and their workloads are scaled to 0 as for any expiry. The grace
// period (60 s) is far longer than the test, so nothing here expires by traffic or max alive.
func TestMaxVersionsOnTheRealStack(t *testing.T) {
	s := newStack(t, map[string]string{"PLT_SKEW_HTTP_GRACE_PERIOD_MS": "60000"})
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	_, err := s.reg.PutPolicy(t.Context(), s.ref("v1").AppRef(), registry.Policy{MaxVersions: ptr.To[int64](3)}, alice)
	require.NoError(t, err)
	t.Cleanup(func() {
		for i := 1; i <= 6; i++ {
			_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref(fmt.Sprintf("v%d", i))), "", "test done")
		}
	})

	for i := 1; i <= 5; i++ {
		v := fmt.Sprintf("v%d", i)
		s.deploy(v)
		s.eventually(30*time.Second, v+" active", func() (bool, string) {
			st := s.state(v).State
			return st == registry.Active, string(st)
		})
		if i > 1 {
			prev := fmt.Sprintf("v%d", i-1)
			s.eventually(10*time.Second, prev+" draining", func() (bool, string) {
				st := s.state(prev).State
				return st == registry.Draining, string(st)
			})
		}
	}
	s.waitRouting(routing{Default: "myapp-v5", Pinned: []string{"myapp-v2", "myapp-v3", "myapp-v4"}})
	s.expiredByCap("v1", "v5")
	s.waitServed("v2", "v2")
	s.waitServed("v1", "v5") // v1's pin falls through to the Active version

	s.deploy("v6")
	s.waitRouting(routing{Default: "myapp-v6", Pinned: []string{"myapp-v3", "myapp-v4", "myapp-v5"}})
	s.expiredByCap("v2", "v6")
	for _, v := range []string{"v3", "v4", "v5"} {
		assert.Equal(t, registry.Draining, s.state(v).State, v)
		assert.Equal(t, int32(1), s.replicas(v), v)
	}
	s.history("v1", "expired-by-max-versions")
	s.history("v5", "max-versions-capped-another")
}

// expiredByCap checks that version was expired for maxVersions 3 by the activation of by: the
// registry says so in its audit, its workflow ended Expired with the reason, and its
// Deployment was scaled to 0.
func (s *stack) expiredByCap(version, by string) {
	s.t.Helper()
	// Within seconds: told by the activating workflow, not at the end of its grace period.
	ctx, cancel := context.WithTimeout(s.t.Context(), 20*time.Second)
	defer cancel()
	run := s.temporal.GetWorkflow(ctx, workflows.WorkflowID(s.ref(version)), "")
	var res workflows.LifecycleResult
	require.NoError(s.t, run.Get(ctx, &res), "%s's workflow ends", version)
	assert.Equal(s.t, registry.Expired, res.State)
	assert.Contains(s.t, res.Reason, "maxVersions exceeded by version "+by)

	trail, err := s.reg.Audit(s.t.Context(), s.ref(version))
	require.NoError(s.t, err)
	var expired *registry.AuditEntry
	for i := range trail {
		if trail[i].Event == registry.EventExpired {
			expired = &trail[i]
		}
	}
	require.NotNil(s.t, expired, "%s has an expired entry", version)
	assert.Equal(s.t, "maxVersions 3 exceeded by version "+by, expired.Reason)
	assert.Equal(s.t, registry.Draining, *expired.FromState)
	assert.Contains(s.t, auditEvents(s.t, s.reg, s.ref(version)), "scaled-to-zero")
	assert.Equal(s.t, int32(0), s.replicas(version), "%s scaled to 0", version)
}
