package skewproc

import (
	"net"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvironAddsSettingsAndAFreeListenAddress(t *testing.T) {
	t.Setenv("SKEWPROC_INHERITED", "yes")
	addr, env, err := Environ(map[string]string{"PLT_SKEW_ROLE": "worker"})
	require.NoError(t, err)
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.Contains(t, env, "SKEWPROC_INHERITED=yes", "our environment is inherited")
	assert.Contains(t, env, "PLT_SKEW_ROLE=worker")
	// Last, so it wins over an inherited PLT_SKEW_LISTEN_ADDRESS.
	assert.Equal(t, "PLT_SKEW_LISTEN_ADDRESS="+addr, env[len(env)-1])

	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the address is free")
	l.Close()
	_, env2, err := Environ(nil)
	require.NoError(t, err)
	assert.False(t, slices.Contains(env2, "PLT_SKEW_ROLE=worker"))
}
