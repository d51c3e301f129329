package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// jwt returns an unsigned JWT-shaped token whose payload is claims.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + ".sig"
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokenServer answers TokenReviews from a table of known tokens and counts the calls.
func tokenServer(t *testing.T, known map[string]authenticationv1.UserInfo) (*fake.Clientset, *atomic.Int32) {
	t.Helper()
	kube := fake.NewClientset()
	var calls atomic.Int32
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "explode" {
			return true, nil, errors.New("apiserver unavailable")
		}
		if u, ok := known[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	return kube, &calls
}

func podUser(ns, sa, pod, uid string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{
		Username: "system:serviceaccount:" + ns + ":" + sa,
		UID:      "sa-uid",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
		Extra: map[string]authenticationv1.ExtraValue{
			ExtraPodName: {pod}, ExtraPodUID: {uid},
		},
	}
}

func TestAuthenticate(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	podToken := jwt(fmt.Sprintf(`{"exp":%d}`, c.now.Add(2*time.Minute).Unix()))
	kube, calls := tokenServer(t, map[string]authenticationv1.UserInfo{
		podToken: podUser("shop", "default", "shop-v1-abc", "uid-1"),
		"static": {Username: "alice", Groups: []string{"devs"}},
	})
	a := NewAuthenticator(kube, AuthenticatorOptions{Now: c.Now, MaxTTL: time.Hour, UnknownTTL: 30 * time.Second})
	ctx := context.Background()

	tests := []struct {
		name    string
		token   string
		wantErr error
		user    string
		pod     *PodIdentity
	}{
		{name: "pod token", token: podToken, user: "system:serviceaccount:shop:default",
			pod: &PodIdentity{Namespace: "shop", ServiceAccount: "default", Name: "shop-v1-abc", UID: "uid-1"}},
		{name: "user token", token: "static", user: "alice"},
		{name: "unknown token", token: "forged", wantErr: ErrUnauthenticated},
		{name: "empty token", token: "", wantErr: ErrNoToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(ctx, tc.token)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.user, id.Username)
			pod, ok := id.Pod()
			assert.Equal(t, tc.pod != nil, ok)
			if tc.pod != nil {
				assert.Equal(t, *tc.pod, pod)
			}
		})
	}

	t.Run("cached until the token's expiry", func(t *testing.T) {
		before := calls.Load()
		_, err := a.Authenticate(ctx, podToken)
		require.NoError(t, err)
		assert.Equal(t, before, calls.Load(), "a cached token must not be reviewed again")
		c.Add(2*time.Minute + time.Second)
		_, err = a.Authenticate(ctx, podToken)
		require.NoError(t, err)
		assert.Equal(t, before+1, calls.Load(), "an expired token must be reviewed again")
	})
	t.Run("a token without expiry is cached for the short TTL", func(t *testing.T) {
		_, err := a.Authenticate(ctx, "static")
		require.NoError(t, err)
		before := calls.Load()
		_, _ = a.Authenticate(ctx, "static")
		assert.Equal(t, before, calls.Load())
		c.Add(31 * time.Second)
		_, _ = a.Authenticate(ctx, "static")
		assert.Equal(t, before+1, calls.Load())
	})
	t.Run("API server errors are not cached", func(t *testing.T) {
		before := calls.Load()
		for range 2 {
			_, err := a.Authenticate(ctx, "explode")
			require.Error(t, err)
			assert.NotErrorIs(t, err, ErrUnauthenticated)
		}
		assert.Equal(t, before+2, calls.Load())
	})
}

func TestAuthenticateCollapsesConcurrentReviews(t *testing.T) {
	release := make(chan struct{})
	kube := fake.NewClientset()
	var calls atomic.Int32
	kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		<-release
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "bob"}}
		return true, tr, nil
	})
	a := NewAuthenticator(kube, AuthenticatorOptions{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			id, err := a.Authenticate(context.Background(), "same")
			assert.NoError(t, err)
			assert.Equal(t, "bob", id.Username)
		})
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load())
}

func TestCacheIsBounded(t *testing.T) {
	c := newTTLCache[int, int](3)
	now := time.Now()
	for i := range 10 {
		c.put(i, i, now.Add(time.Hour))
	}
	assert.Equal(t, 3, c.len())
	_, ok := c.get(0, now)
	assert.False(t, ok, "the least recently used entry is evicted")
	v, ok := c.get(9, now)
	assert.True(t, ok)
	assert.Equal(t, 9, v)
}

