package traffic

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// promLex splits a PromQL query into its string literals (decoded) and its skeleton: the text
// outside them, each literal written as "…". It follows the rules of Prometheus's lexer
// (promql/parser/lex.go, lexString/lexEscape/lexRawString) and its unquoting: a "…" or '…'
// string ends at its own unescaped quote, holds no raw newline and no invalid UTF-8 (nor U+FFFD,
// which the lexer cannot tell from it), and knows only the escapes \a \b \f \n \r \t \v \\, its
// own quote, \NNN (octal), \xNN, \uNNNN and \UNNNNNNNN; a `…` string holds anything but '`'.
func promLex(q string) (skeleton string, lits []string, err error) {
	var sk strings.Builder
	for i := 0; i < len(q); {
		c := q[i]
		if c != '"' && c != '\'' && c != '`' {
			sk.WriteByte(c)
			i++
			continue
		}
		j := i + 1
		for {
			if j >= len(q) {
				return "", nil, fmt.Errorf("unterminated string at %d", i)
			}
			r, size := utf8.DecodeRuneInString(q[j:])
			switch {
			case r == utf8.RuneError:
				return "", nil, fmt.Errorf("invalid UTF-8 rune at %d", j)
			case r == rune(c):
				goto closed
			case c == '`':
			case r == '\n':
				return "", nil, fmt.Errorf("newline in string at %d", j)
			case r == '\\':
				n, err := escapeLen(q[j+1:], c)
				if err != nil {
					return "", nil, fmt.Errorf("at %d: %w", j, err)
				}
				j += n
			}
			j += size
		}
	closed:
		raw := q[i : j+1]
		var lit string
		switch c {
		case '`':
			lit = raw[1 : len(raw)-1]
		case '\'':
			lit, err = strconv.Unquote(`"` + strings.ReplaceAll(strings.ReplaceAll(raw[1:len(raw)-1], `\'`, `'`), `"`, `\"`) + `"`)
		default:
			lit, err = strconv.Unquote(raw)
		}
		if err != nil {
			return "", nil, fmt.Errorf("unquote %s: %w", raw, err)
		}
		lits = append(lits, lit)
		sk.WriteString(`"…"`)
		i = j + 1
	}
	return sk.String(), lits, nil
}

