// Package temporalclient builds the options of skewguard's Temporal client from the
// configuration: address and namespace, TLS (a CA of its own, a server name, a client
// certificate for mTLS) and an API key, static or read from a file that is re-read when it
// changes (a mounted Secret that is rotated).
//
// Whoever can reach the Temporal namespace with enough rights can signal, update and terminate
// skewguard's workflows, bypassing the Kubernetes RBAC of the management API: these options
// let the operator make Temporal authenticate skewguard, and keep everyone else out (see the
// README, "Temporal access is full control").
package temporalclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/skewguard/skewguard/internal/config"
)

// Options returns the client options for cfg. Files are read now, so that a bad certificate,
// key or CA stops the process at start rather than failing every call.
func Options(cfg config.Config, logger log.Logger) (client.Options, error) {
	opts := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    logger,
	}
	if cfg.TemporalTLSEnabled() {
		tc, err := TLSConfig(cfg)
		if err != nil {
			return client.Options{}, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	switch {
	case cfg.TemporalAPIKey != "":
		opts.Credentials = client.NewAPIKeyStaticCredentials(cfg.TemporalAPIKey)
	case cfg.TemporalAPIKeyFile != "":
		kf := &keyFile{path: cfg.TemporalAPIKeyFile}
		if _, err := kf.Key(context.Background()); err != nil {
			return client.Options{}, err
		}
		opts.Credentials = client.NewAPIKeyDynamicCredentials(kf.Key)
	}
	return opts, nil
}

// TLSConfig is the client's TLS configuration: the system roots or the configured CA, the
// server name when given, and the client certificate when given (re-read when its files change,
// e.g. renewed by cert-manager).
func TLSConfig(cfg config.Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TemporalTLSServerName}
	if cfg.TemporalTLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TemporalTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("TEMPORAL_TLS_SERVER_CA_CERT_PATH: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TEMPORAL_TLS_SERVER_CA_CERT_PATH: %s holds no PEM certificate", cfg.TemporalTLSCAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.TemporalTLSCertFile != "" || cfg.TemporalTLSKeyFile != "" {
		kp := &keyPair{cert: cfg.TemporalTLSCertFile, key: cfg.TemporalTLSKeyFile}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return tc, nil
}

// stamp identifies a version of a file: a rotated Secret changes its modification time (the
// kubelet swaps a symlink, which Stat follows) or its size.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (stamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{st.ModTime(), st.Size()}, nil
}

// keyFile is an API key read from a file, re-read when the file changes. A Stat per call is
// cheap next to a gRPC round trip.
type keyFile struct {
	path string
	mu   sync.Mutex
	seen stamp
	key  string
}

// Key returns the file's key, trimmed of surrounding white space (a trailing newline is common).
// A file that became unreadable or empty is an error: the call fails rather than going out
// without credentials.
func (f *keyFile) Key(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := stampOf(f.path)
	if err != nil {
		return "", fmt.Errorf("PLT_SKEW_TEMPORAL_API_KEY_FILE: %w", err)
	}
	if f.key != "" && s == f.seen {
		return f.key, nil
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("PLT_SKEW_TEMPORAL_API_KEY_FILE: %w", err)
	}
	key := string(bytes.TrimSpace(raw))
	if key == "" {
		return "", fmt.Errorf("PLT_SKEW_TEMPORAL_API_KEY_FILE: %s is empty", f.path)
	}
	if strings.ContainsAny(key, "\r\n") {
		return "", fmt.Errorf("PLT_SKEW_TEMPORAL_API_KEY_FILE: %s holds more than one line", f.path)
	}
	f.key, f.seen = key, s
	return key, nil
}

// keyPair is the client certificate and key, re-read when either file changes.
type keyPair struct {
	cert, key string
	mu        sync.Mutex
	seen      [2]stamp
	pair      *tls.Certificate
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, err1 := stampOf(k.cert)
	ks, err2 := stampOf(k.key)
	if err := errors.Join(err1, err2); err != nil {
		if k.pair != nil {
			return k.pair, nil // in the middle of a rotation: the last good pair
		}
		return nil, fmt.Errorf("TEMPORAL_TLS_CLIENT_CERT_PATH/TEMPORAL_TLS_CLIENT_KEY_PATH: %w", err)
	}
	if k.pair != nil && k.seen == [2]stamp{cs, ks} {
		return k.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		if k.pair != nil {
			return k.pair, nil // a certificate and a key of different generations, for a moment
		}
		return nil, fmt.Errorf("TEMPORAL_TLS_CLIENT_CERT_PATH/TEMPORAL_TLS_CLIENT_KEY_PATH: %w", err)
	}
	k.pair, k.seen = &pair, [2]stamp{cs, ks}
	return k.pair, nil
}
