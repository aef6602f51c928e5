package deploytest

import (
	"bufio"
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fromLine matches a Dockerfile FROM instruction: its image and stage.
var fromLine = regexp.MustCompile(`(?i)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$`)

// dockerfileBases returns the images a Dockerfile's FROM lines pull, with
// ARG defaults substituted and earlier stages left out, and whether it
// has a "# syntax=" directive (BuildKit pulls that frontend image).
func dockerfileBases(t *testing.T, rel string) (bases []string, syntax bool) {
	t.Helper()
	args := map[string]string{}
	stages := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(readRepoFile(t, rel)))
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first && strings.HasPrefix(strings.ToLower(strings.ReplaceAll(line, " ", "")), "#syntax=") {
			syntax = true
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			first = false
		}
		if f := strings.Fields(line); len(f) == 2 && strings.EqualFold(f[0], "ARG") {
			k, v, _ := strings.Cut(f[1], "=")
			args[k] = v
		}
		m := fromLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		img := regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(m[1], func(v string) string {
			return args[strings.Trim(v, "${}")]
		})
		if !stages[img] {
			bases = append(bases, img)
		}
		if m[2] != "" {
			stages[m[2]] = true
		}
	}
	return bases, syntax
}

// TestComposeBuildsOffline: every image of docker-compose.yml is built
// from a Dockerfile that pulls nothing: FROM scratch or the local Debian
// base that deploy/images/build.sh imports, no BuildKit syntax directive,
// and files only from what build.sh stages.
func TestComposeBuildsOffline(t *testing.T) {
	p := loadCompose(t, nil)
	root := repoRoot(t)
	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			if s.Build == nil {
				t.Fatalf("no build: docker compose would pull %s", s.Image)
			}
			if s.Build.Context != root {
				t.Errorf("build context %s, want the repository root", s.Build.Context)
			}
			bases, syntax := dockerfileBases(t, s.Build.Dockerfile)
			if syntax {
				t.Errorf("%s has a # syntax= directive: BuildKit would pull its frontend", s.Build.Dockerfile)
			}
			for _, b := range bases {
				if b != "scratch" && !strings.HasPrefix(b, "forgebus-base:") {
					t.Errorf("%s: FROM %s would be pulled", s.Build.Dockerfile, b)
				}
			}
			if s.Build.Target != "" {
				t.Errorf("build target %q: the offline Dockerfiles have one stage", s.Build.Target)
			}
		})
	}
}

// TestComposeOnline: the online file swaps every build for one from the
// public images, keeping the services and their settings.
func TestComposeOnline(t *testing.T) {
	off := loadCompose(t, nil)
	on := loadComposeFiles(t, nil, "docker-compose.yml", filepath.Join("deploy", "compose.online.yml"))
	for name, s := range on.Services {
		t.Run(name, func(t *testing.T) {
			if s.Build == nil {
				t.Fatal("no build")
			}
			bases, _ := dockerfileBases(t, s.Build.Dockerfile)
			for _, b := range bases {
				if b == "scratch" || strings.HasPrefix(b, "forgebus-base:") {
					t.Errorf("%s: FROM %s is the offline path", s.Build.Dockerfile, b)
				}
			}
			if !slicesEqual(s.Command, off.Services[name].Command) || s.Image != off.Services[name].Image {
				t.Errorf("command or image differ from docker-compose.yml")
			}
		})
	}
	for _, n := range natsNodes {
		bases, _ := dockerfileBases(t, on.Services[n].Build.Dockerfile)
		if len(bases) != 1 || !strings.HasPrefix(bases[0], "nats:2.") {
			t.Errorf("%s online: FROM %v, want the official nats:2.x", n, bases)
		}
		if hc := on.Services[n].HealthCheck; hc == nil || hc.Test[1] != "wget" {
			t.Errorf("%s online: healthcheck %v, want wget (the official image has no forgebus)", n, hc)
		}
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
