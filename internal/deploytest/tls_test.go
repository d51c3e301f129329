package deploytest

import (
	"path"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkTLS checks the API port's TLS as the ConfigMap sets it: with PLT_SKEW_TLS_CERT_FILE, every
// container of every Deployment (migrate too: each loads the configuration, which loads the
// pair) mounts the Secret where the variables point, and the probes speak HTTPS; without it,
// nothing is mounted and the probes speak HTTP. It returns the Secret's name ("" without TLS).
func checkTLS(t *testing.T, m manifests, env map[string]string) string {
	t.Helper()
	certFile, keyFile := env["PLT_SKEW_TLS_CERT_FILE"], env["PLT_SKEW_TLS_KEY_FILE"]
	require.Equal(t, certFile == "", keyFile == "", "PLT_SKEW_TLS_CERT_FILE and PLT_SKEW_TLS_KEY_FILE come together")
	secret := ""
	for _, o := range m.ofKind("Deployment") {
		d := as[appsv1.Deployment](t, o)
		spec := d.Spec.Template.Spec
		var vol *corev1.Volume
		for i := range spec.Volumes {
			if spec.Volumes[i].Name == "tls" {
				vol = &spec.Volumes[i]
			}
		}
		probes := func(c corev1.Container) []*corev1.Probe {
			return []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe}
		}
		if certFile == "" {
			require.Nil(t, vol, "%s: a TLS volume without TLS", d.Name)
			for _, p := range probes(spec.Containers[0]) {
				require.Contains(t, []corev1.URIScheme{"", corev1.URISchemeHTTP}, p.HTTPGet.Scheme, d.Name)
			}
			continue
		}
		require.NotNil(t, vol, "%s mounts no TLS Secret", d.Name)
		require.NotNil(t, vol.Secret, d.Name)
		if secret == "" {
			secret = vol.Secret.SecretName
		}
		require.Equal(t, secret, vol.Secret.SecretName, "every Deployment mounts the same Secret")
		dir := path.Dir(certFile)
		require.Equal(t, dir, path.Dir(keyFile))
		require.Equal(t, "tls.crt", path.Base(certFile))
		require.Equal(t, "tls.key", path.Base(keyFile))
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			var mounted bool
			for _, vm := range c.VolumeMounts {
				if vm.Name == "tls" && vm.MountPath == dir && vm.ReadOnly {
					mounted = true
				}
			}
			require.True(t, mounted, "%s/%s: the TLS Secret is not mounted read-only at %s", d.Name, c.Name, dir)
		}
		for _, p := range probes(spec.Containers[0]) {
			require.Equal(t, corev1.URISchemeHTTPS, p.HTTPGet.Scheme, "%s: probes must speak HTTPS to a TLS port", d.Name)
		}
	}
	return secret
}

// The plain manifests serve HTTPS with the certificate of the Secret skewguard-tls, which the
// user creates (their header says how), as the chart's default would with a generated one.
func TestPlainManifestsServeTLS(t *testing.T) {
	m := parseManifests(t, readPlainManifests(t))
	cm := as[corev1.ConfigMap](t, m.get(t, "ConfigMap", "skewguard"))
	require.Equal(t, "skewguard-tls", checkTLS(t, m, cm.Data))
	require.Contains(t, string(readPlainManifests(t)), "create secret tls skewguard-tls")
}
