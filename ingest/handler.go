package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forgebus/forgebus/ingest/gogs"
	"github.com/forgebus/forgebus/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Request headers Gogs sends.
const (
	HeaderEvent     = "X-Gogs-Event"
	HeaderDelivery  = "X-Gogs-Delivery"
	HeaderSignature = "X-Gogs-Signature"
)

// Headers of every message the handler publishes, besides
// [jetstream.MsgIDHeader] ([PayloadMsgID] of the signed payload).
const (
	// MsgHeaderEvent carries the Gogs event name ("push", ...), so a
	// consumer can route without decoding the body.
	MsgHeaderEvent = "Forgebus-Event"
	// MsgHeaderContentType carries [MsgContentType].
	MsgHeaderContentType = "Content-Type"
	// MsgContentType is the media type of a CloudEvent in structured mode.
	MsgContentType = "application/cloudevents+json; charset=utf-8"
)

// Publisher publishes a message to JetStream and waits for the ack.
// jetstream.JetStream satisfies it.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Spooler keeps deliveries on local disk while JetStream cannot take them;
// something else drains it to JetStream in order, with msgID (the
// [PayloadMsgID]) as Nats-Msg-Id. Append must not return before the entry is durable, and
// returns an error wrapping [ErrSpoolFull] when it has no room. Depth is the
// number of entries waiting.
type Spooler interface {
	Append(msgID, subject string, data []byte) error
	Depth() int
}

// Option configures a [Handler].
type Option func(*Handler)

// WithMetrics makes the handler record m.
func WithMetrics(m *Metrics) Option { return func(h *Handler) { h.metrics = m } }

// WithSpool makes the handler write deliveries to s, and answer 202, when
// JetStream does not acknowledge them within the publish timeout; and,
// while s is not empty, write every new delivery to s too, so that deliveries
// reach the stream in the order they came. nil means no spool: 503 then.
func WithSpool(s Spooler) Option { return func(h *Handler) { h.spool = s } }

// Handler is the http.Handler of POST /hooks/gogs. Create it with
// [NewHandler]; it is safe for concurrent use.
type Handler struct {
	cfg        Config
	pub        Publisher
	log        zerolog.Logger
	metrics    *Metrics
	spool      Spooler
	retryAfter string     // Retry-After value, whole seconds
	conn       *nats.Conn // pub's connection, when it tells it
	streams    streamer   // pub, when it can look up a stored event

	eventsMu sync.Mutex
	events   jetstream.Stream // FORGE_EVENTS, once looked up

	inFlight atomic.Int64 // requests being handled
	buffers  budget       // body bytes held by all requests
}

// connector is implemented by jetstream.JetStream.
type connector interface{ Conn() *nats.Conn }

// streamer is implemented by jetstream.JetStream: through it the handler
// reads the stored event a duplicate ack points to.
type streamer interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Kinds of duplicate, as the log line and the metric name them.
const (
	dupDelivery = "delivery" // the same delivery id: a redelivery
	dupPayload  = "payload"  // the same signed payload under another delivery id
	dupUnknown  = "unknown"  // the stored event could not be read
)

// PayloadMsgID is the Nats-Msg-Id of a delivery: the SHA-256 of its signed
// payload (the bytes the signature covers). JetStream's duplicate window
// then drops the copies Gogs sends to each matching hook, a redelivery and a
// replay under a fresh delivery id alike, whether published or spooled.
func PayloadMsgID(payload []byte) string {
	sum := sha256.Sum256(payload)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewHandler returns a handler that publishes with pub. Zero fields of cfg
// take their defaults; it fails with [ErrNoSecret] when there is no secret
// and cfg.AllowUnsigned is false, and with [ErrInvalidConfig] or
// [ErrNoPublisher] for other mistakes.
func NewHandler(cfg Config, pub Publisher, log zerolog.Logger, opts ...Option) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, ErrNoPublisher
	}
	cfg = cfg.withDefaults()
	secs := int64((cfg.RetryAfter + time.Second - 1) / time.Second)
	h := &Handler{
		cfg:        cfg,
		pub:        pub,
		log:        log,
		retryAfter: strconv.FormatInt(max(secs, 1), 10),
		buffers:    budget{limit: cfg.MaxBufferedBytes},
	}
	if c, ok := pub.(connector); ok {
		h.conn = c.Conn()
	}
	if s, ok := pub.(streamer); ok {
		h.streams = s
	}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// maxHeaderBytes is room kept for the message's headers and subject when an
