package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/api"
	"github.com/skewguard/skewguard/internal/config"
)

// writeCert writes a fresh self-signed certificate for 127.0.0.1 and its key to certFile and
// keyFile, and returns the certificate's DER.
func writeCert(t *testing.T, certFile, keyFile string, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return der
}

// bumpMtime moves both files' modification time forward, as a rotation does (the test must not
// depend on the file system's timestamp granularity).
func bumpMtime(t *testing.T, files ...string) {
	t.Helper()
	later := time.Now().Add(time.Minute)
	for _, f := range files {
		require.NoError(t, os.Chtimes(f, later, later))
	}
}

func tlsFiles(t *testing.T) (string, string) {
	dir := t.TempDir()
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

func startTLS(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	tc, err := serverTLS(config.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return startServeHTTPS(t, api.OpsHandler(slog.New(slog.DiscardHandler), nil, false), tc)
}

// leafOf connects to addr and returns the certificate the server presents.
func leafOf(t *testing.T, addr string, cfg *tls.Config) (*tls.ConnectionState, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	return &cs, nil
}

func TestServeHTTPSWithCertificate(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	der := writeCert(t, certFile, keyFile, "one")
	addr := startTLS(t, certFile, keyFile)

	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1, resp.ProtoMajor, "HTTP/1.1 only: the agent's WebSocket upgrades on it")
	assert.NotNil(t, resp.TLS)

	_, err = leafOf(t, addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11})
	assert.Error(t, err, "TLS 1.1 must be refused")

	// Plain HTTP on the TLS port gets no answer from the handler (net/http answers 400).
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
	}
}

func TestServeHTTPSReloadsRotatedCertificate(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	first := writeCert(t, certFile, keyFile, "first")
	addr := startTLS(t, certFile, keyFile)
	any := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test compares the leaf itself

	cs, err := leafOf(t, addr, any)
	require.NoError(t, err)
	assert.Equal(t, first, cs.PeerCertificates[0].Raw)

	second := writeCert(t, certFile, keyFile, "second")
	bumpMtime(t, certFile, keyFile)
	cs, err = leafOf(t, addr, any)
	require.NoError(t, err)
	assert.Equal(t, second, cs.PeerCertificates[0].Raw, "a rotated certificate is served without a restart")

	// A rotation caught half-written keeps the previous certificate.
	require.NoError(t, os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o600))
	bumpMtime(t, certFile)
	cs, err = leafOf(t, addr, any)
	require.NoError(t, err)
	assert.Equal(t, second, cs.PeerCertificates[0].Raw)
}

func TestServerTLSOffWithoutCertificate(t *testing.T) {
	tc, err := serverTLS(config.Config{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Nil(t, tc)
}

// The container's health check talks HTTPS when the listener does, and requires the
// certificate of PLT_SKEW_TLS_CERT_FILE (or, asked to, none).
func TestHealthcheckOverTLS(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	writeCert(t, certFile, keyFile, "served")
	addr := startTLS(t, certFile, keyFile)
	t.Setenv("PLT_SKEW_LISTEN_ADDRESS", addr)
	t.Setenv("PLT_SKEW_TLS_CERT_FILE", certFile)
	t.Setenv("PLT_SKEW_TLS_KEY_FILE", keyFile)

	code, stdout, stderr := runCLI("healthcheck", "-path", "/healthz")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "https://"+addr+"/healthz: 200 OK")

	// Another certificate in the environment than the one served: not our listener.
	otherCert, otherKey := tlsFiles(t)
	writeCert(t, otherCert, otherKey, "other")
	t.Setenv("PLT_SKEW_TLS_CERT_FILE", otherCert)
	t.Setenv("PLT_SKEW_TLS_KEY_FILE", otherKey)
	code, _, stderr = runCLI("healthcheck", "-path", "/healthz")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "does not present the certificate of PLT_SKEW_TLS_CERT_FILE")

	code, _, stderr = runCLI("healthcheck", "-path", "/healthz", "-insecure-skip-verify")
	assert.Equal(t, 0, code, stderr)
}

func TestInsecureSettingsRefusedInCluster(t *testing.T) {
	saved := inCluster
	t.Cleanup(func() { inCluster = saved })
	inCluster = func() (bool, string) { return true, "KUBERNETES_SERVICE_HOST is set" }
	for _, name := range []string{"PLT_SKEW_INSECURE_SKIP_POD_AUTH", "PLT_SKEW_INSECURE_SKIP_API_AUTH"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "true")
			for _, cmd := range []string{"serve", "api"} {
				code, _, stderr := runCLI(cmd)
				assert.NotEqual(t, 0, code, cmd)
				assert.Contains(t, stderr, name+": refused when running in a Kubernetes cluster", cmd)
			}
		})
	}
}