// escapeLen is the length of the escape after a backslash, or an error for one PromQL refuses.
func escapeLen(s string, quote byte) (int, error) {
	if s == "" {
		return 0, errors.New("escape at the end")
	}
	digits := func(n int, ok func(byte) bool) (int, error) {
		if len(s) < n {
			return 0, errors.New("short escape")
		}
		for i := range n {
			if !ok(s[i]) {
				return 0, fmt.Errorf("bad escape %q", s[:n])
			}
		}
		return n, nil
	}
	hex := func(b byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", b) >= 0 }
	switch c := s[0]; {
	case strings.IndexByte(`abfnrtv\`, c) >= 0 || c == quote:
		return 1, nil
	case c >= '0' && c <= '7':
		return digits(3, func(b byte) bool { return b >= '0' && b <= '7' })
	case c == 'x':
		n, err := digits(3, func(b byte) bool { return b == 'x' || hex(b) })
		return n, err
	case c == 'u':
		n, err := digits(5, func(b byte) bool { return b == 'u' || hex(b) })
		return n, err
	case c == 'U':
		n, err := digits(9, func(b byte) bool { return b == 'U' || hex(b) })
		return n, err
	}
	return 0, fmt.Errorf("unknown escape \\%c", s[0])
}

// Markers stand for the values in a harmless rendering: letters only, so that they read the
// same in a string and in a regular expression, and found in no template.
const (
	mNamespace = "zqnsq"
	mApp       = "zqappq"
	mVersion   = "zqverq"
	mService   = "zqsvcq"
)

// fuzzTemplates are the presets and custom templates using str and re in every place a value
// can go: matchers =, !=, =~, !~, and a function's string argument.
var fuzzTemplates = map[string]string{
	PresetWatt:    Presets[PresetWatt],
	PresetTraefik: Presets[PresetTraefik],
	"custom": `sum(rate(http_requests_total{namespace="{{str .Namespace}}", app!="{{str .App}}", ` +
		`version=~"{{re .Version}}", service!~"x|{{re .Service}}"}[{{.Window}}])) ` +
		`+ count(label_replace(up, "a", "{{str .App}}-{{str .Version}}", "job", "(.*)")) * 0`,
}

// FuzzTrafficQuery: whatever the namespace, app, version and Service names (what users type,
// and more: any bytes), every template renders a query whose string literals all lex and
// unquote as PromQL's do, whose text outside them is exactly that of a harmless rendering (no
// value adds a matcher, an operator or a comment), and whose literals hold exactly the values:
// as typed in a plain string, quoted by regexp.QuoteMeta in a regular expression, with '$'
// doubled in label_replace's replacement of the batch.
//
//	go test ./internal/traffic -run '^$' -fuzz '^FuzzTrafficQuery$' -fuzztime 30s
func FuzzTrafficQuery(f *testing.F) {
	for _, s := range [][4]string{
		{"shop", "myapp", "1.2.3", "myapp-v1"},
		{"", "", "", ""},
		{`a"b`, `a\`, `"}`, `x"}[5m]) or vector(1) #`},
		{`\"`, `\\"`, "\n", "a\nb"},
		{"$1", "${1}", "$$", "a$b"},
		{`.*`, `|`, `(?i)x`, `\Q`},
		{"é", "日本", "\U0001F600", "\ufffd"},
		{"\xff", "\xc3", "a\x00b", "\r\t"},
		{"'", "`", "'`\"", "#"},
		{strings.Repeat("a", 63), strings.Repeat("v", 63), strings.Repeat("\\", 100), strings.Repeat(`"`, 100)},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	type tmpl struct {
		name             string
		t                *Template
		skeleton         string
		lits             []string
		regexLit, repLit []bool
	}
	var tmpls []tmpl
	const window = 90 * time.Second
	for name, text := range fuzzTemplates {
		t, err := Parse(text)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		q, err := t.Batch(mNamespace, mApp, window, []Target{{Version: mVersion, Service: mService}, {Version: mVersion + "2", Service: mService + "2"}})
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		sk, lits, err := promLex(q)
		if err != nil {
			f.Fatalf("%s: harmless rendering does not lex: %v\n%s", name, err, q)
		}
		// Which literals are regular expressions (after =~ or !~, or label_replace's last
		// argument) and which is the batch's label_replace replacement.
		tm := tmpl{name: name, t: t, skeleton: sk, lits: lits, regexLit: make([]bool, len(lits)), repLit: make([]bool, len(lits))}
		parts := strings.Split(sk, `"…"`)
		for i := range lits {
			before := strings.TrimSpace(parts[i])
			tm.regexLit[i] = strings.HasSuffix(before, "=~") || strings.HasSuffix(before, "!~")
			tm.repLit[i] = i > 0 && lits[i-1] == VersionLabel
		}
		tmpls = append(tmpls, tm)
	}
	f.Fuzz(func(t *testing.T, ns, app, version, service string) {
		for _, tm := range tmpls {
			q, err := tm.t.Batch(ns, app, window, []Target{{Version: version, Service: service}, {Version: version + "2", Service: service + "2"}})
			if err != nil {
				t.Fatalf("%s: %v", tm.name, err)
			}
			sk, lits, err := promLex(q)
			if err != nil {
				t.Fatalf("%s: the query does not lex: %v\n%s", tm.name, err, q)
			}
			if sk != tm.skeleton || len(lits) != len(tm.lits) {
				t.Fatalf("%s: a value changed the query's structure:\n%s\nharmless:\n%s", tm.name, sk, tm.skeleton)
			}
			for i, lit := range tm.lits {
				quote := func(s string) string { return s }
				switch {
				case tm.regexLit[i]:
					quote = regexp.QuoteMeta
				case tm.repLit[i]:
					quote = func(s string) string { return strings.ReplaceAll(s, "$", "$$") }
				}
				want := strings.NewReplacer(mNamespace, quote(ns), mApp, quote(app), mVersion, quote(version), mService, quote(service)).Replace(lit)
				if lits[i] != want {
					t.Fatalf("%s: literal %d is %q, want %q\n%s", tm.name, i, lits[i], want, q)
				}
			}
		}
	})
}

// TestPromLex: the lexer used by FuzzTrafficQuery refuses what PromQL refuses, so the fuzzer's
// verdicts mean something.
func TestPromLex(t *testing.T) {
	for _, bad := range []string{`x{a="b}`, "x{a=\"b\nc\"}", `x{a="\q"}`, "x{a=\"\xff\"}", "x{a=\"\ufffd\"}", `x{a="\x4"}`, `x{a="\'"}`} {
		if _, _, err := promLex(bad); err == nil {
			t.Errorf("%q lexes", bad)
		}
	}
	sk, lits, err := promLex(`x{a="b\"c", d=~'e\'"f', g!=` + "`h\\`" + `} # "`)
	if err == nil {
		t.Fatalf("an unterminated string after # must not lex: %q %q", sk, lits)
	}
	sk, lits, err = promLex(`x{a="b\"c\x41\u00e9", d=~'e\'"f', g!=` + "`h\\`" + `}`)
	if err != nil || sk != `x{a="…", d=~"…", g!="…"}` || strings.Join(lits, "|") != `b"cAé|e'"f|h\` {
		t.Fatalf("%q %q %v", sk, lits, err)
	}
}

// TestEscapingAnyBytes (found by FuzzTrafficQuery): a value holding a byte that is not UTF-8, or
// U+FFFD, was written raw, and Prometheus refuses the whole query ("invalid UTF-8 rune"). They
// are escaped now, and the literal still holds exactly the value.
func TestEscapingAnyBytes(t *testing.T) {
	tmpl, err := Parse(`x{a="{{str .Version}}", b=~"{{re .Version}}"}`)
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]string{
		"\xff":     `x{a="\xff", b=~"\xff"}`,
		"a\ufffdb": `x{a="a\ufffdb", b=~"a\ufffdb"}`,
		"\x01\r\t": `x{a="\x01\x0d\x09", b=~"\x01\x0d\x09"}`,
		"é\n\"\\.": `x{a="é\n\"\\.", b=~"é\n\"\\\\\\."}`,
	} {
		got, err := tmpl.Render(Params{Version: v})
		if err != nil || got != want {
			t.Errorf("%q: got %s (%v), want %s", v, got, err, want)
			continue
		}
		if _, lits, err := promLex(got); err != nil || lits[0] != v || lits[1] != regexp.QuoteMeta(v) {
			t.Errorf("%q: %s lexes to %q (%v)", v, got, lits, err)
		}
	}
}
