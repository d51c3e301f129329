package routes

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cookieCases are Cookie header values built around one cookie name N and version V.
var cookieCases = []struct {
	name   string
	header string // N and V are replaced
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
	{"twice, other value first", "N=V0; N=V", true},

	{"longer value", "N=V0", false},
	{"longer value, middle", "a=1; N=V0; b=2", false},
	{"value with suffix", "N=Vx", false},
	{"value with suffix, last", "a=1; N=Vx", false},
	{"prefixed name", "xN=V", false},
	{"prefixed name, last", "a=1; xN=V", false},
	{"inside another cookie's value", "a=N=V", false},
	{"inside another cookie's value, last", "b=2; a=N=V", false},
	{"no ; between cookies", "a=1 N=V", false},
	{"shorter value", "N=" + "", false},
	{"other version", "N=W", false},
	{"name only", "N", false},
	{"empty", "", false},
}

var cookiePatternInputs = []struct{ cookieName, version string }{
	{"__plt_dpl", "1"},
	{"__plt_dpl", "43"},
	{"__plt_dpl", "1.2.3"},
	{"__plt_dpl", "v1_2-rc.1"},
	{"sg.version", "A.b_C-9"},
	{"a+b", "1"},
}

func TestCookiePattern(t *testing.T) {
	for _, p := range cookiePatternInputs {
		pattern := CookiePattern(p.cookieName, p.version)
		search, err := regexp.Compile(pattern)
		require.NoError(t, err, pattern)
		full, err := regexp.Compile(`^(?:` + pattern + `)$`)
		require.NoError(t, err, pattern)

		for _, c := range cookieCases {
			header := expandCookie(c.header, p.cookieName, p.version)
			assert.Equal(t, c.match, search.MatchString(header), "search %q against %q (%s)", pattern, header, c.name)
			assert.Equal(t, c.match, full.MatchString(header), "full match %q against %q (%s)", pattern, header, c.name)
		}
		if strings.Contains(p.version, ".") {
			// A '.' in the version is escaped, not a wildcard.
			dotless := strings.ReplaceAll(p.version, ".", "x")
			assert.False(t, search.MatchString(p.cookieName+"="+dotless), pattern)
		}
		if strings.ContainsAny(p.cookieName, ".+") {
			mangled := strings.NewReplacer(".", "x", "+", "").Replace(p.cookieName)
			assert.False(t, search.MatchString(mangled+"="+p.version), pattern)
		}
	}
}

// TestCookieTableCatchesUnanchoredPattern shows the table has teeth: the pattern from the
// gateway notes, right under search semantics, misses cookies in the middle under full match.
func TestCookieTableCatchesUnanchoredPattern(t *testing.T) {
	pattern := `(^|;\s*)__plt_dpl=1(;|$)`
	full := regexp.MustCompile(`^(?:` + pattern + `)$`)
	search := regexp.MustCompile(pattern)
	var fullMisses []string
	for _, c := range cookieCases {
		header := expandCookie(c.header, "__plt_dpl", "1")
		assert.Equal(t, c.match, search.MatchString(header), "search %q (%s)", header, c.name)
		if full.MatchString(header) != c.match {
			fullMisses = append(fullMisses, c.name)
		}
	}
	assert.Contains(t, fullMisses, "middle")
	assert.Contains(t, fullMisses, "first")
}

func expandCookie(header, name, version string) string {
	// W is a different version that shares no prefix with version.
	return strings.NewReplacer("N", name, "V", version, "W", "other").Replace(header)
}

func TestSetCookie(t *testing.T) {
	assert.Equal(t, "__plt_dpl=43; Path=/myapp; Max-Age=43200; HttpOnly; Secure; SameSite=Lax",
		SetCookie("__plt_dpl", "43", "/myapp", 43200))
}

func TestValidCookieName(t *testing.T) {
	for name, want := range map[string]bool{
		"__plt_dpl": true, "sg.version": true, "a+b": true, "!#$%&'*+-.^_`|~": true,
		"": false, "a b": false, "a=b": false, "a;b": false, "a,b": false, `a"b`: false, "é": false, "a\tb": false,
	} {
		assert.Equal(t, want, ValidCookieName(name), "%q", name)
	}
}
