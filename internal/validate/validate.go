// Package validate is skewguard's one vocabulary of names: what a namespace, an app, a
// version, a Service, a hostname, a path prefix and a cookie name may be. The configuration
// (internal/config), the route renderer (internal/routes) and the HTTP API (internal/apiwire)
// check a value with the same function here, so that a value one of them accepts is never
// refused by another, nor by the Kubernetes API server once it is written into a label, a
// Service reference or an HTTPRoute.
//
// The Kubernetes rules are k8s.io/apimachinery/pkg/util/validation's, the rules the API server
// itself applies; the Gateway API's (hostname, path prefix) are those of its CRD (v1.6.3),
// which sigs.k8s.io/gateway-api states as schema markers rather than Go functions, so they are
// written here. Each function returns nil for a valid value, or an error whose text is the
// reason alone (apimachinery's messages joined by "; "); the caller names the value.
//
// The ranges of numbers (durations, the cookie's Max-Age) are internal/bounds'.
package validate

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// problems turns apimachinery's list of reasons into one error, nil when there is none.
func problems(msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// DNSLabel checks an RFC 1123 label: a namespace name, a Gateway's namespace. 1-63 characters
// of [a-z0-9-], beginning and ending with a letter or digit.
func DNSLabel(s string) error { return problems(validation.IsDNS1123Label(s)) }

// DNSSubdomain checks an RFC 1123 subdomain: a Gateway's name or listener (sectionName), a
// hostname without its wildcard. At most 253 characters of dot-separated DNS labels.
func DNSSubdomain(s string) error { return problems(validation.IsDNS1123Subdomain(s)) }

// ServiceName checks the name of a Service: an RFC 1035 label (an RFC 1123 label that begins
// with a letter).
func ServiceName(s string) error { return problems(validation.IsDNS1035Label(s)) }

// LabelValue checks what skewguard reads from a label and writes into names, headers and the
// cookie: an app name (app.kubernetes.io/name) or a version (plt.dev/version). A Kubernetes
// label value, except the empty string: 1-63 characters of [A-Za-z0-9._-], beginning and
// ending with a letter or digit. A version is also the value of the pin cookie, and this
// character set is a subset of RFC 6265's cookie-octet, so no version needs quoting there.
func LabelValue(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return problems(validation.IsValidLabelValue(v))
}

// Hostname checks a plt.dev/hostname value as the HTTPRoute CRD accepts it in spec.hostnames: a
// DNS name, optionally with one leading wildcard label ("*.example.com"), never an IP address.
func Hostname(h string) error {
	if net.ParseIP(h) != nil {
		return errors.New("IP addresses are not allowed")
	}
	return DNSSubdomain(strings.TrimPrefix(h, "*."))
}

// MaxPathLength is the HTTPRoute CRD's limit on a PathPrefix value.
const MaxPathLength = 1024

// pathChars is the character set the HTTPRoute CRD accepts in a PathPrefix value.
var pathChars = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$`)

// PathPrefix applies the CRD's rules for a PathPrefix value, and refuses ';' and ',' because
// the prefix is also written into the Set-Cookie header's Path attribute.
func PathPrefix(prefix string) error {
	switch {
	case len(prefix) > MaxPathLength:
		return fmt.Errorf("longer than %d characters", MaxPathLength)
	case !strings.HasPrefix(prefix, "/"):
		return errors.New("must start with '/'")
	case !pathChars.MatchString(prefix):
		return errors.New("contains characters not allowed in a URL path")
	case strings.ContainsAny(prefix, ";,"):
		return errors.New("must not contain ';' or ',' (it becomes the cookie's Path)")
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(prefix, bad) {
			return fmt.Errorf("must not contain %q", bad)
		}
	}
	if strings.HasSuffix(prefix, "/..") || strings.HasSuffix(prefix, "/.") {
		return errors.New("must not end with '/.' or '/..'")
	}
	return nil
}

// CookieName reports whether s is an RFC 6265 cookie-name (an RFC 2616 token): the pin
// cookie's name (PLT_SKEW_COOKIE_NAME), written into Set-Cookie and into the Cookie header's
// match pattern. Its value, the version, is a LabelValue.
func CookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
