package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck asks the skewguard running beside it (same container, same environment) whether
// it is ready, and exits non-zero when it is not. Container health checks need it: the image is
// distroless, with no shell or curl to do the asking.
func runHealthcheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("path", "/readyz", "the endpoint to ask: /readyz (ready for work) or /healthz (alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	insecure := fs.Bool("insecure-skip-verify", false, "with TLS, accept any certificate instead of requiring the one in "+
		"PLT_SKEW_TLS_CERT_FILE (for the local probe only, e.g. when that file is not readable)")
	if err := fs.Parse(args); err != nil {
		return usageError{msg: "healthcheck: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{msg: fmt.Sprintf("healthcheck takes no arguments, got %v", fs.Args())}
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	url, err := localURL(cfg.ListenAddress, *path, cfg.TLSEnabled())
	if err != nil {
		return err
	}
	client := &http.Client{}
	if cfg.TLSEnabled() {
		tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // asked for
		if !*insecure {
			if tlsConfig, err = pinnedTLS(cfg.TLSCertFile); err != nil {
				return err
			}
		}
		client.Transport = &http.Transport{TLSClientConfig: tlsConfig}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	_, err = fmt.Fprintf(stdout, "%s: %s\n", url, resp.Status)
	return err
}

// localURL turns a listen address (":8080", "0.0.0.0:8080", "127.0.0.1:8080") into the URL of
// path on this host, https when the listener serves TLS.
func localURL(listen, path string, https bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("PLT_SKEW_LISTEN_ADDRESS %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + path, nil
}
