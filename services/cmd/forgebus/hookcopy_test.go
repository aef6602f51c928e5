package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"
)

// postFormCopy posts body again as a form hook of the same Gogs would: the
// payload in the "payload" field, the same signature (it covers the
// payload), a delivery id of its own. It returns the 202's fields.
func postFormCopy(t *testing.T, hooksURL string, body []byte, h http.Header) (code int, id string, duplicate bool) {
	t.Helper()
	form := h.Clone()
	form.Set("Content-Type", "application/x-www-form-urlencoded")
	form.Set("X-Gogs-Delivery", uuid.NewString())
	form.Del("Content-Length")
	code, resp := postHook(t, hooksURL, []byte(url.Values{"payload": {string(body)}}.Encode()), form)
	var r struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatalf("form copy answer %q: %v", resp, err)
	}
	return code, r.ID, r.Duplicate
}
