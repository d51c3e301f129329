package routes

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/validate"
)

// cookieCases are Cookie header values built around one cookie name N and version V: W is
// another version, T is N without its last character.
var cookieCases = []struct {
	name   string
	header string // N, V, W and T are replaced
	match  bool
}{
	{"alone", "N=V", true},
	{"first", "N=V; a=1", true},
	{"middle", "a=1; N=V; b=2", true},
	{"last", "a=1; N=V", true},
	{"first without spaces", "N=V;a=1", true},
	{"middle without spaces", "a=1;N=V;b=2", true},
	{"last without spaces", "a=1;N=V", true},
	{"several spaces", "a=1;   N=V", true},
	{"tab after ;", "a=1;\tN=V", true},
	{"trailing ;", "N=V;", true},
	{"leading spaces", "  N=V", true},
	{"spaces after the value", "N=V  ; a=1", true},
	{"tab after the value", "a=1; N=V\t", true},
	{"twice, same value", "N=V; N=V", true},
	{"empty pairs before", ";; N=V", true},
	{"empty pairs around", "a=1;;  ;\t; N=V;;", true},
	{"nameless pair before", "=1; N=V", true},
	{"pair without '=' named like the cookie before", "N; N=V", true},
	{"nameless pair holding N=W before", "=N=W; N=V", true},
	{"longer name first", "Nx=W; N=V", true},
	{"name with suffix first", "N_x=W; N=V", true},
	{"shorter name first", "T=W; N=V", true},
	{"prefixed name first", "xN=W; N=V", true},
	{"name with a space before '=' first", "N =W; N=V", true},
	{"N=W inside another cookie's value first", "a=N=W; N=V", true},

	{"first occurrence decides", "a=1; N=W; N=V", false},
	{"first occurrence decides, no spaces", "N=W;N=V", false},
	{"first occurrence has a longer value", "N=V0; N=V", false},
	{"first occurrence is empty", "N=; N=V", false},
	{"first occurrence after empty pairs", ";;N=W;N=V", false},
	{"first occurrence after leading spaces", " N=W; N=V", false},
	{"first occurrence after a tab", "a=1;\tN=W; N=V", false},
	{"longer value", "N=V0", false},
	{"longer value, middle", "a=1; N=V0; b=2", false},
	{"value with suffix", "N=Vx", false},
	{"value with suffix, last", "a=1; N=Vx", false},
	{"value with a space inside", "N=V x", false},
	{"quoted value", `N="V"`, false},
	{"prefixed name", "xN=V", false},
	{"prefixed name, last", "a=1; xN=V", false},
	{"longer name", "Nx=V", false},
	{"name with suffix", "a=1; N_x=V", false},
	{"shorter name", "T=V", false},
	{"name with a space before '='", "N =V", false},
	{"inside another cookie's value", "a=N=V", false},
	{"inside another cookie's value, last", "b=2; a=N=V", false},
	{"no ; between cookies", "a=1 N=V", false},
	{"shorter value", "N=" + "", false},
	{"other version", "N=W", false},
	{"name only", "N", false},
	{"empty", "", false},
	{"only separators", " ; ;; ", false},
}

var cookiePatternInputs = []struct{ cookieName, version string }{
	{"__plt_dpl", "1"},
	{"__plt_dpl", "43"},
	{"__plt_dpl", "1.2.3"},
	{"__plt_dpl", "v1_2-rc.1"},
	{"sg.version", "A.b_C-9"},
	{"a+b", "1"},
	{"a*b", "1"},
	{"a|b", "2"},
	{"^a$", "3"},
	{"a-b", "4"},
	{"x^y", "5"},
	{"ab", "6"},
	{"!#$%&'*+-.^_`|~", "7"},
}

