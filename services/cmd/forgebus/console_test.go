package main

import (
	"strings"
	"testing"
)

func TestConsoleCommandRefusesBadSettings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"on the webhook address", map[string]string{"FORGEBUS_CONSOLE_ADDR": "127.0.0.1:8080", "FORGEBUS_HTTP_ADDR": ":8080"}, "is the webhook address"},
		{"no gogs", map[string]string{"FORGEBUS_GOGS_URL": ""}, "FORGEBUS_GOGS_URL"},
		{"no role mapping", map[string]string{"FORGEBUS_CONSOLE_OPERATOR_ORGS": ""}, "nobody could sign in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FORGEBUS_GOGS_URL", "http://gogs.test")
			t.Setenv("FORGEBUS_CONSOLE_OPERATOR_ORGS", "ops")
			t.Setenv("FORGEBUS_NATS_URL", "nats://127.0.0.1:1")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, errOut := runForgebus(t, "console")
			if code != exitUsage || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", code, errOut, exitUsage, tt.want)
			}
		})
	}
}
