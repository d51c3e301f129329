//go:build integration

package workflows_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/api"
	"github.com/skewguard/skewguard/internal/detect"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// TestPanelTimelineFromTheRealWorkflow asks the API's timeline endpoint (what the versions panel
// polls) about a version Draining on the real stack: its next check and zero readings are those
// of the version's own workflow, answered by its "state" query (source "workflow"), and agree
// with what the workflow itself says; without that query the API could only give the registry's
// grace and max-alive timers.
func TestPanelTimelineFromTheRealWorkflow(t *testing.T) {
	s := newStack(t, nil) // grace 2 s, window 1 s, a check every second
	s.deploy("v1")
	s.waitRouting(routing{Default: "myapp-v1"})
	s.waitServed("", "v1") // v1's series in Traefik's metrics: its readings will be zero, not unknown
	s.deploy("v2")
	s.waitRouting(routing{Default: "myapp-v2", Pinned: []string{"myapp-v1"}})
	t.Cleanup(func() {
		_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref("v2")), "", "test done")
		_ = s.temporal.TerminateWorkflow(context.Background(), workflows.WorkflowID(s.ref("v1")), "", "test done")
	})

	// The API as the api role builds it, on this test's registry and Temporal, without auth.
	log := slog.New(slog.DiscardHandler)
	cache, err := detect.NewCache(s.kube.Kube, []string{s.ns}, 0)
	require.NoError(t, err)
	cache.Start(t.Context())
	require.True(t, cache.WaitForSync(t.Context()))
	temporal := workflows.NewClient(s.temporal, s.cfg.TaskQueue, 5*time.Second)
	srv, err := api.New(api.Options{
		Logger: log, Registry: s.reg, Pods: cache, Lifecycle: temporal, PolicyDefaults: api.DefaultsFromConfig(s.cfg),
		Detector:            detect.NewDetector(detect.Options{Registry: s.reg, Starter: temporal, Lookup: cache, Enabled: true, Logger: log}),
		InsecureSkipPodAuth: true, InsecureSkipAPIAuth: true,
	})
	require.NoError(t, err)
	httpSrv := httptest.NewServer(srv.Handler())
	t.Cleanup(httpSrv.Close)
	timeline := func() (api.Timeline, string) {
		resp, err := http.Get(httpSrv.URL + "/api/v1/apps/" + s.ns + "/" + app + "/versions/v1/timeline")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var tl api.Timeline
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&tl))
		raw, _ := json.Marshal(tl)
		return tl, string(raw)
	}

	// The panel's view first: v1 Draining, its timers from its workflow.
	s.eventually(30*time.Second, "the timeline shows v1 Draining", func() (bool, string) {
		tl, raw := timeline()
		return tl.State == registry.Draining, raw
	})
	tl, raw := timeline()
	require.Equal(t, "workflow", tl.Source, "the timeline's source: %s", raw)
	require.NotNil(t, tl.NextCheckAt, raw)
	require.NotNil(t, tl.ZeroReadings, raw)

	// Draining, v1's workflow reads its traffic every second after grace + window. Once it has
	// read at least once, the timeline must give the workflow's own next check and streak: read
	// the workflow's state before and after the timeline, and compare when no check ran between.
	s.eventually(30*time.Second, "v1 Draining with one traffic reading", func() (bool, string) {
		view, err := temporal.State(t.Context(), s.ref("v1"))
		if err != nil {
			return false, err.Error()
		}
		return view.State == registry.Draining && len(view.Readings) > 0, view.WaitingFor
	})
	compared := false
	s.eventually(30*time.Second, "a timeline between two identical workflow states", func() (bool, string) {
		before, err := temporal.State(t.Context(), s.ref("v1"))
		require.NoError(t, err)
		tl, raw := timeline()
		after, err := temporal.State(t.Context(), s.ref("v1"))
		require.NoError(t, err)
		if before.State != registry.Draining || after.State != registry.Draining {
			t.Fatalf("v1 left Draining before the timeline could be compared: %s", after.WaitingFor)
		}
		if before.NextCheckAt == nil || after.NextCheckAt == nil || !before.NextCheckAt.Equal(*after.NextCheckAt) ||
			before.ZeroStreak != after.ZeroStreak {
			return false, "a check ran in between"
		}
		assert.Equal(t, "workflow", tl.Source, raw)
		require.NotNil(t, tl.NextCheckAt, raw)
		require.NotNil(t, tl.ZeroReadings, raw)
		assert.True(t, tl.NextCheckAt.Equal(*after.NextCheckAt), "next check: API %s, workflow %s", tl.NextCheckAt, after.NextCheckAt)
		assert.Equal(t, after.ZeroStreak, *tl.ZeroReadings)
		assert.True(t, tl.GraceEndsAt.Equal(*after.GraceEndsAt))
		assert.True(t, tl.NextCheckAt.After(*tl.GraceEndsAt), "checks start after the grace period")
		assert.Equal(t, after.WaitingFor, tl.WaitingFor)
		compared = true
		return true, ""
	})
	require.True(t, compared)
}
