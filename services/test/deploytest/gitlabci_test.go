package deploytest

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ciJob is the part of a GitLab CI job the tests read.
type ciJob struct {
	Stage        string   `yaml:"stage"`
	Image        any      `yaml:"image"`
	Services     []any    `yaml:"services"`
	Extends      any      `yaml:"extends"`
	BeforeScript []string `yaml:"before_script"`
	Script       []string `yaml:"script"`
	AfterScript  []string `yaml:"after_script"`
	Variables    map[string]any
}

// ciKeywords are the top-level keys of .gitlab-ci.yml that are not jobs.
var ciKeywords = map[string]bool{
	"stages": true, "variables": true, "default": true, "include": true,
	"workflow": true, "image": true, "services": true, "cache": true,
	"before_script": true, "after_script": true,
}

type gitlabCI struct {
	stages []string
	vars   map[string]any
	// jobs are the visible jobs with their scripts resolved through
	// extends and default.
	jobs map[string]ciJob
}

func loadGitlabCI(t *testing.T) gitlabCI {
	t.Helper()
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(readRepoFile(t, ".gitlab-ci.yml"), &top); err != nil {
		t.Fatalf(".gitlab-ci.yml: %v", err)
	}
	ci := gitlabCI{jobs: map[string]ciJob{}}
	all := map[string]ciJob{}
	for name, node := range top {
		switch {
		case name == "stages":
			if err := node.Decode(&ci.stages); err != nil {
				t.Fatal(err)
			}
		case name == "variables":
			if err := node.Decode(&ci.vars); err != nil {
				t.Fatal(err)
			}
		case ciKeywords[name] && name != "default":
		default:
			var j ciJob
			if err := node.Decode(&j); err != nil {
				t.Fatalf("job %s: %v", name, err)
			}
			var raw struct {
				Variables map[string]any `yaml:"variables"`
			}
			_ = node.Decode(&raw)
			j.Variables = raw.Variables
			all[name] = j
		}
	}
	var resolve func(name string, depth int) ciJob
	resolve = func(name string, depth int) ciJob {
		j, ok := all[name]
		if !ok || depth > 5 {
			t.Fatalf("job or template %q not found (or extends loop)", name)
		}
		var parents []string
		switch e := j.Extends.(type) {
		case string:
			parents = []string{e}
		case []any:
			for _, p := range e {
				parents = append(parents, fmt.Sprint(p))
			}
		}
		for _, p := range parents {
			pj := resolve(p, depth+1)
			if j.BeforeScript == nil {
				j.BeforeScript = pj.BeforeScript
			}
			if j.Script == nil {
				j.Script = pj.Script
			}
			if j.Image == nil {
				j.Image = pj.Image
			}
		}
		return j
	}
	def := all["default"]
	for name := range all {
		if name == "default" || strings.HasPrefix(name, ".") {
			continue
		}
		j := resolve(name, 0)
		if j.BeforeScript == nil {
			j.BeforeScript = def.BeforeScript
		}
		ci.jobs[name] = j
	}
	return ci
}

// makeTarget finds the lines that run "make <target>".
var makeTarget = regexp.MustCompile(`(?m)^\s*make\s+([a-zA-Z0-9][\w.-]*)`)

// ciRunTargets are the make targets .ci/run runs, in order.
func ciRunTargets(t *testing.T) []string {
	var out []string
	for _, line := range strings.Split(string(readRepoFile(t, ".ci/run")), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range makeTarget.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal(".ci/run runs no make target: the test reads the wrong shape")
	}
	return out
}

