package docs_test

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/command/commandtest"
	"github.com/forgebus/forgebus/workers/docs"
)

func TestDecodeConfigIsolation(t *testing.T) {
	commandtest.DecodeIsolation(t, docs.ErrConfig, "keep: 1", func(fields string) (command.Isolation, error) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("rules:\n  - {repo: a/b, command: [make], output: o, root: /r, "+fields+"}\n"), &n); err != nil {
			t.Fatal(err)
		}
		c, err := docs.DecodeConfig(&n)
		if err != nil {
			return command.Isolation{}, err
		}
		return c.Rules[0].Isolation, nil
	})
}
