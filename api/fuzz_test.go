package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Every request body and path parameter has a fuzz target. Each checks the same promises:
// nothing panics, nothing answers 5xx while every dependency is healthy, every error is a JSON
// {code, message}, and every success is JSON. Run one briefly with, e.g.,
//
//	go test ./api -run '^$' -fuzz '^FuzzInstanceBody$' -fuzztime 5s
//
// These go through the whole handler (routing, path decoding, authentication, authorization,
// the fakes behind), so this package's test binary is large, and the fuzzing engine, which
// scans its coverage counters after every input, runs them at a few hundred inputs per second
// at most. The parsing and checking of what the caller sends is in internal/apiwire, whose
// targets of the same names explore it at thousands per second (hack/README.md, "Long
// fuzzing"); every input they keep in their corpus is also a seed here (seedFromWire), so it
// goes through the whole handler on every `go test ./api`.

var (
	fuzzOnce    sync.Once
	fuzzHarness *harness
)

// sharedHarness is built once per process: fuzzing runs the target millions of times.
func sharedHarness(t testing.TB) *harness {
	fuzzOnce.Do(func() { fuzzHarness = newHarness(&testing.T{}, harnessOptions{traffic: &fakeTraffic{}}) })
	if fuzzHarness == nil {
		t.Fatal("harness")
	}
	return fuzzHarness
}

func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("status %d with healthy dependencies: %s", rec.Code, rec.Body.String())
	}
	if rec.Code == http.StatusSwitchingProtocols {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with content type %q: %s", rec.Code, ct, rec.Body.String())
	}
	if rec.Code >= 400 {
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("status %d without a JSON error: %q", rec.Code, rec.Body.String())
		}
		return
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("status %d with invalid JSON: %q", rec.Code, rec.Body.String())
	}
}

// seedFromWire adds, as seeds, the corpus that internal/apiwire's target twin keeps in its
// testdata/fuzz/<twin> (same arguments).
func seedFromWire(f *testing.F, twin string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("..", "internal", "apiwire", "testdata", "fuzz", twin, "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		vals, err := readCorpusFile(p)
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		f.Add(vals...)
	}
}

// readCorpusFile reads a corpus file of Go's fuzzing engine whose values are []byte or string.
func readCorpusFile(path string) ([]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a corpus file of go test fuzz v1: %q", lines[0])
	}
	var vals []any
	for _, l := range lines[1:] {
		typ, quoted, ok := strings.Cut(l, "(")
		if !ok || !strings.HasSuffix(quoted, ")") {
			return nil, fmt.Errorf("not a value: %q", l)
		}
		v, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if err != nil {
			return nil, fmt.Errorf("%q: %v", l, err)
		}
		switch typ {
		case "[]byte":
			vals = append(vals, []byte(v))
		case "string":
			vals = append(vals, v)
		default:
			return nil, fmt.Errorf("a %s value; only []byte and string are read: %q", typ, l)
		}
	}
	return vals, nil
}

func seedBodies(f *testing.F, seeds ...string) {
	// No deeply nested seed (TestDeeplyNestedBodies): the engine minimizes every input that finds
	// new coverage, and one grown from 10,000 brackets, none of which can go, kept the target
	// from running for up to -fuzzminimizetime (60 s) each time.
	for _, s := range append(seeds, "", "{}", "null", "[]", `"x"`, "{", `{"a":1}{}`, "\x00") {
		f.Add([]byte(s))
	}
}

func FuzzInstanceBody(f *testing.F) {
	seedBodies(f, instanceBody, `{"podId":"web-v1-a","apiVersion":"v3"}`, `{"podId":"other"}`,
		`{"applicationName":null,"buildDeploymentId":7}`)
	seedFromWire(f, "FuzzInstanceBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		rec := h.serve(h.request("POST", "/control-plane/pods/web-v1-a/instance", tokenPodA, string(body)))
		checkAnswer(t, rec)
		if rec.Code == http.StatusOK {
			var res InstanceResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.ApplicationID == "" {
				t.Fatalf("a 200 without applicationId leaves the agent looping: %s", rec.Body.String())
			}
		}
	})
}

func FuzzStateBody(f *testing.F) {
	seedBodies(f, `{"id":"web-v1-a","services":[],"metadata":{"pid":1},"scheduler":[]}`)
	seedFromWire(f, "FuzzStateBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		checkAnswer(t, h.serve(h.request("POST", "/control-plane/pods/web-v1-a/instance/state", tokenPodA, string(body))))
	})
}

func FuzzPodID(f *testing.F) {
	for _, s := range []string{"web-v1-a", "web-v1-b", "ghost", "", "..", "a/b", "A", strings.Repeat("a", 300), "%00", "web-v1-a/instance"} {
		f.Add(s)
	}
	seedFromWire(f, "FuzzPodID")
	f.Fuzz(func(t *testing.T, podID string) {
		h := sharedHarness(t)
		for _, suffix := range []string{"/instance", "/instance/state"} {
			checkAnswer(t, h.serve(h.request("POST", "/control-plane/pods/"+url.PathEscape(podID)+suffix, tokenPodA, "{}")))
		}
	})
}

func FuzzUpdatesParams(f *testing.F) {
	f.Add("5d2b6f5e-1d6c-5a0e-9a53-3c8e0bd1f3a4", "9955e776-c1bc-467c-9aec-6e0ff2d6f50a")
	f.Add("", "")
	f.Add("a b", "\x00")
	seedFromWire(f, "FuzzUpdatesParams")
	f.Fuzz(func(t *testing.T, appID, runtimeID string) {
		h := sharedHarness(t)
		// Not an upgrade request: everything before the upgrade is exercised.
		path := "/api/updates/applications/" + url.PathEscape(appID) + "?runtimeId=" + url.QueryEscape(runtimeID)
		checkAnswer(t, h.serve(h.request("GET", path, tokenPodA, "")))
	})
}

