package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var b64 = base64.RawURLEncoding.EncodeToString

// jwtWith builds an unsigned JWT-shaped token from a raw header and payload.
func jwtWith(header, payload string) string {
	return b64([]byte(header)) + "." + b64([]byte(payload)) + "." + b64([]byte("signature"))
}

func TestParseBearer(t *testing.T) {
	long := strings.Repeat("a", MaxTokenBytes+1)
	tests := []struct {
		header string
		want   string
		err    error
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", nil},
		{"bearer abc", "abc", nil},
		{"BEARER   abc  ", "abc", nil},
		{"Bearer abc==", "abc==", nil},
		{"Bearer undefined", "", ErrUndefinedToken}, // watt-extra without a token
		{"Bearer null", "", ErrUndefinedToken},
		{"Bearer ", "", ErrNoToken},
		{"Bearer", "", ErrNoToken},
		{"Basic abc", "", ErrNoToken},
		{"", "", ErrNoToken},
		{"Bearer a b", "", ErrMalformedToken},
		{"Bearer ab\x00c", "", ErrMalformedToken},
		{"Bearer é", "", ErrMalformedToken},
		{"Bearer ==", "", ErrMalformedToken},
		{"Bearer a=b", "", ErrMalformedToken},
		{"Bearer " + long, "", ErrMalformedToken},
	}
	for _, tc := range tests {
		name := tc.header
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParseBearer(tc.header)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCheckJWTShape(t *testing.T) {
	good := jwtWith(`{"alg":"RS256","kid":"k"}`, `{"aud":["skewguard"],"exp":1800000000}`)
	c, err := CheckJWTShape(good)
	require.NoError(t, err)
	assert.Equal(t, []string{"skewguard"}, c.Audiences)
	assert.EqualValues(t, 1800000000, c.Exp)

	c, err = CheckJWTShape(jwtWith(`{"alg":"RS256"}`, `{"aud":"one"}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"one"}, c.Audiences, "aud may be a single string")

	bad := map[string]string{
		"one segment":         "garbage",
		"two segments":        "abc.def",
		"four segments":       good + ".x",
		"empty segment":       b64([]byte(`{"alg":"RS256"}`)) + ".." + b64([]byte("s")),
		"header not base64":   "!!!." + b64([]byte(`{}`)) + ".sig",
		"header not JSON":     jwtWith(`alg`, `{}`),
		"header without alg":  jwtWith(`{"typ":"JWT"}`, `{}`),
		"header alg empty":    jwtWith(`{"alg":""}`, `{}`),
		"header alg a number": jwtWith(`{"alg":1}`, `{}`),
		"header an array":     jwtWith(`["alg"]`, `{}`),
		"payload not JSON":    jwtWith(`{"alg":"RS256"}`, `exp`),
		"payload an array":    jwtWith(`{"alg":"RS256"}`, `[1]`),
		"padded base64":       base64.URLEncoding.EncodeToString([]byte(`{"alg":"HS1"}`)) + "." + b64([]byte(`{}`)) + ".sig",
		"signature not b64":   jwtWith(`{"alg":"RS256"}`, `{}`)[:len(jwtWith(`{"alg":"RS256"}`, `{}`))-1] + "+",
		"too long":            jwtWith(`{"alg":"RS256"}`, `{"x":"`+strings.Repeat("a", MaxTokenBytes)+`"}`),
		// The base64 decoder skips CR and LF: found by make fuzz (FuzzParseBearer).
		"LF in the header":    lineBreakIn(0, "\n"),
		"LF in the payload":   lineBreakIn(1, "\n"),
		"CR in the signature": lineBreakIn(2, "\r"),
		"CRLF in the payload": lineBreakIn(1, "\r\n"),
	}
	for name, token := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := CheckJWTShape(token)
			assert.ErrorIs(t, err, ErrMalformedToken)
		})
	}
}

// lineBreakIn is a well-shaped JWT with br inserted into segment i.
func lineBreakIn(i int, br string) string {
	parts := strings.Split(jwtWith(`{"alg":"RS256"}`, `{"aud":"x"}`), ".")
	parts[i] = parts[i][:4] + br + parts[i][4:]
	return strings.Join(parts, ".")
}

// reviewer is a fake API server answering TokenReviews: tokens in ok are authenticated for the
// audiences asked (or for statusAudiences when set); every call is counted and recorded.
type reviewer struct {
	mu              sync.Mutex
	calls           int
	asked           [][]string
	statusAudiences []string
	ignoreAudiences bool
}

func (rv *reviewer) clientset(ok ...string) *fake.Clientset {
	kube := fake.NewClientset()
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		rv.mu.Lock()
		defer rv.mu.Unlock()
		rv.calls++
		rv.asked = append(rv.asked, tr.Spec.Audiences)
		for _, t := range ok {
			if t == tr.Spec.Token {
				tr.Status.Authenticated = true
				tr.Status.User = podUser("shop", "default", "web-1", "uid-1")
				tr.Status.Audiences = tr.Spec.Audiences
				if rv.ignoreAudiences {
					tr.Status.Audiences = rv.statusAudiences
				}
				return true, tr, nil
			}
		}
		tr.Status.Error = "invalid bearer token"
		return true, tr, nil
	})
	return kube
}

func (rv *reviewer) count() int { rv.mu.Lock(); defer rv.mu.Unlock(); return rv.calls }

func TestGarbageTokenCostsNoTokenReview(t *testing.T) {
	rv := &reviewer{}
	a := NewAuthenticator(rv.clientset(), AuthenticatorOptions{RequireJWT: true})
	for _, token := range []string{
		"garbage", "a.b", "a.b.c", "undefined",
		jwtWith(`{"typ":"JWT"}`, `{}`),
		strings.Repeat("x", MaxTokenBytes+1),
	} {
		_, err := a.Authenticate(context.Background(), token)
		assert.ErrorIs(t, err, ErrMalformedToken, "%.30s", token)
		assert.ErrorIs(t, err, ErrUnauthenticated, "%.30s", token)
	}
	assert.Zero(t, rv.count(), "a token that cannot be a JWT must not cost a TokenReview")

	// A well-shaped token is reviewed: the check only filters garbage.
	_, err := a.Authenticate(context.Background(), jwtWith(`{"alg":"RS256"}`, `{"sub":"x"}`))
	assert.ErrorIs(t, err, ErrUnauthenticated)
	assert.NotErrorIs(t, err, ErrMalformedToken)
	assert.Equal(t, 1, rv.count())
}

func TestOverlongTokenRefusedEvenWithoutJWTRequirement(t *testing.T) {
	rv := &reviewer{}
	a := NewAuthenticator(rv.clientset(), AuthenticatorOptions{})
	_, err := a.Authenticate(context.Background(), strings.Repeat("x", MaxTokenBytes+1))
	assert.ErrorIs(t, err, ErrMalformedToken)
	assert.Zero(t, rv.count())
}

func TestAudiences(t *testing.T) {
	ours := jwtWith(`{"alg":"RS256"}`, `{"aud":["skewguard"],"exp":4000000000}`)
	apiServers := jwtWith(`{"alg":"RS256"}`, `{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":4000000000}`)
	noAud := jwtWith(`{"alg":"RS256"}`, `{"exp":4000000000}`)
	ctx := context.Background()

	t.Run("configured: our token passes, the review asks for our audience", func(t *testing.T) {
		rv := &reviewer{}
		a := NewAuthenticator(rv.clientset(ours), AuthenticatorOptions{RequireJWT: true, Audiences: []string{"skewguard"}})
		id, err := a.Authenticate(ctx, ours)
		require.NoError(t, err)
		assert.Equal(t, "system:serviceaccount:shop:default", id.Username)
		assert.Equal(t, [][]string{{"skewguard"}}, rv.asked)
	})
	t.Run("configured: a token for another audience is refused without a review", func(t *testing.T) {
		rv := &reviewer{}
		a := NewAuthenticator(rv.clientset(apiServers), AuthenticatorOptions{RequireJWT: true, Audiences: []string{"skewguard"}})
		_, err := a.Authenticate(ctx, apiServers)
		assert.ErrorIs(t, err, ErrWrongAudience)
		assert.ErrorIs(t, err, ErrUnauthenticated)
		assert.Zero(t, rv.count())
	})
	t.Run("configured: an answer for other audiences is a refusal", func(t *testing.T) {
		// An authenticator behind the API server that ignores spec.audiences answers for its own.
		rv := &reviewer{ignoreAudiences: true, statusAudiences: []string{"https://kubernetes.default.svc"}}
		a := NewAuthenticator(rv.clientset(noAud), AuthenticatorOptions{RequireJWT: true, Audiences: []string{"skewguard"}})
		for range 2 {
			_, err := a.Authenticate(ctx, noAud)
			assert.ErrorIs(t, err, ErrWrongAudience)
		}
		assert.Equal(t, 1, rv.count(), "the refusal is cached like any other")
	})
	t.Run("not configured: the API server's default audience", func(t *testing.T) {
		rv := &reviewer{ignoreAudiences: true, statusAudiences: []string{"https://kubernetes.default.svc.cluster.local"}}
		a := NewAuthenticator(rv.clientset(apiServers), AuthenticatorOptions{RequireJWT: true})
		_, err := a.Authenticate(ctx, apiServers)
		require.NoError(t, err)
		assert.Equal(t, [][]string{nil}, rv.asked, "no audience is asked for")
	})
}

// FuzzParseBearer runs header parsing and the JWT shape check on any input: they never panic,
// accept only well-shaped tokens, and what they accept round-trips.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{
		"Bearer " + jwtWith(`{"alg":"RS256"}`, `{"aud":["skewguard"],"exp":1}`),
		"Bearer undefined", "bearer a.b.c", "Basic x", "", "Bearer ", "Bearer \x00", "Bearer a..b",
		"Bearer " + jwtWith(`{"alg":1}`, `{}`), "Bearer eyJhbGciOiJub25lIn0.e30.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, err := ParseBearer(header)
		if err != nil {
			if token != "" {
				t.Fatalf("a refused header returned a token %q", token)
			}
			if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrUndefinedToken) && !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else {
			if token == "" || len(token) > MaxTokenBytes || !isToken68(token) || !utf8.ValidString(token) {
				t.Fatalf("accepted a token that is not token68: %q", token)
			}
			again, err := ParseBearer("Bearer " + token)
			if err != nil || again != token {
				t.Fatalf("round trip: %q gave %q, %v", token, again, err)
			}
		}
		// The shape check on the raw input (anything a header could carry).
		for _, candidate := range []string{header, token} {
			c, err := CheckJWTShape(candidate)
			if err != nil {
				if !errors.Is(err, ErrMalformedToken) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				continue
			}
			parts := strings.Split(candidate, ".")
			if len(parts) != 3 || len(candidate) > MaxTokenBytes {
				t.Fatalf("accepted %q", candidate)
			}
			for _, p := range parts {
				if _, err := base64.RawURLEncoding.DecodeString(p); err != nil || p == "" {
					t.Fatalf("accepted a segment that is not base64url: %q", candidate)
				}
			}
			// A well-shaped JWT is also a well-formed bearer token, and passes through the header.
			if got, err := ParseBearer("Bearer " + candidate); err != nil || got != candidate {
				t.Fatalf("a well-shaped JWT %q does not round-trip through the header: %q, %v", candidate, got, err)
			}
			for _, a := range c.Audiences {
				if a == "" {
					t.Fatalf("empty audience from %q", candidate)
				}
			}
		}
	})
}
