package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
)

// The body watt-extra 1.15.0 sends (capture.txt, RUN 1).
const instanceBody = `{"podId":"web-v1-a","apiVersion":"v3","applicationName":"shop","buildDeploymentId":"build-abc123"}`

func TestRegisterInstance(t *testing.T) {
	tests := []struct {
		name     string
		opts     harnessOptions
		pod      string
		token    string
		body     string
		status   int
		code     string
		version  string // expected deploymentVersion ("" = absent)
		appName  string
		starts   int
		setup    func(h *harness)
		noRecord bool
	}{
		{name: "own pod registers", pod: "web-v1-a", token: tokenPodA, body: instanceBody,
			status: http.StatusOK, version: "1", appName: "web", starts: 1},
		{name: "the agent's minimal body", pod: "web-v1-a", token: tokenPodA, body: `{"podId":"web-v1-a","apiVersion":"v3"}`,
			status: http.StatusOK, version: "1", appName: "web", starts: 1},
		{name: "an empty body is an empty object", pod: "web-v1-a", token: tokenPodA,
			status: http.StatusOK, version: "1", appName: "web", starts: 1},
		{name: "unknown fields from newer agents are ignored", pod: "web-v1-a", token: tokenPodA,
			body: `{"podId":"web-v1-a","apiVersion":"v4","somethingNew":{"x":[1,2]}}`, status: http.StatusOK, version: "1", appName: "web", starts: 1},
		{name: "live version takes the fast path", pod: "web-v1-a", token: tokenPodA, body: instanceBody,
			setup: func(h *harness) {
				h.reg.addVersion(registry.Version{Namespace: "shop", App: "web", Label: "1", State: registry.Active})
			},
			status: http.StatusOK, version: "1", appName: "web", starts: 0},
		{name: "no token", pod: "web-v1-a", body: instanceBody, status: http.StatusUnauthorized, code: CodeUnauthenticated, noRecord: true},
		{name: "the agent's literal Bearer undefined", pod: "web-v1-a", token: "undefined", body: instanceBody,
			status: http.StatusUnauthorized, code: CodeTokenUndefined, noRecord: true},
		{name: "forged token", pod: "web-v1-a", token: "forged", body: instanceBody,
			status: http.StatusUnauthorized, code: CodeUnauthenticated, noRecord: true},
		{name: "someone else's pod", pod: "web-v1-b", token: tokenPodA, body: `{}`,
			status: http.StatusForbidden, code: CodePodMismatch, noRecord: true},
		{name: "a token not bound to a pod", pod: "web-v1-a", token: tokenPlainSA, body: instanceBody,
			status: http.StatusForbidden, code: CodeNotPodToken, noRecord: true},
		{name: "a user token", pod: "web-v1-a", token: tokenAdmin, body: instanceBody,
			status: http.StatusForbidden, code: CodeNotPodToken, noRecord: true},
		{name: "unknown pod", pod: "ghost", token: tokenPodA, body: `{}`,
			status: http.StatusNotFound, code: CodePodNotFound, noRecord: true},
		{name: "malformed JSON", pod: "web-v1-a", token: tokenPodA, body: `{"podId":`,
			status: http.StatusBadRequest, code: CodeInvalidJSON, noRecord: true},
		{name: "not an object", pod: "web-v1-a", token: tokenPodA, body: `["web-v1-a"]`,
			status: http.StatusBadRequest, code: CodeInvalidJSON, noRecord: true},
		{name: "podId differs from the path", pod: "web-v1-a", token: tokenPodA, body: `{"podId":"web-v1-b"}`,
			status: http.StatusBadRequest, code: CodeInvalidRequest, noRecord: true},
		{name: "oversized body", pod: "web-v1-a", token: tokenPodA, body: `{"x":"` + strings.Repeat("a", agentBodyLimit) + `"}`,
			status: http.StatusRequestEntityTooLarge, code: CodeBodyTooLarge, noRecord: true},
		{name: "API server down", pod: "web-v1-a", token: tokenBroken, body: instanceBody,
			status: http.StatusServiceUnavailable, code: CodeAuthUnavailable, noRecord: true},
		{name: "pod without labels boots without a version", pod: "plain", token: "", opts: harnessOptions{insecurePod: true},
			body: `{"applicationName":"legacy"}`, status: http.StatusOK, appName: "legacy"},
		{name: "feature off: answered, nothing started", pod: "web-v1-a", token: tokenPodA, opts: harnessOptions{disabled: true},
			body: instanceBody, status: http.StatusOK, appName: "web", noRecord: true},
		{name: "pod auth off: ambiguous name", pod: "web-v1-a", opts: harnessOptions{insecurePod: true}, body: instanceBody,
			status: http.StatusConflict, code: CodeAmbiguousPod, noRecord: true},
		{name: "pod auth off: unique name", pod: "web-v2-a", opts: harnessOptions{insecurePod: true}, body: `{}`,
			status: http.StatusOK, version: "2", appName: "web", starts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts)
			if tc.setup != nil {
				tc.setup(h)
			}
			rec := h.do(t, http.MethodPost, "/control-plane/pods/"+tc.pod+"/instance", tc.token, tc.body)
			require.Equal(t, tc.status, rec.Code, "body: %s", rec.Body.String())
			if tc.code != "" {
				assert.Equal(t, tc.code, errorCode(t, rec))
			} else {
				var raw map[string]any
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &raw))
				assert.NotEmpty(t, raw["applicationId"], "the agent loops forever without applicationId")
				got := decode[InstanceResponse](t, rec)
				assert.Equal(t, tc.appName, got.ApplicationName)
				assert.Equal(t, tc.version, got.DeploymentVersion)
				_, present := raw["deploymentVersion"]
				assert.Equal(t, tc.version != "", present)
			}
			assert.Equal(t, tc.starts, h.starter.count())
			ns := "shop"
			_, recorded := h.reg.pod(ns, tc.pod)
			assert.Equal(t, !tc.noRecord, recorded, "pod row")
		})
	}
}

func TestApplicationIDIsStablePerApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := decode[InstanceResponse](t, h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenPodA, instanceBody))
	b := decode[InstanceResponse](t, h.do(t, http.MethodPost, "/control-plane/pods/web-v1-b/instance", tokenPodB, `{}`))
	o := decode[InstanceResponse](t, h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenOther, `{}`))
	assert.Equal(t, a.ApplicationID, b.ApplicationID, "same namespace and app")
	assert.NotEqual(t, a.ApplicationID, o.ApplicationID, "another namespace is another application")
	assert.Equal(t, detect.ApplicationID("shop", "web"), a.ApplicationID)
}

func TestSameNameInAnotherNamespaceIsResolvedByTheToken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	rec := h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenOther, `{}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	_, ok := h.reg.pod("other", "web-v1-a")
	assert.True(t, ok)
	_, ok = h.reg.pod("shop", "web-v1-a")
	assert.False(t, ok)
}

func TestRegistrationAnswersWhenTemporalIsDown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.starter.err = errors.New("temporal unavailable")
	rec := h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenPodA, instanceBody)
	require.Equal(t, http.StatusOK, rec.Code, "the app must boot with its version")
	assert.Equal(t, "1", decode[InstanceResponse](t, rec).DeploymentVersion)
	assert.Equal(t, []string{"shop/web-v1-a"}, *h.retried, "the detection is retried in the background")
}

func TestSaveInstanceState(t *testing.T) {
	// The state body watt-extra sends (capture.txt, RUN 1), abridged.
	const state = `{"id":"web-v1-a","services":[{"id":"api","type":"nodejs","status":"started","workers":1}],
		"metadata":{"pid":32766,"nodeVersion":"v22.23.3","packageVersion":"1.0.0","platformaticVersion":"3.67.0"},"scheduler":[]}`
	tests := []struct {
		name   string
		token  string
		pod    string
		body   string
		status int
		code   string
	}{
		{"stored", tokenPodA, "web-v1-a", state, http.StatusOK, ""},
		{"no token", "", "web-v1-a", state, http.StatusUnauthorized, CodeUnauthenticated},
		{"someone else's pod", tokenPodA, "web-v1-b", state, http.StatusForbidden, CodePodMismatch},
		{"malformed JSON", tokenPodA, "web-v1-a", `{"id":`, http.StatusBadRequest, CodeInvalidJSON},
		{"not an object", tokenPodA, "web-v1-a", `"hello"`, http.StatusBadRequest, CodeInvalidJSON},
		{"unknown pod", tokenPodA, "nope", state, http.StatusNotFound, CodePodNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			rec := h.do(t, http.MethodPost, "/control-plane/pods/"+tc.pod+"/instance/state", tc.token, tc.body)
			require.Equal(t, tc.status, rec.Code, rec.Body.String())
			if tc.code != "" {
				assert.Equal(t, tc.code, errorCode(t, rec))
				return
			}
			assert.JSONEq(t, `{}`, rec.Body.String(), "the agent parses the answer as JSON")
			p, ok := h.reg.pod("shop", tc.pod)
			require.True(t, ok)
			var meta struct {
				Metadata struct {
					PackageVersion string `json:"packageVersion"`
				} `json:"metadata"`
			}
			require.NoError(t, json.Unmarshal(p.Metadata, &meta))
			assert.Equal(t, "1.0.0", meta.Metadata.PackageVersion)
		})
	}
}

func TestStateAnswers503WhenTheRegistryIsDown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.reg.err = errors.New("connection refused")
	rec := h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance/state", tokenPodA, `{}`)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, CodeRegistryUnavailable, errorCode(t, rec))
}

func TestUnknownAgentEndpointsAreNotServed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/compliance/metadata", "/scaler/ready", "/control-plane/pods/web-v1-a/instance/status"} {
		rec := h.do(t, http.MethodPost, path, tokenPodA, `{}`)
		assert.Equal(t, http.StatusNotFound, rec.Code, path)
		assert.Equal(t, CodeNotFound, errorCode(t, rec))
	}
	rec := h.do(t, http.MethodGet, "/control-plane/pods/web-v1-a/instance", tokenPodA, "")
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, CodeMethodNotAllowed, errorCode(t, rec))
}

func TestRegistrationWaitsForTheCache(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	synced := false
	h.server.opts.Synced = func() bool { return synced }
	rec := h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenPodA, instanceBody)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, CodeNotReady, errorCode(t, rec))
	synced = true
	rec = h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", tokenPodA, instanceBody)
	assert.Equal(t, http.StatusOK, rec.Code)
}
