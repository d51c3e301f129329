package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var allStates = []State{Pending, Staged, Active, Draining, Expired, Failed}

// TestTransitions spells out the whole state machine: every pair not listed is refused.
func TestTransitions(t *testing.T) {
	legal := map[[2]State]bool{
		{Pending, Staged}: true, {Pending, Active}: true, {Pending, Expired}: true,
		{Pending, Draining}: true, {Pending, Failed}: true, // found together with a newer one; never ready or unroutable
		{Staged, Active}: true, {Staged, Expired}: true, {Staged, Failed}: true,
		{Active, Draining}: true,
		{Draining, Active}: true, {Draining, Expired}: true,
		{Failed, Staged}: true, {Failed, Active}: true, {Failed, Expired}: true,
	}
	ref := VersionRef{Namespace: "ns", App: "app", Label: "1"}
	for _, from := range allStates {
		for _, to := range allStates {
			t.Run(fmt.Sprintf("%s→%s", from, to), func(t *testing.T) {
				want := legal[[2]State{from, to}]
				assert.Equal(t, want, CanTransition(from, to))
				err := CheckTransition(ref, from, to)
				if want {
					assert.NoError(t, err)
					return
				}
				var ite *IllegalTransitionError
				require.True(t, errors.As(err, &ite), "want *IllegalTransitionError, got %v", err)
				assert.Equal(t, IllegalTransitionError{Version: ref, From: from, To: to}, *ite)
			})
		}
	}
}

func TestStatePredicates(t *testing.T) {
	tests := []struct {
		state        State
		live, pinned bool
	}{
		{Pending, true, false},
		{Staged, true, true},
		{Active, true, false},
		{Draining, true, true},
		{Expired, false, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.state), func(t *testing.T) {
			assert.Equal(t, tc.live, tc.state.Live())
			assert.Equal(t, tc.pinned, tc.state.Pinned())
		})
	}
}

func TestIllegalTransitionErrorMessage(t *testing.T) {
	ref := VersionRef{Namespace: "ns", App: "app", Label: "7"}
	assert.Equal(t, "version ns/app@7: illegal transition active → expired",
		(&IllegalTransitionError{Version: ref, From: Active, To: Expired}).Error())
	assert.Equal(t, "version ns/app@7: activate does not move draining → active",
		(&IllegalTransitionError{Version: ref, From: Draining, To: Active, Op: "activate"}).Error())
}

// TestVersionJSONKeepsPlacementFlat: Version embeds Placement, and its JSON (the API's, and the
// activity results in recorded workflow histories) keeps the placement at the top level.
func TestVersionJSONKeepsPlacementFlat(t *testing.T) {
	const old = `{"id":7,"appId":3,"namespace":"shop","app":"web","version":"v2","life":1,"state":"pending",
		"serviceName":"web-v2","servicePort":8080,"pathPrefix":"/shop","hostname":"shop.example",
		"workflowId":"skew/shop/web/v2","pendingAt":"2026-01-02T03:04:05Z"}`
	var v Version
	require.NoError(t, json.Unmarshal([]byte(old), &v))
	assert.Equal(t, Placement{ServiceName: "web-v2", ServicePort: 8080, PathPrefix: "/shop", Hostname: "shop.example"}, v.Placement)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, old, string(out))
}
