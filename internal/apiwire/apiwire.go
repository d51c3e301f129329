// Package apiwire is the part of the HTTP API that reads what a caller sends: path parameters,
// request bodies and their values, each refused with the status, stable code and message the
// API answers. It needs nothing but the standard library and internal/validate (whose
// apimachinery rules add a few packages), so that its fuzz targets run in a small test binary:
// the fuzzing engine scans the coverage counters of the whole binary after every input, and
// package api's (client-go, Temporal's SDK, pgx) has a hundred times more of them than this one
// (hack/README.md, "Long fuzzing"). Package api answers with what it returns.
package apiwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skewguard/skewguard/internal/validate"
)

// Stable error codes of what this package refuses (package api re-exports them).
const (
	CodeInvalidJSON      = "invalid_json"      // 400
	CodeInvalidPath      = "invalid_path"      // 400: a path parameter is malformed
	CodeInvalidRequest   = "invalid_request"   // 400: well-formed JSON with bad values
	CodeUnsupportedMedia = "unsupported_media" // 415
)

// Limits of the management API's bodies.
const (
	MaxReasonLength = 1024
	MaxBulkVersions = 100
)

// Problem is a refusal: the status and the {code, message} the API answers.
type Problem struct {
	Status  int
	Code    string
	Message string
}

func (p *Problem) Error() string { return p.Code + ": " + p.Message }

