package routes

import (
	"regexp"
	"slices"
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
	return CookiePatternAmong([]string{cookieName}, cookieName, version)
}

// CookiePatternAmong is CookiePattern for a route that reads several pin cookies (an app whose
// versions belong to an app group and versions of it that do not, see Backend.CookieName): it
// matches if and only if the first cookie pair named any of names is named cookieName and has
// the value exactly version. So the patterns of two versions never both match one header,
// whatever cookies it carries: the first pin cookie the browser sends decides (of two cookies,
// the one set for the longer path comes first, RFC 6265 §5.4: an app's own cookie, set for the
// app's path, before its group's, set for "/"). With one name it is CookiePattern's pattern.
// cookieName must be one of names.
func CookiePatternAmong(names []string, cookieName, version string) string {
	prefixes := make([]string, len(names))
	size := len(version) + 48
	for i, n := range names {
		prefixes[i] = n + "="
		size += 24 * (len(n) + 1)
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(`^(?:[ \t]*`)
	writeOtherPair(&b, prefixes, 0, true)
	b.WriteString(`?;)*[ \t]*`)
	b.WriteString(regexp.QuoteMeta(cookieName))
	b.WriteByte('=')
	b.WriteString(regexp.QuoteMeta(version))
	b.WriteString(`[ \t]*(?:;.*)?$`)
	return b.String()
}

// writeOtherPair writes a group matching the rest, from position depth on, of one cookie pair
// (no ';') whose first depth characters are those of each of prefixes (cookieName + "=", all
// sharing them) and that does not start with any of the prefixes. At depth 0 the pair is
// non-empty and does not start with a space or tab (those belong to the separator; letting a
// pair begin with one would let " __plt_dpl=2" pass as another name).
//
// The rest does not start with any prefix's rest when it is empty (not at depth 0), or its first
// character is none of the prefixes' next characters, or it is one of them, c, and what follows
// does not start with the rest of any prefix whose next character is c. For one prefix this
// nests one group per character:
//
//	(?:[^; \tP0][^;]*|P0(?:[^;P1][^;]*|P1(?:…(?:[^;=][^;]*)?…)?)?)
//
// which is linear in the length of the cookie name (in the sum of the names' lengths for
// several). A prefix ends in '=', which no name holds, so no prefix is another's prefix.
func writeOtherPair(b *strings.Builder, prefixes []string, depth int, first bool) {
	var next []byte // the prefixes' next characters, in order, once each
	for _, p := range prefixes {
		if c := p[depth]; !slices.Contains(next, c) {
			next = append(next, c)
		}
	}
	slices.Sort(next)
	b.WriteString(`(?:[^;`)
	if first {
		b.WriteString(` \t`)
	}
	for _, c := range next {
		writeClassChar(b, c)
	}
	b.WriteString(`][^;]*`)
	for _, c := range next {
		var rest []string // the prefixes that continue past c
		for _, p := range prefixes {
			if p[depth] == c && len(p) > depth+1 {
				rest = append(rest, p)
			}
		}
		if len(rest) == 0 { // past the last character, the pair would start with a prefix
			continue
		}
		b.WriteByte('|')
		b.WriteString(regexp.QuoteMeta(string(c)))
		writeOtherPair(b, rest, depth+1, false)
		b.WriteByte('?') // the empty rest of a pair is another name
	}
	b.WriteByte(')')
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
