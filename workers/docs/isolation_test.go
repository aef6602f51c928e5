package docs_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/docs"
)

func TestDecodeConfigIsolation(t *testing.T) {
	const head = "rules:\n  - {repo: a/b, command: [make], output: o, root: /r, "
	tests := []struct {
		name     string
		fields   string
		noBwrap  bool
		wantErr  error
		wantText string
		want     command.Isolation
	}{
		{name: "default mode", fields: "keep: 1", want: command.Isolation{}},
		{name: "run_as", fields: `run_as: "65534:65534"`, want: command.Isolation{RunAs: "65534:65534"}},
		{name: "run_as a name", fields: "run_as: nobody", wantErr: docs.ErrConfig, wantText: "uid:gid"},
		{name: "bwrap with network", fields: "sandbox: bwrap, network: true", want: command.Isolation{Sandbox: "bwrap", Network: true}},
		{name: "bwrap missing fails at start", fields: "sandbox: bwrap", noBwrap: true, wantErr: docs.ErrConfig, wantText: "bwrap is not installed"},
		{name: "network without a sandbox", fields: "network: true", wantErr: docs.ErrConfig, wantText: "sandbox: bwrap only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want.RunAs != "" && os.Geteuid() != 0 {
				t.Skip("run_as needs root")
			}
			if tt.want.Sandbox != "" {
				requireBwrap(t)
			}
			if tt.noBwrap {
				t.Setenv("PATH", t.TempDir())
			}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(head+tt.fields+"}\n"), &n); err != nil {
				t.Fatal(err)
			}
			c, err := docs.DecodeConfig(&n)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("err = %q, want it to say %q", err, tt.wantText)
				}
				return
			}
			if c.Rules[0].Isolation != tt.want {
				t.Errorf("isolation = %+v, want %+v", c.Rules[0].Isolation, tt.want)
			}
		})
	}
}

func requireBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bubblewrap is not installed")
	}
}
