package gogs

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"mime"
	"net/url"
)

// Verify checks signature, the X-Gogs-Signature value, against the
// HMAC-SHA256 of payload under every secret in secrets, so that a secret can
// be rotated by configuring the old and the new one at once. The signature
// must be 64 lower-case hex digits, as Gogs sends it. Every secret is tried,
// in constant time, whichever matches; an empty secret never matches.
//
// It returns nil on a match, [ErrMissingSignature] for an empty signature,
// and [ErrBadSignature] otherwise. Errors never contain a MAC or a secret.
func Verify(payload []byte, signature string, secrets [][]byte) error {
	if signature == "" {
		return ErrMissingSignature
	}
	var got [sha256.Size]byte
	if !decodeLowerHex(got[:], signature) {
		return fmt.Errorf("%w: not %d lower-case hex digits", ErrBadSignature, 2*sha256.Size)
	}
	match := 0
	var sum [sha256.Size]byte
	for _, secret := range secrets {
		if len(secret) == 0 {
			continue // an empty key is known to everyone: it never authenticates
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(payload)
		match |= subtle.ConstantTimeCompare(mac.Sum(sum[:0]), got[:])
	}
	if match != 1 {
		return ErrBadSignature
	}
	return nil
}

// decodeLowerHex decodes exactly len(dst)*2 lower-case hex digits of s.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHex(s[2*i])
		lo, ok2 := lowerHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Media types Gogs sends.
const (
	MediaJSON = "application/json"
	MediaForm = "application/x-www-form-urlencoded"
)

// ExtractPayload returns the JSON payload of a delivery, the bytes the
// signature covers: the body itself for application/json (parameters such
// as charset are ignored), and the URL-decoded value of the field "payload"
// for application/x-www-form-urlencoded (other fields are ignored). A form
// without exactly one non-empty payload field, or not URL-encoded, gives
// [ErrMalformed]; any other content type [ErrUnsupportedMediaType].
func ExtractPayload(contentType string, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("%w: content type does not parse", ErrUnsupportedMediaType)
	}
	switch mt {
	case MediaJSON:
		return body, nil
	case MediaForm:
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: form body is not URL-encoded", ErrMalformed)
		}
		vals := form["payload"]
		switch {
		case len(vals) == 0 || vals[0] == "":
			return nil, fmt.Errorf("%w: form has no payload field", ErrMalformed)
		case len(vals) > 1:
			return nil, fmt.Errorf("%w: form has %d payload fields", ErrMalformed, len(vals))
		}
		return []byte(vals[0]), nil
	}
	return nil, fmt.Errorf("%w: %.64q", ErrUnsupportedMediaType, mt)
}
