package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skewguard/skewguard/internal/registry"
)

// Client calls the management API (the CLI uses it).
type Client struct {
	// BaseURL is the API's address, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is sent as a bearer token when set.
	Token     string
	HTTP      *http.Client
	UserAgent string
}

// APIError is an error answer of the API.
type APIError struct {
	Status int
	Err    Error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Err.Code, e.Err.Message, e.Status)
}

// ListApps lists the applications the caller may see.
func (c *Client) ListApps(ctx context.Context) (AppList, error) {
	var out AppList
	return out, c.call(ctx, http.MethodGet, "/api/v1/apps", nil, &out)
}

// Versions lists one page of an app's versions, the Active one first, then the newest: those in
// opts.States (none: every state), opts.Limit of them (0: the server's default) after skipping
// opts.Offset.
func (c *Client) Versions(ctx context.Context, app registry.AppRef, opts registry.ListVersionsOptions) (VersionList, error) {
	q := url.Values{}
	if len(opts.States) > 0 {
		states := make([]string, 0, len(opts.States))
		for _, s := range opts.States {
			states = append(states, string(s))
		}
		q.Set("state", strings.Join(states, ","))
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Offset != 0 {
		q.Set("offset", strconv.Itoa(opts.Offset))
	}
	path := appPath(app) + "/versions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out VersionList
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// RPS returns a version's request-rate series over window, one point per step (zero: the
// server's defaults).
func (c *Client) RPS(ctx context.Context, ref registry.VersionRef, window, step time.Duration) (RPSSeries, error) {
	q := url.Values{}
	if window != 0 {
		q.Set("window", window.String())
	}
	if step != 0 {
		q.Set("step", step.String())
	}
	path := versionPath(ref) + "/rps"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out RPSSeries
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Version returns a version's newest life.
func (c *Client) Version(ctx context.Context, ref registry.VersionRef) (registry.Version, error) {
	var out registry.Version
	return out, c.call(ctx, http.MethodGet, versionPath(ref), nil, &out)
}

// Audit returns a version's audit trail.
func (c *Client) Audit(ctx context.Context, ref registry.VersionRef) (AuditList, error) {
	var out AuditList
	return out, c.call(ctx, http.MethodGet, versionPath(ref)+"/audit", nil, &out)
}

// AppAudit returns the newest entries of an app's audit trail (limit 0: the server's default).
func (c *Client) AppAudit(ctx context.Context, app registry.AppRef, limit int) (AuditList, error) {
	var out AuditList
	path := appPath(app) + "/audit"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Act runs action (promote, expire, approve or reject: one of workflows.Actions) on one version.
func (c *Client) Act(ctx context.Context, ref registry.VersionRef, action, reason string) (ActionOutcome, error) {
	var out ActionOutcome
	return out, c.call(ctx, http.MethodPost, versionPath(ref)+"/"+action, ActionBody{Reason: reason}, &out)
}

// BulkExpire expires several versions of an app.
func (c *Client) BulkExpire(ctx context.Context, app registry.AppRef, versions []string, reason string) (BulkResult, error) {
	var out BulkResult
	return out, c.call(ctx, http.MethodPost, appPath(app)+"/expire", BulkExpireBody{Versions: versions, Reason: reason}, &out)
}

// Threshold expires every live version of an app older than body.OlderThan, except the Active one.
func (c *Client) Threshold(ctx context.Context, app registry.AppRef, body ThresholdBody) (BulkResult, error) {
	var out BulkResult
	return out, c.call(ctx, http.MethodPost, appPath(app)+"/threshold", body, &out)
}

// Policy returns an app's policy: its overrides, and the value of every setting that applies.
func (c *Client) Policy(ctx context.Context, app registry.AppRef) (PolicyView, error) {
	var out PolicyView
	return out, c.call(ctx, http.MethodGet, appPath(app)+"/policy", nil, &out)
}

// Plan returns a version's pending plan (advise mode); an *Error with CodePlanNotFound when it
// has none.
func (c *Client) Plan(ctx context.Context, ref registry.VersionRef) (registry.Plan, error) {
	var out registry.Plan
	return out, c.call(ctx, http.MethodGet, versionPath(ref)+"/plan", nil, &out)
}

// PutPolicy replaces an app's policy overrides.
func (c *Client) PutPolicy(ctx context.Context, app registry.AppRef, p registry.Policy) (registry.Policy, error) {
	var out registry.Policy
	return out, c.call(ctx, http.MethodPut, appPath(app)+"/policy", p, &out)
}

func appPath(app registry.AppRef) string {
	return "/api/v1/apps/" + url.PathEscape(app.Namespace) + "/" + url.PathEscape(app.Name)
}

func versionPath(ref registry.VersionRef) string {
	return appPath(ref.AppRef()) + "/versions/" + url.PathEscape(ref.Label)
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	httpc := c.HTTP
	if httpc == nil {
		httpc = http.DefaultClient
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		apiErr := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(raw, &apiErr.Err) != nil || apiErr.Err.Code == "" {
			apiErr.Err = Error{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: answer is not the expected JSON: %w", method, path, err)
	}
	return nil
}
