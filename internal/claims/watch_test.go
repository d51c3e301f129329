package claims

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func configMap(name, data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "sg", Name: name}, Data: map[string]string{Key: data}}
}

const allowShop = "allow:\n- namespace: shop\n  hosts: [shop.example.com]\n  paths: [/]\n"

func reasonOf(err error) string {
	var na *NotAllowedError
	if errors.As(err, &na) {
		return na.Reason
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func TestWatchKeepsTheLastGoodAllowlist(t *testing.T) {
	client := fake.NewClientset(configMap("claims", allowShop), configMap("other", "allow: ["))
	a, err := Watch(t.Context(), client, "sg", "claims", nil)
	require.NoError(t, err)
	require.True(t, a.WaitForSync(t.Context()))
	assert.NoError(t, a.Check("shop", "web", "shop.example.com", "/"))
	assert.Equal(t, ReasonNamespace, reasonOf(a.Check("blog", "web", "shop.example.com", "/")))
	assert.NoError(t, a.LastError(), "another ConfigMap of the namespace is not read")
	assert.Equal(t, 1.0, gaugeValue(Valid))
	assert.Contains(t, a.Source(), "ConfigMap sg/claims (key claims.yaml)")

	cms := client.CoreV1().ConfigMaps("sg")
	_, err = cms.Update(t.Context(), configMap("claims", "allow:\n- namespace: shop\n  hosts: oops\n"), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return a.LastError() != nil }, 10*time.Second, 10*time.Millisecond)
	assert.NoError(t, a.Check("shop", "web", "shop.example.com", "/"), "a bad edit keeps the last good allowlist")
	assert.Equal(t, 0.0, gaugeValue(Valid))

	_, err = cms.Update(t.Context(), configMap("claims", allowShop+"- namespace: blog\n  hosts: ['*']\n  paths: [/blog]\n"), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return a.Check("blog", "web", "", "/blog") == nil }, 10*time.Second, 10*time.Millisecond,
		"an edit applies without a restart")
	assert.NoError(t, a.LastError())
	assert.Equal(t, 1.0, gaugeValue(Valid))

	require.NoError(t, cms.Delete(t.Context(), "claims", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return reasonOf(a.Check("shop", "web", "shop.example.com", "/")) == ReasonUnavailable },
		10*time.Second, 10*time.Millisecond, "a deleted allowlist refuses everything")
}

func TestWatchFailsClosedAtStart(t *testing.T) {
	for name, client := range map[string]*fake.Clientset{
		"missing":        fake.NewClientset(),
		"does not parse": fake.NewClientset(configMap("claims", "allow: [")),
	} {
		a, err := Watch(t.Context(), client, "sg", "claims", nil)
		require.NoError(t, err)
		require.True(t, a.WaitForSync(t.Context()))
		err = a.Check("shop", "web", "shop.example.com", "/")
		assert.Equal(t, ReasonUnavailable, reasonOf(err), name)
		assert.Contains(t, err.Error(), "ConfigMap sg/claims", name)
	}
	// An empty ConfigMap (or one without the key) is valid and allows nothing.
	a, err := Watch(t.Context(), fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "sg", Name: "claims"}}), "sg", "claims", nil)
	require.NoError(t, err)
	require.True(t, a.WaitForSync(t.Context()))
	assert.Equal(t, ReasonNamespace, reasonOf(a.Check("shop", "web", "shop.example.com", "/")))
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
