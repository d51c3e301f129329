package apiwire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The fuzz targets of what the API reads: every path parameter and request body. Each checks
// that nothing panics, that a refusal is a 4xx with a stable code and a message that encode as
// the API's JSON {code, message}, and that what is accepted keeps the promises the handlers
// rely on, checked here against an independent statement of the rule (a regular expression, a
// second decoding). The same inputs go through the whole handler in package api's targets of the
// same names; those run in a binary whose coverage map is about 100 times larger, which limits
// the fuzzing engine to a few hundred inputs per second there (hack/README.md, "Long fuzzing").
//
//	go test ./internal/apiwire -run '^$' -fuzz '^FuzzBulkExpireBody$' -fuzztime 10s

const podID = "web-v1-a"

var (
	// The Kubernetes rules, stated apart from the code under test (apimachinery's rules through
	// internal/validate, and byte loops).
	reDNSLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	reDNSSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	reLabelValue   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	reOpaqueID     = regexp.MustCompile(`^[-A-Za-z0-9_.]+$`)
)

func isDNSLabel(s string) bool     { return len(s) <= 63 && reDNSLabel.MatchString(s) }
func isDNSSubdomain(s string) bool { return len(s) <= 253 && reDNSSubdomain.MatchString(s) }
func isLabelValue(s string) bool   { return len(s) <= 63 && reLabelValue.MatchString(s) }
func isOpaqueID(s string) bool     { return len(s) <= 128 && reOpaqueID.MatchString(s) }

// checkProblem: a refusal is a 400 or 415 with one of the given codes and a message, and encodes
// as the API's error body.
func checkProblem(t *testing.T, p *Problem, codes ...string) {
	t.Helper()
	if p.Status != http.StatusBadRequest && p.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("status %d for a caller's mistake: %v", p.Status, p)
	}
	known := false
	for _, c := range codes {
		known = known || p.Code == c
	}
	if !known {
		t.Fatalf("code %q, want one of %q: %v", p.Code, codes, p)
	}
	if p.Message == "" {
		t.Fatalf("no message: %#v", p)
	}
	raw, err := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{p.Code, p.Message})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Code, Message string }
	if err := json.Unmarshal(raw, &back); err != nil || back.Code != p.Code || back.Message == "" {
		t.Fatalf("the error body %s does not decode back: %v", raw, err)
	}
}

// roundTrip: an accepted body, encoded again, decodes strictly to the same value (nothing was
// half-read).
func roundTrip[T any](t *testing.T, v T, parse func([]byte) (T, *Problem)) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("an accepted body does not encode: %v", err)
	}
	again, p := parse(raw)
	if p != nil {
		t.Fatalf("%s, the encoding of an accepted body, is refused: %v", raw, p)
	}
	if !reflect.DeepEqual(again, v) {
		t.Fatalf("%s decodes to %#v, not %#v", raw, again, v)
	}
}

// strictJSON: whether body holds exactly one JSON value (spaces around it allowed).
func strictJSON(body []byte) bool {
	return !blank(body) && json.Valid(body)
}

// blank: nothing but JSON's white space (RFC 8259: space, tab, LF, CR), which is how an empty
// body may look.
func blank(body []byte) bool {
	return len(bytes.Trim(body, " \t\n\r")) == 0
}

func seedBodies(f *testing.F, seeds ...string) {
	// White space JSON does not have (form feed, vertical tab, NEL, no-break space) is not blank.
	// No deeply nested seed (TestDeeplyNestedBodies): the engine minimizes every input that finds
	// new coverage, and one grown from 10,000 brackets, none of which can go, kept the target
	// from running for up to -fuzzminimizetime (60 s) each time.
	for _, s := range append(seeds, "", "{}", "null", "[]", `"x"`, "{", `{"a":1}{}`, "\x00",
		"\f{}", "\v", "\u0085", "\u00a0{}\n") {
		f.Add([]byte(s))
	}
}

func FuzzInstanceBody(f *testing.F) {
	seedBodies(f, `{"podId":"web-v1-a","applicationName":"web","buildDeploymentId":"1"}`, `{"podId":"web-v1-a","apiVersion":"v3"}`,
		`{"podId":"other"}`, `{"applicationName":null,"buildDeploymentId":7}`, ` {"x":[1,{"y":2}]} `)
	f.Fuzz(func(t *testing.T, body []byte) {
		req, p := ParseInstanceBody(body, podID)
		empty := blank(body)
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON, CodeInvalidRequest)
			if p.Code == CodeInvalidRequest && req.PodID == podID {
				t.Fatalf("refused its own pod: %v", p)
			}
			return
		}
		if !empty && (bytes.Trim(body, " \t\n\r")[0] != '{' || !strictJSON(body)) {
			t.Fatalf("accepted %q, neither empty nor one JSON object", body)
		}
		if req.PodID != "" && req.PodID != podID {
			t.Fatalf("accepted podId %q for the path's %q", req.PodID, podID)
		}
		// Extra fields are ignored, the known ones are what encoding/json reads.
		var want InstanceRequest
		if !empty {
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("accepted %q that encoding/json refuses: %v", body, err)
			}
		}
		if req != want {
			t.Fatalf("read %#v, encoding/json reads %#v", req, want)
		}
	})
}

