package registry

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// enabled is a switch: on, off or inherited (on); every value is valid, and only false is off.
func TestPolicyEnabled(t *testing.T) {
	for _, tc := range []struct {
		enabled *bool
		off     bool
	}{{nil, false}, {ptr(true), false}, {ptr(false), true}} {
		p := Policy{Enabled: tc.enabled, MaxVersions: ptr[int64](3)}
		assert.NoError(t, p.Validate())
		assert.Equal(t, tc.off, p.ProtectionOff())
	}
}
