//go:build integration

package deploytest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

var apiDNSNames = []string{"skewguard", "skewguard.skewguard-system", "skewguard.skewguard-system.svc",
	"skewguard.skewguard-system.svc.cluster.local"}

// The chart's default is TLS on: with neither a Secret nor an issuer, helm generates a
// self-signed certificate for the Service's names into <full name>-tls, a pair the binary loads.
func TestChartTLSDefaultIsSelfSigned(t *testing.T) {
	m := render(t, "skewguard", "skewguard-system")
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", "skewguard"))
	require.Equal(t, "skewguard-tls", checkTLS(t, m, cm.Data))
	require.Empty(t, m.ofKind("Certificate"))

	secret := as[corev1.Secret](t, m.get(t, "Secret", "skewguard-tls"))
	require.Equal(t, corev1.SecretTypeTLS, secret.Type)
	data := map[string][]byte{}
	for k, v := range secret.Data {
		data[k] = v
	}
	for k, v := range secret.StringData {
		data[k] = []byte(v)
	}
	pair, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"])
	require.NoError(t, err, "the generated pair must load as the binary loads it")
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	assert.ElementsMatch(t, apiDNSNames, leaf.DNSNames)
	assert.Equal(t, data["tls.crt"], data["ca.crt"], "agents trust the self-signed certificate through ca.crt")

	// An agent trusting ca.crt verifies the Service's name.
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(data["ca.crt"]))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "skewguard.skewguard-system.svc"})
	assert.NoError(t, err)
}

func TestChartTLSFromAnExistingSecret(t *testing.T) {
	m := render(t, "skewguard", "skewguard-system", "--set", "tls.secretName=my-cert")
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", "skewguard"))
	require.Equal(t, "my-cert", checkTLS(t, m, cm.Data))
	require.Empty(t, m.ofKind("Secret"), "the user's Secret is used, none is generated")
	require.Empty(t, m.ofKind("Certificate"))
}

func TestChartTLSFromCertManager(t *testing.T) {
	m := render(t, "skewguard", "skewguard-system",
		"--set", "tls.certManager.issuerRef.name=cluster-ca", "--set", "tls.certManager.issuerRef.kind=ClusterIssuer")
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", "skewguard"))
	require.Equal(t, "skewguard-tls", checkTLS(t, m, cm.Data))
	require.Empty(t, m.ofKind("Secret"), "cert-manager writes the Secret")

	cert := m.get(t, "Certificate", "skewguard")
	require.Equal(t, "cert-manager.io/v1", cert.GetAPIVersion())
	spec := cert.Object["spec"].(map[string]any)
	assert.Equal(t, "skewguard-tls", spec["secretName"])
	assert.ElementsMatch(t, apiDNSNames, spec["dnsNames"])
	assert.Equal(t, map[string]any{"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}, spec["issuerRef"])
	assert.Equal(t, "Always", spec["privateKey"].(map[string]any)["rotationPolicy"])
}

func TestChartTLSOff(t *testing.T) {
	m := render(t, "skewguard", "skewguard-system", "--set", "tls.enabled=false")
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", "skewguard"))
	require.Empty(t, checkTLS(t, m, cm.Data))
	require.NotContains(t, cm.Data, "PLT_SKEW_TLS_CERT_FILE")
	require.Empty(t, m.ofKind("Secret"))
}

func TestChartTLSRejectsTwoSources(t *testing.T) {
	_, err := helmTemplate(t, "skewguard", "skewguard-system",
		"--set", "tls.secretName=my-cert", "--set", "tls.certManager.issuerRef.name=ca")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "set only one of tls.secretName")
}

func TestChartAgentTokenAudiences(t *testing.T) {
	env := render(t, "skewguard", "skewguard-system").get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)
	assert.NotContains(t, env, "PLT_SKEW_AGENT_TOKEN_AUDIENCES", "default: the API server's audience")

	env = render(t, "skewguard", "skewguard-system", "--set", "agent.tokenAudiences={skewguard,skewguard.example.com}").
		get(t, "ConfigMap", "skewguard").Object["data"].(map[string]any)
	assert.Equal(t, "skewguard,skewguard.example.com", env["PLT_SKEW_AGENT_TOKEN_AUDIENCES"])

	_, err := helmTemplate(t, "skewguard", "skewguard-system", "--set", "agent.tokenAudiences[0]=has space")
	require.Error(t, err)
}
