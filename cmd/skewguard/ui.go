package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// runUI serves the versions panel on a local address, as kubectl proxy does: every request is
// sent on to the skewguard API with the caller's credentials (--token / SKEWGUARD_TOKEN, else the
// current kubeconfig user's bearer token or exec plugin), so the page needs no sign-in.
func runUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newCLIFlags("ui")
	listen := f.fs.String("listen", "127.0.0.1:0", "local address to serve the panel on (loopback only)")
	kubeconfig := f.fs.String("kubeconfig", "", "kubeconfig whose current user's token is used when --token is empty (default: KUBECONFIG, ~/.kube/config)")
	if _, err := f.parse(args, "ui [--listen 127.0.0.1:8001] [--server URL] [--token T | --kubeconfig F]"); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usageError{msg: "ui: --listen: " + err.Error()}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usageError{msg: "ui: --listen must be a loopback address: the proxy acts with your credentials"}
	}
	target, err := url.Parse(strings.TrimRight(*f.server, "/"))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return usageError{msg: fmt.Sprintf("ui: --server must be an http(s) URL, got %q", *f.server)}
	}
	rt, who, err := credentials(*f.token, *kubeconfig)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: uiProxy(target, rt, addr), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "versions panel: http://%s/ui/  (proxying %s as %s; Ctrl-C to stop)\n", addr, target, who)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// credentials is the round tripper that adds the caller's token, and who it is in words.
func credentials(token, kubeconfig string) (http.RoundTripper, string, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if token != "" {
		rt, err := rest.HTTPWrappersForConfig(&rest.Config{BearerToken: token}, base)
		return rt, "the given token", err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("ui: no --token and no usable kubeconfig: %w", err)
	}
	if cfg.BearerToken == "" && cfg.BearerTokenFile == "" && cfg.ExecProvider == nil && cfg.AuthProvider == nil {
		return nil, "", errors.New("ui: the kubeconfig's user has no bearer token (client certificates cannot be reviewed by skewguard): " +
			"pass --token, e.g. --token $(kubectl create token <service-account>)")
	}
	raw, _ := cc.RawConfig()
	// Only the credentials of the kubeconfig are used, never its TLS client certificate.
	creds := &rest.Config{BearerToken: cfg.BearerToken, BearerTokenFile: cfg.BearerTokenFile,
		ExecProvider: cfg.ExecProvider, AuthProvider: cfg.AuthProvider, AuthConfigPersister: cfg.AuthConfigPersister}
	rt, err := rest.HTTPWrappersForConfig(creds, base)
	return rt, "the kubeconfig user of context " + raw.CurrentContext, err
}

// uiProxy forwards the panel and /api/v1 to target with the caller's credentials. It is a
// local process acting in its user's name, so it refuses what a web page elsewhere could make a
// browser send it: a Host that is not its own address (DNS rebinding), an Origin other than its
// own, and every path but the panel's.
func uiProxy(target *url.URL, rt http.RoundTripper, addr string) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Authorization") // the proxy's credentials, never the page's
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Origin") // checked here; the API sees a client, not a page
		},
		Transport: rt,
	}
	self := "http://" + addr
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Host != addr:
			http.Error(w, "skewguard ui: wrong Host", http.StatusForbidden)
		case r.Header.Get("Origin") != "" && r.Header.Get("Origin") != self:
			http.Error(w, "skewguard ui: foreign Origin", http.StatusForbidden)
		case r.URL.Path == "/":
			http.Redirect(w, r, "/ui/", http.StatusFound)
		case r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") || strings.HasPrefix(r.URL.Path, "/api/v1/"):
			rp.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
