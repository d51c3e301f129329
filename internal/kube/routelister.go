package kube

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// AllRoutes lists every HTTPRoute of the cluster from an informer (started by the first call,
// then kept in sync for the life of the process), so that claiming a host and path a route
// skewguard does not write already serves can be refused without a LIST per activation. A call
// made before the informer has synced waits up to 10 s for it, then fails (retryably: the
// activation waits rather than claim blind).
func AllRoutes(gw gatewayclient.Interface) func() ([]*gatewayv1.HTTPRoute, error) {
	factory := gatewayinformers.NewSharedInformerFactory(gw, 10*time.Minute)
	informer := factory.Gateway().V1().HTTPRoutes()
	lister, hasSynced := informer.Lister(), informer.Informer().HasSynced
	var once sync.Once
	return func() ([]*gatewayv1.HTTPRoute, error) {
		once.Do(func() { factory.Start(nil) }) // lives as long as the process, like the worker
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !cache.WaitForCacheSync(ctx.Done(), hasSynced) {
			return nil, errors.New("the HTTPRoute informer has not synced: cannot check claims of hosts and paths yet")
		}
		return lister.List(labels.Everything())
	}
}
