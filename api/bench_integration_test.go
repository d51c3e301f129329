//go:build integration

package api

import (
	"context"
	"testing"

	"github.com/skewguard/skewguard/internal/registry"
)

// BenchmarkRegistrationFastPathPostgres is BenchmarkRegistrationFastPath with the real registry
// on the stack's PostgreSQL behind the live version cache, as skewguard runs it: the version is
// read once, then answered from memory while PostgreSQL announces no change to it; the pod's row
// is written at its first registration (then at most once per detect.Options.PodRecordTTL). It
// reports the database round trips per registration of the measured run besides.
func BenchmarkRegistrationFastPathPostgres(b *testing.B) {
	store, queries := countedStore(b)
	ctx := context.Background()
	ref := registry.VersionRef{Namespace: "shop", App: "web", Label: "1"}
	actor := registry.Actor{Type: registry.ActorSystem, ID: "bench"}
	if _, _, err := store.ObserveVersion(ctx, registry.Observation{Ref: ref, Placement: registry.Placement{ServiceName: "web-v1", ServicePort: 80}}, actor); err != nil {
		b.Fatal(err)
	}
	if _, err := store.Activate(ctx, ref, actor, "bench"); err != nil {
		b.Fatal(err)
	}
	cache := runLiveCache(b, store)
	benchmarkRegistration(b, newHarness(b, harnessOptions{registry: cache}), "PostgreSQL registry", queries.n.Load)
}
