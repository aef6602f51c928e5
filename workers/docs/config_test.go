package docs_test

import (
	"errors"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/forgebus/forgebus/workers/docs"
)

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr error
		check   func(t *testing.T, c docs.Config)
	}{
		{name: "defaults, other keys ignored", doc: `
runtime: {concurrency: 2}
policy: {repos: ["acme/*"]}
rules:
  - repo: acme/*
    command: [sh, build.sh]
    output: site
    root: /srv/docs
`, check: func(t *testing.T, c docs.Config) {
			r := c.Rules[0]
			if r.Keep != docs.DefaultKeep || r.Timeout != docs.DefaultTimeout || r.Name != "acme/*" || r.Branch != "" {
				t.Errorf("rule = %+v, want defaults", r)
			}
		}},
		{name: "all fields", doc: `
rules:
  - name: handbook
    repo: acme/handbook
    branch: main
    command: [make, html]
    output: _build/html
    root: /srv/docs
    timeout: 90s
    keep: 3
`, check: func(t *testing.T, c docs.Config) {
			r := c.Rules[0]
			if r.Keep != 3 || r.Timeout != 90*time.Second || r.Output != "_build/html" || r.Branch != "main" {
				t.Errorf("rule = %+v", r)
			}
		}},
		{name: "unknown field", doc: "rules:\n  - repo: a/b\n    comand: [x]\n", wantErr: docs.ErrConfig},
		{name: "shell string command", doc: "rules:\n  - {repo: a/b, command: make html, output: o, root: /r}\n", wantErr: docs.ErrConfig},
		{name: "output escapes checkout", doc: "rules:\n  - {repo: a/b, command: [make], output: ../x, root: /r}\n", wantErr: docs.ErrConfig},
		{name: "relative root", doc: "rules:\n  - {repo: a/b, command: [make], output: o, root: srv}\n", wantErr: docs.ErrConfig},
		{name: "no rules", doc: "runtime: {}\n", wantErr: docs.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.doc), &n); err != nil {
				t.Fatal(err)
			}
			c, err := docs.DecodeConfig(&n)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
