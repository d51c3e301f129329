package workflows

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/skewguard/skewguard/activities"
	"github.com/skewguard/skewguard/internal/registry"
)

// recordedPayloads returns, for every recorded history, the JSON of the workflow's start input
// and of its Observe activity inputs (runs recorded before "admit" scheduled Observe as an
// activity).
func recordedPayloads(t *testing.T) (starts, observes map[string][]byte) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	type payloads struct {
		Payloads []struct {
			Data string `json:"data"`
		} `json:"payloads"`
	}
	var h struct {
		Events []struct {
			Started *struct {
				Input payloads `json:"input"`
			} `json:"workflowExecutionStartedEventAttributes"`
			Scheduled *struct {
				ActivityType struct {
					Name string `json:"name"`
				} `json:"activityType"`
				Input payloads `json:"input"`
			} `json:"activityTaskScheduledEventAttributes"`
		} `json:"events"`
	}
	decode := func(p payloads) []byte {
		require.Len(t, p.Payloads, 1)
		b, err := base64.StdEncoding.DecodeString(p.Payloads[0].Data)
		require.NoError(t, err)
		return b
	}
	starts, observes = map[string][]byte{}, map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &h))
		for i, e := range h.Events {
			switch {
			case e.Started != nil:
				starts[filepath.Base(f)] = decode(e.Started.Input)
			case e.Scheduled != nil && e.Scheduled.ActivityType.Name == "Observe":
				observes[fmt.Sprintf("%s#%d", filepath.Base(f), i)] = decode(e.Scheduled.Input)
			}
		}
	}
	return starts, observes
}

// TestRecordedPayloadsDecodeUnchanged decodes the workflow and activity inputs of the recorded
// histories into today's types and encodes them again: the JSON must come out the same, field
// for field. Placement and Origin are embedded so that their fields stay at the top level; a
// nested or renamed field would lose its value here (and in every running workflow).
func TestRecordedPayloadsDecodeUnchanged(t *testing.T) {
	starts, observes := recordedPayloads(t)
	require.NotEmpty(t, observes, "histories from before admit schedule Observe")
	for name, raw := range starts {
		var in LifecycleInput
		require.NoError(t, json.Unmarshal(raw, &in), name)
		assert.NotEmpty(t, in.ServiceName, name)
		assert.NotZero(t, in.ServicePort, name)
		out, err := json.Marshal(in)
		require.NoError(t, err)
		assert.JSONEq(t, string(raw), string(out), name)
	}
	for name, raw := range observes {
		var in activities.ObserveInput
		require.NoError(t, json.Unmarshal(raw, &in), name)
		assert.NotEmpty(t, in.ServiceName, name)
		out, err := json.Marshal(in)
		require.NoError(t, err)
		assert.JSONEq(t, string(raw), string(out), name)
	}
}

// TestLifecycleInputKeepsItsJSONNames checks every field of the start input, also those the
// recorded histories leave empty, against the JSON names payloads have always used.
func TestLifecycleInputKeepsItsJSONNames(t *testing.T) {
	const old = `{"ref":{"namespace":"shop","app":"web","version":"v2"},"serviceName":"web-v2","servicePort":8080,
		"pathPrefix":"/shop","hostname":"shop.example","actor":{"type":"pod","id":"shop/web-v2-abc","name":"pod_watch"},
		"deployedAt":"2026-01-02T03:04:05Z","podsCreatedAt":"2026-01-02T03:04:06Z","invalid":"no route","after":41}`
	deployed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := LifecycleInput{
		Ref:       registry.VersionRef{Namespace: "shop", App: "web", Label: "v2"},
		Placement: registry.Placement{ServiceName: "web-v2", ServicePort: 8080, PathPrefix: "/shop", Hostname: "shop.example"},
		Actor:     registry.Actor{Type: registry.ActorPod, ID: "shop/web-v2-abc", Name: "pod_watch"},
		Origin:    registry.Origin{DeployedAt: deployed, PodsCreatedAt: deployed.Add(time.Second)},
		Invalid:   "no route",
		After:     41,
	}
	var got LifecycleInput
	require.NoError(t, json.Unmarshal([]byte(old), &got))
	assert.Equal(t, want, got)
	out, err := json.Marshal(want)
	require.NoError(t, err)
	assert.JSONEq(t, old, string(out))

	// The same fields reach the first activity under the same names.
	obs := activities.ObserveInput{Ref: want.Ref, Placement: want.Placement, Origin: want.Origin,
		WorkflowID: "skew/shop/web/v2", Actor: want.Actor}
	out, err = json.Marshal(obs)
	require.NoError(t, err)
	assert.JSONEq(t, `{"ref":{"namespace":"shop","app":"web","version":"v2"},"serviceName":"web-v2","servicePort":8080,
		"pathPrefix":"/shop","hostname":"shop.example","workflowId":"skew/shop/web/v2",
		"actor":{"type":"pod","id":"shop/web-v2-abc","name":"pod_watch"},
		"deployedAt":"2026-01-02T03:04:05Z","podsCreatedAt":"2026-01-02T03:04:06Z"}`, string(out))
}
