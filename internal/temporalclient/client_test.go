package temporalclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skewguard/skewguard/internal/config"
)

// pki is a throwaway CA with a server certificate for temporal.test and a client certificate.
type pki struct {
	dir                          string
	ca                           *x509.CertPool
	caFile, certFile, keyFile    string
	server                       tls.Certificate
	caCert                       *x509.Certificate
	caKey                        *ecdsa.PrivateKey
	serverName, clientCommonName string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serverName: "temporal.test", clientCommonName: "skewguard"}
	var caDER []byte
	p.caCert, p.caKey, caDER = p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	p.ca = x509.NewCertPool()
	p.ca.AddCert(p.caCert)
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", caDER)

	_, sk, sDER := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: p.serverName}, DNSNames: []string{p.serverName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, p.caCert, p.caKey)
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sk}
	p.certFile, p.keyFile = p.client(t, p.clientCommonName)
	return p
}

// client issues a client certificate and writes it and its key.
func (p *pki) client(t *testing.T, cn string) (certFile, keyFile string) {
	_, ck, cDER := p.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.caCert, p.caKey)
	keyDER, err := x509.MarshalECPrivateKey(ck)
	require.NoError(t, err)
	return p.write(t, "client.crt", "CERTIFICATE", cDER), p.write(t, "client.key", "EC PRIVATE KEY", keyDER)
}

func (p *pki) issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key, der
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// seen is what the fake frontend saw of a call.
type seen struct {
	mu            sync.Mutex
	clientCN      string
	authorization []string
	calls         int
}

// fakeFrontend is a gRPC server over TLS that requires a client certificate from the CA and
// refuses every call after recording who made it.
func fakeFrontend(t *testing.T, p *pki) (string, *seen) {
	t.Helper()
	s := &seen{}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.ca,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls++
		if pr, ok := peer.FromContext(stream.Context()); ok {
			if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				s.clientCN = ti.State.PeerCertificates[0].Subject.CommonName
			}
		}
		md, _ := metadata.FromIncomingContext(stream.Context())
		s.authorization = md.Get("authorization")
		return status.Error(codes.PermissionDenied, "fake frontend")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), s
}

// dial connects with the options of cfg; the fake frontend refuses the first call, which is
// all the test needs.
func dial(t *testing.T, cfg config.Config) {
	t.Helper()
	opts, err := Options(cfg, nil)
	require.NoError(t, err)
	opts.ConnectionOptions.GetSystemInfoTimeout = 5 * time.Second
	c, err := client.Dial(opts)
	if err == nil {
		c.Close()
	}
}

// TestMutualTLSAndAPIKey: against a frontend that requires a client certificate of its CA,
// the client verifies the server with the configured CA and server name, presents its
// certificate, and sends the API key read from its file; a rotated key file is re-read.
func TestMutualTLSAndAPIKey(t *testing.T) {
	p := newPKI(t)
	addr, s := fakeFrontend(t, p)
	keyFile := filepath.Join(p.dir, "api-key")
	require.NoError(t, os.WriteFile(keyFile, []byte("first-key\n"), 0o600))
	cfg := config.Config{TemporalAddress: addr, TemporalNamespace: "skew", TemporalTLSCAFile: p.caFile,
		TemporalTLSServerName: p.serverName, TemporalTLSCertFile: p.certFile, TemporalTLSKeyFile: p.keyFile,
		TemporalAPIKeyFile: keyFile}

	opts, err := Options(cfg, nil)
	require.NoError(t, err)
	require.NotNil(t, opts.Credentials)
	dial(t, cfg)
	s.mu.Lock()
	assert.Positive(t, s.calls, "the client reached the frontend over mTLS")
	assert.Equal(t, "skewguard", s.clientCN, "the client presented its certificate")
	assert.Equal(t, []string{"Bearer first-key"}, s.authorization)
	s.mu.Unlock()

	// Rotation: a new key (another size, so the change is seen whatever the clock's grain).
	require.NoError(t, os.WriteFile(keyFile, []byte("second-key-longer\n"), 0o600))
	dial(t, cfg)
	s.mu.Lock()
	assert.Equal(t, []string{"Bearer second-key-longer"}, s.authorization)
	s.mu.Unlock()
}

