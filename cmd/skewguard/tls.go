package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/skewguard/skewguard/internal/config"
)

// certReloader serves the certificate in a PEM pair of files and reads them again when either
// file's modification time or size changes: cert-manager and the kubelet rotate a mounted
// Secret in place (a symlink swap, which os.Stat follows), and new handshakes then get the new
// certificate without a restart. A pair that fails to load (a rotation caught half-written)
// leaves the previous certificate in use and is tried again on the next handshake.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	version [2]fileVersion
}

type fileVersion struct {
	mod  time.Time
	size int64
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

func statVersion(path string) (fileVersion, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileVersion{}, err
	}
	return fileVersion{mod: fi.ModTime(), size: fi.Size()}, nil
}

// get returns the current certificate, reloading it when the files changed.
func (r *certReloader) get() (*tls.Certificate, error) {
	cv, cerr := statVersion(r.certFile)
	kv, kerr := statVersion(r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(cerr, kerr); err != nil {
		if r.cert != nil {
			r.log.Warn("TLS certificate files unreadable; serving the previous certificate", "error", err)
			return r.cert, nil
		}
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	now := [2]fileVersion{cv, kv}
	if r.cert != nil && now == r.version {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			r.log.Warn("TLS certificate files changed but do not load; serving the previous certificate", "error", err)
			return r.cert, nil
		}
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	if r.cert != nil {
		r.log.Info("TLS certificate reloaded", "file", r.certFile, "notAfter", cert.Leaf.NotAfter)
	}
	r.cert, r.version = &cert, now
	return r.cert, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.get() }

// serverTLS is the TLS configuration of the API listener, nil when no certificate is
// configured: TLS 1.2 or later, the certificate re-read when its files change, HTTP/1.1 only
// (the agent's update WebSocket and the listener's read deadlines are HTTP/1.1 mechanisms).
func serverTLS(cfg config.Config, log *slog.Logger) (*tls.Config, error) {
	if !cfg.TLSEnabled() {
		return nil, nil
	}
	r, err := newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}, nil
}

// pinnedTLS is the client side of the local health check: the server must present exactly the
// leaf certificate in certFile. The probe dials 127.0.0.1, which no certificate names, and
// needs no CA: pinning the file the server itself serves proves it talks to this process's
// listener.
func pinnedTLS(certFile string) (*tls.Config, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("PLT_SKEW_TLS_CERT_FILE: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PLT_SKEW_TLS_CERT_FILE %s: no PEM certificate", certFile)
	}
	want := block.Bytes
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's pin, not a chain to a CA for a host name.
		InsecureSkipVerify: true, //nolint:gosec // pinned below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return errors.New("the server does not present the certificate of PLT_SKEW_TLS_CERT_FILE")
			}
			return nil
		},
	}, nil
}
