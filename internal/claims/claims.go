// Package claims owns the operator's allowlist of the hostnames and path prefixes each namespace
// (or each app of a namespace) may claim on the shared Gateways. The allowlist is a YAML document
// in a ConfigMap of skewguard's own namespace (PLT_SKEW_CLAIMS_CONFIGMAP), read by an informer
// restricted to that one object, so edits apply without a restart.
//
// Everything fails closed: no ConfigMap configured, an empty or missing one, or one that never
// parsed, refuses every claim. An edit that does not parse keeps the last good allowlist.
package claims

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/skewguard/skewguard/internal/validate"
)

// Key is the ConfigMap key holding the allowlist document.
const Key = "claims.yaml"

// AnyHost, as a host entry, allows every hostname and also a claim without a hostname (which
// serves every host of the Gateway listeners).
const AnyHost = "*"

// Document is the allowlist as written in the ConfigMap:
//
//	allow:
//	  - namespace: shop
//	    apps: [web]              # optional: only these apps of the namespace
//	    hosts: [shop.example.com, "*.shop.example.com"]
//	    paths: [/]               # segment-aware prefixes: /shop allows /shop and /shop/a, not /shopping
type Document struct {
	Allow []Entry `json:"allow"`
}

// Entry allows the apps of one namespace (all of them when Apps is empty) to claim any of Hosts
// together with any of Paths.
type Entry struct {
	Namespace string   `json:"namespace"`
	Apps      []string `json:"apps,omitempty"`
	Hosts     []string `json:"hosts"`
	Paths     []string `json:"paths"`
}

// Policy is a parsed, validated allowlist. The zero Policy allows nothing.
type Policy struct {
	entries []Entry
}

// Parse reads and validates an allowlist document. Empty (or blank) data is a valid allowlist
// that allows nothing. Every problem is reported at once.
func Parse(data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &Policy{}, nil
	}
	var doc Document
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", Key, err)
	}
	var problems []error
	bad := func(i int, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: allow[%d]: %s", Key, i, fmt.Sprintf(format, args...)))
	}
	p := &Policy{}
	for i, e := range doc.Allow {
		if err := validate.DNSLabel(e.Namespace); err != nil {
			bad(i, "namespace %q: %v", e.Namespace, err)
		}
		for _, a := range e.Apps {
			if a == "" || len(a) > 253 {
				bad(i, "app %q is not an app name", a)
			}
		}
		if len(e.Hosts) == 0 {
			bad(i, "hosts is empty (use \"*\" to allow every host)")
		}
		hosts := make([]string, 0, len(e.Hosts))
		for _, h := range e.Hosts {
			h = strings.ToLower(strings.TrimSpace(h))
			if err := checkHostPattern(h); err != nil {
				bad(i, "host %q: %v", h, err)
			}
			hosts = append(hosts, h)
		}
		if len(e.Paths) == 0 {
			bad(i, "paths is empty (use \"/\" to allow every path)")
		}
		paths := make([]string, 0, len(e.Paths))
		for _, pa := range e.Paths {
			pa = strings.TrimSpace(pa)
			if !strings.HasPrefix(pa, "/") {
				bad(i, "path %q must start with /", pa)
			}
			paths = append(paths, normPath(pa))
		}
		p.entries = append(p.entries, Entry{Namespace: e.Namespace, Apps: e.Apps, Hosts: hosts, Paths: paths})
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return p, nil
}

func checkHostPattern(h string) error {
	if h == AnyHost {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return errors.New(`a wildcard is only allowed as the whole first label ("*.example.com") or alone ("*")`)
	}
	return validate.DNSSubdomain(name)
}

// Refusal reasons, the values of the reason label of skewguard_claim_refusals_total.
const (
	ReasonUnconfigured = "unconfigured" // PLT_SKEW_CLAIMS_CONFIGMAP is not set
	ReasonUnavailable  = "unavailable"  // the ConfigMap is missing or never held a valid allowlist
	ReasonNamespace    = "namespace"    // no entry for the namespace (or the app)
	ReasonHost         = "host"         // the namespace's entries do not allow the host
	ReasonPath         = "path"         // they allow the host, but not with the path
)

// NotAllowedError refuses a claim the allowlist does not allow. It is permanent until an operator
// changes the allowlist.
type NotAllowedError struct {
	Namespace, App string
	// Host is the claimed hostname; empty means every host.
	Host, Path string
	Reason     string
	// Source names where the allowlist comes from (the ConfigMap), for the operator.
	Source string
	// Detail says what was missing, in words.
	Detail string
}

func (e *NotAllowedError) Error() string {
	host := fmt.Sprintf("host %q", e.Host)
	if e.Host == "" {
		host = "every host (no hostname)"
	}
	return fmt.Sprintf("namespace %q (app %q) may not claim %s with path %q: %s; an operator allows it in %s",
		e.Namespace, e.App, host, e.Path, e.Detail, e.Source)
}

// Check reports whether app of namespace may claim host (empty: every host) and path prefix
// path; source names the allowlist in a refusal.
func (p *Policy) Check(namespace, app, host, path, source string) error {
	refuse := func(reason, detail string) error {
		return &NotAllowedError{Namespace: namespace, App: app, Host: host, Path: path, Reason: reason, Source: source, Detail: detail}
	}
	host = strings.ToLower(host)
	path = normPath(path)
	var mine []Entry
	for _, e := range p.entries {
		if e.Namespace == namespace && (len(e.Apps) == 0 || slices.Contains(e.Apps, app)) {
			mine = append(mine, e)
		}
	}
	if len(mine) == 0 {
		return refuse(ReasonNamespace, fmt.Sprintf("the allowlist has no entry for namespace %q and app %q", namespace, app))
	}
	hostOK := false
	for _, e := range mine {
		if !slices.ContainsFunc(e.Hosts, func(pattern string) bool { return hostAllowed(pattern, host) }) {
			continue
		}
		hostOK = true
		if slices.ContainsFunc(e.Paths, func(prefix string) bool { return pathAllowed(prefix, path) }) {
			return nil
		}
	}
	if !hostOK {
		if host == "" {
			return refuse(ReasonHost, `a version without a hostname claims every host, which needs hosts: ["*"]`)
		}
		return refuse(ReasonHost, "no entry of the namespace allows the host")
	}
	return refuse(ReasonPath, "no entry of the namespace that allows the host allows the path")
}

// hostAllowed reports whether the allowlist pattern allows claiming host. "*" allows everything,
// including no host. "*.example.com" allows any name with one or more labels in front of
// example.com (as Gateway API wildcards match), and a wildcard claim within it.
func hostAllowed(pattern, host string) bool {
	if pattern == AnyHost {
		return true
	}
	if host == "" {
		return false
	}
	if pattern == host {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*") // ".example.com"
	if !ok {
		return false
	}
	name := strings.TrimPrefix(host, "*") // a wildcard claim "*.a.example.com" is ".a.example.com"
	return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
}

// pathAllowed reports whether the allowed prefix covers path, segment by segment.
func pathAllowed(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// normPath drops trailing slashes ("/shop/" is "/shop"); "" is "/".
func normPath(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}
