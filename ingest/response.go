package ingest

import (
	"encoding/json"
	"net/http"
)

// accepted is the 202 body of a delivery JetStream acknowledged.
type accepted struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	StreamSeq uint64 `json:"stream_seq"`
	Duplicate bool   `json:"duplicate"`
}

// spooled is the 202 body of a delivery written to the spool.
type spooled struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Spooled bool   `json:"spooled"`
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

// respond writes status and v as JSON.
func (h *Handler) respond(w http.ResponseWriter, req *request, status int, v any) {
	req.status = status
	b, err := json.Marshal(v)
	if err != nil { // cannot happen with the types above
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
		req.status = status
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail answers status with {"error": msg} and records err for the log line.
// msg must be a fixed text or a message that names fields, never a value
// from the body, a secret or a MAC.
func (h *Handler) fail(w http.ResponseWriter, req *request, status int, msg string, err error) {
	req.err = err
	h.respond(w, req, status, errorBody{Error: msg})
}
