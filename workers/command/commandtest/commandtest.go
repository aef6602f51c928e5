// Package commandtest holds the checks every worker that runs commands
// (docs, models) makes of its configuration's isolation settings.
package commandtest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/forgebus/forgebus/workers/command"
)

// DecodeIsolation checks a worker's config decoder on the isolation
// fields of a rule: decode gets one rule's extra YAML flow fields
// ("run_as: nobody") and returns the rule's decoded isolation. plain is a
// field of the worker's own that sets no isolation ("keep: 1"); errConfig
// is the worker's configuration error.
func DecodeIsolation(t *testing.T, errConfig error, plain string, decode func(fields string) (command.Isolation, error)) {
	tests := []struct {
		name     string
		fields   string
		noBwrap  bool
		wantErr  error
		wantText string
		want     command.Isolation
	}{
		{name: "default mode", fields: plain, want: command.Isolation{}},
		{name: "run_as", fields: `run_as: "65534:65534"`, want: command.Isolation{RunAs: "65534:65534"}},
		{name: "run_as a name", fields: "run_as: nobody", wantErr: errConfig, wantText: "uid:gid"},
		{name: "bwrap with network", fields: "sandbox: bwrap, network: true", want: command.Isolation{Sandbox: "bwrap", Network: true}},
		{name: "bwrap missing fails at start", fields: "sandbox: bwrap", noBwrap: true, wantErr: errConfig, wantText: "bwrap is not installed"},
		{name: "network without a sandbox", fields: "network: true", wantErr: errConfig, wantText: "sandbox: bwrap only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want.RunAs != "" && os.Geteuid() != 0 {
				t.Skip("run_as needs root")
			}
			if tt.want.Sandbox != "" {
				RequireBwrap(t)
			}
			if tt.noBwrap {
				t.Setenv("PATH", t.TempDir())
			}
			got, err := decode(tt.fields)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("err = %q, want it to say %q", err, tt.wantText)
				}
				return
			}
			if got != tt.want {
				t.Errorf("isolation = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// RequireBwrap skips t when bubblewrap is not installed.
func RequireBwrap(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bubblewrap is not installed")
	}
}
