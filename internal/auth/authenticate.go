// Package auth owns who may call skewguard, as decided by Kubernetes itself: bearer tokens are
// verified with TokenReview (a registering pod proves its identity with its bound
// service-account token) and management actions are authorized with SubjectAccessReview on the
// virtual resource "versions" in API group "skewguard.dev", so cluster RBAC decides who may act.
// Both reviews are cached, keyed by hashes, never by the token itself.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skewguard/skewguard/internal/metrics"
)

// Keys of the extra information the API server attaches to a pod-bound service-account token.
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"

	serviceAccountPrefix = "system:serviceaccount:"
)

var (
	// ErrNoToken means the request carried no usable bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrUnauthenticated means the API server did not accept the token.
	ErrUnauthenticated = errors.New("token not accepted")
)

// Identity is who a token belongs to, as the API server's TokenReview reported it.
type Identity struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

// ServiceAccount returns the namespace and name of a service-account identity.
func (id Identity) ServiceAccount() (namespace, name string, ok bool) {
	rest, found := strings.CutPrefix(id.Username, serviceAccountPrefix)
	if !found {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	if !ok || namespace == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return namespace, name, true
}

// Pod returns the pod a bound service-account token was issued for.
func (id Identity) Pod() (PodIdentity, bool) {
	ns, sa, ok := id.ServiceAccount()
	name, uid := first(id.Extra[ExtraPodName]), first(id.Extra[ExtraPodUID])
	if !ok || name == "" || uid == "" {
		return PodIdentity{}, false
	}
	return PodIdentity{Namespace: ns, ServiceAccount: sa, Name: name, UID: uid}, true
}

// PodIdentity is the pod a bound token proves its bearer runs as.
type PodIdentity struct {
	Namespace      string
	ServiceAccount string
	Name           string
	UID            string
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// AuthenticatorOptions tunes the TokenReview cache.
type AuthenticatorOptions struct {
	// Audiences, when set, are sent in the TokenReview (spec.audiences) and a token must be valid
	// for one of them: a token whose aud claim names none of them is refused without a review,
	// and an answer whose status.audiences does not intersect them is a refusal too (an
	// authenticator behind the API server may ignore the audiences asked). Empty means the API
	// server's own audience, which every token the API server accepts also carries.
	Audiences []string
	// RequireJWT refuses, without a TokenReview, any token that is not shaped like a JWT
	// (CheckJWTShape). Service-account tokens always are; a person's token may not be (static
	// tokens, cloud providers' access tokens), so the management API does not require it.
	RequireJWT bool
	// MaxTTL caps how long an accepted token is trusted without asking again, whatever its
	// expiry says (deleted service accounts and pods are noticed within this bound).
	MaxTTL time.Duration
	// UnknownTTL is how long an accepted token without a readable expiry is trusted.
	UnknownTTL time.Duration
	// RejectedTTL is how long a rejected token is remembered as rejected.
	RejectedTTL time.Duration
	// MaxEntries bounds the cache.
	MaxEntries int
	// Timeout bounds one TokenReview call.
	Timeout time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
}

func (o AuthenticatorOptions) withDefaults() AuthenticatorOptions {
	if o.MaxTTL <= 0 {
		o.MaxTTL = 10 * time.Minute
	}
	if o.UnknownTTL <= 0 {
		o.UnknownTTL = time.Minute
	}
	if o.RejectedTTL <= 0 {
		o.RejectedTTL = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Authenticator verifies bearer tokens with TokenReview and caches the answers.
type Authenticator struct {
	kube    kubernetes.Interface
	opts    AuthenticatorOptions
	reviews *reviews[review]
}

// review is one cached TokenReview answer.
type review struct {
	identity      Identity
	authenticated bool
	reason        string
	wrongAudience bool // authenticated, but not for any of our audiences
}

// NewAuthenticator returns an Authenticator that asks kube.
func NewAuthenticator(kube kubernetes.Interface, opts AuthenticatorOptions) *Authenticator {
	opts = opts.withDefaults()
	return &Authenticator{kube: kube, opts: opts, reviews: newReviews[review](opts.MaxEntries, opts.Now, metrics.TokenReviews)}
}

// Authenticate returns the identity of token. It fails with ErrNoToken for an empty token,
// with an error wrapping ErrUnauthenticated when the API server refuses it, and with any other
// error when the API server could not be asked.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		metrics.TokenReviews.WithLabelValues("malformed").Inc()
		return Identity{}, fmt.Errorf("%w: %w: longer than %d bytes", ErrUnauthenticated, ErrMalformedToken, MaxTokenBytes)
	}
	if a.opts.RequireJWT {
		claims, err := CheckJWTShape(token)
		if err != nil {
			metrics.TokenReviews.WithLabelValues("malformed").Inc()
			return Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		if len(a.opts.Audiences) > 0 && len(claims.Audiences) > 0 && !intersects(claims.Audiences, a.opts.Audiences) {
			metrics.TokenReviews.WithLabelValues("wrong_audience").Inc()
			return Identity{}, fmt.Errorf("%w: %w: the token is for %s, not %s", ErrUnauthenticated, ErrWrongAudience,
				strings.Join(claims.Audiences, ","), strings.Join(a.opts.Audiences, ","))
		}
	}
	key := sha256.Sum256([]byte(token))
	r, err := a.reviews.get(key, func() (review, time.Time, error) {
		r, err := a.review(ctx, token)
		return r, a.expiry(token, r), err
	})
	if err != nil {
		return Identity{}, err
	}
	return r.result()
}

func (r review) result() (Identity, error) {
	if r.wrongAudience {
		return Identity{}, fmt.Errorf("%w: %w: %s", ErrUnauthenticated, ErrWrongAudience, r.reason)
	}
	if !r.authenticated {
		return Identity{}, fmt.Errorf("%w: %s", ErrUnauthenticated, r.reason)
	}
	return r.identity, nil
}

// review asks the API server. The call is detached from the caller's cancellation because
// concurrent callers with the same token wait for its answer.
func (a *Authenticator) review(ctx context.Context, token string) (review, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.Timeout)
	defer cancel()
	tr, err := a.kube.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.opts.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return review{}, fmt.Errorf("TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		reason := tr.Status.Error
		if reason == "" {
			reason = "the API server did not authenticate the token"
		}
		return review{reason: reason}, nil
	}
	if len(a.opts.Audiences) > 0 && !intersects(tr.Status.Audiences, a.opts.Audiences) {
		return review{wrongAudience: true, reason: fmt.Sprintf("the API server accepted the token for %q, not for %q",
			tr.Status.Audiences, a.opts.Audiences)}, nil
	}
	u := tr.Status.User
	id := Identity{Username: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		id.Extra = make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			id.Extra[k] = []string(v)
		}
	}
	return review{identity: id, authenticated: true}, nil
}

// expiry is when a review of token stops being trusted: rejections soon, acceptances at the
// token's own expiry, capped by MaxTTL.
func (a *Authenticator) expiry(token string, r review) time.Time {
	now := a.opts.Now()
	if !r.authenticated || r.wrongAudience {
		return now.Add(a.opts.RejectedTTL)
	}
	limit := now.Add(a.opts.MaxTTL)
	exp, ok := tokenExpiry(token)
	if !ok {
		return now.Add(min(a.opts.UnknownTTL, a.opts.MaxTTL))
	}
	if exp.Before(limit) {
		return exp
	}
	return limit
}

// tokenExpiry reads the exp claim of a JWT. The signature is not checked: the API server has
// just vouched for the token, and exp only bounds how long that answer is reused.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	sec, err := claims.Exp.Int64()
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}
