package config

import (
	"errors"
	"testing"
)

// TestNATSAuthOff: FORGEBUS_NATS_AUTH=off is accepted only for an embedded
// server listening on loopback; no setting opens a reachable listener.
func TestNATSAuthOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr error
	}{
		{"default is on", map[string]string{}, nil},
		{"off on 127.0.0.1", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": "127.0.0.1:4222"}, nil},
		{"off on localhost", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": "localhost:4222"}, nil},
		{"off on ::1", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": "[::1]:4222"}, nil},
		{"off on every interface", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": "0.0.0.0:4222"}, ErrInvalid},
		{"off on an empty host", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": ":4222"}, ErrInvalid},
		{"off on a LAN address", map[string]string{"FORGEBUS_NATS_AUTH": "off", "FORGEBUS_NATS_LISTEN": "192.168.1.5:4222"}, ErrInvalid},
		{"not a word we know", map[string]string{"FORGEBUS_NATS_AUTH": "disabled"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["FORGEBUS_ALLOW_UNSIGNED"] = "true"
			c, err := Load(envOf(tc.env))
			if err == nil {
				err = c.Validate()
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load+Validate = %v, want %v", err, tc.wantErr)
			}
			if err == nil && c.NATS.NoAuth != (tc.env["FORGEBUS_NATS_AUTH"] == "off") {
				t.Errorf("NoAuth = %v", c.NATS.NoAuth)
			}
		})
	}
}