// TestWithoutClientCertificateRefused: the same frontend refuses a client without one, so the
// test above does prove that the certificate was presented.
func TestWithoutClientCertificateRefused(t *testing.T) {
	p := newPKI(t)
	addr, s := fakeFrontend(t, p)
	dial(t, config.Config{TemporalAddress: addr, TemporalNamespace: "skew", TemporalTLSCAFile: p.caFile,
		TemporalTLSServerName: p.serverName, TemporalAPIKey: "k"})
	s.mu.Lock()
	defer s.mu.Unlock()
	assert.Zero(t, s.calls)
}

func TestOptions(t *testing.T) {
	p := newPKI(t)
	t.Run("plain", func(t *testing.T) {
		opts, err := Options(config.Config{TemporalAddress: "t:7233", TemporalNamespace: "skew"}, nil)
		require.NoError(t, err)
		assert.Equal(t, "t:7233", opts.HostPort)
		assert.Equal(t, "skew", opts.Namespace)
		assert.Nil(t, opts.ConnectionOptions.TLS)
		assert.Nil(t, opts.Credentials)
	})
	t.Run("TLS with system roots", func(t *testing.T) {
		opts, err := Options(config.Config{TemporalTLS: true}, nil)
		require.NoError(t, err)
		require.NotNil(t, opts.ConnectionOptions.TLS)
		assert.Nil(t, opts.ConnectionOptions.TLS.RootCAs)
		assert.Nil(t, opts.ConnectionOptions.TLS.GetClientCertificate)
		assert.Equal(t, uint16(tls.VersionTLS12), opts.ConnectionOptions.TLS.MinVersion)
	})
	t.Run("CA, server name, client certificate", func(t *testing.T) {
		opts, err := Options(config.Config{TemporalTLSCAFile: p.caFile, TemporalTLSServerName: "temporal.test",
			TemporalTLSCertFile: p.certFile, TemporalTLSKeyFile: p.keyFile}, nil)
		require.NoError(t, err)
		tc := opts.ConnectionOptions.TLS
		require.NotNil(t, tc)
		assert.Equal(t, "temporal.test", tc.ServerName)
		assert.True(t, tc.RootCAs.Equal(p.ca))
		cert, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		require.NoError(t, err)
		assert.Equal(t, "skewguard", leaf.Subject.CommonName)
	})
	t.Run("API key turns TLS on", func(t *testing.T) {
		opts, err := Options(config.Config{TemporalAPIKey: "k"}, nil)
		require.NoError(t, err)
		assert.NotNil(t, opts.ConnectionOptions.TLS)
		assert.NotNil(t, opts.Credentials)
	})
	bad := filepath.Join(p.dir, "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("not a certificate"), 0o600))
	empty := filepath.Join(p.dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte(" \n"), 0o600))
	for name, cfg := range map[string]config.Config{
		"CA without PEM":       {TemporalTLSCAFile: bad},
		"certificate mismatch": {TemporalTLSCertFile: p.caFile, TemporalTLSKeyFile: p.keyFile},
		"bad key":              {TemporalTLSCertFile: p.certFile, TemporalTLSKeyFile: bad},
		"empty API key file":   {TemporalAPIKeyFile: empty},
		"missing API key file": {TemporalAPIKeyFile: filepath.Join(p.dir, "nope")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Options(cfg, nil)
			assert.Error(t, err)
		})
	}
}

// TestClientCertificateRotation: a renewed certificate is presented without a restart, and a
// half-written rotation keeps the last good pair.
func TestClientCertificateRotation(t *testing.T) {
	p := newPKI(t)
	opts, err := Options(config.Config{TemporalTLSCertFile: p.certFile, TemporalTLSKeyFile: p.keyFile}, nil)
	require.NoError(t, err)
	get := opts.ConnectionOptions.TLS.GetClientCertificate
	cn := func() string {
		c, err := get(&tls.CertificateRequestInfo{})
		require.NoError(t, err)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		require.NoError(t, err)
		return leaf.Subject.CommonName
	}
	assert.Equal(t, "skewguard", cn())
	p.client(t, "skewguard-renewed-with-a-longer-name") // rewrites both files
	assert.Equal(t, "skewguard-renewed-with-a-longer-name", cn())
	require.NoError(t, os.WriteFile(p.keyFile, []byte("half written"), 0o600))
	assert.Equal(t, "skewguard-renewed-with-a-longer-name", cn())
}

func TestKeyFileNotSentWhenUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte("k1"), 0o600))
	kf := &keyFile{path: path}
	k, err := kf.Key(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "k1", k)
	require.NoError(t, os.Remove(path))
	_, err = kf.Key(context.Background())
	assert.Error(t, err, "a removed key is an error, not the old key or none")
}
