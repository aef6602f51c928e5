package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// stack drives one compose project with the docker CLI.
type stack struct {
	root    string   // repository root, where docker-compose.yml is
	compose []string // "docker compose" or "docker-compose"
	project string
	env     []string // the compose environment (secrets, ports) on top of ours
	log     func(format string, a ...any)
}

// composeCommand is "docker compose" when the plugin exists, else
// "docker-compose": the two spellings of the same tool.
func composeCommand(ctx context.Context) ([]string, error) {
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}, nil
	}
	return nil, fmt.Errorf("find compose: neither \"docker compose\" nor docker-compose works")
}

// run runs a command with the compose environment and returns its output.
func (s *stack) run(ctx context.Context, d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 8))
	}
	return out.String(), nil
}

// composeRun runs a compose subcommand on the project.
func (s *stack) composeRun(ctx context.Context, d time.Duration, args ...string) (string, error) {
	full := append(append(s.compose[1:len(s.compose):len(s.compose)], "-p", s.project, "-f", "docker-compose.yml"), args...)
	return s.run(ctx, d, s.compose[0], full...)
}

func (s *stack) docker(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, 90*time.Second, "docker", args...)
}

// containers lists the ids of the project's containers of service (all
// services when empty), running or not.
func (s *stack) containers(ctx context.Context, service string) ([]string, error) {
	args := []string{"ps", "-a", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=" + s.project}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := s.docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// container is the one container of service (the first of several).
func (s *stack) container(ctx context.Context, service string) (string, error) {
	ids, err := s.containers(ctx, service)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("service %s has no container", service)
	}
	return ids[0], nil
}

// oneShot is the operator's service that provisions the streams and exits;
// the others start only once it has succeeded.
const oneShot = "provision"

// states is each container's name and state: its health when it has a
// healthcheck, else its status.
func (s *stack) states(ctx context.Context) (map[string]string, error) {
	ids, err := s.containers(ctx, "")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("project %s has no containers", s.project)
	}
	out, err := s.docker(ctx, append([]string{"inspect", "-f",
		`{{.Name}} {{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}`}, ids...)...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] == oneShot {
			continue
		}
		m[strings.TrimPrefix(f[0], "/")] = f[2]
	}
	return m, nil
}

// waitHealthy waits until every container of the project is healthy (or
// running, for one without a healthcheck) and there are want of them.
func (s *stack) waitHealthy(ctx context.Context, want int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last map[string]string
	for time.Now().Before(deadline) {
		m, err := s.states(ctx)
		if err == nil {
			last = m
			ok := len(m) == want
			for _, st := range m {
				if st != "healthy" && st != "running" {
					ok = false
				}
			}
			if ok {
				return nil
			}
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	var bad []string
	for n, st := range last {
		if st != "healthy" && st != "running" {
			bad = append(bad, n+"="+st)
		}
	}
	return fmt.Errorf("wait healthy: %d containers, want %d, not ready: %v: %w", len(last), want, bad, errTimeout)
}

// network is the project's default network.
func (s *stack) network(ctx context.Context) (string, error) {
	out, err := s.docker(ctx, "network", "ls", "-q", "--filter", "label=com.docker.compose.project="+s.project)
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		return "", fmt.Errorf("project %s has %d networks, want 1", s.project, len(ids))
	}
	return ids[0], nil
}

// down removes the project's containers and networks, and its volumes
// when volumes is set: compose finds them by the project name.
func (s *stack) down(ctx context.Context, volumes bool) error {
	args := []string{"down", "--remove-orphans", "-t", "30"}
	if volumes {
		args = append(args, "-v")
	}
	_, err := s.composeRun(ctx, 3*time.Minute, args...)
	return err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