func FuzzStateBody(f *testing.F) {
	seedBodies(f, `{"id":"web-v1-a","services":[],"metadata":{"pid":1},"scheduler":[]}`, "{ \"a\" :\n [ 1 , 2 ] }")
	f.Fuzz(func(t *testing.T, body []byte) {
		state, p := ParseStateBody(body)
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON)
			if blank(body) {
				t.Fatal("refused an empty body (an empty object)")
			}
			return
		}
		if !json.Valid(state) || state[0] != '{' {
			t.Fatalf("stored %q, not a JSON object", state)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, state); err != nil || !bytes.Equal(compact.Bytes(), state) {
			t.Fatalf("stored %q, not compacted", state)
		}
		if blank(body) {
			if string(state) != "{}" {
				t.Fatalf("an empty body stored as %q", state)
			}
			return
		}
		var a, b any
		if json.Unmarshal(body, &a) != nil || json.Unmarshal(state, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("stored %q for %q", state, body)
		}
	})
}

func FuzzPodID(f *testing.F) {
	for _, s := range []string{"web-v1-a", "web-v1-b", "ghost", "", "..", "a/b", "A", strings.Repeat("a", 300), "%00", "web-v1-a/instance", "a.b-c", "-a", "a."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p := CheckPodID(id)
		if (p == nil) != isDNSSubdomain(id) {
			t.Fatalf("pod name %q: refusal %v, RFC 1123 subdomain %v", id, p, isDNSSubdomain(id))
		}
		if p != nil {
			checkProblem(t, p, CodeInvalidPath)
		}
	})
}

func FuzzUpdatesParams(f *testing.F) {
	f.Add("5d2b6f5e-1d6c-5a0e-9a53-3c8e0bd1f3a4", "9955e776-c1bc-467c-9aec-6e0ff2d6f50a")
	f.Add("", "")
	f.Add("a b", "\x00")
	f.Add("app", strings.Repeat("r", 129))
	f.Fuzz(func(t *testing.T, appID, runtimeID string) {
		p := CheckUpdatesParams(appID, runtimeID)
		want := isOpaqueID(appID) && (runtimeID == "" || isOpaqueID(runtimeID))
		if (p == nil) != want {
			t.Fatalf("applicationId %q, runtimeId %q: refusal %v, want accepted %v", appID, runtimeID, p, want)
		}
		if p == nil {
			return
		}
		checkProblem(t, p, CodeInvalidPath, CodeInvalidRequest)
		if (p.Code == CodeInvalidPath) != !isOpaqueID(appID) {
			t.Fatalf("applicationId %q refused with %v", appID, p)
		}
	})
}

func FuzzManagementPath(f *testing.F) {
	f.Add("shop", "web", "1")
	f.Add("Shop", "-web", "1.0-rc_1")
	f.Add("", "", "")
	f.Add("a/b", "..", "%2F")
	f.Add(strings.Repeat("n", 64), strings.Repeat("a", 63), "v_")
	f.Fuzz(func(t *testing.T, ns, app, version string) {
		pa := CheckAppPath(ns, app)
		pv := CheckVersionPath(ns, app, version)
		appOK := isDNSLabel(ns) && isLabelValue(app)
		if (pa == nil) != appOK {
			t.Fatalf("namespace %q, app %q: refusal %v, want accepted %v", ns, app, pa, appOK)
		}
		if (pv == nil) != (appOK && isLabelValue(version)) {
			t.Fatalf("namespace %q, app %q, version %q: refusal %v", ns, app, version, pv)
		}
		if (CheckVersionLabel(version) == nil) != isLabelValue(version) {
			t.Fatalf("version %q in a body: %v", version, CheckVersionLabel(version))
		}
		for _, p := range []*Problem{pa, pv} {
			if p != nil {
				checkProblem(t, p, CodeInvalidPath)
			}
		}
	})
}

