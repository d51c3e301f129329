package kube

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skewguard/skewguard/internal/buildinfo"
)

// Client-side rate limits. client-go's defaults (5 QPS, burst 10) would stall an app whose
// routes span dozens of shards; these stay well inside API Priority and Fairness' share for
// one workload.
const (
	clientQPS   = 50
	clientBurst = 100
)

// Clients are the typed clients skewguard talks to the API server with.
type Clients struct {
	Kube    kubernetes.Interface
	Gateway gatewayclient.Interface
	Config  *rest.Config
}

// NewClients builds clients from a kubeconfig path (a KUBECONFIG-style list of paths is
// merged the way kubectl merges it), or from the in-cluster service account when kubeconfig
// is empty.
func NewClients(kubeconfig string) (*Clients, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	cfg.UserAgent = "skewguard/" + buildinfo.Version
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	gw, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway API client: %w", err)
	}
	return &Clients{Kube: kube, Gateway: gw, Config: cfg}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes configuration (set KUBECONFIG when running outside a cluster): %w", err)
		}
		return cfg, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(kubeconfig)}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