// event's size is checked against the broker's max payload.
const maxHeaderBytes = 1024

// request is what one request's log line and metrics say.
type request struct {
	start      time.Time
	remote     string
	status     int
	bytes      int
	verified   bool
	signed     bool
	event      string // set only once verified
	deliveryID string
	repo       string
	subject    string
	streamSeq  uint64
	duplicate  bool
	dupKind    string // set on a duplicate: dupDelivery, dupPayload or dupUnknown
	storedID   string // the stored event's id, on a payload duplicate
	spooled    bool
	err        error
}

// ServeHTTP handles one delivery. See the package documentation for the
// answers it gives.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := request{start: time.Now(), remote: r.RemoteAddr}
	h.metrics.inflight(1)
	defer func() {
		h.metrics.inflight(-1)
		h.metrics.request(eventLabel(req.event, req.verified), req.status)
		h.logRequest(&req)
	}()

	// Bounded before anything else: a request holds a slot from here until
	// it is answered, whether or not its body ever comes.
	if n := h.inFlight.Add(1); n > int64(h.cfg.MaxInFlight) {
		h.inFlight.Add(-1)
		w.Header().Set("Retry-After", h.retryAfter)
		h.fail(w, &req, http.StatusServiceUnavailable, "too many requests in flight, retry later", errTooManyInFlight)
		return
	}
	defer h.inFlight.Add(-1)

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, &req, http.StatusMethodNotAllowed, "method not allowed: use POST", nil)
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != gogs.MediaJSON && mt != gogs.MediaForm) {
		h.fail(w, &req, http.StatusUnsupportedMediaType,
			"unsupported content type: want "+gogs.MediaJSON+" or "+gogs.MediaForm, gogs.ErrUnsupportedMediaType)
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.failTooLarge(w, &req)
		return
	}
	if r.Header.Get(HeaderEvent) == "" {
		h.fail(w, &req, http.StatusBadRequest, "missing "+HeaderEvent+" header", gogs.ErrMissingEvent)
		return
	}

	buf := bodyBuf{bud: &h.buffers}
	defer buf.release()
	err = buf.readFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes), h.cfg.MaxBodyBytes)
	req.bytes = len(buf.b)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) || errors.Is(err, errBodyTooLarge) {
			h.failTooLarge(w, &req)
			return
		}
		if errors.Is(err, errBusyBuffers) {
			w.Header().Set("Retry-After", h.retryAfter)
			h.fail(w, &req, http.StatusServiceUnavailable, "too many request bodies buffered, retry later", err)
			return
		}
		h.fail(w, &req, http.StatusBadRequest, "cannot read the request body", fmt.Errorf("read body: %w", err))
		return
	}
	body := buf.b
	h.metrics.body(len(body))

	payload, err := gogs.ExtractPayload(ct, body)
	if err != nil {
		if errors.Is(err, gogs.ErrUnsupportedMediaType) {
			h.fail(w, &req, http.StatusUnsupportedMediaType,
				"unsupported content type: want "+gogs.MediaJSON+" or "+gogs.MediaForm, err)
			return
		}
		h.fail(w, &req, http.StatusBadRequest, "malformed form body: want exactly one non-empty payload field", err)
		return
	}
	if !h.verify(w, &req, payload, r.Header.Get(HeaderSignature)) {
		return
	}

	// Verified: from here on, the headers and the payload are trusted.
	req.verified = true
	req.event = r.Header.Get(HeaderEvent)
	n, err := gogs.Normalize(gogs.Input{
		Event:      req.event,
		DeliveryID: r.Header.Get(HeaderDelivery),
		Instance:   h.cfg.Instance,
		Source:     h.cfg.Source,
		Payload:    payload,
		Body:       body,
		Received:   time.Now(),
	})
	if err != nil {
		switch {
		case errors.Is(err, gogs.ErrBadEventName):
			h.fail(w, &req, http.StatusBadRequest, "bad "+HeaderEvent+" header: want [a-z][a-z0-9_]{0,63}", err)
		case errors.Is(err, gogs.ErrMalformed), errors.Is(err, gogs.ErrMissingEvent):
			h.fail(w, &req, http.StatusBadRequest, err.Error(), err) // gogs errors name fields, never values
		default:
			h.fail(w, &req, http.StatusInternalServerError, "internal error", err)
		}
		return
	}
	req.deliveryID = n.Envelope.ID
	req.repo = n.Envelope.Repo
	req.subject = n.Subject
	// A JSON body is the signed payload: its hash is already computed.
	msgID := "sha256:" + n.Envelope.BodySHA256
	if mt != gogs.MediaJSON {
		msgID = PayloadMsgID(payload)
	}
	h.store(r.Context(), w, &req, &n, msgID)
}

