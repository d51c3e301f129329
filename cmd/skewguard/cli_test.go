package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeAPI answers the CLI's calls with canned bodies and records what it was asked.
type fakeAPI struct {
	mu       sync.Mutex
	requests []string // "METHOD path body"
	auth     []string
}

func (f *fakeAPI) start(t *testing.T) *httptest.Server {
	answers := map[string]struct {
		status int
		body   string
	}{
		"GET /api/v1/apps/shop/web/versions": {200, `{"app":{"namespace":"shop","name":"web"},"versions":[
			{"version":"2","life":1,"state":"active","serviceName":"web-v2","servicePort":80,"pendingAt":"2026-01-01T00:00:00Z","activeAt":"2026-01-01T00:01:00Z"},
			{"version":"1","life":1,"state":"draining","serviceName":"web-v1","servicePort":80,"pendingAt":"2025-12-31T00:00:00Z","lastRps":0.5}],
			"total":5,"limit":100,"offset":0}`},
		"GET /api/v1/apps/shop/web/policy": {200, `{"overrides":{"gracePeriodMs":60000},"resolved":{
			"gracePeriodMs":{"value":60000,"source":"override"},
			"maxAliveMs":{"value":86400000,"source":"default","setting":"PLT_SKEW_HTTP_MAX_ALIVE_MS"},
			"autoCleanup":{"value":false,"source":"default","setting":"PLT_SKEW_AUTO_CLEANUP"}}}`},
		"GET /api/v1/apps/shop/web/versions/1/audit": {200, `{"entries":[{"ref":{"version":"1"},"life":1,"event":"superseded",
			"fromState":"active","toState":"draining","actor":{"type":"workflow","id":"skew/shop/web/2"},"reason":"version 2 is active","at":"2026-01-01T00:01:00Z"}]}`},
		"GET /api/v1/apps/shop/web/audit": {200, `{"entries":[]}`},
		"GET /api/v1/apps/shop/web/versions/2/plan": {200, `{"app":{"namespace":"shop","name":"web"},"version":"2","step":"activate",
			"state":"pending","generation":3,"changes":[{"action":"apply","apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute",
			"namespace":"shop","name":"web","object":{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"web","namespace":"shop"}}}]}`},
		"GET /api/v1/apps/shop/web/versions/1/plan":     {404, `{"code":"plan_not_found","message":"version shop/web@1 has no pending plan"}`},
		"POST /api/v1/apps/shop/web/versions/1/expire":  {200, `{"version":"1","ok":true,"state":"expired","message":"expired by alice"}`},
		"POST /api/v1/apps/shop/web/versions/2/expire":  {409, `{"code":"action_rejected","message":"version 2 is the Active version of shop/web and cannot be expired"}`},
		"POST /api/v1/apps/shop/web/versions/1/promote": {403, `{"code":"forbidden","message":"viewer may not update versions.skewguard.dev"}`},
		"POST /api/v1/apps/shop/web/expire": {200, `{"results":[{"version":"1","ok":true,"state":"expired"},
			{"version":"9","ok":false,"error":{"code":"version_not_found","message":"version shop/web@9 not found"}}],"failed":1}`},
		"POST /api/v1/apps/shop/web/threshold": {200, `{"cutoff":"2026-01-01T00:00:00Z","results":[{"version":"1","ok":true,"state":"expired"}],
			"skipped":[{"version":"2","reason":"the Active version is never expired by a threshold"}],"failed":0}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		path := r.URL.Path
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		f.requests = append(f.requests, r.Method+" "+path+" "+string(body))
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		a, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			a.status, a.body = 404, `{"code":"not_found","message":"no route"}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOperatorCommands(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		request string
		stdout  []string
		stderr  string
	}{
		{name: "versions table", args: []string{"versions", "shop/web"}, request: "GET /api/v1/apps/shop/web/versions ",
			stdout: []string{"VERSION", "active", "web-v2:80", "draining", "0.5", "(1 to 2 of 5; --offset 2 for more)"}},
		{name: "versions filtered and paged", args: []string{"versions", "shop/web", "--state", "draining,staged", "--limit", "2", "--offset", "3"},
			request: "GET /api/v1/apps/shop/web/versions?limit=2&offset=3&state=draining%2Cstaged "},
		{name: "versions of an unknown state", args: []string{"versions", "shop/web", "--state", "sleeping"}, code: 2, stderr: `unknown state "sleeping"`},
		{name: "versions with a bad limit", args: []string{"versions", "shop/web", "--limit", "5000"}, code: 2, stderr: "limit 5000 out of range"},
		{name: "versions with a bad offset", args: []string{"versions", "shop/web", "--offset", "-1"}, code: 2, stderr: "offset -1 is negative"},
		{name: "policy", args: []string{"policy", "shop/web"}, request: "GET /api/v1/apps/shop/web/policy ",
			stdout: []string{"SETTING", "gracePeriodMs  60000     override", "maxAliveMs     86400000  default (PLT_SKEW_HTTP_MAX_ALIVE_MS)", "autoCleanup    false"}},
		{name: "policy needs an app", args: []string{"policy"}, code: 2, stderr: "usage: skewguard policy"},
		{name: "version audit", args: []string{"audit", "shop/web", "1"}, request: "GET /api/v1/apps/shop/web/versions/1/audit ",
			stdout: []string{"superseded", "active → draining", "workflow:skew/shop/web/2", "version 2 is active"}},
		{name: "app audit", args: []string{"audit", "shop/web", "--limit", "5"}, request: "GET /api/v1/apps/shop/web/audit?limit=5 "},
		{name: "expire one, flags after the arguments", args: []string{"expire", "shop/web", "1", "--reason", "bad build"},
			request: `POST /api/v1/apps/shop/web/versions/1/expire {"reason":"bad build"}`, stdout: []string{"shop/web version 1: expired"}},
		{name: "expire refused", args: []string{"expire", "shop/web", "2"}, code: 1,
			request: `POST /api/v1/apps/shop/web/versions/2/expire {}`, stderr: "action_rejected: version 2 is the Active version"},
		{name: "promote forbidden", args: []string{"promote", "shop/web", "1"}, code: 1,
			request: `POST /api/v1/apps/shop/web/versions/1/promote {}`, stderr: "forbidden: viewer may not"},
		{name: "bulk expire with a failure", args: []string{"expire", "shop/web", "1", "9"}, code: 1,
			request: `POST /api/v1/apps/shop/web/expire {"versions":["1","9"]}`, stdout: []string{"failed", "version_not_found"},
			stderr: "some versions failed: 1 of 2"},
		{name: "threshold", args: []string{"threshold", "shop/web", "--older-than", "2h", "--dry-run"},
			request: `POST /api/v1/apps/shop/web/threshold {"olderThan":"2h","dryRun":true}`, stdout: []string{"skipped", "never expired"}},
		{name: "threshold needs an age", args: []string{"threshold", "shop/web"}, code: 2, stderr: "--older-than"},
		{name: "bad app reference", args: []string{"versions", "web"}, code: 2, stderr: `"web" is not <namespace>/<app>`},
		{name: "bad output", args: []string{"versions", "shop/web", "-o", "yaml"}, code: 2, stderr: "-o must be table or json"},
		{name: "missing version", args: []string{"promote", "shop/web"}, code: 2, stderr: "usage: skewguard promote"},
		{name: "plan as yaml", args: []string{"plan", "shop/web", "2"}, request: "GET /api/v1/apps/shop/web/versions/2/plan ",
			stdout: []string{`# skewguard plan "activate" of shop/web 2`, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: web\n  namespace: shop\n"}},
		{name: "plan as json", args: []string{"plan", "shop/web", "2", "-o", "json"}, request: "GET /api/v1/apps/shop/web/versions/2/plan ", stdout: []string{`"step": "activate"`, `"kind": "HTTPRoute"`}},
		{name: "no pending plan", args: []string{"plan", "shop/web", "1"}, code: 1, request: "GET /api/v1/apps/shop/web/versions/1/plan ", stderr: "plan_not_found"},
		{name: "plan needs a version", args: []string{"plan", "shop/web"}, code: 2, stderr: "usage: skewguard plan"},
		{name: "plan has no table", args: []string{"plan", "shop/web", "2", "-o", "table"}, code: 2, stderr: "-o must be yaml or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{}
			srv := api.start(t)
			t.Setenv(envServer, srv.URL)
			t.Setenv(envToken, "secret-token")
			code, stdout, stderr := runCLI(tc.args...)
			assert.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, stdout, s)
			}
			if tc.stderr != "" {
				assert.Contains(t, stderr, tc.stderr)
			}
			assert.NotContains(t, stdout+stderr, "secret-token", "the token is never printed")
			if tc.request == "" {
				assert.Empty(t, api.requests)
				return
			}
			require.Len(t, api.requests, 1)
			assert.Equal(t, tc.request, api.requests[0])
			assert.Equal(t, "Bearer secret-token", api.auth[0])
		})
	}
}

func TestOperatorCommandsJSONOutput(t *testing.T) {
	api := &fakeAPI{}
	srv := api.start(t)
	code, stdout, stderr := runCLI("versions", "shop/web", "-o", "json", "--server", srv.URL, "--token", "t")
	require.Equal(t, 0, code, stderr)
	var out struct {
		Versions []struct {
			Version string `json:"version"`
		} `json:"versions"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	assert.Len(t, out.Versions, 2)
	assert.Equal(t, "Bearer t", api.auth[0])
}
