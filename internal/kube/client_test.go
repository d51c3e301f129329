package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const clientTestKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:16443
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: secret-token
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`

func TestNewClientsFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(clientTestKubeconfig), 0o600))

	// A KUBECONFIG-style list: missing entries are skipped, as kubectl does.
	c, err := NewClients(filepath.Join(dir, "missing") + string(os.PathListSeparator) + path)
	require.NoError(t, err)
	require.NotNil(t, c.Kube)
	require.NotNil(t, c.Gateway)
	assert.Equal(t, "https://127.0.0.1:16443", c.Config.Host)
	assert.Equal(t, "secret-token", c.Config.BearerToken)
	assert.Equal(t, float32(clientQPS), c.Config.QPS)
	assert.Equal(t, clientBurst, c.Config.Burst)
	assert.True(t, strings.HasPrefix(c.Config.UserAgent, "skewguard/"), c.Config.UserAgent)
}

func TestNewClientsErrors(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := NewClients("")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in-cluster")

	_, err = NewClients(filepath.Join(t.TempDir(), "nope"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kubeconfig")
}
