package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/skewguard/skewguard/internal/apiwire"
)

// Error is the body of every error answer: a stable snake_case code for programs and a message
// for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Stable error codes.
const (
	CodeUnauthenticated     = "unauthenticated"            // 401: no token, or the API server refused it
	CodeForbidden           = "forbidden"                  // 403: RBAC denied the call
	CodeForeignOrigin       = "foreign_origin"             // 403: a management write sent by a page of another origin
	CodeNotPodToken         = "not_pod_token"              // 403: registration with a token not bound to a pod
	CodePodMismatch         = "pod_mismatch"               // 403: the token belongs to another pod
	CodeApplicationMismatch = "application_mismatch"       // 403: the applicationId is not the caller's
	CodeInvalidJSON         = apiwire.CodeInvalidJSON      // 400: "invalid_json"
	CodeInvalidPath         = apiwire.CodeInvalidPath      // 400: "invalid_path", a path parameter is malformed
	CodeInvalidRequest      = apiwire.CodeInvalidRequest   // 400: "invalid_request", well-formed JSON with bad values
	CodeInvalidPolicy       = "invalid_policy"             // 400
	CodeBodyTooLarge        = "body_too_large"             // 413
	CodeUnsupportedMedia    = apiwire.CodeUnsupportedMedia // 415: "unsupported_media"
	CodePodNotFound         = "pod_not_found"              // 404
	CodeAmbiguousPod        = "ambiguous_pod"              // 409: same pod name in several namespaces, no token to choose
	CodeVersionNotFound     = "version_not_found"          // 404
	CodeNotFound            = "not_found"                  // 404: no such route
	CodeMethodNotAllowed    = "method_not_allowed"         // 405
	CodeActionRejected      = "action_rejected"            // 409: the workflow's validator refused the action
	CodeWorkflowNotRunning  = "workflow_not_running"       // 409: the version's workflow is not running
	CodeAuthUnavailable     = "auth_unavailable"           // 503: TokenReview/SubjectAccessReview could not be made
	CodeRegistryUnavailable = "registry_unavailable"       // 503: PostgreSQL
	CodeTemporalUnavailable = "temporal_unavailable"       // 503: Temporal
	CodeNotReady            = "not_ready"                  // 503: the pod cache has not synced yet
	CodeInternal            = "internal_error"             // 500
)

// CodeActionPending is the code of a 202 answer to an action: not done within
// PLT_SKEW_ACTION_WAIT_MS, it goes on in the workflow; the body links to the version to poll.
const CodeActionPending = "action_pending"

// Stable error codes of the listener's limits (limits.go, authlimit.go).
const (
	CodeRequestTimeout      = "request_timeout"        // 408: the body was not sent within the read deadline
	CodeTooManyAuthFailures = "too_many_auth_failures" // 429: this address failed authentication too often; see Retry-After
)

// Stable error codes of token checks (401), each refused before any TokenReview.
const (
	CodeTokenUndefined = "token_undefined" // "Bearer undefined": the agent has no service-account token to send
	CodeMalformedToken = "malformed_token" // not a bearer token, or (agents) not shaped like a JWT
	CodeWrongAudience  = "wrong_audience"  // (agents) the token is not for PLT_SKEW_AGENT_TOKEN_AUDIENCES
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, Error{Code: code, Message: fmt.Sprintf(format, args...)})
}

// decodeError answers a body that could not be decoded.
func decodeError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "request body is larger than %d bytes", tooBig.Limit)
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		writeError(w, http.StatusRequestTimeout, CodeRequestTimeout, "the request body was not sent in time")
		return
	}
	writeError(w, http.StatusBadRequest, CodeInvalidJSON, "request body is not valid JSON: %v", err)
}

// writeProblem answers a refusal of internal/apiwire.
func writeProblem(w http.ResponseWriter, p *apiwire.Problem) {
	writeError(w, p.Status, p.Code, "%s", p.Message)
}

// readStrict reads the body of a management request: a JSON content type (or none) and at most
// limit bytes. It answers 415, 413 or 408 itself and then returns false.
func readStrict(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if p := apiwire.CheckContentType(r.Header.Get("Content-Type")); p != nil {
		writeProblem(w, p)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		decodeError(w, err)
		return nil, false
	}
	return body, true
}