// TestGitlabCIRunsCIRun: the GitLab pipeline runs exactly the make targets
// of .ci/run (the one CI definition the repository is held to), each in a
// job of a declared stage, and each a real Makefile target.
func TestGitlabCIRunsCIRun(t *testing.T) {
	ci := loadGitlabCI(t)
	want := ciRunTargets(t)
	var got []string
	for name, j := range ci.jobs {
		if !slices.Contains(ci.stages, j.Stage) {
			t.Errorf("job %s: stage %q is not in stages %v", name, j.Stage, ci.stages)
		}
		if len(j.Script) == 0 {
			t.Errorf("job %s has no script", name)
		}
		for _, line := range slices.Concat(j.BeforeScript, j.Script, j.AfterScript) {
			for _, m := range makeTarget.FindAllStringSubmatch(line, -1) {
				got = append(got, m[1])
			}
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	wantSet := slices.Clone(want)
	slices.Sort(wantSet)
	wantSet = slices.Compact(wantSet)
	if !slices.Equal(got, wantSet) {
		t.Errorf("GitLab CI runs make targets %v; .ci/run runs %v", got, wantSet)
	}
	makefile := string(readRepoFile(t, "Makefile"))
	for _, target := range wantSet {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).MatchString(makefile) {
			t.Errorf("make %s: no such Makefile target", target)
		}
	}
	// Stage order follows .ci/run's order.
	stageOf := map[string]int{}
	for name, j := range ci.jobs {
		for _, line := range j.Script {
			for _, m := range makeTarget.FindAllStringSubmatch(line, -1) {
				stageOf[m[1]] = slices.Index(ci.stages, ci.jobs[name].Stage)
			}
		}
	}
	for i := 1; i < len(want); i++ {
		if stageOf[want[i]] < stageOf[want[i-1]] {
			t.Errorf("make %s runs in an earlier stage than make %s; .ci/run runs it after", want[i], want[i-1])
		}
	}
}

// TestGitlabCIJobs: the fault tests and the image build are there.
func TestGitlabCIJobs(t *testing.T) {
	ci := loadGitlabCI(t)
	var faults, build bool
	for name, j := range ci.jobs {
		script := strings.Join(j.Script, "\n")
		if strings.Contains(script, "go test") && strings.Contains(script, "-run") && j.Stage == "faults" {
			faults = true
		}
		if strings.Contains(script, "docker build") {
			build = true
			if !strings.Contains(script, "-f Dockerfile") {
				t.Errorf("job %s: docker build does not name the root Dockerfile", name)
			}
			if !strings.Contains(script, "--target tools") {
				t.Errorf("job %s: does not build the tools image", name)
			}
			dind := false
			for _, s := range j.Services {
				if strings.Contains(fmt.Sprint(s), "dind") {
					dind = true
				}
			}
			if !dind {
				t.Errorf("job %s: docker build without a docker:dind service", name)
			}
		}
	}
	if !faults {
		t.Error("no job in stage faults runs the fault tests")
	}
	if !build {
		t.Error("no job builds the image")
	}
}

// TestGitlabCISecrets: no secret value in the file; a registry password is
// only ever read from a CI variable, through stdin.
func TestGitlabCISecrets(t *testing.T) {
	ci := loadGitlabCI(t)
	check := func(where string, vars map[string]any) {
		for k, v := range vars {
			if secretName.MatchString(k) {
				t.Errorf("%s: variable %s = %v: secrets belong in CI/CD variables, not the file", where, k, v)
			}
		}
	}
	check("variables", ci.vars)
	varRef := regexp.MustCompile(`^"?\$\{?[A-Z_][A-Z0-9_]*\}?"?$`)
	for name, j := range ci.jobs {
		check("job "+name, j.Variables)
		for _, line := range slices.Concat(j.BeforeScript, j.Script, j.AfterScript) {
			if strings.Contains(line, "docker login") {
				if !strings.Contains(line, "--password-stdin") {
					t.Errorf("job %s: docker login without --password-stdin puts the password on a command line", name)
				}
				if strings.Contains(line, " -p ") || strings.Contains(line, "--password ") {
					t.Errorf("job %s: docker login with a password argument", name)
				}
			}
			// "echo <x> | docker login": x must be a variable.
			if before, _, ok := strings.Cut(line, "| docker login"); ok {
				fields := strings.Fields(before)
				if last := fields[len(fields)-1]; !varRef.MatchString(last) {
					t.Errorf("job %s: docker login password %q is not a CI variable", name, last)
				}
			}
		}
	}
}