// verify checks the signature on the extracted payload and answers 401 when
// it does not pass. It reports whether to go on.
func (h *Handler) verify(w http.ResponseWriter, req *request, payload []byte, sig string) bool {
	switch {
	case sig == "" && h.cfg.AllowUnsigned && len(h.cfg.Secrets) == 0:
		return true // with a secret configured, unsigned is never a downgrade path
	case sig == "":
		h.fail(w, req, http.StatusUnauthorized, "missing signature: this endpoint requires "+HeaderSignature, gogs.ErrMissingSignature)
		return false
	case len(h.cfg.Secrets) == 0:
		h.fail(w, req, http.StatusUnauthorized, "signature present but no secret is configured to check it", gogs.ErrBadSignature)
		return false
	}
	if err := gogs.Verify(payload, sig, h.cfg.Secrets); err != nil {
		h.fail(w, req, http.StatusUnauthorized, "bad signature", err)
		return false
	}
	req.signed = true
	return true
}

// store publishes the event and answers 202 after the ack; it spools the
// event when the publish fails (or the spool is draining) and a spool is
// configured, and answers 503 otherwise.
func (h *Handler) store(rctx context.Context, w http.ResponseWriter, req *request, n *gogs.Normalized, msgID string) {
	// An event the broker would refuse for its size must not reach the
	// spool either: it could never be forwarded, and would block the queue.
	if h.conn != nil {
		if limit := h.conn.MaxPayload(); limit > 0 && int64(len(n.JSON))+maxHeaderBytes > limit {
			h.fail(w, req, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("event is %d bytes once normalized; the broker takes at most %d", len(n.JSON), limit-maxHeaderBytes),
				errTooLargeForBroker)
			return
		}
	}
	if h.spool != nil && h.spool.Depth() > 0 {
		h.spoolOr503(w, req, n, msgID, errSpoolDraining)
		return
	}
	msg := &nats.Msg{
		Subject: n.Subject,
		Data:    n.JSON,
		Header: nats.Header{
			jetstream.MsgIDHeader: {msgID},
			MsgHeaderEvent:        {req.event},
			MsgHeaderContentType:  {MsgContentType},
		},
	}
	// nats.go buffers what is published while it reconnects and sends it
	// once reconnected: that would store a delivery answered with 503.
	if h.conn != nil && !h.conn.IsConnected() {
		h.spoolOr503(w, req, n, msgID, fmt.Errorf("publish %s: %w", n.Subject, errNotConnected))
		return
	}
	// A client that hangs up does not abort the publish: its outcome must
	// not depend on when Gogs gives up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), h.cfg.PublishTimeout)
	start := time.Now()
	ack, err := h.pub.PublishMsg(ctx, msg, jetstream.WithExpectStream(schemas.StreamEvents))
	if err != nil {
		cancel()
		h.metrics.published(time.Since(start).Seconds(), "")
		h.spoolOr503(w, req, n, msgID, fmt.Errorf("publish %s: %w", n.Subject, err))
		return
	}
	id := n.Envelope.ID
	if ack.Duplicate {
		// The ack names the stored copy's sequence; its event id is the one
		// to answer with, and tells a redelivery from another hook's copy.
		stored, err := h.storedID(ctx, ack.Sequence)
		switch {
		case err != nil:
			req.dupKind, req.err = dupUnknown, err
		case stored == id:
			req.dupKind = dupDelivery
		default:
			req.dupKind, req.storedID, id = dupPayload, stored, stored
		}
	}
	cancel()
	h.metrics.published(time.Since(start).Seconds(), req.dupKind)
	req.streamSeq, req.duplicate = ack.Sequence, ack.Duplicate
	h.respond(w, req, http.StatusAccepted, accepted{
		ID: id, Subject: n.Subject, StreamSeq: ack.Sequence, Duplicate: ack.Duplicate,
	})
}

