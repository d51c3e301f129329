package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxTokenBytes bounds a bearer token. A service-account token is about 1 KiB; 16 KiB leaves room
// for OIDC tokens with many groups and is still far below what would cost anything to hash.
const MaxTokenBytes = 16 << 10

var (
	// ErrUndefinedToken is the literal "Bearer undefined" (or "null") the agent sends when it has
	// no token to send: its service-account token file is missing.
	ErrUndefinedToken = errors.New(`the bearer token is the literal "undefined" or "null": the agent has no token`)
	// ErrMalformedToken means the bearer token cannot be a token the API server would accept, so
	// no TokenReview is made for it.
	ErrMalformedToken = errors.New("malformed bearer token")
	// ErrWrongAudience means the token was not issued for any of the audiences we accept.
	ErrWrongAudience = errors.New("token not issued for this audience")
)

// ParseBearer returns the token of an Authorization header value. It fails with ErrNoToken for an
// empty header, a scheme other than Bearer or an empty token, with ErrUndefinedToken for the
// agent's "Bearer undefined", and with ErrMalformedToken for a token longer than MaxTokenBytes
// or with characters no token has (RFC 6750 token68: letters, digits and -._~+/, = at the end).
func ParseBearer(header string) (string, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", ErrNoToken
	}
	token = strings.Trim(token, " \t")
	switch {
	case token == "":
		return "", ErrNoToken
	case token == "undefined" || token == "null":
		return "", ErrUndefinedToken
	case len(token) > MaxTokenBytes:
		return "", fmt.Errorf("%w: longer than %d bytes", ErrMalformedToken, MaxTokenBytes)
	case !isToken68(token):
		return "", fmt.Errorf("%w: characters outside the bearer token alphabet", ErrMalformedToken)
	}
	return token, nil
}

func isToken68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// Claims are the few unverified claims of a JWT-shaped token that are read before the API
// server vouches for it: the audiences (to refuse a token for another audience without a
// TokenReview) and the expiry (to bound how long an accepted answer is cached).
type Claims struct {
	Audiences []string
	Exp       int64 // seconds since the epoch; 0 when absent or unreadable
}

// CheckJWTShape tells whether token can be a JWT the API server issued: three base64url
// segments, at most MaxTokenBytes, a header that decodes to a JSON object naming its alg, and a
// payload that decodes to a JSON object. The signature is not checked (TokenReview does that);
// the point is that garbage costs no call to the API server.
func CheckJWTShape(token string) (Claims, error) {
	if len(token) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformedToken, MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: not a JWT (%d dot-separated segments, want 3)", ErrMalformedToken, len(parts))
	}
	for i, p := range parts {
		if p == "" {
			return Claims{}, fmt.Errorf("%w: JWT segment %d is empty", ErrMalformedToken, i+1)
		}
	}
	header, err := decodeSegment(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: JWT header: %v", ErrMalformedToken, err)
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return Claims{}, fmt.Errorf("%w: JWT header is not a JSON object", ErrMalformedToken)
	}
	if h.Alg == nil || *h.Alg == "" {
		return Claims{}, fmt.Errorf("%w: JWT header names no alg", ErrMalformedToken)
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: JWT payload: %v", ErrMalformedToken, err)
	}
	var p struct {
		Aud json.RawMessage `json:"aud"`
		Exp *json.Number    `json:"exp"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return Claims{}, fmt.Errorf("%w: JWT payload is not a JSON object", ErrMalformedToken)
	}
	if _, err := decodeSegment(parts[2]); err != nil {
		return Claims{}, fmt.Errorf("%w: JWT signature is not base64url", ErrMalformedToken)
	}
	var c Claims
	c.Audiences = audiences(p.Aud)
	if p.Exp != nil {
		if sec, err := p.Exp.Int64(); err == nil && sec > 0 {
			c.Exp = sec
		}
	}
	return c, nil
}

// decodeSegment decodes unpadded base64url, as JWTs are written. The decoder skips CR and LF;
// they are not base64url, so they are refused here (a token with a line break is no JWT, and
// ParseBearer refuses it too).
func decodeSegment(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("not base64url")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	return b, nil
}

// audiences reads an aud claim, a string or an array of strings (RFC 7519 4.1.3).
func audiences(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.DeleteFunc(many, func(s string) bool { return s == "" })
	}
	return nil
}

// intersects tells whether a and b share an element.
func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