func TestTokenExpiry(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  int64
		ok    bool
	}{
		{"exp", jwt(`{"exp":1800000000}`), 1800000000, true},
		{"no exp", jwt(`{"sub":"x"}`), 0, false},
		{"string exp", jwt(`{"exp":"soon"}`), 0, false},
		{"not a jwt", "abc", 0, false},
		{"bad base64", "a.!!!.c", 0, false},
		{"bad json", "a." + base64.RawURLEncoding.EncodeToString([]byte("{")) + ".c", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tokenExpiry(tc.token)
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, tc.want, got.Unix())
			}
		})
	}
}

// TestParseBearerHeaders: the Authorization headers the API meets, as the API reads them.
func TestParseBearerHeaders(t *testing.T) {
	tests := []struct {
		header string
		want   string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"Bearer undefined", "", false}, // watt-extra without a token
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			got, err := ParseBearer(tc.header)
			assert.Equal(t, tc.ok, err == nil, "error %v", err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestIdentityPod(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		ok   bool
	}{
		{"bound token", Identity{Username: "system:serviceaccount:ns:sa", Extra: map[string][]string{ExtraPodName: {"p"}, ExtraPodUID: {"u"}}}, true},
		{"unbound service account", Identity{Username: "system:serviceaccount:ns:sa"}, false},
		{"user with pod extras", Identity{Username: "alice", Extra: map[string][]string{ExtraPodName: {"p"}, ExtraPodUID: {"u"}}}, false},
		{"malformed username", Identity{Username: "system:serviceaccount:ns", Extra: map[string][]string{ExtraPodName: {"p"}, ExtraPodUID: {"u"}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := tc.id.Pod()
			assert.Equal(t, tc.ok, ok)
		})
	}
}

func TestAuthorize(t *testing.T) {
	kube := fake.NewClientset()
	var calls atomic.Int32
	var last authorizationv1.SubjectAccessReviewSpec
	var mu sync.Mutex
	kube.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		mu.Lock()
		last = sar.Spec
		mu.Unlock()
		ra := sar.Spec.ResourceAttributes
		sar.Status.Allowed = sar.Spec.User == "admin" || (sar.Spec.User == "viewer" && ra.Verb != VerbUpdate)
		return true, sar, nil
	})
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	z := NewAuthorizer(kube, AuthorizerOptions{Now: c.Now, AllowedTTL: time.Minute, DeniedTTL: time.Second})
	ctx := context.Background()

	tests := []struct {
		user, verb string
		allowed    bool
	}{
		{"admin", VerbUpdate, true},
		{"viewer", VerbGet, true},
		{"viewer", VerbUpdate, false},
		{"stranger", VerbList, false},
	}
	for _, tc := range tests {
		t.Run(tc.user+" "+tc.verb, func(t *testing.T) {
			d, err := z.Authorize(ctx, Identity{Username: tc.user}, Attributes{Verb: tc.verb, Namespace: "shop", Name: "web"})
			require.NoError(t, err)
			assert.Equal(t, tc.allowed, d.Allowed)
		})
	}

	mu.Lock()
	assert.Equal(t, Group, last.ResourceAttributes.Group)
	assert.Equal(t, Resource, last.ResourceAttributes.Resource)
	assert.Equal(t, "shop", last.ResourceAttributes.Namespace)
	assert.Equal(t, "web", last.ResourceAttributes.Name)
	mu.Unlock()

	before := calls.Load()
	_, err := z.Authorize(ctx, Identity{Username: "admin"}, Attributes{Verb: VerbUpdate, Namespace: "shop", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, before, calls.Load(), "an allowed decision is cached")
	_, err = z.Authorize(ctx, Identity{Username: "admin", Groups: []string{"x"}}, Attributes{Verb: VerbUpdate, Namespace: "shop", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, before+1, calls.Load(), "other groups are another question")

	c.Add(2 * time.Second)
	_, err = z.Authorize(ctx, Identity{Username: "viewer"}, Attributes{Verb: VerbUpdate, Namespace: "shop", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, before+2, calls.Load(), "a denial is remembered only briefly")
}
