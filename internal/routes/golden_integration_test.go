//go:build integration

package routes_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/skewguard/skewguard/internal/kube"
	"github.com/skewguard/skewguard/internal/testenv"
)

// TestGoldenRoutesPassCRDValidation submits every golden output to the real API server as a
// server-side dry run, so the CRD's schema and CEL rules (rule and match limits, the
// ReplacePrefixMatch single-match rule, the Set-Cookie list-map…) judge what Render writes.
func TestGoldenRoutesPassCRDValidation(t *testing.T) {
	clients, ns := goldenNamespace(t)
	ctx := context.Background()
	outputs, err := filepath.Glob("testdata/*.out.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(outputs), 14)

	for _, path := range outputs {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".out.yaml"), func(t *testing.T) {
			for _, r := range decodeGolden(t, path) {
				r.Namespace = ns
				_, err := clients.Gateway.GatewayV1().HTTPRoutes(ns).Create(ctx, &r,
					metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				assert.NoError(t, err, "HTTPRoute %s", r.Name)
			}
		})
	}
}

// TestCRDRejectsWhatRenderAvoids shows the dry run above has teeth: the shapes Render steers
// clear of are refused by the same server.
func TestCRDRejectsWhatRenderAvoids(t *testing.T) {
	clients, ns := goldenNamespace(t)
	ctx := context.Background()
	base := decodeGolden(t, "testdata/custom-path.out.yaml")[0]

	tests := []struct {
		name   string
		mutate func(r *gatewayv1.HTTPRoute)
		want   string
	}{
		{"a ReplacePrefixMatch rewrite on a rule with three matches", func(r *gatewayv1.HTTPRoute) {
			first := r.Spec.Rules[0]
			first.Matches = append(first.Matches, r.Spec.Rules[1].Matches[0], r.Spec.Rules[2].Matches[0])
			r.Spec.Rules = append([]gatewayv1.HTTPRouteRule{first}, r.Spec.Rules[3:]...)
		}, "exactly one PathPrefix match"},
		{"17 rules", func(r *gatewayv1.HTTPRoute) {
			for len(r.Spec.Rules) < 17 {
				r.Spec.Rules = append(r.Spec.Rules, r.Spec.Rules[0])
			}
		}, "must have at most 16 items"},
		{"two Set-Cookie headers in one filter", func(r *gatewayv1.HTTPRoute) {
			last := &r.Spec.Rules[len(r.Spec.Rules)-1]
			add := &last.Filters[0].ResponseHeaderModifier.Add
			*add = append(*add, gatewayv1.HTTPHeader{Name: "Set-Cookie", Value: "x=1"})
		}, "Duplicate value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base.DeepCopy()
			r.Namespace = ns
			tt.mutate(r)
			_, err := clients.Gateway.GatewayV1().HTTPRoutes(ns).Create(ctx, r, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func goldenNamespace(t *testing.T) (*kube.Clients, string) {
	t.Helper()
	clients, err := kube.NewClients(testenv.Get(t, testenv.Kubeconfig))
	require.NoError(t, err)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	ns := "sg-golden-" + hex.EncodeToString(suffix)
	ctx := context.Background()
	_, err = clients.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = clients.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return clients, ns
}

func decodeGolden(t *testing.T, path string) []gatewayv1.HTTPRoute {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []gatewayv1.HTTPRoute
	for _, doc := range bytes.Split(raw, []byte("---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var r gatewayv1.HTTPRoute
		require.NoError(t, yaml.UnmarshalStrict(doc, &r), path)
		out = append(out, r)
	}
	return out
}
