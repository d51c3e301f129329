package routes

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// The HTTPRoute CRD, as the Gateway API release in go.mod ships it. A new Gateway API version is a
// file swap: copy config/crd/standard/gateway.networking.k8s.io_httproutes.yaml of the module
// into testdata/crd. TestCRDCopyMatchesGoMod fails until the copy matches go.mod.
const crdFile = "testdata/crd/gateway.networking.k8s.io_httproutes.yaml"

// crdNode is the part of an OpenAPI v3 schema (with Kubernetes' extensions) that crdCheck reads.
// Keywords it does not know make loading fail, so a new CRD cannot silently add an unchecked rule.
type crdNode struct {
	Description string              `json:"description"`
	Type        string              `json:"type"`
	Format      string              `json:"format"`
	Properties  map[string]*crdNode `json:"properties"`
	Items       *crdNode            `json:"items"`
	Required    []string            `json:"required"`
	Enum        []any               `json:"enum"`
	Default     any                 `json:"default"`
	MaxItems    *int                `json:"maxItems"`
	MinItems    *int                `json:"minItems"`
	MaxLength   *int                `json:"maxLength"`
	MinLength   *int                `json:"minLength"`
	Maximum     *float64            `json:"maximum"`
	Minimum     *float64            `json:"minimum"`
	Pattern     string              `json:"pattern"`
	ListType    string              `json:"x-kubernetes-list-type"`
	ListMapKeys []string            `json:"x-kubernetes-list-map-keys"`
	Validations []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"x-kubernetes-validations"`

	// Compiled once, when the schema is loaded (FuzzRender checks every route of every input):
	pattern *regexp.Regexp
	matches *matchMemo      // pattern's answers by string
	cels    []*celMatch     // the Go twin of each of Validations, in order (rule nil: none)
	enum    map[string]bool // canonicalJSON of each of Enum
}

// matchMemo remembers a pattern's answers: successive inputs share most strings (group, kind,
// header names, the same hostnames and Service names), so matching them again was a seventh of
// FuzzRender's time. It is emptied when full, so a long run's memory stays bounded.
type matchMemo struct {
	mu sync.Mutex
	m  map[string]bool
}

const matchMemoMax = 1 << 12

func (c *matchMemo) match(re *regexp.Regexp, s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok, seen := c.m[s]; seen {
		return ok
	}
	if c.m == nil || len(c.m) >= matchMemoMax {
		c.m = make(map[string]bool)
	}
	ok := re.MatchString(s)
	c.m[s] = ok
	return ok
}

var (
	crdOnce   sync.Once
	crdRoot   *crdNode
	crdBundle string
	crdErr    error
)

// loadCRD reads the served v1 schema of the HTTPRoute CRD in testdata, once.
func loadCRD(t testing.TB) *crdNode {
	t.Helper()
	crdOnce.Do(func() { crdRoot, crdBundle, crdErr = readCRD(crdFile) })
	if crdErr != nil {
		t.Fatalf("%s: %v", crdFile, crdErr)
	}
	return crdRoot
}

func readCRD(path string) (*crdNode, string, error) {
	raw, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		return nil, "", err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, "", err
	}
	var crd struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string          `json:"name"`
				Served bool            `json:"served"`
				Schema json.RawMessage `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(js, &crd); err != nil {
		return nil, "", err
	}
	if crd.Spec.Names.Kind != "HTTPRoute" {
		return nil, "", fmt.Errorf("kind %q, want HTTPRoute", crd.Spec.Names.Kind)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != gatewayv1.GroupVersion.Version || !v.Served {
			continue
		}
		var s struct {
			OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
		}
		if err := json.Unmarshal(v.Schema, &s); err != nil {
			return nil, "", err
		}
		dec := json.NewDecoder(strings.NewReader(string(s.OpenAPIV3Schema)))
		dec.DisallowUnknownFields() // a keyword this checker does not know is a rule it would skip
		root := &crdNode{}
		if err := dec.Decode(root); err != nil {
			return nil, "", fmt.Errorf("schema of %s: %w (teach crdcheck_test.go the new keyword)", v.Name, err)
		}
		if err := root.compile("$"); err != nil {
			return nil, "", err
		}
		return root, crd.Metadata.Annotations["gateway.networking.k8s.io/bundle-version"], nil
	}
	return nil, "", fmt.Errorf("no served version %s", gatewayv1.GroupVersion.Version)
}