func TestCookiePattern(t *testing.T) {
	for _, p := range cookiePatternInputs {
		require.True(t, validate.CookieName(p.cookieName), p.cookieName)
		pattern := CookiePattern(p.cookieName, p.version)
		search, err := regexp.Compile(pattern)
		require.NoError(t, err, pattern)
		full, err := regexp.Compile(`^(?:` + pattern + `)$`)
		require.NoError(t, err, pattern)

		for _, c := range cookieCases {
			header := expandCookie(c.header, p.cookieName, p.version)
			assert.Equal(t, c.match, search.MatchString(header), "search %q against %q (%s)", pattern, header, c.name)
			assert.Equal(t, c.match, full.MatchString(header), "full match %q against %q (%s)", pattern, header, c.name)
			assert.Equal(t, c.match, firstCookieIs(header, p.cookieName, p.version), "reference parser on %q (%s)", header, c.name)
		}
		if strings.Contains(p.version, ".") {
			// A '.' in the version is escaped, not a wildcard.
			dotless := strings.ReplaceAll(p.version, ".", "x")
			assert.False(t, search.MatchString(p.cookieName+"="+dotless), pattern)
		}
		// Metacharacters in the name are literal: swapping any one character of the name for
		// another token character never matches.
		for i := range len(p.cookieName) {
			for _, c := range []byte("xX9.+*|^$-_") {
				if c == p.cookieName[i] {
					continue
				}
				mangled := p.cookieName[:i] + string(c) + p.cookieName[i+1:]
				assert.False(t, search.MatchString(mangled+"="+p.version), "%q must not match %q", pattern, mangled)
				assert.True(t, search.MatchString(mangled+"="+p.version+"; "+p.cookieName+"="+p.version),
					"%q: %q is another cookie and must be skipped", pattern, mangled)
			}
		}
	}
}

func TestCookiePatternSize(t *testing.T) {
	p := CookiePattern("__plt_dpl", "1")
	t.Logf("pattern for __plt_dpl=1: %d bytes: %s", len(p), p)
	// Linear in the name: about 20 bytes per character of "__plt_dpl=", nowhere near the
	// limits of Go's regexp (Traefik) or Envoy's RE2 program size.
	assert.Less(t, len(p), 300)
	re := regexp.MustCompile(p)
	assert.Less(t, re.NumSubexp(), 1, "no capturing groups")
}

// TestCookiePatternAgreesWithAParser draws random Cookie headers from the shapes that matter
// (the name, names close to it, values close to the version, empty and nameless pairs, spaces
// and tabs) and checks the pattern's verdict, under search and full match, against
// firstCookieIs.
func TestCookiePatternAgreesWithAParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range cookiePatternInputs {
		search := regexp.MustCompile(CookiePattern(p.cookieName, p.version))
		full := regexp.MustCompile(`^(?:` + CookiePattern(p.cookieName, p.version) + `)$`)
		n := p.cookieName
		names := []string{n, n, n, n[:len(n)-1], n + "x", "x" + n, n + " ", " " + n, "\t" + n, "", "a", n[1:]}
		v := p.version
		values := []string{v, v, v, v + "0", "", "other", v + " ", " " + v, v + "x", `"` + v + `"`, n + "=" + v}
		seps := []string{";", "; ", ";  ", ";\t", "; ;", ";;"}
		matches := 0
		for range 20000 {
			var b strings.Builder
			for i, pairs := 0, rng.IntN(5); i < pairs; i++ {
				if i > 0 {
					b.WriteString(seps[rng.IntN(len(seps))])
				}
				switch rng.IntN(10) {
				case 0: // empty pair
				case 1: // nameless pair: no '='
					b.WriteString(values[rng.IntN(len(values))])
				default:
					b.WriteString(names[rng.IntN(len(names))] + "=" + values[rng.IntN(len(values))])
				}
			}
			header := b.String()
			want := firstCookieIs(header, p.cookieName, p.version)
			if want {
				matches++
			}
			require.Equal(t, want, search.MatchString(header), "search: %q against %q", search, header)
			require.Equal(t, want, full.MatchString(header), "full match: %q against %q", search, header)
		}
		assert.Greater(t, matches, 1000, "the generator must produce matching headers too")
	}
}

