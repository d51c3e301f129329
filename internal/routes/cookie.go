package routes

import (
	"regexp"
	"strconv"
	"strings"
)

// CookiePattern is the regular expression a Cookie header value must match to carry
// cookieName=version: it matches if and only if the FIRST cookie pair named exactly cookieName
// has the value exactly version.
//
// Why the first: a browser holding two cookies of that name (set for two paths, say /app and
// /app/admin) sends both, the one with the longer path first (RFC 6265 §5.4), and servers read
// the first. A pattern that matched any occurrence would let both versions' rules match, and the
// gateway would pick one by route age, whatever the order.
//
// How the header is read: pairs are separated by ';'; spaces and tabs before a pair are ignored
// (so are those after a value); a pair's name is everything up to its first '=', exactly, so
// "x__plt_dpl", "__plt_dpl_x" and "__plt_dpl =1" are other names; a pair without '=' is a
// nameless cookie, which is what browsers send for a cookie with an empty name. The value must
// be followed by the end of the header or a ';', so __plt_dpl=10 does not pin 1.
//
// RE2 (Go's regexp, which Traefik uses, and Envoy's) has no lookahead, so "a pair whose name is
// not cookieName" is spelled out: a pair that starts like "cookieName=" but leaves it at some
// position, or stops before its end (see otherPair). The pattern is anchored at both ends, so it
// means the same under full-match semantics (Envoy) and search semantics (Go, Traefik, NGINX),
// and it uses only (?:…), […], [^…], ?, * and escaped literals, which every RE2, PCRE and
// ECMAScript dialect reads alike. Header values never hold CR or LF (RFC 9110 §5.5), the only
// characters '.' leaves out.
func CookiePattern(cookieName, version string) string {
	var b strings.Builder
	b.Grow(24*(len(cookieName)+1) + len(version) + 48)
	b.WriteString(`^(?:[ \t]*`)
	writeOtherPair(&b, cookieName+"=")
	b.WriteString(`?;)*[ \t]*`)
	b.WriteString(regexp.QuoteMeta(cookieName))
	b.WriteByte('=')
	b.WriteString(regexp.QuoteMeta(version))
	b.WriteString(`[ \t]*(?:;.*)?$`)
	return b.String()
}

// writeOtherPair writes a group matching one non-empty cookie pair (no ';') that does not start
// with prefix (cookieName + "=") and does not start with a space or tab (those belong to the
// separator; letting a pair begin with one would let " __plt_dpl=2" pass as another name).
//
// A pair does not start with p[i:] when it is empty, or its first character is not p[i], or its
// first character is p[i] and the rest does not start with p[i+1:]. Unrolled over the prefix
// this nests one group per character:
//
//	(?:[^; \tP0][^;]*|P0(?:[^;P1][^;]*|P1(?:…(?:[^;=][^;]*)?…)?)?)
//
// which is linear in the length of the cookie name.
func writeOtherPair(b *strings.Builder, prefix string) {
	for i := 0; i < len(prefix); i++ {
		b.WriteString(`(?:[^;`)
		if i == 0 {
			b.WriteString(` \t`)
		}
		writeClassChar(b, prefix[i])
		b.WriteString(`][^;]*`)
		if i < len(prefix)-1 { // past the last character, the pair would start with prefix
			b.WriteByte('|')
			b.WriteString(regexp.QuoteMeta(prefix[i : i+1]))
		}
	}
	for i := len(prefix) - 1; i >= 0; i-- {
		b.WriteByte(')')
		if i > 0 { // the empty rest of a pair is another name; the pair itself is non-empty
			b.WriteByte('?')
		}
	}
}

// writeClassChar writes c for use inside a bracketed character class. Only the characters that
// are special there are escaped ('^' and '-' can be in a cookie name; '\', '[' and ']' cannot,
// but cost nothing to cover): an escape of any other punctuation is an error in ECMAScript's
// unicode mode, while these escapes read the same in RE2, PCRE and ECMAScript.
func writeClassChar(b *strings.Builder, c byte) {
	if strings.IndexByte(`\^-[]`, c) >= 0 {
		b.WriteByte('\\')
	}
	b.WriteByte(c)
}

// SetCookie is the Set-Cookie value the default rule adds, pinning a new session to version.
func SetCookie(cookieName, version, path string, maxAge int64) string {
	return cookieName + "=" + version + "; Path=" + path + "; Max-Age=" + strconv.FormatInt(maxAge, 10) +
		"; HttpOnly; Secure; SameSite=Lax"
}
