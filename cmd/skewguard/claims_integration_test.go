//go:build integration

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skewguard/skewguard/api"
	"github.com/skewguard/skewguard/internal/claims"
	"github.com/skewguard/skewguard/internal/config"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/testenv"
)

type mapLookuper map[string]string

func (m mapLookuper) Lookup(k string) (string, bool) { v, ok := m[k]; return v, ok }

// TestDetectionRefusesAClaimOutsideTheAllowlist runs the detection validation serve wires up
// against an allowlist ConfigMap on the real API server: namespace A may claim its host, B may
// not; once the operator edits the ConfigMap to allow B, B's claim is accepted without a restart.
func TestDetectionRefusesAClaimOutsideTheAllowlist(t *testing.T) {
	ctx := t.Context()
	kc, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	id := fmt.Sprintf("%08x", rand.Uint32())
	own, nsA, nsB := "sg-claims-"+id, "team-a-"+id, "team-b-"+id
	host := "a-" + id + ".example.com"
	_, err = kc.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: own}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kc.Kube.CoreV1().Namespaces().Delete(context.Background(), own, metav1.DeleteOptions{}) })
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: own, Name: "claims"}, Data: map[string]string{
		claims.Key: "allow:\n- namespace: " + nsA + "\n  hosts: [" + host + "]\n  paths: [/]\n"}}
	_, err = kc.Kube.CoreV1().ConfigMaps(own).Create(ctx, cm, metav1.CreateOptions{})
	require.NoError(t, err)

	cfg, err := config.LoadFrom(ctx, mapLookuper{"PLT_FEATURE_SKEW_PROTECTION": "true",
		"PLT_SKEW_GATEWAY_PARENT_REFS": "gw/main", "PLT_SKEW_CLAIMS_CONFIGMAP": own + "/claims"})
	require.NoError(t, err)
	var ready []api.ReadyCheck
	allow, err := claimsAllowlist(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), kc, &ready)
	require.NoError(t, err)
	require.Len(t, ready, 1)
	assert.Equal(t, "claims", ready[0].Name)
	require.True(t, allow.WaitForSync(ctx))
	assert.NoError(t, ready[0].Check(ctx), "ready once the ConfigMap has been read")

	validate := validateDetected(cfg, allow)
	req := func(ns string) detect.StartRequest {
		return detect.StartRequest{Ref: registry.VersionRef{Namespace: ns, App: "web", Label: "v1"},
			Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80, Hostname: host}}
	}
	assert.NoError(t, validate(req(nsA)), "A may claim its host")
	err = validate(req(nsB))
	var na *claims.NotAllowedError
	require.ErrorAs(t, err, &na, "B may not claim A's host")
	assert.Equal(t, claims.ReasonNamespace, na.Reason)
	for _, want := range []string{`namespace "` + nsB + `"`, `host "` + host + `"`, `path "/"`, "ConfigMap " + own + "/claims"} {
		assert.Contains(t, err.Error(), want)
	}

	cm.Data[claims.Key] += "- namespace: " + nsB + "\n  hosts: [" + host + "]\n  paths: [/]\n"
	_, err = kc.Kube.CoreV1().ConfigMaps(own).Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return validate(req(nsB)) == nil }, 20*time.Second, 50*time.Millisecond,
		"the operator's edit allows B without a restart")
	assert.NoError(t, validate(req(nsA)))
}