// TestCookiePatternAmongAgreesWithAParser checks the pattern of a route that reads two pin
// cookies (an app's own and its app group's, or names that share a prefix or not) against the
// reference reading: it matches if and only if the first pair named either is name=version. So
// two versions' patterns never both match one header, whichever cookies it holds.
func TestCookiePatternAmongAgreesWithAParser(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sets := [][]string{
		{"__plt_dpl", "__plt_dpl__g_shop_shop"},
		{"__plt_dpl_shop_api", "__plt_dpl__g_shop_shop"},
		{"a", "b"},
		{"ab", "a"},
		{"x^y", "x-y", "x"},
	}
	for _, names := range sets {
		for _, name := range names {
			for _, version := range []string{"1", "2"} {
				pattern := CookiePatternAmong(names, name, version)
				search := regexp.MustCompile(pattern)
				full := regexp.MustCompile(`^(?:` + pattern + `)$`)
				pool := append([]string{"", "a", "x" + name, name + "x", name[:len(name)-1], " " + name}, names...)
				pool = append(pool, names...)
				values := []string{"1", "2", "1 ", "10", ""}
				matches := 0
				for range 5000 {
					var b strings.Builder
					for i, pairs := 0, rng.IntN(5); i < pairs; i++ {
						if i > 0 {
							b.WriteString([]string{";", "; ", ";\t", ";;"}[rng.IntN(4)])
						}
						b.WriteString(pool[rng.IntN(len(pool))] + "=" + values[rng.IntN(len(values))])
					}
					header := b.String()
					got, v, ok := firstCookieAmong(header, names)
					want := ok && got == name && v == version
					if want {
						matches++
					}
					require.Equal(t, want, search.MatchString(header), "search: %q against %q", pattern, header)
					require.Equal(t, want, full.MatchString(header), "full match: %q against %q", pattern, header)
				}
				assert.Greater(t, matches, 100, "%v %s=%s: the generator must produce matching headers too", names, name, version)
			}
		}
	}
	assert.Equal(t, CookiePattern("__plt_dpl", "1"), CookiePatternAmong([]string{"__plt_dpl"}, "__plt_dpl", "1"),
		"one name: the pattern every app without a group has")
}

// FuzzCookiePattern checks the pattern against the parser on arbitrary header values (those a
// header can hold: no CR or LF).
func FuzzCookiePattern(f *testing.F) {
	for _, c := range cookieCases {
		f.Add(expandCookie(c.header, "__plt_dpl", "1"))
	}
	search := regexp.MustCompile(CookiePattern("__plt_dpl", "1"))
	f.Fuzz(func(t *testing.T, header string) {
		if strings.ContainsAny(header, "\r\n") {
			return // not a header value (no t.Skip: a skipped seed of the kept corpus would fail make test)
		}
		if want, got := firstCookieIs(header, "__plt_dpl", "1"), search.MatchString(header); want != got {
			t.Fatalf("header %q: parser says %v, pattern says %v", header, want, got)
		}
	})
}

// firstCookie is the reference reading of a Cookie header: pairs split on ';', spaces and tabs
// trimmed around them, the name up to the first '=' taken exactly, pairs without '=' skipped as
// nameless; the first pair named name gives the value.
func firstCookie(header, name string) (string, bool) {
	for _, pair := range strings.Split(header, ";") {
		k, v, ok := strings.Cut(strings.TrimLeft(pair, " \t"), "=")
		if ok && k == name {
			return strings.TrimRight(v, " \t"), true
		}
	}
	return "", false
}

// firstCookieIs reports whether the first cookie named name has the value version.
func firstCookieIs(header, name, version string) bool {
	v, ok := firstCookie(header, name)
	return ok && v == version
}

// TestCookieTableCatchesOlderPatterns shows the table has teeth: the pattern from the gateway
// notes misses cookies in the middle under full match, and the anchored pattern skewguard used
// before matched any occurrence of the name rather than the first.
func TestCookieTableCatchesOlderPatterns(t *testing.T) {
	misses := func(pattern string) (search, full []string) {
		s, f := regexp.MustCompile(pattern), regexp.MustCompile(`^(?:`+pattern+`)$`)
		for _, c := range cookieCases {
			header := expandCookie(c.header, "__plt_dpl", "1")
			if s.MatchString(header) != c.match {
				search = append(search, c.name)
			}
			if f.MatchString(header) != c.match {
				full = append(full, c.name)
			}
		}
		return search, full
	}
	_, full := misses(`(^|;\s*)__plt_dpl=1(;|$)`)
	assert.Contains(t, full, "middle")
	assert.Contains(t, full, "first")

	search, full := misses(`^(?:.*;\s*)?__plt_dpl=1\s*(?:;.*)?$`)
	for _, miss := range [][]string{search, full} {
		assert.Contains(t, miss, "first occurrence decides")
		assert.Contains(t, miss, "first occurrence has a longer value")
	}
}

func expandCookie(header, name, version string) string {
	// W is a different version that shares no prefix with version.
	return strings.NewReplacer("N", name, "V", version, "W", "other", "T", name[:len(name)-1]).Replace(header)
}

func TestSetCookie(t *testing.T) {
	assert.Equal(t, "__plt_dpl=43; Path=/myapp; Max-Age=43200; HttpOnly; Secure; SameSite=Lax",
		SetCookie("__plt_dpl", "43", "/myapp", 43200))
}
