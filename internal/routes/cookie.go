package routes

import (
	"regexp"
	"strconv"
	"strings"
)

// CookiePattern is the regular expression a Cookie header value must match to carry
// cookieName=version.
//
// It is anchored at both ends so that it means the same under full-match semantics (Envoy)
// and search semantics (Go's regexp as Traefik uses it, NGINX). The cookie must start the header
// or follow a ';' and optional whitespace, so x__plt_dpl=1 and a=__plt_dpl=1 do not match; the
// value must be followed by the end of the header or a ';', so __plt_dpl=10 does not pin 1. Only
// (?:…), \s, . and * are used: every RE2, PCRE and ECMAScript dialect reads them alike.
func CookiePattern(cookieName, version string) string {
	var b strings.Builder
	name, ver := regexp.QuoteMeta(cookieName), regexp.QuoteMeta(version)
	b.Grow(len(`^(?:.*;\s*)?`) + len(name) + 1 + len(ver) + len(`\s*(?:;.*)?$`))
	b.WriteString(`^(?:.*;\s*)?`)
	b.WriteString(name)
	b.WriteByte('=')
	b.WriteString(ver)
	b.WriteString(`\s*(?:;.*)?$`)
	return b.String()
}

// SetCookie is the Set-Cookie value the default rule adds, pinning a new session to version.
func SetCookie(cookieName, version, path string, maxAge int64) string {
	return cookieName + "=" + version + "; Path=" + path + "; Max-Age=" + strconv.FormatInt(maxAge, 10) +
		"; HttpOnly; Secure; SameSite=Lax"
}

// ValidCookieName reports whether s is an RFC 6265 cookie-name (an RFC 2616 token).
func ValidCookieName(s string) bool {
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
