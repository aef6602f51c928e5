package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/forgebus/forgebus/services/config"
)

func TestFlagsOverrideEnv(t *testing.T) {
	t.Setenv("FORGEBUS_HTTP_ADDR", ":1111")
	t.Setenv("FORGEBUS_INSTANCE", "from-env")
	t.Setenv("FORGEBUS_DATA_DIR", "/env-data")
	tests := []struct {
		name  string
		args  []string
		check func(c config.Config) bool
	}{
		{"env when no flag", nil, func(c config.Config) bool { return c.HTTPAddr == ":1111" && c.Instance == "from-env" }},
		{"flag wins", []string{"--http-addr", "127.0.0.1:2222", "--instance", "from-flag"}, func(c config.Config) bool {
			return c.HTTPAddr == "127.0.0.1:2222" && c.Instance == "from-flag" && c.DataDir == "/env-data"
		}},
		{"persistent flag", []string{"--log-level", "debug"}, func(c config.Config) bool { return c.Log.Level == "debug" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got config.Config
			root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
			probe := &cobra.Command{Use: "config-probe", RunE: func(cmd *cobra.Command, _ []string) error {
				var err error
				got, err = loadConfig(cmd)
				return err
			}}
			addFlag(probe, "http-addr", "")
			addFlag(probe, "instance", "")
			root.AddCommand(probe)
			root.SetArgs(append([]string{"config-probe"}, tc.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if !tc.check(got) {
				t.Errorf("config = %+v", got)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string
	}{
		{"version", []string{"version"}, exitOK, "forgebus dev go"},
		{"help", []string{"help"}, exitOK, "forgebus"},
		{"unknown command", []string{"nope"}, exitUsage, "unknown command"},
		{"extra argument", []string{"version", "x"}, exitUsage, "unknown command"},
		{"events without subcommand", []string{"events"}, exitUsage, "needs a subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ranCommand = false
			var out, errOut bytes.Buffer
			if got := run(tc.args, &out, &errOut); got != tc.want {
				t.Errorf("run(%v) = %d, want %d; stderr %q", tc.args, got, tc.want, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tc.wantOut) {
				t.Errorf("output %q %q, want %q", out.String(), errOut.String(), tc.wantOut)
			}
		})
	}
}
