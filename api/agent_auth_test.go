package api

import (
	"encoding/base64"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skewguard/skewguard/internal/auth"
)

func jwtFor(aud string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"aud":["`+aud+`"],"exp":4000000000}`)) + "." + enc([]byte("sig"))
}

// agentAuthHarness is the harness with skewguard's agent authenticator (JWT shape, audience
// "skewguard") over an API server that counts TokenReviews and accepts ours for pod shop/web-v1-a.
func agentAuthHarness(t *testing.T) (*harness, *atomic.Int32, string) {
	h := newHarness(t, harnessOptions{})
	good := jwtFor("skewguard")
	kube := fake.NewClientset()
	var calls atomic.Int32
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == good {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: testUsers[tokenPodA], Audiences: tr.Spec.Audiences}
		} else {
			tr.Status.Error = "invalid bearer token"
		}
		return true, tr, nil
	})
	opts := h.server.opts
	opts.AgentAuthenticator = auth.NewAuthenticator(kube, auth.AuthenticatorOptions{RequireJWT: true, Audiences: []string{"skewguard"}})
	opts.AuthFailureLimit = AuthFailureLimit{Off: true}
	srv, err := New(opts)
	require.NoError(t, err)
	h.server, h.handler = srv, srv.Handler()
	return h, &calls, good
}

// Garbage and tokens for another audience are refused on the agent's routes with their own
// codes, and cost no TokenReview; a management caller's token need not be a JWT.
func TestAgentTokenChecks(t *testing.T) {
	h, calls, good := agentAuthHarness(t)
	paths := []struct{ method, path string }{
		{http.MethodPost, "/control-plane/pods/web-v1-a/instance"},
		{http.MethodPost, "/control-plane/pods/web-v1-a/instance/state"},
		{http.MethodGet, "/api/updates/applications/some-app"},
	}
	for _, p := range paths {
		for _, tc := range []struct {
			name, header, code string
		}{
			{"Bearer undefined", "Bearer undefined", CodeTokenUndefined},
			{"not a JWT", "Bearer garbage", CodeMalformedToken},
			{"JWT without alg", "Bearer " + strings.Join([]string{"e30", "e30", "c2ln"}, "."), CodeMalformedToken},
			{"not token68", "Bearer a b c", CodeMalformedToken},
			{"too long", "Bearer " + strings.Repeat("a", auth.MaxTokenBytes+1), CodeMalformedToken},
			{"another audience", "Bearer " + jwtFor("https://kubernetes.default.svc"), CodeWrongAudience},
			{"no token", "", CodeUnauthenticated},
		} {
			t.Run(p.path+" "+tc.name, func(t *testing.T) {
				req := h.request(p.method, p.path, "", `{}`)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				rec := h.serve(req)
				require.Equal(t, http.StatusUnauthorized, rec.Code, "body: %s", rec.Body.String())
				assert.Equal(t, tc.code, errorCode(t, rec))
				assert.NotEmpty(t, rec.Header().Get("WWW-Authenticate"))
			})
		}
	}
	assert.Zero(t, calls.Load(), "refused before any TokenReview")

	rec := h.do(t, http.MethodPost, "/control-plane/pods/web-v1-a/instance", good, instanceBody)
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
	assert.EqualValues(t, 1, calls.Load())

	// Management keeps the caller's token as it is (not JWT-shaped here), for the API server's
	// default audience.
	rec = h.do(t, http.MethodGet, "/api/v1/apps", tokenAdmin, "")
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body.String())
	rec = h.do(t, http.MethodGet, "/api/v1/apps", "undefined", "")
	assert.Equal(t, CodeTokenUndefined, errorCode(t, rec))
}