func (n *crdNode) compile(path string) error {
	if n.Pattern != "" {
		re, err := regexp.Compile(n.Pattern)
		if err != nil {
			return fmt.Errorf("%s: pattern: %w", path, err)
		}
		n.pattern = re
		n.matches = &matchMemo{}
	}
	for _, r := range n.Validations {
		n.cels = append(n.cels, celLookup(r.Rule))
	}
	if len(n.Enum) > 0 {
		n.enum = make(map[string]bool, len(n.Enum))
		for _, e := range n.Enum {
			n.enum[canonicalJSON(e)] = true
		}
	}
	for k, c := range n.Properties {
		if err := c.compile(path + "." + k); err != nil {
			return err
		}
	}
	if n.Items != nil {
		return n.Items.compile(path + "[]")
	}
	return nil
}

// crdCheck returns every way route breaks the CRD's rules as the API server applies them on
// create: the metadata rules of any object (name, namespace, labels, annotations), and the v1
// schema after defaulting: types, unknown fields, required fields, enums, lengths, patterns,
// item counts, list uniqueness, and the CEL rules (x-kubernetes-validations) through their Go
// twins in celRules. A CEL rule without a twin on a field that is present is reported too.
func crdCheck(t testing.TB, route gatewayv1.HTTPRoute) []string {
	t.Helper()
	root := loadCRD(t)
	var out []string
	for _, e := range apivalidation.ValidateObjectMeta(&route.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")) {
		out = append(out, e.Error())
	}
	raw, err := json.Marshal(route)
	if err != nil {
		return append(out, "marshal: "+err.Error())
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return append(out, "unmarshal: "+err.Error())
	}
	// The status subresource is on: the API server drops status on create and update.
	delete(obj, "status")
	if got, want := obj["apiVersion"], gatewayv1.GroupVersion.String(); got != want {
		out = append(out, fmt.Sprintf("apiVersion %v, want %s", got, want))
	}
	if obj["kind"] != "HTTPRoute" {
		out = append(out, fmt.Sprintf("kind %v, want HTTPRoute", obj["kind"]))
	}
	// etcd's default request limit; each route is far below it.
	if len(raw) > 1536*1024 {
		out = append(out, fmt.Sprintf("object is %d bytes", len(raw)))
	}
	root.check("", obj, &out)
	return out
}

func (n *crdNode) check(path string, v any, out *[]string) {
	bad := func(format string, args ...any) {
		*out = append(*out, path+": "+fmt.Sprintf(format, args...))
	}
	switch n.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, have %T", v)
			return
		}
		if n.Properties == nil { // metadata: checked by ValidateObjectMeta
			break
		}
		for k, val := range m {
			if val == nil { // null on a non-nullable field is dropped
				delete(m, k)
			}
		}
		for k, c := range n.Properties { // defaulting comes before validation
			if _, ok := m[k]; !ok && c.Default != nil {
				m[k] = deepCopyJSON(c.Default)
			}
		}
		for _, k := range n.Required {
			if _, ok := m[k]; !ok {
				bad("required field %q missing", k)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c, ok := n.Properties[k]
			if !ok {
				bad("unknown field %q (the API server would prune it)", k)
				continue
			}
			c.check(path+"."+k, m[k], out)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, have %T", v)
			return
		}
		if n.MaxItems != nil && len(a) > *n.MaxItems {
			bad("%d items, at most %d", len(a), *n.MaxItems)
		}
		if n.MinItems != nil && len(a) < *n.MinItems {
			bad("%d items, at least %d", len(a), *n.MinItems)
		}
		for i, it := range a {
			n.Items.check(fmt.Sprintf("%s[%d]", path, i), it, out)
		}
		seen := map[string]int{}
		for i, it := range a {
			var key string
			switch n.ListType {
			case "set":
				key = listKey(it)
			case "map":
				m, _ := it.(map[string]any)
				parts := make([]string, len(n.ListMapKeys))
				for j, k := range n.ListMapKeys {
					parts[j] = listKey(m[k])
				}
				key = strings.Join(parts, "\x00")
			default:
				continue
			}
			if j, dup := seen[key]; dup {
				bad("items %d and %d are the same %s-list key", j, i, n.ListType)
			}
			seen[key] = i
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			bad("want a string, have %T", v)
			return
		}
		if n.MaxLength != nil && utf8.RuneCountInString(s) > *n.MaxLength {
			bad("%q is longer than %d", s, *n.MaxLength)
		}
		if n.MinLength != nil && utf8.RuneCountInString(s) < *n.MinLength {
			bad("%q is shorter than %d", s, *n.MinLength)
		}
		if n.pattern != nil && !n.matches.match(n.pattern, s) {
			bad("%q does not match %s", s, n.Pattern)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			bad("want an integer, have %v", v)
			return
		}
		if n.Maximum != nil && f > *n.Maximum {
			bad("%v is above %v", f, *n.Maximum)
		}
		if n.Minimum != nil && f < *n.Minimum {
			bad("%v is below %v", f, *n.Minimum)
		}
		if n.Format == "int32" && (f > math.MaxInt32 || f < math.MinInt32) {
			bad("%v is not an int32", f)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, have %T", v)
		}
	default:
		bad("schema type %q not known to crdcheck_test.go", n.Type)
		return
	}
	if len(n.Enum) > 0 && !n.enum[canonicalJSON(v)] {
		bad("%v is not one of %v", v, n.Enum)
	}
	for i, r := range n.Validations {
		ok, known := n.cels[i].eval(v)
		switch {
		case !known:
			bad("CEL rule has no Go twin in crdcheck_test.go (add one): %s", r.Rule)
		case !ok:
			bad("CEL rule fails: %s (%s)", r.Message, r.Rule)
		}
	}
}

