//go:build integration

package api

import (
	"context"
	"testing"

	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/internal/registry/registrytest"
)

// BenchmarkRegistrationFastPathPostgres is BenchmarkRegistrationFastPath with the real registry
// on the stack's PostgreSQL: each registration reads the live version and upserts the pod row.
func BenchmarkRegistrationFastPathPostgres(b *testing.B) {
	store := registrytest.New(b)
	ctx := context.Background()
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	actor := registry.Actor{Type: registry.ActorSystem, ID: "bench"}
	if _, _, err := store.ObserveVersion(ctx, registry.Observation{Ref: ref, ServiceName: "web-v1", ServicePort: 80}, actor); err != nil {
		b.Fatal(err)
	}
	if _, err := store.Activate(ctx, ref, actor, "bench"); err != nil {
		b.Fatal(err)
	}
	benchmarkRegistration(b, newHarness(b, harnessOptions{registry: store}))
}
