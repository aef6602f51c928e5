package models_test

import (
	"errors"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/models"
)

func TestDecodeConfig(t *testing.T) {
	doc := `
runtime: {concurrency: 1}
policy: {events: [push]}
rules:
  - name: refresh-serving
    repo: acme/ml-*
    branch: main
    paths: ["models/**", "schemas/*.json"]
    post: {url: "https://models.internal/refresh", timeout: 5s}
  - repo: acme/ml-core
    paths: ["models/**"]
    command: {argv: [make, refresh]}
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	c, err := models.DecodeConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 2 || c.Rules[0].Post.Timeout != 5*time.Second || c.Rules[1].Command.Timeout != models.DefaultCommandTimeout {
		t.Errorf("config = %+v", c)
	}
	if err := yaml.Unmarshal([]byte("rules:\n  - {repo: a/b, paths: [x], post: {url: http://h/x, secret: s}}\n"), &n); err != nil {
		t.Fatal(err)
	}
	if _, err := models.DecodeConfig(&n); !errors.Is(err, models.ErrConfig) {
		t.Errorf("secret in config: err = %v, want ErrConfig (unknown field)", err)
	}
}
