package apiwire

import (
	"net/http"
	"strings"
	"testing"
)

// Found by FuzzStateBody: bytes.TrimSpace let white space that JSON does not have pass as an
// empty body ("\v": an action without a reason, a state of {}) or around an object ("\f{}").
func TestBodiesWithNonJSONWhiteSpace(t *testing.T) {
	for _, body := range []string{"\f{}", "\v", "\u0085", "\u00a0{}\n", "{}\f"} {
		_, pState := ParseStateBody([]byte(body))
		_, pInstance := ParseInstanceBody([]byte(body), "p")
		_, pAction := ParseActionBody([]byte(body))
		for name, p := range map[string]*Problem{"state": pState, "instance": pInstance, "action": pAction} {
			if p == nil || p.Status != http.StatusBadRequest || p.Code != CodeInvalidJSON {
				t.Errorf("%s body %q: %v, want 400 invalid_json", name, body, p)
			}
		}
	}
	// JSON's own white space still frames a body, or is one.
	for _, body := range []string{"", " \t\r\n", " {}\r\n"} {
		if _, p := ParseStateBody([]byte(body)); p != nil {
			t.Errorf("state body %q: %v", body, p)
		}
		if _, p := ParseInstanceBody([]byte(body), "p"); p != nil {
			t.Errorf("instance body %q: %v", body, p)
		}
	}
	if _, p := ParseActionBody([]byte("\n")); p != nil {
		t.Errorf("action body \"\\n\": %v", p)
	}
}

// TestDeeplyNestedBodies: past encoding/json's nesting limit (10,000), every body is a 400
// invalid_json, not a crash. (Not a fuzz seed: see seedBodies.)
func TestDeeplyNestedBodies(t *testing.T) {
	for _, body := range []string{strings.Repeat("[", 10001), `{"versions":` + strings.Repeat("[", 10001), strings.Repeat(`{"a":`, 10001)} {
		b := []byte(body)
		_, pi := ParseInstanceBody(b, "p")
		_, ps := ParseStateBody(b)
		_, pa := ParseActionBody(b)
		_, pb := ParseBulkExpireBody(b)
		_, _, pt := ParseThresholdBody(b)
		var v any
		pd := DecodeStrict(b, &v, true)
		for name, p := range map[string]*Problem{"instance": pi, "state": ps, "action": pa, "bulk expire": pb, "threshold": pt, "strict": pd} {
			if p == nil || p.Status != http.StatusBadRequest || p.Code != CodeInvalidJSON {
				t.Errorf("%s body %.20q...: %v, want 400 invalid_json", name, body, p)
			}
		}
	}
}
