package config

import (
	"errors"
	"strings"
	"testing"
)

func TestConsoleSettings(t *testing.T) {
	base := map[string]string{
		"FORGEBUS_GOGS_URL":              "http://gogs.test",
		"FORGEBUS_CONSOLE_OPERATOR_ORGS": " ops , ,platform",
		"FORGEBUS_CONSOLE_SESSION_TTL":   "15m",
		"FORGEBUS_CONSOLE_KEY":           "k3y",
		"FORGEBUS_CONSOLE_SECURE_COOKIE": "on",
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "ok", env: base},
		{name: "webhook address", env: map[string]string{"FORGEBUS_CONSOLE_ADDR": "127.0.0.1:8080", "FORGEBUS_HTTP_ADDR": ":8080"}, wantErr: "is the webhook address"},
		{name: "no gogs", env: map[string]string{"FORGEBUS_GOGS_URL": "gogs.test"}, wantErr: "FORGEBUS_GOGS_URL"},
		{name: "no roles", env: map[string]string{"FORGEBUS_CONSOLE_OPERATOR_ORGS": " , "}, wantErr: "nobody could sign in"},
		{name: "ttl", env: map[string]string{"FORGEBUS_CONSOLE_SESSION_TTL": "48h"}, wantErr: "SESSION_TTL"},
		{name: "half tls", env: map[string]string{"FORGEBUS_CONSOLE_TLS_CERT": "c.pem"}, wantErr: "set both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := Load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			err = c.ValidateConsole()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(c.Console.OperatorOrgs, "|") != "ops|platform" || c.Console.Key.Reveal() != "k3y" || !c.Console.SecureCookie || c.Console.Addr != DefaultConsoleAddr {
					t.Errorf("console = %+v", c.Console)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateConsole = %v, want ErrInvalid with %q", err, tt.wantErr)
			}
		})
	}
}