// storedID reads the id of the event stored at seq in FORGE_EVENTS.
func (h *Handler) storedID(ctx context.Context, seq uint64) (string, error) {
	if h.streams == nil {
		return "", errNoLookup
	}
	h.eventsMu.Lock()
	s := h.events
	h.eventsMu.Unlock()
	if s == nil {
		var err error
		if s, err = h.streams.Stream(ctx, schemas.StreamEvents); err != nil {
			return "", fmt.Errorf("look up stream %s: %w", schemas.StreamEvents, err)
		}
		h.eventsMu.Lock()
		h.events = s
		h.eventsMu.Unlock()
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return "", fmt.Errorf("get stored event %d: %w", seq, err)
	}
	var ev struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.ID == "" {
		return "", fmt.Errorf("stored event %d has no id", seq)
	}
	return ev.ID, nil
}

// spoolOr503 writes the event to the spool and answers 202, or answers 503
// when there is no spool or it cannot take the event. why is the reason it
// was not published.
func (h *Handler) spoolOr503(w http.ResponseWriter, req *request, n *gogs.Normalized, msgID string, why error) {
	if h.spool == nil {
		h.fail503(w, req, why)
		return
	}
	err := h.spool.Append(msgID, n.Subject, n.JSON)
	h.metrics.spool(err)
	if err != nil {
		h.fail503(w, req, errors.Join(why, fmt.Errorf("spool: %w", err)))
		return
	}
	req.spooled, req.err = true, why
	h.respond(w, req, http.StatusAccepted, spooled{ID: n.Envelope.ID, Subject: n.Subject, Spooled: true})
}

func (h *Handler) fail503(w http.ResponseWriter, req *request, err error) {
	w.Header().Set("Retry-After", h.retryAfter)
	h.fail(w, req, http.StatusServiceUnavailable, "event store unavailable, retry later", err)
}

func (h *Handler) failTooLarge(w http.ResponseWriter, req *request) {
	h.fail(w, req, http.StatusRequestEntityTooLarge,
		"body larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes", errBodyTooLarge)
}

var (
	errBodyTooLarge  = errors.New("body too large")
	errSpoolDraining = errors.New("spool not yet drained: kept in order behind it")
	// errTooLargeForBroker: the normalized event exceeds the broker's max
	// payload.
	errTooLargeForBroker = errors.New("event exceeds the broker's max payload")
	errNotConnected      = errors.New("not connected to NATS")
	errNoLookup          = errors.New("publisher cannot read stored events")
	errTooManyInFlight   = errors.New("requests in flight at their bound")
)

// logRequest writes the request's one log line: info for 2xx, warn for 4xx
// and 503, error for 500. Never a secret, signature or body.
func (h *Handler) logRequest(req *request) {
	level := zerolog.InfoLevel
	switch {
	case req.status >= 500 && req.status != http.StatusServiceUnavailable:
		level = zerolog.ErrorLevel
	case req.status >= 400:
		level = zerolog.WarnLevel
	}
	ev := h.log.WithLevel(level)
	if ev == nil {
		return
	}
	ev = ev.Int("status", req.status).
		Float64("duration_ms", float64(time.Since(req.start).Microseconds())/1000).
		Int("bytes", req.bytes).
		Str("remote_addr", req.remote)
	if req.verified {
		ev = ev.Bool("signed", req.signed).
			Str("event", req.event).
			Str("delivery_id", req.deliveryID).
			Str("repo", req.repo).
			Str("subject", req.subject)
	}
	if req.streamSeq != 0 {
		ev = ev.Uint64("stream_seq", req.streamSeq).Bool("duplicate", req.duplicate)
	}
	if req.dupKind != "" {
		ev = ev.Str("duplicate_of", req.dupKind)
	}
	if req.storedID != "" {
		ev = ev.Str("event_id", req.storedID)
	}
	if req.spooled {
		ev = ev.Bool("spooled", true)
	}
	if req.err != nil {
		ev = ev.AnErr("error", req.err)
	}
	ev.Msg("webhook")
}
