package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// enabled (ICC's per-app switch) is a policy field: resolved on by default, false stored as an
// override and told to every live lifecycle (the Active one applies it); a value that is not a
// boolean is refused like every wrongly typed field, and nothing is stored.
func TestPolicyEnabled(t *testing.T) {
	h := seeded(t, harnessOptions{defaults: DefaultsFromConfig(testConfig(t, nil))})
	resolved := func() json.RawMessage {
		rec := h.do(t, "GET", "/api/v1/apps/shop/web/policy", tokenViewer, "")
		require.Equal(t, http.StatusOK, rec.Code)
		var view struct {
			Resolved map[string]json.RawMessage `json:"resolved"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &view))
		return view.Resolved["enabled"]
	}
	assert.JSONEq(t, `{"value": true, "source": "default"}`, string(resolved()))

	before := len(h.lifecycle.actions())
	rec := h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.JSONEq(t, `{"enabled":false}`, rec.Body.String())
	assert.JSONEq(t, `{"value": false, "source": "override"}`, string(resolved()))
	assert.Greater(t, len(h.lifecycle.actions()), before, "the live lifecycles are told")

	for _, body := range []string{`{"enabled":"no"}`, `{"enabled":0}`} {
		rec = h.do(t, "PUT", "/api/v1/apps/shop/web/policy", tokenAdmin, body)
		require.Equal(t, http.StatusBadRequest, rec.Code, body)
		assert.Equal(t, CodeInvalidJSON, errorCode(t, rec), body)
	}
	assert.JSONEq(t, `{"value": false, "source": "override"}`, string(resolved()), "nothing stored by a refusal")
}