func FuzzManagementPath(f *testing.F) {
	f.Add("shop", "web", "1")
	f.Add("Shop", "-web", "1.0-rc_1")
	f.Add("", "", "")
	f.Add("a/b", "..", "%2F")
	seedFromWire(f, "FuzzManagementPath")
	f.Fuzz(func(t *testing.T, ns, app, version string) {
		h := sharedHarness(t)
		base := "/api/v1/apps/" + url.PathEscape(ns) + "/" + url.PathEscape(app)
		for _, p := range []string{"/versions", "/versions/" + url.PathEscape(version), "/versions/" + url.PathEscape(version) + "/audit",
			"/versions/" + url.PathEscape(version) + "/rps", "/policy", "/audit"} {
			checkAnswer(t, h.serve(h.request("GET", base+p, tokenViewer, "")))
		}
		// The viewer may not act: these exercise validation and authorization only.
		checkAnswer(t, h.serve(h.request("POST", base+"/versions/"+url.PathEscape(version)+"/expire", tokenViewer, "")))
	})
}

// FuzzListAndSeriesQuery: any query string of the version list and the request-rate series is
// answered 200 or a 4xx JSON error, never a 5xx.
func FuzzListAndSeriesQuery(f *testing.F) {
	f.Add("draining,staged", "10", "5", "1h", "1m")
	f.Add("Active", "0", "-1", "7d", "1s")
	f.Add(",", "1e3", "99999999999999999999", "1.5h", "0.5s")
	f.Add("expired&state=failed", "", "", "-5m", "2h")
	f.Fuzz(func(t *testing.T, state, limit, offset, window, step string) {
		h := sharedHarness(t)
		q := url.Values{"state": {state}, "limit": {limit}, "offset": {offset}}
		checkAnswer(t, h.serve(h.request("GET", "/api/v1/apps/shop/web/versions?"+q.Encode(), tokenViewer, "")))
		q = url.Values{"window": {window}, "step": {step}}
		checkAnswer(t, h.serve(h.request("GET", "/api/v1/apps/shop/web/versions/1/rps?"+q.Encode(), tokenViewer, "")))
	})
}

func FuzzActionBody(f *testing.F) {
	seedBodies(f, `{"reason":"rollback"}`, `{"reason":""}`, `{"reason":1}`, `{"force":true}`)
	seedFromWire(f, "FuzzActionBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		// Version 9 does not exist, so a valid body ends in a 404 and the registry is unchanged.
		checkAnswer(t, h.serve(h.request("POST", "/api/v1/apps/shop/web/versions/9/promote", tokenAdmin, string(body))))
	})
}

func FuzzBulkExpireBody(f *testing.F) {
	seedBodies(f, `{"versions":["8","9"],"reason":"x"}`, `{"versions":[]}`, `{"versions":["9","9"]}`, `{"versions":[1]}`)
	seedFromWire(f, "FuzzBulkExpireBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		checkAnswer(t, h.serve(h.request("POST", "/api/v1/apps/shop/nope/expire", tokenAdmin, string(body))))
	})
}

func FuzzThresholdBody(f *testing.F) {
	seedBodies(f, `{"olderThan":"2h"}`, `{"olderThan":"7d","dryRun":true}`, `{"olderThan":"-1s"}`, `{"olderThan":"9999999999d"}`)
	seedFromWire(f, "FuzzThresholdBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		checkAnswer(t, h.serve(h.request("POST", "/api/v1/apps/shop/nope/threshold", tokenAdmin, string(body))))
	})
}

func FuzzPolicyBody(f *testing.F) {
	seedBodies(f, `{"gracePeriodMs":0}`, `{"maxAliveMs":0}`, `{"maxAliveMs":1,"gracePeriodMs":2}`,
		`{"cookieMaxAge":9223372036854775807}`, `{"autoCleanup":"yes"}`)
	seedFromWire(f, "FuzzStrictBody")
	f.Fuzz(func(t *testing.T, body []byte) {
		h := sharedHarness(t)
		checkAnswer(t, h.serve(h.request("PUT", "/api/v1/apps/shop/fuzzed/policy", tokenAdmin, string(body))))
	})
}

// TestDeeplyNestedBodies: past encoding/json's nesting limit, every body the API reads is a JSON
// 4xx through the whole handler, with the body targets' checks. (Not a fuzz seed: see seedBodies.)
func TestDeeplyNestedBodies(t *testing.T) {
	h := sharedHarness(t)
	for _, c := range []struct{ method, path, token string }{
		{"POST", "/control-plane/pods/web-v1-a/instance", tokenPodA},
		{"POST", "/control-plane/pods/web-v1-a/instance/state", tokenPodA},
		{"POST", "/api/v1/apps/shop/web/versions/9/promote", tokenAdmin},
		{"POST", "/api/v1/apps/shop/nope/expire", tokenAdmin},
		{"POST", "/api/v1/apps/shop/nope/threshold", tokenAdmin},
		{"PUT", "/api/v1/apps/shop/fuzzed/policy", tokenAdmin},
	} {
		for _, body := range []string{strings.Repeat("[", 10001), strings.Repeat(`{"a":`, 10001)} {
			rec := h.serve(h.request(c.method, c.path, c.token, body))
			checkAnswer(t, rec)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("%s %s with %.12q...: %d %s", c.method, c.path, body, rec.Code, rec.Body.String())
			}
		}
	}
}
