//go:build integration

package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/testenv"
)

// On the stack's real API server: a token requested for the audience "skewguard" (what a
// projected serviceAccountToken volume gives the agent) passes when that audience is
// configured; the default-audience token (the automounted one, which the Kubernetes API also
// accepts) is refused then, and passes when no audience is configured.
func TestAgentTokenAudienceOnAPIServer(t *testing.T) {
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	k := clients.Kube
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "sgaud-" + hex.EncodeToString(b)
	_, err = k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	_, err = k.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	token := func(audiences ...string) string {
		t.Helper()
		tr, err := k.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "agent", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: new(int64(600))},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}
	ours, apiServers := token("skewguard"), token()
	want := "system:serviceaccount:" + ns + ":agent"

	withAudience := NewAuthenticator(k, AuthenticatorOptions{RequireJWT: true, Audiences: []string{"skewguard"}, Timeout: 10 * time.Second})
	id, err := withAudience.Authenticate(ctx, ours)
	require.NoError(t, err)
	assert.Equal(t, want, id.Username)
	_, err = withAudience.Authenticate(ctx, apiServers)
	assert.ErrorIs(t, err, ErrWrongAudience, "a token the Kubernetes API accepts is not accepted by skewguard")

	// The API server itself refuses a token for another audience when asked for ours, also when
	// the local check cannot see it (the aud claim is not trusted alone).
	r, err := withAudience.review(ctx, apiServers)
	require.NoError(t, err)
	assert.False(t, r.authenticated, "TokenReview with spec.audiences=[skewguard] must refuse a default-audience token")

	noAudience := NewAuthenticator(k, AuthenticatorOptions{RequireJWT: true})
	id, err = noAudience.Authenticate(ctx, apiServers)
	require.NoError(t, err, "without an audience configured, the default-audience token passes (the weaker default)")
	assert.Equal(t, want, id.Username)
	_, err = noAudience.Authenticate(ctx, ours)
	assert.ErrorIs(t, err, ErrUnauthenticated, "a skewguard-audience token is not valid for the API server's audience")
}
