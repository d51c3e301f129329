//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/internal/registry"
)

// TestClaimOutsideTheAllowlistRefused runs skewguard over two namespaces with a claims allowlist that
// lets only the first claim anything. A team in the second namespace labels its pods with the first
// team's hostname: its version is Failed, with the allowlist named, an audit row and a Warning Event,
// it gets no HTTPRoute, and the first team keeps every new visitor. Its own hostname is refused as
// well until the operator allows it in the ConfigMap; then `approve` activates it.
func TestClaimOutsideTheAllowlistRefused(t *testing.T) {
	c := newCluster(t)
	teamA := c.namespace(t, "e2e-allow-a")
	teamB := c.namespace(t, "e2e-allow-b")
	dbURL, st := newDatabase(t)
	hostA, hostB := teamA+".claims.test", teamB+".claims.test"
	s := baseSettings(t, teamA, dbURL)
	s["PLT_SKEW_NAMESPACES"] = teamA + "," + teamB
	s[claimsAllowKey] = teamA // the operator allowed only team A
	sg := startSkewguard(t, s)
	cm := s["PLT_SKEW_CLAIMS_CONFIGMAP"]
	require.NotEmpty(t, cm)
	gw := newGateway(t)
	ctx := context.Background()

	owner := appVersion{Namespace: teamA, App: "shop", Version: "1", Hostname: hostA}
	c.deploy(t, owner)
	gw.waitServedBy(t, hostA, "/", owner, 90*time.Second)

	intruder := appVersion{Namespace: teamB, App: "shop", Version: "7", Hostname: hostA}
	c.deploy(t, intruder)
	ref := registry.VersionRef{Namespace: teamB, App: "shop", Label: "7"}
	v := waitState(t, st, ref, registry.Failed, 90*time.Second)
	assert.Contains(t, v.Failure, fmt.Sprintf("namespace %q", teamB), "the reason names the namespace")
	assert.Contains(t, v.Failure, hostA, "and the host")
	assert.Contains(t, v.Failure, cm, "and the allowlist to edit")
	assert.Nil(t, v.ActiveAt, "never Active")
	ev := c.waitEvent(t, teamB, intruder.name(), "VersionFailed", 30*time.Second)
	assert.Equal(t, "Warning", ev.Type)
	assert.Contains(t, ev.Note, cm)
	audit := sg.cli("audit", teamB+"/shop", "7")
	assert.Contains(t, audit, "failed", "the refusal is in the audit trail:\n%s", audit)
	assert.Empty(t, c.managedRoutes(t, teamB), "no HTTPRoute for a refused claim")
	for i := range 10 {
		r, err := gw.getServed(hostA, "/", nil)
		require.NoError(t, err)
		require.True(t, r.servedBy(owner), "visit %d served by %q version %q", i, r.Pod, r.Version)
	}

	// Team B's own hostname is refused too, until the operator allows it.
	own := appVersion{Namespace: teamB, App: "blog", Version: "1", Hostname: hostB}
	c.deploy(t, own)
	ownRef := registry.VersionRef{Namespace: teamB, App: "blog", Label: "1"}
	v = waitState(t, st, ownRef, registry.Failed, 90*time.Second)
	assert.Contains(t, v.Failure, hostB)

	ns, name, _ := strings.Cut(cm, "/")
	cmObj, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	cmObj.Data["claims.yaml"] = fmt.Sprintf("allow:\n- namespace: %s\n  hosts: ['*']\n  paths: [/]\n- namespace: %s\n  apps: [blog]\n  hosts: [%s]\n  paths: [/]\n",
		teamA, teamB, hostB)
	_, err = c.kube.CoreV1().ConfigMaps(ns).Update(ctx, cmObj, metav1.UpdateOptions{})
	require.NoError(t, err)
	// The allowlist is read by an informer: approve until the edit has reached it.
	waitFor(t, 30*time.Second, "approve of team B's own version accepted", func() (bool, string) {
		code, body := sg.act(t, ownRef, "approve")
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
	waitState(t, st, ownRef, registry.Active, 30*time.Second)
	gw.waitServedBy(t, hostB, "/", own, 60*time.Second)

	// The intruder is still refused: the edit allowed team B its own host only.
	code, body := sg.act(t, ref, "approve")
	assert.NotEqual(t, http.StatusOK, code, "approving the intruder: %s", body)
	v, err = st.GetVersion(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, registry.Failed, v.State)
	r, err := gw.getServed(hostA, "/", nil)
	require.NoError(t, err)
	assert.True(t, r.servedBy(owner), "team A still serves its host")
}

// act POSTs a version action to the management API and returns the status code and body.
func (s *skewguard) act(t testing.TB, ref registry.VersionRef, action string) (int, string) {
	t.Helper()
	u := s.url + "/api/v1/apps/" + url.PathEscape(ref.Namespace) + "/" + url.PathEscape(ref.App) +
		"/versions/" + url.PathEscape(ref.Label) + "/" + action
	resp, err := http.Post(u, "application/json", bytes.NewBufferString(`{"reason":"e2e"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
