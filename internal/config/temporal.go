package config

import (
	"fmt"
	"os"
	"time"

	"github.com/skewguard/skewguard/internal/bounds"
)

// ActionWait bounds every wait of the API on a version's workflow (PLT_SKEW_ACTION_WAIT_MS).
func (c Config) ActionWait() time.Duration { return bounds.ActionWait.Duration(c.ActionWaitMS) }

// TemporalTLSEnabled reports whether the Temporal client connects with TLS: when TEMPORAL_TLS
// is true, when any TLS setting is given (a CA, a client certificate or a server name only make
// sense over TLS, so they never leave the connection in clear text), or when an API key is
// given (Temporal's own rule: a key is never sent in clear text).
func (c Config) TemporalTLSEnabled() bool {
	return c.TemporalTLS || c.TemporalTLSCAFile != "" || c.TemporalTLSCertFile != "" ||
		c.TemporalTLSKeyFile != "" || c.TemporalTLSServerName != "" || c.TemporalAPIKey != "" ||
		c.TemporalAPIKeyFile != ""
}

// validateTemporal checks the Temporal client's TLS and API key settings: the files exist and
// are readable, a client certificate comes with its key, one source of API key at most. The
// files' contents are parsed when the client is built (internal/temporalclient), also at start.
func (c Config) validateTemporal() []string {
	var p []string
	readable := func(name, path string) {
		if path == "" {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			p = append(p, fmt.Sprintf("%s: %v", name, err))
			return
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			p = append(p, fmt.Sprintf("%s: %s is a directory, not a file", name, path))
		}
	}
	readable("TEMPORAL_TLS_SERVER_CA_CERT_PATH", c.TemporalTLSCAFile)
	readable("TEMPORAL_TLS_CLIENT_CERT_PATH", c.TemporalTLSCertFile)
	readable("TEMPORAL_TLS_CLIENT_KEY_PATH", c.TemporalTLSKeyFile)
	readable("PLT_SKEW_TEMPORAL_API_KEY_FILE", c.TemporalAPIKeyFile)
	switch {
	case c.TemporalTLSCertFile != "" && c.TemporalTLSKeyFile == "":
		p = append(p, "TEMPORAL_TLS_CLIENT_KEY_PATH: required with TEMPORAL_TLS_CLIENT_CERT_PATH (mTLS needs both)")
	case c.TemporalTLSKeyFile != "" && c.TemporalTLSCertFile == "":
		p = append(p, "TEMPORAL_TLS_CLIENT_CERT_PATH: required with TEMPORAL_TLS_CLIENT_KEY_PATH (mTLS needs both)")
	}
	if c.TemporalAPIKey != "" && c.TemporalAPIKeyFile != "" {
		p = append(p, "PLT_SKEW_TEMPORAL_API_KEY_FILE: set either it or TEMPORAL_API_KEY, not both")
	}
	return p
}
