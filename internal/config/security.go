package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
)

// TLSEnabled tells whether the API listener serves HTTPS.
func (c Config) TLSEnabled() bool { return c.TLSCertFile != "" && c.TLSKeyFile != "" }

// validateSecurity checks the TLS pair (both or neither, and loadable now, so a wrong path or a
// key that does not match stops the process at start rather than failing every handshake) and
// the agent token audiences.
func (c Config) validateSecurity() []string {
	var p []string
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		p = append(p, "PLT_SKEW_TLS_KEY_FILE: required when PLT_SKEW_TLS_CERT_FILE is set")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		p = append(p, "PLT_SKEW_TLS_CERT_FILE: required when PLT_SKEW_TLS_KEY_FILE is set")
	case c.TLSEnabled():
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			p = append(p, fmt.Sprintf("PLT_SKEW_TLS_CERT_FILE/PLT_SKEW_TLS_KEY_FILE: %v",
				strings.ReplaceAll(err.Error(), "\n", "; ")))
		}
	}
	for _, a := range c.AgentTokenAudiences {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " \t\r\n") {
			p = append(p, fmt.Sprintf("PLT_SKEW_AGENT_TOKEN_AUDIENCES: %q is not an audience (comma-separated, no spaces)", a))
		}
	}
	return p
}

// ServiceAccountTokenFile is where Kubernetes mounts a pod's service-account token.
const ServiceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// InCluster says whether this process runs in a Kubernetes pod, and why it thinks so: the
// kubelet sets KUBERNETES_SERVICE_HOST in every container, and the service-account token is
// mounted at ServiceAccountTokenFile unless automounting is off. getenv and tokenFile are
// os.Getenv and ServiceAccountTokenFile outside tests.
func InCluster(getenv func(string) string, tokenFile string) (bool, string) {
	if h := getenv("KUBERNETES_SERVICE_HOST"); h != "" {
		return true, "KUBERNETES_SERVICE_HOST is set"
	}
	if _, err := os.Stat(tokenFile); err == nil {
		return true, tokenFile + " exists"
	}
	return false, ""
}

// RefuseInsecureInCluster fails, naming each variable, when a PLT_SKEW_INSECURE_* setting is on
// in a process that runs in a cluster: there, anyone who can reach the Service could register
// any pod or promote and expire versions. Outside a cluster (a laptop, CI) they stay allowed,
// with the warning logged at start.
func (c Config) RefuseInsecureInCluster(inCluster bool, why string) error {
	if !inCluster {
		return nil
	}
	var on []string
	if c.InsecureSkipPodAuth {
		on = append(on, "PLT_SKEW_INSECURE_SKIP_POD_AUTH")
	}
	if c.InsecureSkipAPIAuth {
		on = append(on, "PLT_SKEW_INSECURE_SKIP_API_AUTH")
	}
	if len(on) == 0 {
		return nil
	}
	var p Problems
	for _, name := range on {
		p = append(p, fmt.Sprintf("%s: refused when running in a Kubernetes cluster (%s); it is for local development outside a cluster only", name, why))
	}
	return p
}
