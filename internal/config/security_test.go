package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writePair writes a self-signed certificate and its key as PEM files into dir.
func writePair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := makePair(dir)
	require.NoError(t, err)
	return certFile, keyFile
}

func makePair(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skewguard"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

// pairedWith lists variables a set case needs beside its own (the TLS pair is both or neither).
var pairedWith = map[string]map[string]string{}

// TestMain adds the set cases of this file's variables (config_test.go's setCases): the TLS pair
// is a real one, written for the package's tests and removed afterwards.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skewguard-config-tls-")
	if err != nil {
		panic(err)
	}

	cert, key, err := makePair(dir)
	if err != nil {
		panic(err)
	}
	setCases = append(setCases,
		setCase{"PLT_SKEW_TLS_CERT_FILE", cert, func(c Config) any { return c.TLSCertFile }, cert},
		setCase{"PLT_SKEW_TLS_KEY_FILE", key, func(c Config) any { return c.TLSKeyFile }, key},
		setCase{"PLT_SKEW_AGENT_TOKEN_AUDIENCES", "skewguard", func(c Config) any { return c.AgentTokenAudiences }, []string{"skewguard"}},
	)
	pairedWith["PLT_SKEW_TLS_CERT_FILE"] = map[string]string{"PLT_SKEW_TLS_KEY_FILE": key}
	pairedWith["PLT_SKEW_TLS_KEY_FILE"] = map[string]string{"PLT_SKEW_TLS_CERT_FILE": cert}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type setCase = struct {
	name  string
	value string
	got   func(Config) any
	want  any
}

func TestTLSSettings(t *testing.T) {
	certFile, keyFile := writePair(t, t.TempDir())
	otherCert, _ := writePair(t, t.TempDir())

	cfg, err := load(t, map[string]string{"PLT_SKEW_TLS_CERT_FILE": certFile, "PLT_SKEW_TLS_KEY_FILE": keyFile})
	require.NoError(t, err)
	assert.True(t, cfg.TLSEnabled())

	cfg, err = load(t, nil)
	require.NoError(t, err)
	assert.False(t, cfg.TLSEnabled(), "plain HTTP unless given a certificate")

	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"cert without key": {map[string]string{"PLT_SKEW_TLS_CERT_FILE": certFile}, "PLT_SKEW_TLS_KEY_FILE: required"},
		"key without cert": {map[string]string{"PLT_SKEW_TLS_KEY_FILE": keyFile}, "PLT_SKEW_TLS_CERT_FILE: required"},
		"missing file": {map[string]string{"PLT_SKEW_TLS_CERT_FILE": certFile + ".nope", "PLT_SKEW_TLS_KEY_FILE": keyFile},
			"PLT_SKEW_TLS_CERT_FILE/PLT_SKEW_TLS_KEY_FILE"},
		"key of another certificate": {map[string]string{"PLT_SKEW_TLS_CERT_FILE": otherCert, "PLT_SKEW_TLS_KEY_FILE": keyFile},
			"private key does not match"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := load(t, tc.env)
			p := problems(t, err)
			assert.Contains(t, strings.Join(p, "\n"), tc.want)
		})
	}
}

func TestAgentTokenAudiences(t *testing.T) {
	cfg, err := load(t, nil)
	require.NoError(t, err)
	assert.Empty(t, cfg.AgentTokenAudiences, "default: the API server's own audience")

	cfg, err = load(t, map[string]string{"PLT_SKEW_AGENT_TOKEN_AUDIENCES": "skewguard,skewguard.example.com"})
	require.NoError(t, err)
	assert.Equal(t, []string{"skewguard", "skewguard.example.com"}, cfg.AgentTokenAudiences)

	_, err = load(t, map[string]string{"PLT_SKEW_AGENT_TOKEN_AUDIENCES": "skewguard,,x"})
	assert.Contains(t, strings.Join(problems(t, err), "\n"), "PLT_SKEW_AGENT_TOKEN_AUDIENCES")
}

func TestInCluster(t *testing.T) {
	none := filepath.Join(t.TempDir(), "token")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	in, _ := InCluster(env(nil), none)
	assert.False(t, in)

	in, why := InCluster(env(map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}), none)
	assert.True(t, in)
	assert.Contains(t, why, "KUBERNETES_SERVICE_HOST")

	require.NoError(t, os.WriteFile(none, []byte("t"), 0o600))
	in, why = InCluster(env(nil), none)
	assert.True(t, in)
	assert.Contains(t, why, none)
}

func TestRefuseInsecureInCluster(t *testing.T) {
	both := Config{InsecureSkipPodAuth: true, InsecureSkipAPIAuth: true}
	assert.NoError(t, both.RefuseInsecureInCluster(false, ""), "outside a cluster: allowed (with a warning)")
	assert.NoError(t, Config{}.RefuseInsecureInCluster(true, "KUBERNETES_SERVICE_HOST is set"))

	err := both.RefuseInsecureInCluster(true, "KUBERNETES_SERVICE_HOST is set")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "PLT_SKEW_INSECURE_SKIP_POD_AUTH: refused when running in a Kubernetes cluster")
	assert.Contains(t, err.Error(), "PLT_SKEW_INSECURE_SKIP_API_AUTH: refused")

	err = Config{InsecureSkipAPIAuth: true}.RefuseInsecureInCluster(true, "x")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SKIP_POD_AUTH")
}