func FuzzActionBody(f *testing.F) {
	seedBodies(f, `{"reason":"rollback"}`, `{"reason":""}`, `{"reason":1}`, `{"force":true}`,
		`{"reason":"`+strings.Repeat("r", MaxReasonLength)+`"}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, p := ParseActionBody(body)
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON, CodeInvalidRequest)
			if blank(body) {
				t.Fatal("refused an empty body (no reason)")
			}
			return
		}
		if !blank(body) && !strictJSON(body) {
			t.Fatalf("accepted %q, not one JSON value", body)
		}
		if len(b.Reason) > MaxReasonLength {
			t.Fatalf("accepted a reason of %d bytes", len(b.Reason))
		}
		roundTrip(t, b, ParseActionBody)
	})
}

func FuzzBulkExpireBody(f *testing.F) {
	seedBodies(f, `{"versions":["8","9"],"reason":"x"}`, `{"versions":[]}`, `{"versions":["9","9"]}`, `{"versions":[1]}`,
		`{"versions":["a"],"extra":1}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, p := ParseBulkExpireBody(body)
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON, CodeInvalidRequest)
			return
		}
		if !strictJSON(body) {
			t.Fatalf("accepted %q, not one JSON value", body)
		}
		if n := len(b.Versions); n == 0 || n > MaxBulkVersions {
			t.Fatalf("accepted %d versions", n)
		}
		seen := map[string]bool{}
		for _, v := range b.Versions {
			if !isLabelValue(v) || seen[v] {
				t.Fatalf("accepted version %q (listed before: %v)", v, seen[v])
			}
			seen[v] = true
		}
		if len(b.Reason) > MaxReasonLength {
			t.Fatalf("accepted a reason of %d bytes", len(b.Reason))
		}
		roundTrip(t, b, ParseBulkExpireBody)
	})
}

func FuzzThresholdBody(f *testing.F) {
	seedBodies(f, `{"olderThan":"2h"}`, `{"olderThan":"7d","dryRun":true}`, `{"olderThan":"-1s"}`, `{"olderThan":"9999999999d"}`,
		`{"olderThan":" 3650d "}`, `{"olderThan":"1.5h","reason":"old"}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, age, p := ParseThresholdBody(body)
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON, CodeInvalidRequest)
			return
		}
		if !strictJSON(body) {
			t.Fatalf("accepted %q, not one JSON value", body)
		}
		if age <= 0 {
			t.Fatalf("accepted olderThan %q as %v", b.OlderThan, age)
		}
		s := strings.TrimSpace(b.OlderThan)
		if days, ok := strings.CutSuffix(s, "d"); ok {
			if age%(24*time.Hour) != 0 || age > 3650*24*time.Hour || days == "" {
				t.Fatalf("accepted olderThan %q as %v", b.OlderThan, age)
			}
		} else if d, err := time.ParseDuration(s); err != nil || d != age {
			t.Fatalf("accepted olderThan %q as %v (time.ParseDuration: %v, %v)", b.OlderThan, age, d, err)
		}
		if len(b.Reason) > MaxReasonLength {
			t.Fatalf("accepted a reason of %d bytes", len(b.Reason))
		}
		again, _, p := ParseThresholdBody(must(json.Marshal(b)))
		if p != nil || again != b {
			t.Fatalf("the encoding of accepted %#v reads back as %#v, %v", b, again, p)
		}
	})
}

// FuzzStrictBody: DecodeStrict, the framing of every management body (the policy's included),
// on a body of any shape.
func FuzzStrictBody(f *testing.F) {
	seedBodies(f, `{"gracePeriodMs":0}`, `{"maxAliveMs":1,"gracePeriodMs":2}`, `{"cookieMaxAge":9223372036854775807}`,
		`{"autoCleanup":"yes"}`, " {\"a\":1} \n", `{"a":1} x`, `1 2`)
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			A  int64  `json:"a"`
			MS *int64 `json:"maxAliveMs"`
			G  int64  `json:"gracePeriodMs"`
			C  int64  `json:"cookieMaxAge"`
			B  bool   `json:"autoCleanup"`
		}
		empty := blank(body)
		if p := DecodeStrict(body, &v, true); p != nil {
			checkProblem(t, p, CodeInvalidJSON)
			if empty {
				t.Fatal("refused an empty body where it is allowed")
			}
		} else if !empty && !strictJSON(body) {
			t.Fatalf("accepted %q, not exactly one JSON value", body)
		}
		var value, plain any
		p := DecodeStrict(body, &value, false)
		// One JSON value that Go can hold: a number beyond float64 (1e400) is valid JSON that no
		// float64 holds, and is refused as invalid_json like any body that cannot be read.
		holds := strictJSON(body) && json.Unmarshal(body, &plain) == nil
		if (p == nil) != holds {
			t.Fatalf("%q: refusal %v, one JSON value Go can hold %v", body, p, holds)
		}
		if p != nil {
			checkProblem(t, p, CodeInvalidJSON)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
