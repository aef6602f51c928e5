package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, level, format string
		wantJSON            bool
		wantDebug           bool
		wantErr             error
	}{
		{name: "defaults", wantJSON: true},
		{name: "auto on a buffer is json", level: "info", format: "auto", wantJSON: true},
		{name: "json debug", level: "debug", format: "json", wantJSON: true, wantDebug: true},
		{name: "console", level: "warn", format: "console"},
		{name: "bad level", level: "loud", wantErr: ErrLevel},
		{name: "bad format", format: "xml", wantErr: ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(tc.level, tc.format, &buf)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("New() error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			log.Debug().Msg("dbg")
			log.Warn().Str("delivery_id", "d1").Msg("hello")
			out := buf.String()
			if got := strings.Contains(out, "dbg"); got != tc.wantDebug {
				t.Errorf("debug line written = %v, want %v: %s", got, tc.wantDebug, out)
			}
			if !tc.wantJSON {
				if strings.HasPrefix(out, "{") || !strings.Contains(out, "hello") {
					t.Errorf("want console output, got %q", out)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var rec map[string]string
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
				t.Fatalf("not JSON: %q: %v", out, err)
			}
			if rec["message"] != "hello" || rec["delivery_id"] != "d1" || rec["level"] != "warn" {
				t.Errorf("record = %v", rec)
			}
			ts, err := time.Parse(time.RFC3339Nano, rec["time"])
			if err != nil || !strings.HasSuffix(rec["time"], "Z") || time.Since(ts) > time.Minute {
				t.Errorf("time %q is not a recent UTC RFC 3339 time: %v", rec["time"], err)
			}
		})
	}
}
