package apiwire

import (
	"net/http"
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
