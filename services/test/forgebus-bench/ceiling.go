package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ceilingHandler is the bare pipeline the ingest figure is measured against:
// read the body, check its HMAC in constant time, publish the raw bytes with
// the delivery id as Nats-Msg-Id, and answer 202 after the ack. No decoding,
// no normalizing, no envelope.
func ceilingHandler(js jetstream.JetStream, subject string, secret []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 5<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		want, err := hex.DecodeString(r.Header.Get("X-Gogs-Signature"))
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		if err != nil || !hmac.Equal(mac.Sum(nil), want) {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, r.Header.Get("X-Gogs-Delivery"))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			http.Error(w, "publish", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}
