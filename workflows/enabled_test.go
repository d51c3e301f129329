package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/registry"
)

// Switching skew protection off while v1 drains (with traffic, far from its expiry): on the
// policy change, the Active v2's lifecycle applies the switch, which expires v1 with the plain
// routes, and tells v1's workflow, which retires it at once. Switching it off again expires and
// retires nothing more.
func TestSwitchOffRetiresTheDrainingVersionAtOnce(t *testing.T) {
	env, w := newEnv(t, defaults)
	w.traffic = script("traffic")
	alice := registry.Actor{Type: registry.ActorUser, Name: "alice"}
	off := drained.Sub(t0) + 10*time.Minute
	switchOff := func() {
		w.mu.Lock()
		w.policy.ProtectionOff = true
		w.mu.Unlock()
		for _, l := range []string{"v1", "v2"} {
			env.SignalWorkflowByID(WorkflowID(ref(l)), SignalPolicyChanged, ActionRequest{Actor: alice, Reason: "policy changed"})
		}
	}
	at(env, off, switchOff)
	at(env, off+time.Hour, switchOff)
	runFleet(t, env, off+2*time.Hour, deploy{"v1", 0}, deploy{"v2", time.Hour})

	v1 := w.version("v1")
	require.Equal(t, registry.Expired, v1.State)
	assert.Equal(t, t0.Add(off), *v1.ExpiredAt, "expired by the switch, not by traffic or max alive")
	retired := w.retiredOf("v1")
	require.Len(t, retired, 1, "retired once")
	assert.Equal(t, t0.Add(off), retired[0].At, "retired at once")
	assert.Equal(t, registry.Active, w.version("v2").State)
	last := w.lastSync()
	assert.Equal(t, "v2", last.Active)
	assert.Empty(t, last.Pinned)
	assert.Equal(t, 2, w.attempts["ApplySwitch"], "the Active lifecycle applied the switch at each policy change")
}
