package models_test

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/command"
	"github.com/forgebus/forgebus/workers/command/commandtest"
	"github.com/forgebus/forgebus/workers/models"
)

func TestDecodeConfigIsolation(t *testing.T) {
	commandtest.DecodeIsolation(t, models.ErrConfig, "timeout: 5s", func(fields string) (command.Isolation, error) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("rules:\n  - {repo: a/b, paths: [\"**\"], command: {argv: [make], "+fields+"}}\n"), &n); err != nil {
			t.Fatal(err)
		}
		c, err := models.DecodeConfig(&n)
		if err != nil {
			return command.Isolation{}, err
		}
		return c.Rules[0].Command.Isolation, nil
	})
}