func problem(status int, code, format string, args ...any) *Problem {
	return &Problem{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidJSON(err error) *Problem {
	return problem(http.StatusBadRequest, CodeInvalidJSON, "request body is not valid JSON: %v", err)
}

func invalidRequest(err error) *Problem {
	return problem(http.StatusBadRequest, CodeInvalidRequest, "%v", err)
}

// Path parameters follow the Kubernetes rules of what they name, so anything else is refused
// before it reaches the registry, Temporal or a SubjectAccessReview.

// DNSLabel: a namespace name (RFC 1123 label, validate.DNSLabel).
func DNSLabel(s string) bool { return validate.DNSLabel(s) == nil }

// DNSSubdomain: a pod name (RFC 1123 subdomain). Not validate.DNSSubdomain: this one has
// always accepted any run of [a-z0-9.-] that begins and ends with a letter or digit, "a..b"
// included, which the Kubernetes rule refuses. No pod of such a name can exist, so the stricter
// rule would only change the answer to a request naming one; this refactor keeps the answer.
func DNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '.') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// LabelValue: an app name or a version (a non-empty Kubernetes label value, validate.LabelValue).
func LabelValue(s string) bool { return validate.LabelValue(s) == nil }

// OpaqueID: an applicationId or runtimeId the agent echoes back.
func OpaqueID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// CheckAppPath checks the {namespace} and {app} of a management path.
func CheckAppPath(namespace, app string) *Problem {
	if !DNSLabel(namespace) {
		return problem(http.StatusBadRequest, CodeInvalidPath, "%q is not a namespace name", namespace)
	}
	if !LabelValue(app) {
		return problem(http.StatusBadRequest, CodeInvalidPath, "%q is not an app name (a Kubernetes label value)", app)
	}
	return nil
}

// CheckVersionPath checks {namespace}, {app} and {version}.
func CheckVersionPath(namespace, app, version string) *Problem {
	if p := CheckAppPath(namespace, app); p != nil {
		return p
	}
	if !LabelValue(version) {
		return problem(http.StatusBadRequest, CodeInvalidPath, "%q is not a version (a Kubernetes label value)", version)
	}
	return nil
}

// CheckVersionLabel checks a version named in a body.
func CheckVersionLabel(label string) error {
	if !LabelValue(label) {
		return fmt.Errorf("%q is not a version (a Kubernetes label value)", label)
	}
	return nil
}

// CheckPodID checks the {podId} of the agent's paths.
func CheckPodID(podID string) *Problem {
	if !DNSSubdomain(podID) {
		return problem(http.StatusBadRequest, CodeInvalidPath, "%q is not a pod name", podID)
	}
	return nil
}

// CheckUpdatesParams checks the {applicationId} and ?runtimeId= of the agent's update channel
// (an empty runtimeId is no runtimeId).
func CheckUpdatesParams(appID, runtimeID string) *Problem {
	if !OpaqueID(appID) {
		return problem(http.StatusBadRequest, CodeInvalidPath, "%q is not an application id", appID)
	}
	if runtimeID != "" && !OpaqueID(runtimeID) {
		return problem(http.StatusBadRequest, CodeInvalidRequest, "runtimeId %q is malformed", runtimeID)
	}
	return nil
}

// ErrUnsupportedMedia: a management body that does not say it is JSON.
var ErrUnsupportedMedia = errors.New("content type must be application/json")

// CheckContentType accepts no content type, application/json and any +json type.
func CheckContentType(contentType string) *Problem {
	if contentType != "" && !IsJSON(contentType) {
		return problem(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "%v", ErrUnsupportedMedia)
	}
	return nil
}

// IsJSON reports whether a Content-Type names JSON.
func IsJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// trimJSONSpace trims the white space of JSON (RFC 8259: space, tab, LF, CR) and nothing else:
// a body of form feeds or no-break spaces is not an empty body, and such bytes around an
// object do not make it one (bytes.TrimSpace trims all of Unicode's, which let "\v" pass as
// an empty body and "\f{}" as an object; found by FuzzStateBody).
func trimJSONSpace(body []byte) []byte {
	return bytes.Trim(body, " \t\n\r")
}

// DecodeStrict decodes one JSON value of body into v, rejecting unknown fields and trailing
// data. An empty body (nothing but JSON's white space) leaves v as it is when allowEmpty.
func DecodeStrict(body []byte, v any, allowEmpty bool) *Problem {
	if len(trimJSONSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return invalidJSON(errors.New("the body is empty"))
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	if dec.More() {
		return invalidJSON(errors.New("unexpected data after the JSON value"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidJSON(errors.New("unexpected data after the JSON value"))
	}
	return nil
}

// CompactObject checks that body is one JSON object and returns it compacted. An empty body is
// an empty object.
func CompactObject(body []byte) (json.RawMessage, error) {
	body = trimJSONSpace(body)
	if len(body) == 0 {
		return json.RawMessage("{}"), nil
	}
	if body[0] != '{' {
		return nil, errors.New("the body must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseStateBody is the body of the agent's state report: one JSON object, stored compacted.
func ParseStateBody(body []byte) (json.RawMessage, *Problem) {
	state, err := CompactObject(body)
	if err != nil {
		return nil, invalidJSON(err)
	}
	return state, nil
}

// InstanceRequest is the body watt-extra sends to register (it may send more; extra fields
// are ignored, because the agent adds fields across releases).
type InstanceRequest struct {
	PodID             string `json:"podId,omitempty"`
	APIVersion        string `json:"apiVersion,omitempty"`
	ApplicationName   string `json:"applicationName,omitempty"`
	BuildDeploymentID string `json:"buildDeploymentId,omitempty"`
}

// ParseInstanceBody decodes the agent's registration for the pod podID of the path, ignoring
// fields we do not know. An empty body counts as an empty object.
func ParseInstanceBody(body []byte, podID string) (InstanceRequest, *Problem) {
	var req InstanceRequest
	if len(trimJSONSpace(body)) != 0 {
		if _, err := CompactObject(body); err != nil {
			return req, invalidJSON(err)
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return req, invalidJSON(err)
		}
	}
	if req.PodID != "" && req.PodID != podID {
		return req, problem(http.StatusBadRequest, CodeInvalidRequest, "podId %q in the body differs from %q in the path", req.PodID, podID)
	}
	return req, nil
}

// ActionBody is the optional body of promote, expire, approve and reject.
type ActionBody struct {
	Reason string `json:"reason,omitempty"`
}

// ParseActionBody decodes and checks an action's body (an empty one is no reason).
func ParseActionBody(body []byte) (ActionBody, *Problem) {
	var b ActionBody
	if p := DecodeStrict(body, &b, true); p != nil {
		return ActionBody{}, p
	}
	if err := CheckReason(b.Reason); err != nil {
		return ActionBody{}, invalidRequest(err)
	}
	return b, nil
}

// BulkExpireBody is the body of POST …/expire.
type BulkExpireBody struct {
	Versions []string `json:"versions"`
	Reason   string   `json:"reason,omitempty"`
}

// Check: 1 to MaxBulkVersions distinct, well-formed versions and a reason of at most
// MaxReasonLength bytes.
func (b BulkExpireBody) Check() error {
	if len(b.Versions) == 0 {
		return errors.New("versions must list at least one version")
	}
	if len(b.Versions) > MaxBulkVersions {
		return fmt.Errorf("at most %d versions at once, got %d", MaxBulkVersions, len(b.Versions))
	}
	seen := make(map[string]bool, len(b.Versions))
	for _, v := range b.Versions {
		if err := CheckVersionLabel(v); err != nil {
			return err
		}
		if seen[v] {
			return fmt.Errorf("version %q is listed twice", v)
		}
		seen[v] = true
	}
	return CheckReason(b.Reason)
}

// ParseBulkExpireBody decodes and checks the body of a bulk expiry.
func ParseBulkExpireBody(body []byte) (BulkExpireBody, *Problem) {
	var b BulkExpireBody
	if p := DecodeStrict(body, &b, false); p != nil {
		return BulkExpireBody{}, p
	}
	if err := b.Check(); err != nil {
		return BulkExpireBody{}, invalidRequest(err)
	}
	return b, nil
}

// ThresholdBody is the body of POST …/threshold: expire every live version deployed longer ago
// than OlderThan (a Go duration, or whole days like "7d"), except the Active one.
type ThresholdBody struct {
	OlderThan string `json:"olderThan"`
	Reason    string `json:"reason,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
}

// ParseThresholdBody decodes and checks the body of a threshold, and returns its age.
func ParseThresholdBody(body []byte) (ThresholdBody, time.Duration, *Problem) {
	var b ThresholdBody
	if p := DecodeStrict(body, &b, false); p != nil {
		return ThresholdBody{}, 0, p
	}
	age, err := ParseAge(b.OlderThan)
	if err == nil {
		err = CheckReason(b.Reason)
	}
	if err != nil {
		return ThresholdBody{}, 0, invalidRequest(err)
	}
	return b, age, nil
}

// CheckReason: at most MaxReasonLength bytes.
func CheckReason(reason string) error {
	if len(reason) > MaxReasonLength {
		return fmt.Errorf("reason is longer than %d bytes", MaxReasonLength)
	}
	return nil
}

// ParseAge parses a threshold age: a Go duration ("90m", "2h") or whole days ("7d"). It must be
// positive.
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("olderThan is required, e.g. \"2h\" or \"7d\"")
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("olderThan %q is not a whole number of days from 1 to 3650", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("olderThan %q is not a duration like \"2h\" or \"7d\"", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("olderThan %q must be positive", s)
	}
	return d, nil
}
