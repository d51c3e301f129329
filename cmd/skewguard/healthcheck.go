package main

import (
	"context"
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
	url, err := localURL(cfg.ListenAddress, *path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
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
// path on this host.
func localURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("PLT_SKEW_LISTEN_ADDRESS %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
