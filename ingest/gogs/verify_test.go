package gogs

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	payload := []byte(`{"ref":"refs/heads/master"}`)
	const oldSecret, newSecret = "old-secret", "new-secret"
	good := sign(oldSecret, payload)
	tests := []struct {
		name    string
		payload []byte
		sig     string
		secrets []string
		wantErr error
	}{
		{"match", payload, good, []string{oldSecret}, nil},
		{"rotation: old secret first", payload, good, []string{oldSecret, newSecret}, nil},
		{"rotation: old secret second", payload, good, []string{newSecret, oldSecret}, nil},
		{"rotation: new secret signs", payload, sign(newSecret, payload), []string{oldSecret, newSecret}, nil},
		{"wrong secret", payload, good, []string{newSecret}, ErrBadSignature},
		{"no secrets", payload, good, nil, ErrBadSignature},
		{"empty secret never matches", payload, sign("", payload), []string{""}, ErrBadSignature},
		{"empty secret beside a real one", payload, sign("", payload), []string{"", newSecret}, ErrBadSignature},
		{"payload changed", append(bytes.Clone(payload), ' '), good, []string{oldSecret}, ErrBadSignature},
		{"empty payload signed", nil, sign(oldSecret, nil), []string{oldSecret}, nil},
		{"missing signature", payload, "", []string{oldSecret}, ErrMissingSignature},
		{"upper-case hex", payload, strings.ToUpper(good), []string{oldSecret}, ErrBadSignature},
		{"sha256= prefix", payload, "sha256=" + good, []string{oldSecret}, ErrBadSignature},
		{"not hex", payload, strings.Repeat("zz", 32), []string{oldSecret}, ErrBadSignature},
		{"too short", payload, good[:62], []string{oldSecret}, ErrBadSignature},
		{"too long", payload, good + "00", []string{oldSecret}, ErrBadSignature},
		{"odd length", payload, good[:63], []string{oldSecret}, ErrBadSignature},
		{"white space", payload, " " + good[1:], []string{oldSecret}, ErrBadSignature},
		{"sha1 length", payload, good[:40], []string{oldSecret}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var secrets [][]byte
			for _, s := range tt.secrets {
				secrets = append(secrets, []byte(s))
			}
			err := Verify(tt.payload, tt.sig, secrets)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				msg := err.Error()
				for _, leak := range append([]string{good, sign(newSecret, tt.payload)}, tt.secrets...) {
					if leak != "" && strings.Contains(msg, leak) {
						t.Errorf("error %q reveals a secret or MAC", msg)
					}
				}
			}
		})
	}
}

func TestExtractPayload(t *testing.T) {
	js := []byte(`{"a":"b c+&="}`)
	form := []byte("payload=" + url.QueryEscape(string(js)))
	tests := []struct {
		name        string
		contentType string
		body        []byte
		want        []byte
		wantErr     error
	}{
		{"json", "application/json", js, js, nil},
		{"json with charset", "application/json; charset=utf-8", js, js, nil},
		{"json upper case", "Application/JSON", js, js, nil},
		{"form", "application/x-www-form-urlencoded", form, js, nil},
		{"form with charset", "application/x-www-form-urlencoded; charset=UTF-8", form, js, nil},
		{"form with extra fields", "application/x-www-form-urlencoded", append([]byte("x=1&"), append(form, "&y=2"...)...), js, nil},
		{"form with spaces as %20", "application/x-www-form-urlencoded", []byte("payload=%7B%22a%22%3A%22b%20c%2B%26%3D%22%7D"), js, nil},
		{"form with no payload", "application/x-www-form-urlencoded", []byte("x=1"), nil, ErrMalformed},
		{"form with empty payload", "application/x-www-form-urlencoded", []byte("payload="), nil, ErrMalformed},
		{"form with two payloads", "application/x-www-form-urlencoded", append(append(form, '&'), form...), nil, ErrMalformed},
		{"form with bad escape", "application/x-www-form-urlencoded", []byte("payload=%zz"), nil, ErrMalformed},
		{"empty form", "application/x-www-form-urlencoded", nil, nil, ErrMalformed},
		{"multipart", "multipart/form-data; boundary=x", form, nil, ErrUnsupportedMediaType},
		{"text", "text/plain", js, nil, ErrUnsupportedMediaType},
		{"json suffix type", "application/vnd.gogs+json", js, nil, ErrUnsupportedMediaType},
		{"no content type", "", js, nil, ErrUnsupportedMediaType},
		{"garbage content type", "application/json;;;=", js, nil, ErrUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExtractPayload(tt.contentType, tt.body)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ExtractPayload = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("ExtractPayload = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzVerifyExtract: no input panics, and nothing verifies without the
// right MAC of the extracted payload.
func FuzzVerifyExtract(f *testing.F) {
	js := `{"ref":"refs/heads/master"}`
	f.Add("application/json", []byte(js), sign("s3cret", []byte(js)))
	f.Add("application/x-www-form-urlencoded", []byte("payload="+url.QueryEscape(js)), sign("s3cret", []byte(js)))
	f.Add("application/x-www-form-urlencoded", []byte("payload="+url.QueryEscape(js)), "")
	f.Add("multipart/form-data", []byte(js), strings.Repeat("0", 64))
	secrets := [][]byte{[]byte("s3cret"), []byte("other")}
	f.Fuzz(func(t *testing.T, contentType string, body []byte, sig string) {
		payload, err := ExtractPayload(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("ExtractPayload error %v wraps no sentinel", err)
			}
			return
		}
		err = Verify(payload, sig, secrets)
		valid := sig == sign("s3cret", payload) || sig == sign("other", payload)
		if (err == nil) != valid {
			t.Fatalf("Verify(%q) = %v, want valid=%v", sig, err, valid)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMissingSignature) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
	})
}