// listKey is canonicalJSON(v) for a list's uniqueness, without encoding a string (most keys are).
func listKey(v any) string {
	if s, ok := v.(string); ok {
		return "\x01" + s // canonicalJSON never starts with \x01
	}
	return canonicalJSON(v)
}

func canonicalJSON(v any) string {
	b, _ := json.Marshal(v) // map keys are sorted
	return string(b)
}

func deepCopyJSON(v any) any {
	var out any
	_ = json.Unmarshal([]byte(canonicalJSON(v)), &out)
	return out
}

// celRule is the Go twin of one shape of CEL rule: re matches the rule's text, eval decides it
// for self (the JSON value at the rule's place, defaulted) given re's submatches.
type celRule struct {
	re   *regexp.Regexp
	eval func(m []string, self any) bool
}

func celShape(expr string, eval func(m []string, self any) bool) celRule {
	return celRule{re: regexp.MustCompile(`^` + expr + `$`), eval: eval}
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }
func arr(v any) []any          { a, _ := v.([]any); return a }
func str(v any) string         { s, _ := v.(string); return s }
func has(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// prefixRewrite reports whether the filter list fs holds exactly one kind filter whose path is a
// ReplacePrefixMatch with its value (the CEL rules' exists_one).
func prefixRewrite(fs []any, kind string) bool {
	n := 0
	for _, f := range fs {
		k := obj(obj(f)[kind])
		p := obj(k["path"])
		if k != nil && p != nil && p["type"] == "ReplacePrefixMatch" && has(p, "replacePrefixMatch") {
			n++
		}
	}
	return n == 1
}

func onePrefixMatch(rule map[string]any) bool {
	ms := arr(rule["matches"])
	return len(ms) == 1 && has(obj(ms[0]), "path") && obj(obj(ms[0])["path"])["type"] == "PathPrefix"
}

// sameParent is the CEL rules' p1/p2 test: same group, kind, name and namespace (absent and ""
// alike).
func sameParent(a, b map[string]any) bool {
	return a["group"] == b["group"] && a["kind"] == b["kind"] && a["name"] == b["name"] && str(a["namespace"]) == str(b["namespace"])
}

const (
	celPathGuard         = `\(self\.type in \['Exact','PathPrefix'\]\) \? `
	celPrefixRule        = `\(has\(self\.filters\) && self\.filters\.exists_one\(f, has\(f\.(\w+)\) && has\(f\.\w+\.path\) && f\.\w+\.path\.type == 'ReplacePrefixMatch' && has\(f\.\w+\.path\.replacePrefixMatch\)\)\) \? \(\(size\(self\.matches\) != 1 \|\| !has\(self\.matches\[0\]\.path\) \|\| self\.matches\[0\]\.path\.type != 'PathPrefix'\) \? false : true\) : true`
	celBackendPrefixRule = `\(has\(self\.backendRefs\) && self\.backendRefs\.exists_one\(b, \(has\(b\.filters\) && b\.filters\.exists_one\(f, has\(f\.(\w+)\) && has\(f\.\w+\.path\) && f\.\w+\.path\.type == 'ReplacePrefixMatch' && has\(f\.\w+\.path\.replacePrefixMatch\)\)\) \)\) \? \(\(size\(self\.matches\) != 1 \|\| !has\(self\.matches\[0\]\.path\) \|\| self\.matches\[0\]\.path\.type != 'PathPrefix'\) \? false : true\) : true`
)

// celRules are the CEL rules of the HTTPRoute CRD, by shape, in Go. Each shape is written from
// the rule's text; the rules on fields skewguard never renders (CORS, mirrors, redirects,
// timeouts...) need no twin, since a rule is only evaluated where its field is present.
var celRules = []celRule{
	// filters[]: a filter's type and its one field agree.
	celShape(`!\(has\(self\.(\w+)\) && self\.type != '(\w+)'\)`, func(m []string, self any) bool {
		return !(has(obj(self), m[1]) && obj(self)["type"] != m[2])
	}),
	celShape(`!\(!has\(self\.(\w+)\) && self\.type == '(\w+)'\)`, func(m []string, self any) bool {
		return !(!has(obj(self), m[1]) && obj(self)["type"] == m[2])
	}),
	// filters: at most n of a type; not both of two types.
	celShape(`self\.filter\(f, f\.type == '(\w+)'\)\.size\(\) <= (\d+)`, func(m []string, self any) bool {
		n := 0
		for _, f := range arr(self) {
			if obj(f)["type"] == m[1] {
				n++
			}
		}
		limit, _ := strconv.Atoi(m[2])
		return n <= limit
	}),
	celShape(`!\(self\.exists\(f, f\.type == '(\w+)'\) && self\.exists\(f, f\.type == '(\w+)'\)\)`, func(m []string, self any) bool {
		is := func(t string) bool {
			return slices.ContainsFunc(arr(self), func(f any) bool { return obj(f)["type"] == t })
		}
		return !(is(m[1]) && is(m[2]))
	}),
	// urlRewrite.path, requestRedirect.path: the type and its field agree.
	celShape(`self\.type == '(\w+)' \? has\(self\.(\w+)\) : true`, func(m []string, self any) bool {
		return obj(self)["type"] != m[1] || has(obj(self), m[2])
	}),
	celShape(`has\(self\.(\w+)\) \? self\.type == '(\w+)' : true`, func(m []string, self any) bool {
		return !has(obj(self), m[1]) || obj(self)["type"] == m[2]
	}),
	// matches[].path: the rules on Exact and PathPrefix values.
	celShape(celPathGuard+`self\.value\.startsWith\('([^']*)'\) : true`, func(m []string, self any) bool {
		return !exactOrPrefix(self) || strings.HasPrefix(str(obj(self)["value"]), m[1])
	}),
	celShape(celPathGuard+`!self\.value\.contains\('([^']*)'\) : true`, func(m []string, self any) bool {
		return !exactOrPrefix(self) || !strings.Contains(str(obj(self)["value"]), m[1])
	}),
	celShape(celPathGuard+`!self\.value\.endsWith\('([^']*)'\) : true`, func(m []string, self any) bool {
		return !exactOrPrefix(self) || !strings.HasSuffix(str(obj(self)["value"]), m[1])
	}),
	celShape(celPathGuard+`self\.value\.matches\(r"""(.*)"""\) : true`, func(m []string, self any) bool {
		// CEL's matches is RE2 and unanchored, like Go's MatchString.
		return !exactOrPrefix(self) || compiledOnce(m[1]).MatchString(str(obj(self)["value"]))
	}),
	celShape(`self\.type in \['Exact','PathPrefix'\] \|\| self\.type == 'RegularExpression'`, func(_ []string, self any) bool {
		t := obj(self)["type"]
		return t == "Exact" || t == "PathPrefix" || t == "RegularExpression"
	}),
	// backendRefs[]: a Service of the core group needs a port.
	celShape(`\(size\(self\.group\) == 0 && self\.kind == 'Service'\) \? has\(self\.port\) : true`, func(_ []string, self any) bool {
		b := obj(self)
		return !(str(b["group"]) == "" && b["kind"] == "Service") || has(b, "port")
	}),
	// rules: at most n matches across all rules (the rule adds up rules 0-15, all of them).
	celShape(`\(self\.size\(\) > 0 \? self\[0\]\.matches\.size\(\) : 0\)(?: \+ \(self\.size\(\) > \d+ \? self\[\d+\]\.matches\.size\(\) : 0\))* <= (\d+)`, func(m []string, self any) bool {
		n := 0
		for _, r := range arr(self) {
			n += len(arr(obj(r)["matches"]))
		}
		limit, _ := strconv.Atoi(m[1])
		return n <= limit
	}),
	// rules[]: no redirect together with backends; ReplacePrefixMatch needs one PathPrefix match.
	celShape(`\(has\(self\.backendRefs\) && size\(self\.backendRefs\) > 0\) \? \(!has\(self\.filters\) \|\| self\.filters\.all\(f, !has\(f\.requestRedirect\)\)\): true`, func(_ []string, self any) bool {
		r := obj(self)
		if len(arr(r["backendRefs"])) == 0 {
			return true
		}
		return !slices.ContainsFunc(arr(r["filters"]), func(f any) bool { return has(obj(f), "requestRedirect") })
	}),
	celShape(celPrefixRule, func(m []string, self any) bool {
		r := obj(self)
		return !prefixRewrite(arr(r["filters"]), m[1]) || onePrefixMatch(r)
	}),
	celShape(celBackendPrefixRule, func(m []string, self any) bool {
		r := obj(self)
		n := 0
		for _, b := range arr(r["backendRefs"]) {
			if prefixRewrite(arr(obj(b)["filters"]), m[1]) {
				n++
			}
		}
		return n != 1 || onePrefixMatch(r)
	}),
	// parentRefs: a parent listed twice needs a sectionName on every reference to it...
	celShape(`self\.all\(p1, self\.all\(p2, p1\.group == p2\.group && p1\.kind == p2\.kind && p1\.name == p2\.name && .* \? \(\(!has\(p1\.sectionName\) \|\| p1\.sectionName == ''\) == \(!has\(p2\.sectionName\) \|\| p2\.sectionName == ''\)\) : true\)\)`, func(_ []string, self any) bool {
		for _, a := range arr(self) {
			for _, b := range arr(self) {
				if sameParent(obj(a), obj(b)) && (str(obj(a)["sectionName"]) == "") != (str(obj(b)["sectionName"]) == "") {
					return false
				}
			}
		}
		return true
	}),
	// ... and distinct ones.
	celShape(`self\.all\(p1, self\.exists_one\(p2, p1\.group == p2\.group && p1\.kind == p2\.kind && p1\.name == p2\.name && .*p1\.sectionName == p2\.sectionName\)\)\)\)`, func(_ []string, self any) bool {
		for _, a := range arr(self) {
			n := 0
			for _, b := range arr(self) {
				if sameParent(obj(a), obj(b)) && str(obj(a)["sectionName"]) == str(obj(b)["sectionName"]) {
					n++
				}
			}
			if n != 1 {
				return false
			}
		}
		return true
	}),
}

var crdRegexps sync.Map // the CRD's own patterns: a fixed, small set

func compiledOnce(p string) *regexp.Regexp {
	if re, ok := crdRegexps.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(p)
	crdRegexps.Store(p, re)
	return re
}

func exactOrPrefix(self any) bool {
	t := obj(self)["type"]
	return t == "Exact" || t == "PathPrefix"
}

var celCache sync.Map // rule text -> *celMatch

type celMatch struct {
	rule *celRule
	m    []string
}

func celLookup(rule string) *celMatch {
	if c, ok := celCache.Load(rule); ok {
		return c.(*celMatch)
	}
	c := &celMatch{}
	flat := strings.Join(strings.Fields(rule), " ")
	for i := range celRules {
		if m := celRules[i].re.FindStringSubmatch(flat); m != nil {
			c = &celMatch{rule: &celRules[i], m: m}
			break
		}
	}
	celCache.Store(rule, c)
	return c
}

// eval decides the rule for self; known is false when no Go twin matches the rule's text.
func (c *celMatch) eval(self any) (ok, known bool) {
	if c.rule == nil {
		return false, false
	}
	return c.rule.eval(c.m, self), true
}

// TestCRDCopyMatchesGoMod: the CRD in testdata is the one of the Gateway API release go.mod uses.
func TestCRDCopyMatchesGoMod(t *testing.T) {
	loadCRD(t)
	mod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*sigs\.k8s\.io/gateway-api (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("sigs.k8s.io/gateway-api not in go.mod")
	}
	if crdBundle != string(m[1]) {
		t.Fatalf("%s is bundle %s, go.mod has gateway-api %s: copy the module's config/crd/standard/%s",
			crdFile, crdBundle, m[1], filepath.Base(crdFile))
	}
}

// TestCRDCheckAcceptsGoldenAndRefusesBreakage: every golden rendering passes, and each kind of
// breakage the renderer must avoid is caught, so the checker cannot pass by checking nothing.
func TestCRDCheckAcceptsGoldenAndRefusesBreakage(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	require := func(cond bool, format string, args ...any) {
		t.Helper()
		if !cond {
			t.Fatalf(format, args...)
		}
	}
	require(len(ins) > 5, "golden inputs: %v", ins)
	var sample gatewayv1.HTTPRoute
	for _, p := range ins {
		got, err := Render(readInput(t, p))
		require(err == nil, "%s: %v", p, err)
		for _, r := range got {
			probs := crdCheck(t, r)
			require(len(probs) == 0, "%s %s: %v", p, r.Name, probs)
			if len(r.Spec.Rules) > len(sample.Spec.Rules) && len(r.Spec.Rules[0].Filters) > 0 {
				sample = r
			}
		}
	}
	require(len(sample.Spec.Rules) > 2, "no sample with a rewrite found")
	breakages := map[string]func(r *gatewayv1.HTTPRoute){
		"17 rules": func(r *gatewayv1.HTTPRoute) {
			for len(r.Spec.Rules) <= 16 {
				r.Spec.Rules = append(r.Spec.Rules, r.Spec.Rules[0])
			}
		},
		"129 matches": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules = r.Spec.Rules[:1]
			r.Spec.Rules[0].Filters = nil
			m := r.Spec.Rules[0].Matches[0]
			for i := 0; i < 3; i++ {
				rule := gatewayv1.HTTPRouteRule{BackendRefs: r.Spec.Rules[0].BackendRefs}
				for j := 0; j < 43; j++ {
					rule.Matches = append(rule.Matches, m)
				}
				r.Spec.Rules = append(r.Spec.Rules, rule)
			}
		},
		"rewrite with two matches": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].Matches = append(r.Spec.Rules[0].Matches, r.Spec.Rules[0].Matches[0])
		},
		"path with //":    func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].Matches[0].Path.Value = new("/a//b") },
		"path with space": func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].Matches[0].Path.Value = new("/a b") },
		"header name": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].Matches[0].Headers = []gatewayv1.HTTPHeaderMatch{{Name: "bad name", Value: "x"}}
		},
		"hostname": func(r *gatewayv1.HTTPRoute) { r.Spec.Hostnames = []gatewayv1.Hostname{"Bad_Host"} },
		"port 0":   func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].BackendRefs[0].Port = new(gatewayv1.PortNumber(0)) },
		"no port":  func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].BackendRefs[0].Port = nil },
		"service name": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].BackendRefs[0].Name = gatewayv1.ObjectName(strings.Repeat("s", 254))
		},
		"same parent twice": func(r *gatewayv1.HTTPRoute) {
			r.Spec.ParentRefs = append(r.Spec.ParentRefs, r.Spec.ParentRefs[0])
		},
		"two URL rewrites": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].Filters = append(r.Spec.Rules[0].Filters, r.Spec.Rules[0].Filters[0])
		},
		"filter type mismatch": func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].Filters[0].Type = gatewayv1.HTTPRouteFilterRequestHeaderModifier
		},
		"name":        func(r *gatewayv1.HTTPRoute) { r.Name = "Web_1" },
		"label value": func(r *gatewayv1.HTTPRoute) { r.Labels = map[string]string{AppLabel: strings.Repeat("a", 64)} },
		"namespace":   func(r *gatewayv1.HTTPRoute) { r.Namespace = "" },
	}
	for name, breakIt := range breakages {
		raw, _ := json.Marshal(sample)
		var r gatewayv1.HTTPRoute
		_ = json.Unmarshal(raw, &r)
		breakIt(&r)
		probs := crdCheck(t, r)
		t.Logf("%s: %v", name, probs)
		require(len(probs) > 0, "%s: not caught", name)
	}
}
